// Playback of stored footage: channel and day pickers, the timeline, one
// <video> per chosen channel played in sync, speeds, frame steps, jumps to
// events and gaps, and range export.
//
// Each player plays a window of `clip.mp4?start=W&end=W+WINDOW` (the store's
// virtual file: Range requests give native seeking, rates and frame steps
// with no state on the server). The clip's time axis is the wall clock —
// gaps are held frames — so the picture shown is at window start +
// currentTime. W is the seek point when it lies in a recorded run, else the
// next run's start (where the server's clip starts too). The first channel
// is the master clock; the others follow it and are corrected when more than
// SYNC_S off. Why this and not a store-fed WebSocket: docs/web-client.md.

import { api, el, errorText, clock, dayOf, dayStart, iso, routeParams } from './api.js';
import { Timeline, gapsBetween } from './timeline.js';

const WINDOW_MS = 10 * 60 * 1000;
const DAY = 24 * 3600 * 1000;
const SYNC_S = 0.3;
const SPEEDS = [0.25, 0.5, 1, 2, 4, 8, 16];
const MAX_EXPORT_MS = 12 * 3600 * 1000;

const parse = (s) => new Date(s).getTime();

// Where a window for `t` starts on a channel: t inside a run, else the next
// run's start; null when nothing is recorded at or after t.
export function windowStart(runs, t) {
  for (const r of runs) {
    if (t < r.end) return Math.max(t, r.start);
  }
  return null;
}

