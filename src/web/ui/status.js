// The site's health: per channel ingest and recording, the storage volume
// (used, free, oldest footage, days of retention at the current rate),
// failover rules with their history, and failback transfers. Sections an
// operator's role is needed for say so instead of failing the page.
// Refreshed every 5 s while shown.

import { api, el, errorText, bytes, duration, dateTime } from './api.js';
import { recordingState } from './live.js';

const table = (head, rows) =>
  el('div', { class: 'scroll' }, el('table', {}, el('thead', {}, el('tr', {}, head.map((h) => el('th', {}, h)))), el('tbody', {}, rows)));

const when = (s) => (s ? dateTime(new Date(s).getTime()) : '–');

function channelsSection(list) {
  return table(
    ['Channel', 'Camera', 'State', 'fps', 'kbit/s', 'Reconnects', 'Last error'],
    list.map((c) => {
      const [state, words] = recordingState(c);
      return el(
        'tr',
        { dataset: { channel: c.number } },
        el('td', {}, `${c.number} · ${c.name}`),
        el('td', {}, c.binding || '–'),
        el('td', {}, el('span', { class: `pill ${state}` }, words)),
        el('td', { class: 'num' }, c.ingest.fps.toFixed(1)),
        el('td', { class: 'num' }, c.ingest.bitrate_kbps.toFixed(0)),
        el('td', { class: 'num' }, c.ingest.reconnects),
        el('td', { class: 'err' }, c.ingest.last_error || c.recording.last_error || ''),
      );
    }),
  );
}

function storageSection(s) {
  const v = s.volume;
  const usedPct = v.total_bytes ? ((v.total_bytes - v.free_bytes) / v.total_bytes) * 100 : 0;
  const days = (d) => (d === null || d === undefined ? '–' : `${d.toFixed(1)} days`);
  return el(
    'div',
    {},
    el(
      'div',
      { class: 'volume', dataset: { path: v.path } },
      el('div', {}, el('strong', {}, v.path), ` · footage ${bytes(v.used_bytes)} · free ${bytes(v.free_bytes)} of ${bytes(v.total_bytes)}`),
      el('div', { class: 'meter' }, el('span', { style: `width: ${usedPct.toFixed(1)}%` })),
      el(
        'div',
        { class: 'muted' },
        `oldest footage ${when(v.oldest)} · recording ${bytes(v.rate_bytes_per_s * 86400)}/day · room for ${days(v.days_at_rate)} at this rate`,
      ),
    ),
    table(
      ['Channel', 'Footage', 'Oldest', 'Rate/day', 'Retention', 'Limited by'],
      s.channels.map((c) =>
        el(
          'tr',
          { dataset: { channel: c.channel } },
          el('td', {}, c.channel),
          el('td', { class: 'num' }, bytes(c.bytes)),
          el('td', {}, when(c.oldest)),
          el('td', { class: 'num' }, bytes(c.rate_bytes_per_s * 86400)),
          el('td', { class: 'num' }, days(c.retention_days)),
          el('td', {}, c.limited_by || '–'),
        ),
      ),
    ),
  );
}

function rulesSection(r) {
  if (!r.rules.length) return el('p', { class: 'muted' }, 'No failover rules are configured.');
  return el(
    'div',
    {},
    r.rules.map((x) =>
      el(
        'div',
        { class: 'rule', dataset: { rule: x.name, state: x.machine.state } },
        el('div', {}, el('strong', {}, x.name), ' ', el('span', { class: `pill ${x.machine.state}` }, x.machine.state),
          ` · probes answered ${x.machine.probes_answered}, missed ${x.machine.probes_missed}`,
          x.last_rtt_ms !== null && x.last_rtt_ms !== undefined ? ` · rtt ${x.last_rtt_ms.toFixed(1)} ms` : '',
          x.last_error ? el('span', { class: 'err' }, ` · ${x.last_error}`) : ''),
        x.machine.history.length
          ? el('ul', { class: 'history' }, [...x.machine.history].reverse().slice(0, 10).map((h) => el('li', {}, `${when(h.at)}: ${h.from} → ${h.to}`)))
          : el('div', { class: 'muted' }, 'no state changes yet'),
      ),
    ),
  );
}

function transfersSection(t) {
  if (!t.transfers.length) return el('p', { class: 'muted' }, 'No failback transfers.');
  return table(
    ['Rule', 'Channel', 'To', 'Footage', 'State', 'Sent', 'Last error'],
    t.transfers.map((x) => {
      const span = (new Date(x.end) - new Date(x.start)) / 1000;
      return el(
        'tr',
        { dataset: { id: x.id, state: x.state } },
        el('td', {}, x.rule),
        el('td', {}, `${x.local_channel} → ${x.remote_channel}`),
        el('td', {}, x.target),
        el('td', {}, `${when(x.start)} (${duration(span)})`),
        el('td', {}, el('span', { class: `pill ${x.state}` }, x.state)),
        el('td', { class: 'num' }, bytes(x.bytes_sent)),
        el('td', { class: 'err' }, x.last_error || ''),
      );
    }),
  );
}

const SECTIONS = [
  ['Channels', '/api/v1/channels', channelsSection, 'status-channels', 'viewer'],
  ['Storage', '/api/v1/storage', storageSection, 'status-storage', 'operator'],
  ['Failover rules', '/api/v1/rules', rulesSection, 'status-rules', 'operator'],
  ['Transfers', '/api/v1/transfers', transfersSection, 'status-transfers', 'operator'],
];
const RANK = { viewer: 0, operator: 1, admin: 2 };

export function mount(root, me) {
  // Sections the role may not read are left out rather than asked for.
  const sections = SECTIONS.filter((s) => RANK[me.role] >= RANK[s[4]]);
  const boxes = sections.map(([title, , , id]) => {
    const body = el('div', {}, 'Loading…');
    root.append(el('section', { class: 'card', id }, el('h2', {}, title), body));
    return body;
  });
  async function load() {
    await Promise.all(
      sections.map(async ([, path, render], i) => {
        try {
          boxes[i].replaceChildren(render(await api(path)));
        } catch (e) {
          const words = e.status === 403 ? 'Your role may not see this.' : `Cannot read it: ${errorText(e)}`;
          boxes[i].replaceChildren(el('p', { class: 'muted' }, words));
        }
      }),
    );
  }
  load();
  const timer = setInterval(load, 5000);
  return () => clearInterval(timer);
}
