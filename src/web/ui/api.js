// The one way the client talks to the API: fetch with the session cookie,
// the CSRF token on changes, errors turned into ApiError with the server's
// text, and a 401 sent to the login form. Also small shared helpers (DOM
// building, formatting of times and sizes) so views stay short.

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

let csrf = sessionStorage.getItem('tandem-csrf') || '';
let onUnauthorized = () => {};

export function setCsrf(token) {
  csrf = token || '';
  if (csrf) sessionStorage.setItem('tandem-csrf', csrf);
  else sessionStorage.removeItem('tandem-csrf');
}

export function whenUnauthorized(f) {
  onUnauthorized = f;
}

// `body` is sent as JSON. Answers the parsed JSON (null for 204).
export async function api(path, { method = 'GET', body, signal } = {}) {
  const headers = {};
  if (method !== 'GET' && method !== 'HEAD') {
    // Same-origin requests carry Origin too; the token covers a page reload
    // that lost it (the server accepts either).
    if (csrf) headers['X-CSRF-Token'] = csrf;
  }
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
    signal,
  });
  if (r.status === 401 && path !== '/api/v1/login') {
    onUnauthorized();
  }
  if (!r.ok) {
    const e = await r.json().catch(() => ({}));
    throw new ApiError(r.status, e.error || `${r.status} ${r.statusText}`);
  }
  if (r.status === 204) return null;
  return r.json();
}

// el('div', {class: 'x', onclick: f}, 'text', child…)
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (v === true) e.setAttribute(k, '');
    else e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

export function bytes(n) {
  if (n === undefined || n === null) return '–';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${u[i]}`;
}

export function duration(s) {
  if (s === undefined || s === null || !isFinite(s)) return '–';
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  if (s < 86400 * 2) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} days`;
}

const pad = (n, w = 2) => String(n).padStart(w, '0');

// Local wall-clock time, to the millisecond when asked.
export function clock(ms, millis = false) {
  const d = new Date(ms);
  const t = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return millis ? `${t}.${pad(d.getMilliseconds(), 3)}` : t;
}

export function dateTime(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${clock(ms)}`;
}

// The local day containing `ms`, as 'YYYY-MM-DD' (what <input type=date> holds).
export function dayOf(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

// Local midnight of a 'YYYY-MM-DD' day, in ms.
export function dayStart(day) {
  const [y, m, d] = day.split('-').map(Number);
  return new Date(y, m - 1, d).getTime();
}

export function iso(ms) {
  return new Date(ms).toISOString();
}

// The query string of the current hash route (#/playback?channel=1&t=…).
export function routeParams() {
  const q = location.hash.split('?')[1] || '';
  return new URLSearchParams(q);
}

export function errorText(e) {
  return e instanceof ApiError ? e.message : `${e}`;
}
