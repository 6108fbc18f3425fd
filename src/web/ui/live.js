// The live grid: one tile per channel the user may see, each a <video> fed
// through Media Source Extensions from the channel's WebSocket
// (/api/v1/channels/{n}/live, wire format in docs/live.md), or from live HLS
// where MSE is missing. Grid tiles take the substream; an enlarged or
// full-screen tile the main stream.
//
// Bounded for a tab open for days: the append queue has a cap (past it the
// socket is reopened, which starts again at a key frame), the buffer behind
// the play head is trimmed to TRIM_KEEP_S, and a player that lags the live
// edge is moved to it.

import { api, el, errorText } from './api.js';

const MSE = window.ManagedMediaSource || window.MediaSource;
const TRIM_KEEP_S = 10;
const MAX_LAG_S = 1.5;
const CATCH_UP_S = 0.15;
const MAX_QUEUE = 120;
const NTP_UNIX_OFFSET_S = 2208988800;

// Capture time (Unix ms) and media time (s) from a fragment's leading prft
// box, or null when the message does not start with one.
export function readPrft(buf) {
  const v = new DataView(buf);
  if (v.byteLength < 32) return null;
  const type = String.fromCharCode(v.getUint8(4), v.getUint8(5), v.getUint8(6), v.getUint8(7));
  if (type !== 'prft') return null;
  const version = v.getUint8(8);
  const sec = v.getUint32(16);
  const frac = v.getUint32(20);
  const media = version === 1 ? Number(v.getBigUint64(24)) : v.getUint32(24);
  return {
    captureMs: (sec - NTP_UNIX_OFFSET_S) * 1000 + (frac / 2 ** 32) * 1000,
    mediaS: media / 90000,
  };
}

// What a channel is doing, for the tile's overlay: [state, words].
export function recordingState(c) {
  if (!c.binding) return ['idle', 'idle (no camera bound)'];
  if (!c.ingest || !c.ingest.connected) return ['offline', 'camera offline'];
  const mode = (c.policy && c.policy.mode) || 'continuous';
  if (mode === 'off') return ['idle', 'idle'];
  if (mode === 'events' && !(c.policy && c.policy.in_event)) return ['armed', 'armed for events'];
  if (c.recording && c.recording.state === 'recording') return ['recording', 'recording'];
  return ['idle', (c.recording && c.recording.state) || 'idle'];
}

// One channel's player. `el` is the tile; its data-state is `connecting`,
// `playing` or `offline`, data-latency-ms the last measured latency.
export class Player {
  constructor(channel, stream, tile) {
    this.channel = channel;
    this.stream = stream;
    this.tile = tile;
    this.video = tile.querySelector('video');
    // The attribute alone does not mute an element made by script; autoplay needs it muted.
    this.video.muted = true;
    this.closed = false;
    this.backoff = 1000;
    this.marks = [];
    this.setState('connecting');
    if (MSE) this.connect();
    else this.hls();
    this.timer = setInterval(() => this.tick(), 500);
  }

  setState(s, why) {
    this.tile.dataset.state = s;
    if (s === 'playing') this.backoff = 1000;
    if (s !== 'playing') {
      delete this.tile.dataset.latencyMs;
      const l = this.tile.querySelector('.tile-latency');
      if (l) l.textContent = '';
    }
    const badge = this.tile.querySelector('.tile-conn');
    if (badge) badge.textContent = s === 'playing' ? '' : why || s;
  }

  hls() {
    this.video.src = `/api/v1/channels/${this.channel}/live.m3u8?stream=${this.stream}`;
    this.video.addEventListener('playing', () => this.setState('playing'));
    this.video.addEventListener('error', () => this.setState('offline', 'no live stream'));
  }

  connect() {
    if (this.closed) return;
    this.setState('connecting');
    this.queue = [];
    this.sb = null;
    this.mime = null;
    this.expectInit = false;
    this.jump = true;
    this.lastTrim = 0;
    this.ms = new MSE();
    this.url = URL.createObjectURL(this.ms);
    // ManagedMediaSource (Safari) plays only with remote playback off.
    this.video.disableRemotePlayback = true;
    this.video.src = this.url;
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(
      `${proto}//${location.host}/api/v1/channels/${this.channel}/live?stream=${this.stream}`,
    );
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    ws.onmessage = (m) => this.message(m.data);
    ws.onclose = () => this.lost();
    ws.onerror = () => {};
  }

  message(data) {
    if (typeof data === 'string') {
      let m;
      try {
        m = JSON.parse(data);
      } catch {
        return;
      }
      if (m.type === 'init') {
        this.pendingMime = m.mime;
        this.expectInit = true;
        this.tile.dataset.stream = m.stream;
      } else if (m.type === 'drop') {
        this.jump = true;
      } else if (m.type === 'state') {
        if (m.state === 'offline') this.setState('offline', m.error ? `camera offline: ${m.error}` : 'camera offline');
        else this.setState('connecting');
      }
      return;
    }
    if (this.expectInit) {
      this.expectInit = false;
      this.init(this.pendingMime, data);
      return;
    }
    const p = readPrft(data);
    if (p) {
      this.marks.push(p);
      if (this.marks.length > 64) this.marks.shift();
    }
    if (this.queue.length >= MAX_QUEUE) {
      // The page cannot keep up (a hidden tab, a slow phone): start again
      // from a key frame rather than queue without bound.
      this.restart();
      return;
    }
    this.queue.push(data);
    this.pump();
  }

