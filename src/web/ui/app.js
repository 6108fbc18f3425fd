// The client's entry: asks who the user is (GET /api/v1/me), shows the login
// form on 401 (or at once in a browser that holds no session), and routes the hash (#/live, #/playback, #/events, #/status,
// #/admin) to one view at a time. A view is `mount(root, me) → unmount`; the
// router always unmounts the old view first, so its sockets, timers and
// players are gone before the next starts.

import { api, setCsrf, whenUnauthorized, errorText, el } from './api.js';
import * as live from './live.js';
import * as playback from './playback.js';
import * as events from './events.js';
import * as status from './status.js';
import * as admin from './admin.js';

const views = { live, playback, events, status, admin };
const root = document.getElementById('view');
const bar = document.getElementById('bar');
const form = document.getElementById('login');
let me = null;
let unmount = null;

function stopView() {
  if (unmount) {
    try {
      unmount();
    } catch (e) {
      console.warn('unmounting the view failed', e);
    }
  }
  unmount = null;
  root.replaceChildren();
}

function showLogin() {
  stopView();
  me = null;
  bar.hidden = true;
  form.hidden = false;
  form.querySelector('input[name=username]').focus();
}

function route() {
  if (!me) return;
  const name = (location.hash.match(/^#\/(\w+)/) || [])[1];
  if (!views[name] || (name === 'admin' && me.role !== 'admin')) {
    location.replace('#/live');
    return;
  }
  stopView();
  for (const a of document.querySelectorAll('#nav a')) {
    a.classList.toggle('active', a.dataset.route === name);
  }
  document.title = `Tandem · ${name[0].toUpperCase()}${name.slice(1)}`;
  try {
    unmount = views[name].mount(root, me);
  } catch (e) {
    root.replaceChildren(el('p', { class: 'bad' }, `This view failed: ${errorText(e)}`));
  }
}

// Set while this browser holds a session, so a fresh browser shows the form
// without first asking /me for a 401 (which Chromium logs as a failed load).
// The server also marks the shell when the request carried a session cookie
// (one set by a login elsewhere, or by a test harness).
const SESSION_FLAG = 'tandem-session';

async function start() {
  if (!localStorage.getItem(SESSION_FLAG) && !document.documentElement.dataset.session) {
    showLogin();
    return;
  }
  try {
    me = await api('/api/v1/me');
  } catch (e) {
    if (e.status === 401) localStorage.removeItem(SESSION_FLAG);
    else {
      form.hidden = false;
      document.getElementById('login-error').textContent = errorText(e);
    }
    showLogin();
    return;
  }
  form.hidden = true;
  bar.hidden = false;
  document.getElementById('who').textContent = `${me.user} · ${me.role}`;
  document.querySelector('#nav a[data-route=admin]').hidden = me.role !== 'admin';
  if (!location.hash || location.hash === '#' || location.hash === '#/') location.replace('#/live');
  route();
}

form.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const f = new FormData(form);
  const error = document.getElementById('login-error');
  error.textContent = '';
  try {
    const r = await api('/api/v1/login', {
      method: 'POST',
      body: { username: f.get('username'), password: f.get('password') },
    });
    setCsrf(r.csrf_token);
    localStorage.setItem(SESSION_FLAG, '1');
    form.reset();
    // No hashchange: start() routes once it knows who logged in.
    history.replaceState(null, '', '#/live');
    await start();
  } catch (e) {
    error.textContent = errorText(e);
  }
});

document.getElementById('logout').addEventListener('click', async () => {
  try {
    await api('/api/v1/logout', { method: 'POST' });
  } catch (e) {
    console.warn('logout:', errorText(e));
  }
  setCsrf('');
  localStorage.removeItem(SESSION_FLAG);
  showLogin();
});

whenUnauthorized(() => {
  localStorage.removeItem(SESSION_FLAG);
  if (me) showLogin();
});
window.addEventListener('hashchange', route);
start();
