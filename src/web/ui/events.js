// The event list: newest first, a snapshot thumbnail per event, filters by
// channel, type and time; a click opens playback at the event's start minus
// its pre-roll.

import { api, el, errorText, dateTime, clock, duration, iso } from './api.js';
import { hueOf } from './timeline.js';

export const PRE_ROLL_MS = 10 * 1000;
const SHOWN = 200;

export function mount(root, _me) {
  const channel = el('select', { 'aria-label': 'channel', id: 'ev-channel' }, el('option', { value: '' }, 'All channels'));
  const type = el('input', { 'aria-label': 'type', id: 'ev-type', placeholder: 'type (motion, door…)', list: 'ev-types', size: 14 });
  const types = el('datalist', { id: 'ev-types' });
  const since = el(
    'select',
    { 'aria-label': 'since', id: 'ev-since' },
    [
      ['1', 'last hour'],
      ['24', 'last 24 h'],
      ['168', 'last 7 days'],
      ['720', 'last 30 days'],
    ].map(([v, t]) => el('option', { value: v, selected: v === '24' }, t)),
  );
  const list = el('ul', { class: 'ev-list', id: 'ev-list' });
  const msg = el('p', { class: 'muted' });
  root.append(
    el(
      'form',
      { class: 'toolbar', onsubmit: (e) => { e.preventDefault(); load(); } },
      channel,
      type,
      types,
      since,
      el('button', {}, 'Search'),
    ),
    msg,
    list,
  );
  for (const s of [channel, since]) s.addEventListener('change', load);

  let names = new Map();
  async function load() {
    const hours = Number(since.value);
    const qs = new URLSearchParams({ start: iso(Date.now() - hours * 3600 * 1000) });
    if (channel.value) qs.set('channel', channel.value);
    if (type.value.trim()) qs.set('type', type.value.trim());
    msg.textContent = 'Loading…';
    try {
      const r = await api(`/api/v1/events?${qs}`);
      const evs = r.events.filter((e) => e.channel).reverse();
      types.replaceChildren(...[...new Set(r.events.map((e) => e.kind))].map((k) => el('option', { value: k })));
      msg.textContent = evs.length
        ? `${evs.length} event${evs.length === 1 ? '' : 's'}${evs.length > SHOWN ? `, the newest ${SHOWN} shown` : ''}`
        : 'No events match.';
      list.replaceChildren(...evs.slice(0, SHOWN).map(item));
    } catch (e) {
      msg.textContent = `Cannot read the events: ${errorText(e)}`;
    }
  }

  function item(e) {
    const start = new Date(e.start).getTime();
    const end = e.end ? new Date(e.end).getTime() : null;
    const from = start - PRE_ROLL_MS;
    const href = `#/playback?channel=${e.channel}&t=${iso(from)}`;
    const len = end === null ? 'in progress' : end > start ? duration((end - start) / 1000) : 'instant';
    const li = el(
      'li',
      { class: 'ev-item', dataset: { id: e.id, channel: e.channel, type: e.kind, start: e.start } },
      el(
        'a',
        { href, class: 'ev-link', title: `play from ${clock(from)} (${PRE_ROLL_MS / 1000} s before)` },
        el('img', {
          loading: 'lazy',
          src: `/api/v1/events/${e.id}/snapshot.jpg?width=160`,
          alt: `${e.kind} on channel ${e.channel}`,
          width: 160,
          height: 90,
        }),
        el(
          'span',
          { class: 'ev-text' },
          el('span', { class: 'ev-type', style: `--hue: ${hueOf(e.kind)}` }, e.kind),
          el('span', {}, dateTime(start)),
          el('span', { class: 'muted' }, `${names.get(e.channel) || `channel ${e.channel}`} · ${len}`),
        ),
      ),
    );
    // Until a snapshot exists (or for footage since deleted) the alt text stays.
    li.querySelector('img').addEventListener('error', (ev) => ev.target.classList.add('missing'), { once: true });
    return li;
  }

  (async () => {
    try {
      const chans = await api('/api/v1/channels');
      names = new Map(chans.map((c) => [c.number, `${c.number} · ${c.name}`]));
      channel.append(...chans.map((c) => el('option', { value: c.number }, `${c.number} · ${c.name}`)));
    } catch (e) {
      msg.textContent = `Cannot read the channels: ${errorText(e)}`;
    }
    load();
  })();
  return () => {};
}