  // The init segment goes through the queue like media, so a codec change
  // takes effect after the frames of the old codec are appended.
  init(mime, segment) {
    this.queue.push({ mime, segment });
    if (this.ms.readyState === 'open') this.pump();
    else this.ms.addEventListener('sourceopen', () => this.pump(), { once: true });
  }

  // Creates the SourceBuffer or changes its type; false when this browser
  // cannot play `mime`.
  prepare(mime) {
    try {
      if (!this.sb) {
        this.sb = this.ms.addSourceBuffer(mime);
        this.sb.addEventListener('updateend', () => this.pump());
        this.sb.addEventListener('error', () => this.restart());
      } else if (mime !== this.mime) {
        this.sb.changeType(mime);
      }
      this.mime = mime;
      return true;
    } catch (e) {
      // The camera's codec (H.265 in most browsers): say so and stop,
      // rather than reconnect to the same answer.
      console.warn(`channel ${this.channel}: ${errorText(e)}`);
      this.teardown();
      this.setState('offline', `this browser cannot play ${mime.replace(/^.*codecs="?([^"]*)"?.*$/, '$1')}`);
      return false;
    }
  }

  pump() {
    if (this.closed || !this.ms || this.ms.readyState !== 'open') return;
    if (!this.sb) {
      // Nothing plays before the first init segment.
      const first = this.queue.findIndex((x) => x.mime);
      if (first < 0) return;
      this.queue.splice(0, first);
    }
    const sb = this.sb;
    if (sb && sb.updating) return;
    const v = this.video;
    const now = performance.now();
    if (sb && v.buffered.length && v.currentTime - v.buffered.start(0) > TRIM_KEEP_S + 2 && now - this.lastTrim > 2000) {
      this.lastTrim = now;
      sb.remove(0, v.currentTime - TRIM_KEEP_S);
      return;
    }
    let next = this.queue.shift();
    if (!next) return;
    if (next.mime) {
      if (!this.prepare(next.mime)) return;
      next = next.segment;
    }
    try {
      this.sb.appendBuffer(next);
    } catch (e) {
      if (e.name === 'QuotaExceededError') {
        this.queue.unshift(next);
        if (v.buffered.length) this.sb.remove(0, Math.max(v.buffered.start(0) + 1, v.currentTime - 2));
      } else {
        console.warn(`channel ${this.channel}: append failed: ${errorText(e)}`);
        this.restart();
      }
    }
  }

  // Twice a second: follow the live edge, measure latency, notice a stall.
  tick() {
    const v = this.video;
    if (!this.sb || !v.buffered.length) return;
    const end = v.buffered.end(v.buffered.length - 1);
    if (this.jump || end - v.currentTime > MAX_LAG_S || v.currentTime < v.buffered.start(v.buffered.length - 1)) {
      this.jump = false;
      // A tenth of a second of slack: with one fragment per frame the
      // player rarely starves, and every tenth kept is latency shown.
      v.currentTime = Math.max(v.buffered.start(v.buffered.length - 1), end - 0.1);
    }
    // Between a small lag and a jump, play a little faster: the lag shrinks
    // without the stutter a seek costs (decoding from the key frame).
    const lag = end - v.currentTime;
    const rate = lag > CATCH_UP_S ? 1.1 : 1;
    if (v.playbackRate !== rate) v.playbackRate = rate;
    if (v.paused) v.play().catch(() => {});
    const t = v.currentTime;
    if (!v.paused && t !== this.lastTime && this.tile.dataset.state !== 'offline') this.setState('playing');
    this.lastTime = t;
    let mark = null;
    for (const m of this.marks) if (m.mediaS <= t + 0.001 && (!mark || m.mediaS > mark.mediaS)) mark = m;
    // A frozen picture has no latency to show (the camera is away).
    if (mark && this.tile.dataset.state === 'playing') {
      const latency = Math.max(0, Math.round(Date.now() - (mark.captureMs + (t - mark.mediaS) * 1000)));
      this.tile.dataset.latencyMs = latency;
      const l = this.tile.querySelector('.tile-latency');
      if (l) l.textContent = `${latency} ms`;
    }
  }

  teardown() {
    if (this.ws) {
      this.ws.onclose = null;
      this.ws.onmessage = null;
      this.ws.close();
      this.ws = null;
    }
    this.sb = null;
    this.queue = [];
    this.marks = [];
    this.video.removeAttribute('src');
    this.video.load();
    if (this.url) URL.revokeObjectURL(this.url);
    this.url = null;
  }

  restart() {
    this.teardown();
    this.connect();
  }

  lost() {
    this.teardown();
    if (this.closed) return;
    this.setState('offline', 'reconnecting…');
    const wait = this.backoff;
    this.backoff = Math.min(this.backoff * 2, 10000);
    this.retry = setTimeout(() => this.connect(), wait);
  }

