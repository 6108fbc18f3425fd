// The playback timeline: one row per channel over one day, drawn with DOM
// elements (not a canvas) so it can be read and tested — recorded stretches
// `.tl-run` (`.tl-filled` for footage gap fill fetched from the camera's
// card), holes between them `.tl-gap`, gap fill's stretches still to fetch
// `.tl-fill` (data-state), events `.tl-event` (data-type),
// each with RFC 3339 `data-start`/`data-end` — plus a cursor and a selected
// range. Zoom from the whole day to MIN_SPAN with the wheel, a pinch or the
// buttons; drag (or one-finger swipe) to pan; click or tap to seek;
// shift-drag to select a range.
//
// Pure layout and gestures: knows nothing of players or the API; the owner
// passes data in and hears `onSeek(ms)` and `onSelect(a, b)`.

import { el, clock, iso } from './api.js';

const MIN_SPAN = 2 * 60 * 1000;
const DAY = 24 * 3600 * 1000;
const TICKS = [1, 2, 5, 10, 15, 30, 60, 120, 180, 360].map((m) => m * 60 * 1000);
const MOVE_PX = 5;

// The holes between consecutive runs, as [start, end] pairs in ms.
export function gapsBetween(runs) {
  const out = [];
  for (let i = 1; i < runs.length; i++) {
    if (runs[i].start > runs[i - 1].end) out.push({ start: runs[i - 1].end, end: runs[i].start });
  }
  return out;
}

// A stable hue per event type, so a type has one colour everywhere.
export function hueOf(type) {
  const fixed = { motion: 28, trigger: 200, door: 200, failover: 280, camera_offline: 0, camera_online: 120 };
  if (type in fixed) return fixed[type];
  let h = 0;
  for (const ch of type) h = (h * 31 + ch.charCodeAt(0)) % 360;
  return h;
}

export class Timeline {
  constructor({ onSeek, onSelect }) {
    this.onSeek = onSeek;
    this.onSelect = onSelect;
    this.rows = [];
    this.day = [0, DAY];
    this.view = [0, DAY];
    this.cursor = null;
    this.sel = null;
    this.pointers = new Map();
    this.axis = el('div', { class: 'tl-axis' });
    this.body = el('div', { class: 'tl-body', id: 'timeline' });
    this.cursorEl = el('div', { class: 'tl-cursor', hidden: true });
    this.selEl = el('div', { class: 'tl-sel', hidden: true });
    this.rowsEl = el('div', { class: 'tl-rows' });
    this.body.append(this.rowsEl, this.selEl, this.cursorEl);
    this.spanEl = el('span', { class: 'tl-span muted' });
    this.root = el(
      'div',
      { class: 'timeline' },
      el(
        'div',
        { class: 'tl-tools' },
        el('button', { type: 'button', title: 'zoom in', onclick: () => this.zoom(0.5) }, '+'),
        el('button', { type: 'button', title: 'zoom out', onclick: () => this.zoom(2) }, '−'),
        el('button', { type: 'button', title: 'whole day', onclick: () => this.setView(...this.day) }, 'Day'),
        el('button', { type: 'button', title: 'pan left', onclick: () => this.pan(-0.5) }, '◀'),
        el('button', { type: 'button', title: 'pan right', onclick: () => this.pan(0.5) }, '▶'),
        this.spanEl,
      ),
      this.axis,
      this.body,
    );
    this.body.addEventListener('wheel', (e) => this.wheel(e), { passive: false });
    this.body.addEventListener('pointerdown', (e) => this.down(e));
    this.body.addEventListener('pointermove', (e) => this.move(e));
    this.body.addEventListener('pointerup', (e) => this.up(e));
    this.body.addEventListener('pointercancel', (e) => this.pointers.delete(e.pointerId));
  }

  // rows: [{channel, name, runs: [{start, end}], events: [{id, type, start, end}]}], times in ms.
  setData(rows, dayStart, dayEnd) {
    const newDay = this.day[0] !== dayStart;
    this.rows = rows;
    this.day = [dayStart, dayEnd];
    if (newDay) this.view = [dayStart, dayEnd];
    this.render();
  }

  timeAt(clientX) {
    const r = this.body.getBoundingClientRect();
    const f = Math.min(1, Math.max(0, (clientX - r.left) / Math.max(r.width, 1)));
    return this.view[0] + f * (this.view[1] - this.view[0]);
  }

  pct(t) {
    return ((t - this.view[0]) / (this.view[1] - this.view[0])) * 100;
  }

  place(node, a, b) {
    const l = this.pct(a);
    const w = Math.max(this.pct(b) - l, 0);
    node.style.left = `${l}%`;
    node.style.width = `${w}%`;
  }

  setView(a, b) {
    let span = Math.min(Math.max(b - a, MIN_SPAN), this.day[1] - this.day[0]);
    a = Math.min(Math.max(a, this.day[0]), this.day[1] - span);
    this.view = [a, a + span];
    this.render();
  }

  zoom(factor, around) {
    const [a, b] = this.view;
    const c = around ?? (this.cursor !== null && this.cursor >= a && this.cursor <= b ? this.cursor : (a + b) / 2);
    this.setView(c - (c - a) * factor, c + (b - c) * factor);
  }

  pan(fraction) {
    const span = this.view[1] - this.view[0];
    this.setView(this.view[0] + span * fraction, this.view[1] + span * fraction);
  }

  wheel(e) {
    e.preventDefault();
    if (e.shiftKey || Math.abs(e.deltaX) > Math.abs(e.deltaY)) {
      this.pan((e.deltaX || e.deltaY) / 1000);
    } else {
      this.zoom(e.deltaY > 0 ? 1.25 : 0.8, this.timeAt(e.clientX));
    }
  }

