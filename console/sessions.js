// Sessions: look one up by session id, or every session of a user, with the clients that
// joined, the device, the metadata (as the API returns it to this token: without the metadata
// grant its keys with every value "[redacted]"), the end, and the deliveries the end wrote:
// did this user's logout reach every RP?

import { get, seg } from './api.js';
import { h, replace, when, state, kv, table } from './dom.js';

export function render(root, params, ctx) {
  const sid = params.get('session_id') ?? '';
  const uid = params.get('user_id') ?? '';
  const form = h('form', { class: 'card filters', id: 'session-lookup', role: 'search', 'aria-label': 'Look up sessions' },
    h('div', {}, h('label', { for: 'q-session' }, 'Session id'), h('input', { id: 'q-session', name: 'session_id', type: 'text', value: sid, autocomplete: 'off' })),
    h('div', {}, h('label', { for: 'q-user' }, 'or user id'), h('input', { id: 'q-user', name: 'user_id', type: 'text', value: uid, autocomplete: 'off' })),
    h('div', {}, h('button', { type: 'submit' }, 'Look up')));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) q.set(k, v.trim());
    ctx.navigate(`#/sessions?${q}`);
  });
  const out = h('div', { id: 'session-result' });
  replace(root, h('h2', {}, 'Sessions'), form, out);
  if (sid) showSessions(out, () => get(`/sessions/${seg(sid)}`).then((s) => [s]), { session_id: sid }, ctx);
  else if (uid) showSessions(out, () => userSessions(uid), { user_id: uid }, ctx);
}

async function userSessions(uid) {
  const out = [];
  let from;
  for (let i = 0; i < 5; i += 1) {
    const page = await get(`/users/${seg(uid)}/sessions`, { take: 100, from });
    out.push(...page.sessions);
    if (!page.next) break;
    from = page.next;
  }
  return out;
}

async function allDeliveries(filter) {
  const out = [];
  let from;
  for (let i = 0; i < 10; i += 1) {
    const page = await get('/logout-deliveries', { ...filter, take: 100, from });
    out.push(...page.deliveries);
    if (!page.next) break;
    from = page.next;
  }
  return out;
}

async function showSessions(out, load, filter, ctx) {
  replace(out, h('p', { class: 'muted' }, 'Loading…'));
  try {
    const [sessions, deliveries] = await Promise.all([load(), allDeliveries(filter)]);
    replace(out, verdict(sessions, deliveries), deliveryTable(deliveries), sessions.map((s) => sessionCard(s, ctx)));
  } catch (err) {
    if (err.status === 404) replace(out, h('p', { class: 'error' }, 'No such session.'));
    else ctx.fail(err, out);
  }
}

// The answer first: of the RPs the ends had to tell, how many were told.
function verdict(sessions, deliveries) {
  const ended = sessions.filter((s) => s.ended_at);
  if (deliveries.length === 0) {
    return h('p', { class: 'card', id: 'verdict' }, ended.length ? 'Ended, and no RP had to be told.' : 'No session here has ended; no logout to deliver.');
  }
  const by = (st) => deliveries.filter((d) => d.state === st).length;
  const delivered = by('delivered');
  const failed = by('failed');
  const waiting = by('pending') + by('in_flight');
  const all = delivered === deliveries.length;
  return h('p', { class: `card ${all ? 'ok' : (failed ? 'bad' : 'warn')}`, id: 'verdict' },
    all ? `Reached every RP: ${delivered} of ${deliveries.length} deliveries delivered.`
      : `${delivered} of ${deliveries.length} deliveries delivered; ${failed} failed, ${waiting} still trying, ${by('cancelled')} cancelled.`);
}

function deliveryTable(deliveries) {
  if (deliveries.length === 0) return null;
  return h('div', { class: 'card' }, h('h3', {}, 'Deliveries'), table('One row per RP told, per end.',
    ['Client', 'State', 'Last error', 'Delivered', 'Id'],
    deliveries.map((d) => [d.client_id, state(d.state), h('td', { class: 'wrap' }, d.last_error ?? ''), when(d.delivered_at),
      h('td', { class: 'mono' }, h('a', { href: `#/delivery/${seg(d.id)}` }, d.id))])));
}

function sessionCard(s, ctx) {
  const meta = Object.entries(s.session_metadata ?? {});
  const dev = s.device ?? {};
  return h('section', { class: 'card session', 'aria-label': `Session ${s.id}` },
    h('h3', {}, 'Session ', h('span', { class: 'mono' }, s.id)),
    kv([
      ['User', h('a', { href: `#/sessions?user_id=${seg(s.user_id)}` }, s.user_id)],
      ['Created', when(s.created_at)],
      ['Ended', s.ended_at ? `${when(s.ended_at)} (${s.end_initiator ?? 'unknown'})` : 'active'],
      ['Expires', when(s.expires_at)],
      ['Clients', s.clients.length ? h('ul', {}, s.clients.map((c) => h('li', {}, h('a', { href: `#/client/${seg(c.client_id)}` }, c.client_id), c.sid ? ` (sid ${c.sid})` : ''))) : 'none'],
      ['Device', [dev.last_ip ?? dev.initial_ip, dev.last_user_agent ?? dev.initial_user_agent].filter(Boolean).join(' · ') || '—'],
    ]),
    h('h4', {}, 'Metadata'),
    meta.length === 0 ? h('p', { class: 'muted' }, 'None.')
      : [ctx.metadata ? null : h('p', { class: 'muted metadata-hidden' }, 'values hidden: this token lacks the metadata grant'),
        h('dl', { class: 'kv metadata' }, meta.map(([k, v]) => [h('dt', { class: 'mono' }, k), h('dd', { class: 'pre' }, typeof v === 'string' ? v : JSON.stringify(v))]))]);
}