  close() {
    this.closed = true;
    clearInterval(this.timer);
    clearTimeout(this.retry);
    this.teardown();
  }
}

function tileFor(c) {
  return el(
    'div',
    { class: 'tile', dataset: { channel: c.number, state: 'connecting' } },
    el('video', { muted: true, autoplay: true, playsinline: true }),
    el(
      'div',
      { class: 'tile-top' },
      el('span', { class: 'tile-name' }, `${c.number} · ${c.name}`),
      el('span', { class: 'tile-event', title: 'event in progress', hidden: true }),
    ),
    el(
      'div',
      { class: 'tile-bottom' },
      el('span', { class: 'tile-rec' }),
      el('span', { class: 'tile-conn' }),
      el('span', { class: 'tile-latency', title: 'capture → picture' }),
    ),
  );
}

const LAYOUTS = [1, 4, 9, 16];

export function mount(root, _me) {
  let channels = [];
  let layout = Number(localStorage.getItem('tandem-grid')) || 4;
  let page = 0;
  let enlarged = null;
  const players = new Map();
  const grid = el('div', { class: 'grid', id: 'live-grid' });
  const pager = el('span', { class: 'pager' });
  const note = el('p', { class: 'muted' });
  const buttons = LAYOUTS.map((n) =>
    el('button', { type: 'button', dataset: { layout: n }, onclick: () => setLayout(n) }, n === 1 ? '1' : `${Math.sqrt(n)}×${Math.sqrt(n)}`),
  );
  root.append(
    el('div', { class: 'toolbar' }, el('span', { class: 'label' }, 'Grid'), buttons, pager),
    grid,
    note,
  );

  function setLayout(n) {
    layout = n;
    localStorage.setItem('tandem-grid', n);
    page = 0;
    enlarged = null;
    render();
  }

  function render() {
    for (const p of players.values()) p.close();
    players.clear();
    grid.replaceChildren();
    for (const b of buttons) b.classList.toggle('active', Number(b.dataset.layout) === layout && !enlarged);
    const shown = enlarged ? channels.filter((c) => c.number === enlarged) : channels.slice(page * layout, (page + 1) * layout);
    const cols = enlarged ? 1 : Math.ceil(Math.sqrt(Math.min(layout, Math.max(shown.length, 1))));
    grid.style.setProperty('--cols', cols);
    grid.style.setProperty('--rows', Math.max(1, Math.ceil(shown.length / cols)));
    grid.classList.toggle('single', cols === 1);
    const pages = Math.ceil(channels.length / layout);
    pager.replaceChildren();
    if (!enlarged && pages > 1) {
      for (let i = 0; i < pages; i++) {
        pager.append(el('button', { type: 'button', class: i === page ? 'active' : '', onclick: () => { page = i; render(); } }, `${i + 1}`));
      }
    }
    if (enlarged) pager.append(el('button', { type: 'button', onclick: () => { enlarged = null; render(); } }, '← grid'));
    for (const c of shown) {
      const tile = tileFor(c);
      // Main stream when one picture fills the view; the substream in a grid.
      const stream = enlarged || cols === 1 ? 'main' : 'sub';
      tile.addEventListener('click', () => {
        enlarged = enlarged ? null : c.number;
        render();
      });
      tile.addEventListener('dblclick', () => {
        if (tile.requestFullscreen) tile.requestFullscreen().catch(() => {});
      });
      grid.append(tile);
      players.set(c.number, new Player(c.number, stream, tile));
    }
    overlay();
  }

  let activeEvents = new Set();
  function overlay() {
    for (const c of channels) {
      const tile = grid.querySelector(`.tile[data-channel="${c.number}"]`);
      if (!tile) continue;
      const [state, words] = recordingState(c);
      const rec = tile.querySelector('.tile-rec');
      rec.textContent = words;
      rec.dataset.rec = state;
      tile.dataset.rec = state;
      tile.querySelector('.tile-event').hidden = !activeEvents.has(c.number);
    }
  }

  async function poll() {
    try {
      const list = await api('/api/v1/channels');
      const changed = list.map((c) => c.number).join() !== channels.map((c) => c.number).join();
      channels = list;
      if (changed) render();
      note.textContent = channels.length ? '' : 'You may see no channel.';
      // Events overlapping the last seconds: an open one (no end) is active.
      const since = new Date(Date.now() - 5000).toISOString();
      const ev = await api(`/api/v1/events?start=${since}`);
      activeEvents = new Set(ev.events.filter((e) => e.end === null && e.channel).map((e) => e.channel));
      overlay();
    } catch (e) {
      note.textContent = `Cannot read the channels: ${errorText(e)}`;
    }
  }
  const onKey = (e) => {
    if (e.key === 'Escape' && enlarged) {
      enlarged = null;
      render();
    }
  };
  document.addEventListener('keydown', onKey);
  poll();
  const timer = setInterval(poll, 2000);
  return () => {
    clearInterval(timer);
    document.removeEventListener('keydown', onKey);
    for (const p of players.values()) p.close();
  };
}