export function mount(root, _me) {
  const q = routeParams();
  const state = {
    channels: [],
    chosen: q.getAll('channel').map(Number).filter(Boolean),
    day: dayOf(q.get('t') ? parse(q.get('t')) : Date.now()),
    data: new Map(),
    players: [],
    rate: 1,
    sel: null,
  };
  const startAt = q.get('t') ? parse(q.get('t')) : null;
  const timeEl = el('output', { id: 'pb-time', class: 'pb-time' }, '–');
  const msg = el('p', { class: 'muted pb-msg' });
  const picker = el('div', { class: 'pb-channels' });
  const dayInput = el('input', { type: 'date', value: state.day, 'aria-label': 'day' });
  const videos = el('div', { class: 'pb-videos' });
  const timeline = new Timeline({
    onSeek: (t) => seek(t, true),
    onSelect: (a, b) => select(a, b),
  });
  const speed = el(
    'select',
    { 'aria-label': 'speed', id: 'pb-speed' },
    SPEEDS.map((s) => el('option', { value: s, selected: s === 1 }, s < 1 ? `${s === 0.25 ? '¼' : '½'}×` : `${s}×`)),
  );
  const playBtn = el('button', { type: 'button', id: 'pb-play', onclick: () => toggle() }, '▶');
  const selText = el('span', { class: 'muted' });
  const mp4Link = el('a', { class: 'button', id: 'pb-download', download: '', hidden: true }, 'Download .mp4');
  const zipLink = el('a', { class: 'button', id: 'pb-evidence', download: '', hidden: true }, 'Evidence export');
  root.append(
    el('div', { class: 'toolbar' }, el('span', { class: 'label' }, 'Channels'), picker, el('label', {}, 'Day ', dayInput)),
    videos,
    el(
      'div',
      { class: 'toolbar pb-controls' },
      el('button', { type: 'button', title: 'previous event', onclick: () => jump('event', -1) }, '« event'),
      el('button', { type: 'button', title: 'previous gap', onclick: () => jump('gap', -1) }, '⇤ gap'),
      el('button', { type: 'button', title: 'frame back', onclick: () => step(-1) }, '◀|'),
      playBtn,
      el('button', { type: 'button', title: 'frame forward', onclick: () => step(1) }, '|▶'),
      el('button', { type: 'button', title: 'next gap', onclick: () => jump('gap', 1) }, 'gap ⇥'),
      el('button', { type: 'button', title: 'next event', onclick: () => jump('event', 1) }, 'event »'),
      speed,
      timeEl,
    ),
    timeline.root,
    el(
      'div',
      { class: 'toolbar' },
      el('span', { class: 'label' }, 'Range'),
      el('button', { type: 'button', onclick: () => mark(0) }, 'Mark in'),
      el('button', { type: 'button', onclick: () => mark(1) }, 'Mark out'),
      el('button', { type: 'button', onclick: () => select(null) }, 'Clear'),
      selText,
      mp4Link,
      zipLink,
    ),
    msg,
  );

  speed.addEventListener('change', () => {
    state.rate = Number(speed.value);
    for (const p of state.players) p.video.playbackRate = state.rate;
  });
  dayInput.addEventListener('change', () => {
    if (!dayInput.value) return;
    state.day = dayInput.value;
    load().then(() => seek(firstFootage(), false));
  });

  const master = () => state.players[0];
  // The wall-clock time of the picture a player shows, in ms.
  const timeOf = (p) => (p.win ? p.win.start + p.video.currentTime * 1000 : null);

  function renderPicker() {
    picker.replaceChildren(
      ...state.channels.map((c) =>
        el(
          'label',
          { class: 'chip' },
          el('input', {
            type: 'checkbox',
            value: c.number,
            checked: state.chosen.includes(c.number),
            onchange: (e) => {
              const n = c.number;
              state.chosen = e.target.checked ? [...state.chosen, n] : state.chosen.filter((x) => x !== n);
              const t = currentTime();
              buildPlayers();
              load().then(() => seek(t ?? firstFootage(), false));
            },
          }),
          ` ${c.number} · ${c.name}`,
        ),
      ),
    );
  }

  function buildPlayers() {
    for (const p of state.players) p.video.removeAttribute('src');
    state.players = state.chosen.map((n) => {
      const c = state.channels.find((c) => c.number === n);
      const video = el('video', { playsinline: true, muted: true, preload: 'auto' });
      video.muted = true;
      const label = el('span', { class: 'pb-label' }, c ? `${n} · ${c.name}` : `${n}`);
      const box = el('div', { class: 'pb-video', dataset: { channel: n } }, video, label);
      return { channel: n, fps: (c && c.ingest && c.ingest.fps) || 25, video, box, win: null };
    });
    videos.replaceChildren(...state.players.map((p) => p.box));
    const cols = Math.min(state.players.length, 2) || 1;
    videos.style.setProperty('--cols', cols);
    videos.style.setProperty('--rows', Math.max(1, Math.ceil(state.players.length / cols)));
    const m = master();
    if (m) {
      m.video.addEventListener('ended', () => nextWindow());
      m.video.addEventListener('play', () => (playBtn.textContent = '❚❚'));
      m.video.addEventListener('pause', () => (playBtn.textContent = '▶'));
      m.video.addEventListener('seeked', show);
    }
  }

  async function load() {
    const a = dayStart(state.day);
    const b = a + DAY;
    msg.textContent = '';
    const rows = [];
    try {
      const evs = await api(`/api/v1/events?start=${iso(a)}&end=${iso(b)}`);
      for (const n of state.chosen) {
        const r = await api(`/api/v1/channels/${n}/recordings?start=${iso(a)}&end=${iso(b)}`);
        const runs = r.recordings.map((x) => ({ start: parse(x.start), end: parse(x.end), origin: x.origin }));
        // Gap fill's stretches still to fetch (or given up): drawn over the holes.
        const fills = (r.gapfill || [])
          .filter((g) => g.state !== 'done')
          .map((g) => ({ start: parse(g.start), end: parse(g.end), state: g.state }));
        const events = evs.events
          .filter((e) => e.channel === n)
          .map((e) => ({ id: e.id, type: e.kind, start: parse(e.start), end: e.end ? parse(e.end) : null }));
        state.data.set(n, { runs, events });
        const c = state.channels.find((c) => c.number === n);
        rows.push({ channel: n, name: c ? `${n} · ${c.name}` : `${n}`, runs, events, fills });
      }
    } catch (e) {
      // A refresh that fails keeps the timeline that is shown: a blank
      // timeline would read as "no footage", which is worse than stale.
      msg.textContent = `Cannot read the recordings: ${errorText(e)}`;
      if (timeline.day[0] === a) return;
    }
    timeline.setData(rows, a, b);
    if (!state.chosen.length) msg.textContent = 'Pick a channel.';
  }

  function firstFootage() {
    const runs = state.data.get(state.chosen[0])?.runs || [];
    if (!runs.length) return dayStart(state.day);
    // Today: a minute before the end of recording; another day: its first footage.
    const last = runs[runs.length - 1];
    return dayOf(Date.now()) === state.day ? Math.max(last.start, last.end - 60000) : runs[0].start;
  }

  function currentTime() {
    const m = master();
    return m ? timeOf(m) : null;
  }

  // Loads each player's window at `t` and (optionally) plays.
  function seek(t, play) {
    msg.textContent = '';
    const wasPlaying = master() && !master().video.paused;
    for (const p of state.players) {
      const runs = state.data.get(p.channel)?.runs || [];
      const start = windowStart(runs, t);
      if (start === t && p.win && t >= p.win.start && t < p.win.end - 1000) {
        // Inside the loaded window: a Range request away, no new file.
        p.video.currentTime = (t - p.win.start) / 1000;
        if (play || wasPlaying) p.video.play().catch(() => {});
        continue;
      }
      if (start === null) {
        p.win = null;
        p.video.removeAttribute('src');
        p.video.load();
        continue;
      }
      const end = Math.min(start + WINDOW_MS, Math.max(runs[runs.length - 1].end, start + 1000));
      p.win = { start, end };
      p.video.src = `/api/v1/channels/${p.channel}/clip.mp4?start=${iso(start)}&end=${iso(end)}`;
      p.video.playbackRate = state.rate;
      p.video.defaultPlaybackRate = state.rate;
      if (play || wasPlaying) p.video.play().catch(() => {});
    }
    if (master() && !master().win) msg.textContent = `No footage of channel ${master().channel} at or after ${clock(t)}.`;
    timeline.setCursor(master()?.win ? master().win.start : t);
    show();
  }

  // At the end of a window, the next one starts where it ended (or at the
  // next run after a hole).
  function nextWindow() {
    const m = master();
    if (!m || !m.win) return;
    const runs = state.data.get(m.channel)?.runs || [];
    const t = m.win.end;
    if (windowStart(runs, t) === null) {
      // The live edge of today's recording: read the runs again.
      load().then(() => {
        if (windowStart(state.data.get(m.channel)?.runs || [], t + 1) !== null) seek(t, true);
      });
      return;
    }
    seek(t, true);
  }

  function toggle() {
    const m = master();
    if (!m || !m.win) return;
    if (m.video.paused) for (const p of state.players) p.video.play().catch(() => {});
    else for (const p of state.players) p.video.pause();
  }

  function step(dir) {
    const m = master();
    if (!m || !m.win) return;
    for (const p of state.players) p.video.pause();
    m.video.currentTime = Math.max(0, m.video.currentTime + dir / m.fps);
    sync(true);
  }

  function jump(kind, dir) {
    const t = currentTime() ?? dayStart(state.day);
    const marks = [];
    for (const n of state.chosen) {
      const d = state.data.get(n);
      if (!d) continue;
      if (kind === 'event') marks.push(...d.events.map((e) => e.start));
      else marks.push(...gapsBetween(d.runs).map((g) => (dir > 0 ? g.end : g.start)));
    }
    marks.sort((a, b) => a - b);
    const target = dir > 0 ? marks.find((x) => x > t + 500) : marks.reverse().find((x) => x < t - 1000);
    if (target === undefined) {
      msg.textContent = `No ${kind} ${dir > 0 ? 'after' : 'before'} ${clock(t)} on this day.`;
      return;
    }
    // A gap's start is shown as the last frame before it.
    seek(kind === 'gap' && dir < 0 ? target - 1000 : target, !master()?.video.paused);
  }

  function mark(which) {
    const t = currentTime();
    if (t === null) return;
    const [a, b] = state.sel || [t, t];
    select(which === 0 ? t : Math.min(a, t), which === 0 ? Math.max(b, t) : t);
  }

  function select(a, b) {
    state.sel = a === null ? null : [Math.min(a, b), Math.max(a, b)];
    timeline.setSelection(a, b);
    const m = master();
    const ok = state.sel && m && state.sel[1] - state.sel[0] >= 1000 && state.sel[1] - state.sel[0] <= MAX_EXPORT_MS;
    mp4Link.hidden = zipLink.hidden = !ok;
    if (!state.sel) {
      selText.textContent = '';
      return;
    }
    const secs = Math.round((state.sel[1] - state.sel[0]) / 1000);
    selText.textContent = `${clock(state.sel[0])} – ${clock(state.sel[1])} (${secs} s)${ok ? '' : ': 1 s to 12 h'}`;
    if (ok) {
      const qs = `start=${iso(state.sel[0])}&end=${iso(state.sel[1])}`;
      const stamp = iso(state.sel[0]).replace(/[:.]/g, '-');
      mp4Link.href = `/api/v1/channels/${m.channel}/clip.mp4?${qs}`;
      mp4Link.download = `channel-${m.channel}-${stamp}.mp4`;
      zipLink.href = `/api/v1/channels/${m.channel}/evidence.zip?${qs}`;
      zipLink.download = `channel-${m.channel}-${stamp}-evidence.zip`;
    }
  }

  // Keeps the other players on the master's clock.
  function sync(force) {
    const m = master();
    const t = m ? timeOf(m) : null;
    if (t === null) return;
    for (const p of state.players.slice(1)) {
      if (!p.win) continue;
      const want = (t - p.win.start) / 1000;
      if (want < 0 || t > p.win.end) {
        if (!p.video.paused) p.video.pause();
        continue;
      }
      if (force || Math.abs(p.video.currentTime - want) > SYNC_S) p.video.currentTime = want;
      if (m.video.paused !== p.video.paused) {
        if (m.video.paused) p.video.pause();
        else p.video.play().catch(() => {});
      }
    }
  }

  function show() {
    const m = master();
    const t = m ? timeOf(m) : null;
    if (t === null) {
      timeEl.textContent = '–';
      delete timeEl.dataset.time;
      return;
    }
    timeEl.textContent = `${state.day} ${clock(t, true)}`;
    timeEl.dataset.time = iso(t);
    timeline.setCursor(t);
  }

  // Space plays or pauses; arrows step a frame (paused) or skip 10 s.
  const onKey = (e) => {
    if (e.target.closest('input, select, textarea')) return;
    const m = master();
    if (!m || !m.win) return;
    if (e.key === ' ') toggle();
    else if (e.key === 'ArrowLeft' || e.key === 'ArrowRight') {
      const dir = e.key === 'ArrowLeft' ? -1 : 1;
      if (m.video.paused) step(dir);
      else seek(timeOf(m) + dir * 10000, true);
    } else return;
    e.preventDefault();
  };
  document.addEventListener('keydown', onKey);

  const timer = setInterval(() => {
    show();
    sync(false);
  }, 100);
  const refresh = setInterval(() => {
    if (state.day === dayOf(Date.now())) load();
  }, 15000);

  (async () => {
    try {
      state.channels = await api('/api/v1/channels');
    } catch (e) {
      msg.textContent = `Cannot read the channels: ${errorText(e)}`;
      return;
    }
    state.chosen = state.chosen.filter((n) => state.channels.some((c) => c.number === n));
    if (!state.chosen.length && state.channels.length) state.chosen = [state.channels[0].number];
    renderPicker();
    buildPlayers();
    await load();
    seek(startAt ?? firstFootage(), startAt !== null);
  })();

  return () => {
    document.removeEventListener('keydown', onKey);
    clearInterval(timer);
    clearInterval(refresh);
    for (const p of state.players) {
      p.video.pause();
      p.video.removeAttribute('src');
      p.video.load();
    }
  };
}
