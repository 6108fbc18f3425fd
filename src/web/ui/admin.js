// Administration (admins only): users (add, remove), API tokens (create —
// the secret is shown once — and revoke) and the audit log, paged back in
// time PAGE entries at a time.

import { api, el, errorText, dateTime } from './api.js';

const PAGE = 100;

const channelsText = (c) => (c === null || c === undefined ? 'all' : c.join(', ') || 'none');
const parseChannels = (s) => {
  const t = s.trim();
  if (!t || t === 'all') return null;
  return t.split(/[\s,]+/).map(Number).filter((n) => Number.isInteger(n) && n > 0);
};

export function mount(root, me) {
  const users = el('div', {}, 'Loading…');
  const tokens = el('div', {}, 'Loading…');
  const audit = el('div', {}, 'Loading…');
  const userMsg = el('p', { class: 'bad', role: 'alert' });
  const tokenMsg = el('p', { role: 'alert' });
  const auditMsg = el('span', { class: 'muted' });

  const userForm = el(
    'form',
    { class: 'toolbar', id: 'add-user' },
    el('input', { name: 'name', placeholder: 'name', required: true, size: 10, autocomplete: 'off' }),
    el('select', { name: 'role' }, ['viewer', 'operator', 'admin'].map((r) => el('option', { value: r }, r))),
    el('input', { name: 'password', type: 'password', placeholder: 'password (12+)', required: true, minlength: 12, autocomplete: 'new-password' }),
    el('input', { name: 'channels', placeholder: 'channels: all or 1,2', size: 12 }),
    el('button', {}, 'Add user'),
  );
  userForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const f = new FormData(userForm);
    userMsg.textContent = '';
    try {
      await api('/api/v1/users', {
        method: 'POST',
        body: { name: f.get('name'), role: f.get('role'), password: f.get('password'), channels: parseChannels(f.get('channels')) },
      });
      userForm.reset();
      loadUsers();
    } catch (err) {
      userMsg.textContent = errorText(err);
    }
  });

  const tokenForm = el(
    'form',
    { class: 'toolbar', id: 'add-token' },
    el('input', { name: 'name', placeholder: 'token name', required: true, size: 14 }),
    el('select', { name: 'role' }, ['viewer', 'operator', 'admin'].map((r) => el('option', { value: r, selected: r === me.role }, r))),
    el('label', {}, 'expires ', el('input', { name: 'expires', type: 'date' })),
    el('button', {}, 'Create token'),
  );
  tokenForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const f = new FormData(tokenForm);
    tokenMsg.className = '';
    try {
      const body = { name: f.get('name'), role: f.get('role') };
      if (f.get('expires')) body.expires = new Date(`${f.get('expires')}T23:59:59`).toISOString();
      const t = await api('/api/v1/tokens', { method: 'POST', body });
      tokenMsg.replaceChildren('New token (shown once, copy it now): ', el('code', { class: 'secret' }, t.token));
      tokenForm.reset();
      loadTokens();
    } catch (err) {
      tokenMsg.className = 'bad';
      tokenMsg.textContent = errorText(err);
    }
  });

  const older = el('button', { type: 'button', onclick: () => loadAudit(oldest) }, 'Older');
  const newest = el('button', { type: 'button', onclick: () => loadAudit(null) }, 'Newest');
  let oldest = null;

  root.append(
    el('section', { class: 'card', id: 'admin-users' }, el('h2', {}, 'Users'), users, userForm, userMsg),
    el('section', { class: 'card', id: 'admin-tokens' }, el('h2', {}, 'API tokens'), tokens, tokenForm, tokenMsg),
    el('section', { class: 'card', id: 'admin-audit' }, el('h2', {}, 'Audit log'), el('div', { class: 'toolbar' }, newest, older, auditMsg), audit),
  );

  const table = (head, rows) =>
    el('div', { class: 'scroll' }, el('table', {}, el('thead', {}, el('tr', {}, head.map((h) => el('th', {}, h)))), el('tbody', {}, rows)));

  async function loadUsers() {
    try {
      const r = await api('/api/v1/users');
      users.replaceChildren(
        table(
          ['Name', 'Role', 'Channels', 'Since', ''],
          r.users.map((u) =>
            el(
              'tr',
              { dataset: { user: u.name } },
              el('td', {}, u.name),
              el('td', {}, u.role),
              el('td', {}, channelsText(u.channels)),
              el('td', {}, dateTime(u.created_ms)),
              el(
                'td',
                {},
                u.name === me.user
                  ? ''
                  : el('button', {
                      type: 'button',
                      onclick: async () => {
                        if (!confirm(`Remove user ${u.name}? Their sessions and tokens end with them.`)) return;
                        try {
                          await api(`/api/v1/users/${encodeURIComponent(u.name)}`, { method: 'DELETE' });
                          loadUsers();
                          loadTokens();
                        } catch (err) {
                          userMsg.textContent = errorText(err);
                        }
                      },
                    }, 'Remove'),
              ),
            ),
          ),
        ),
      );
    } catch (e) {
      users.textContent = `Cannot read the users: ${errorText(e)}`;
    }
  }

  async function loadTokens() {
    try {
      const r = await api('/api/v1/tokens');
      tokens.replaceChildren(
        r.tokens.length
          ? table(
              ['Id', 'Name', 'User', 'Role', 'Channels', 'Expires', 'Last used', ''],
              r.tokens.map((t) =>
                el(
                  'tr',
                  { dataset: { token: t.id } },
                  el('td', {}, t.id),
                  el('td', {}, t.name),
                  el('td', {}, t.user),
                  el('td', {}, t.role),
                  el('td', {}, channelsText(t.channels)),
                  el('td', {}, t.expires_ms ? dateTime(t.expires_ms) : 'never'),
                  el('td', {}, t.last_used_ms ? dateTime(t.last_used_ms) : '–'),
                  el(
                    'td',
                    {},
                    el('button', {
                      type: 'button',
                      onclick: async () => {
                        try {
                          await api(`/api/v1/tokens/${t.id}`, { method: 'DELETE' });
                          loadTokens();
                        } catch (err) {
                          tokenMsg.className = 'bad';
                          tokenMsg.textContent = errorText(err);
                        }
                      },
                    }, 'Revoke'),
                  ),
                ),
              ),
            )
          : el('p', { class: 'muted' }, 'No tokens.'),
      );
    } catch (e) {
      tokens.textContent = `Cannot read the tokens: ${errorText(e)}`;
    }
  }

  // `before`: show the PAGE entries older than this entry, or the newest.
  async function loadAudit(before) {
    const qs = new URLSearchParams({ limit: PAGE });
    // `end` is exclusive and in ms: ask up to the oldest entry's millisecond
    // inclusive and drop the ones already shown, so none sharing it is lost.
    if (before !== null) qs.set('end', new Date(before.at_ms + 1).toISOString());
    try {
      const r = await api(`/api/v1/audit?${qs}`);
      const rows = [...r.entries].reverse().filter((a) => before === null || a.id < before.id);
      oldest = rows.length ? rows[rows.length - 1] : before;
      older.disabled = r.entries.length < PAGE;
      auditMsg.textContent = rows.length ? `${dateTime(rows[rows.length - 1].at_ms)} – ${dateTime(rows[0].at_ms)}` : 'no entries';
      audit.replaceChildren(
        table(
          ['Time', 'Who', 'From', 'Action', 'What', 'Outcome'],
          rows.map((a) =>
            el(
              'tr',
              { dataset: { id: a.id } },
              el('td', {}, dateTime(a.at_ms)),
              el('td', {}, a.actor),
              el('td', {}, a.addr || ''),
              el('td', {}, a.action),
              el('td', {}, a.target),
              el('td', {}, a.outcome),
            ),
          ),
        ),
      );
    } catch (e) {
      audit.textContent = `Cannot read the audit log: ${errorText(e)}`;
    }
  }

  loadUsers();
  loadTokens();
  loadAudit(null);
  return () => {};
}
