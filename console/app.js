// The console's shell: sign-in with an API token, what the token may do (its scope and its
// metadata grant, from GET /api/v2/token-info), and the hash routes of the views. Each view draws into #view and may return a function that stops its polling.

import * as api from './api.js';
import { h, replace } from './dom.js';
import * as overview from './overview.js';
import * as deliveries from './deliveries.js';
import * as sessions from './sessions.js';
import * as clients from './clients.js';

const $ = (id) => document.getElementById(id);
const ctx = {
  scope: null,
  canOperate: false,
  // Whether the token may read metadata values; without, the API shows each as "[redacted]".
  metadata: false,
  navigate(hash) {
    if (location.hash === hash) route(); else location.hash = hash;
  },
  // Draws the view again, keeping the status line (a re-drive's outcome stays readable).
  refresh() { route({ keepStatus: true }); },
  status(text) { $('status').textContent = text; },
  // Shows an API failure in `where` (or the status line); a 401 signs out.
  fail(err, where) {
    if (err.status === 401) { signOut('The token was refused (401). Sign in again.'); return; }
    const text = err.status === 403
      ? `Refused: this token's scope does not allow it (403). ${err.message}`
      : `Error${err.status ? ` ${err.status}` : ''}: ${err.message}`;
    if (where) replace(where, h('p', { class: 'error', role: 'alert' }, text));
    else ctx.status(text);
  },
};

let stop = null;

function route({ keepStatus = false } = {}) {
  if (stop) { stop(); stop = null; }
  if (!ctx.scope) return;
  if (!keepStatus) ctx.status('');
  const [path, query = ''] = location.hash.replace(/^#/, '').split('?');
  const params = new URLSearchParams(query);
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  const view = $('view');
  const name = parts[0] ?? 'overview';
  for (const a of document.querySelectorAll('#nav a')) {
    const current = a.dataset.view === name || (a.dataset.view === 'deliveries' && name === 'delivery') || (a.dataset.view === 'clients' && name === 'client');
    if (current) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  switch (name) {
    case 'deliveries': stop = deliveries.renderList(view, params, ctx); break;
    case 'delivery': stop = deliveries.renderDetail(view, parts[1] ?? '', ctx); break;
    case 'sessions': stop = sessions.render(view, params, ctx); break;
    case 'clients': stop = clients.renderList(view, params, ctx); break;
    case 'client': stop = clients.renderDetail(view, parts[1] ?? '', ctx); break;
    default: stop = overview.render(view, params, ctx);
  }
  if (typeof stop !== 'function') stop = null;
  document.title = `logoutd console: ${name}`;
}

const SCOPE_LABELS = {
  admin: 'admin',
  operate: 'operate: may re-drive, pause, resume',
  read: 'read only',
};

async function signIn(remember) {
  try {
    const info = await api.tokenInfo();
    api.setToken(api.currentToken(), remember);
    ctx.scope = info.scope;
    ctx.canOperate = info.scope !== 'read';
    ctx.metadata = info.metadata;
    $('scope').textContent = `${SCOPE_LABELS[info.scope]}${info.metadata ? '' : ' · metadata values hidden'}`;
    $('sign-in').hidden = true;
    for (const id of ['nav', 'who', 'view']) $(id).hidden = false;
    $('token').value = '';
    route();
    $('main').focus();
  } catch (err) {
    api.forget();
    $('sign-in-error').textContent = err.status === 401 ? 'This token is not accepted (401).' : `Sign-in failed: ${err.message}`;
  }
}

function signOut(message = '') {
  if (stop) { stop(); stop = null; }
  api.forget();
  ctx.scope = null;
  ctx.canOperate = false;
  ctx.metadata = false;
  for (const id of ['nav', 'who', 'view']) $(id).hidden = true;
  replace($('view'));
  $('sign-in').hidden = false;
  $('sign-in-error').textContent = message;
  $('token').focus();
}

$('sign-in-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const value = $('token').value.trim();
  if (!value) { $('sign-in-error').textContent = 'Paste a token first.'; return; }
  api.setToken(value, false);
  signIn($('remember').checked);
});
$('sign-out').addEventListener('click', () => signOut());
window.addEventListener('hashchange', () => route());
if (api.restore()) signIn(true); else $('token').focus();