  down(e) {
    this.body.setPointerCapture(e.pointerId);
    this.pointers.set(e.pointerId, { x: e.clientX, startX: e.clientX });
    if (this.pointers.size === 2) {
      const [p, q] = [...this.pointers.values()];
      this.pinch = { dist: Math.abs(p.x - q.x) || 1, view: [...this.view], mid: this.timeAt((p.x + q.x) / 2) };
      this.drag = null;
      return;
    }
    this.drag = { x: e.clientX, t: this.timeAt(e.clientX), view: [...this.view], moved: false, select: e.shiftKey };
  }

  move(e) {
    const p = this.pointers.get(e.pointerId);
    if (!p) return;
    p.x = e.clientX;
    if (this.pinch && this.pointers.size === 2) {
      const [a, b] = [...this.pointers.values()];
      const f = this.pinch.dist / (Math.abs(a.x - b.x) || 1);
      const [s, t] = this.pinch.view;
      const m = this.pinch.mid;
      this.setView(m - (m - s) * f, m + (t - m) * f);
      return;
    }
    const d = this.drag;
    if (!d) return;
    if (Math.abs(e.clientX - d.x) > MOVE_PX) d.moved = true;
    if (!d.moved) return;
    if (d.select) {
      this.setSelection(d.t, this.timeAt(e.clientX));
    } else {
      const w = this.body.getBoundingClientRect().width || 1;
      const dt = ((e.clientX - d.x) / w) * (d.view[1] - d.view[0]);
      this.setView(d.view[0] - dt, d.view[1] - dt);
    }
  }

  up(e) {
    this.pointers.delete(e.pointerId);
    if (this.pointers.size < 2) this.pinch = null;
    const d = this.drag;
    this.drag = null;
    if (!d) return;
    if (!d.moved) this.onSeek(Math.round(this.timeAt(e.clientX)));
    else if (d.select && this.sel) this.onSelect(...this.sel);
  }

  setCursor(t) {
    this.cursor = t;
    this.cursorEl.hidden = t === null || t < this.view[0] || t > this.view[1];
    if (t !== null) {
      this.cursorEl.style.left = `${this.pct(t)}%`;
      this.cursorEl.dataset.time = iso(t);
    }
  }

  setSelection(a, b) {
    this.sel = a === null ? null : [Math.min(a, b), Math.max(a, b)];
    this.selEl.hidden = !this.sel;
    if (this.sel) {
      this.place(this.selEl, ...this.sel);
      this.selEl.dataset.start = iso(this.sel[0]);
      this.selEl.dataset.end = iso(this.sel[1]);
    }
  }

  render() {
    const [a, b] = this.view;
    const span = b - a;
    this.spanEl.textContent = `${clock(a)} – ${clock(b)}`;
    const step = TICKS.find((s) => span / s <= 8) || TICKS[TICKS.length - 1];
    const ticks = [];
    const offset = new Date(a).getTimezoneOffset() * 60000;
    for (let t = Math.ceil((a - offset) / step) * step + offset; t <= b; t += step) {
      const tick = el('span', { class: 'tl-tick' }, clock(t).slice(0, step < 60000 ? 8 : 5));
      tick.style.left = `${this.pct(t)}%`;
      ticks.push(tick);
    }
    this.axis.replaceChildren(...ticks);
    const rows = this.rows.map((r) => {
      const track = el('div', { class: 'tl-track' });
      for (const run of r.runs) {
        if (run.end < a || run.start > b) continue;
        const cls = run.origin === 'gapfill' ? 'tl-run tl-filled' : 'tl-run';
        const n = el('div', { class: cls, dataset: { channel: r.channel, start: iso(run.start), end: iso(run.end) } });
        if (run.origin === 'gapfill') n.title = `filled from the camera's card ${clock(run.start)} – ${clock(run.end)}`;
        this.place(n, run.start, run.end);
        track.append(n);
      }
      for (const g of gapsBetween(r.runs)) {
        if (g.end < a || g.start > b) continue;
        const n = el('div', {
          class: 'tl-gap',
          title: `no footage ${clock(g.start)} – ${clock(g.end)}`,
          dataset: { channel: r.channel, start: iso(g.start), end: iso(g.end) },
        });
        this.place(n, g.start, g.end);
        track.append(n);
      }
      for (const f of r.fills || []) {
        if (f.end < a || f.start > b) continue;
        const n = el('div', {
          class: 'tl-fill',
          title: `gap fill ${f.state} ${clock(f.start)} – ${clock(f.end)}`,
          dataset: { channel: r.channel, state: f.state, start: iso(f.start), end: iso(f.end) },
        });
        this.place(n, f.start, f.end);
        track.append(n);
      }
      for (const ev of r.events) {
        const end = ev.end ?? Date.now();
        if (end < a || ev.start > b) continue;
        const n = el('div', {
          class: 'tl-event',
          title: `${ev.type} ${clock(ev.start)}${ev.end ? ' – ' + clock(ev.end) : ' (in progress)'}`,
          dataset: { channel: r.channel, type: ev.type, id: ev.id, start: iso(ev.start), end: ev.end ? iso(ev.end) : '' },
        });
        n.style.setProperty('--hue', hueOf(ev.type));
        this.place(n, ev.start, end);
        track.append(n);
      }
      return el('div', { class: 'tl-row', dataset: { channel: r.channel } }, el('span', { class: 'tl-label' }, r.name), track);
    });
    this.rowsEl.replaceChildren(...rows);
    this.setCursor(this.cursor);
    if (this.sel) this.setSelection(...this.sel);
  }
}
