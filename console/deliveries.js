// Deliveries: the filtered, paged list, a delivery's attempt history, and re-drive of one or
// of the selected dead letters, the selection in one request (operate tokens only; the
// server refuses read tokens anyway).

import { get, post, seg, redriveIds, idempotencyKey } from './api.js';
import { h, replace, when, state, kv, table } from './dom.js';

// Most ids one bulk re-drive names.
const REDRIVE_IDS_MAX = 100;
const STATES = ['', 'pending', 'in_flight', 'delivered', 'failed', 'cancelled'];
const INITIATORS = ['', 'rp-logout', 'idp-logout', 'password-changed', 'session-expired', 'session-revoked',
  'account-deleted', 'email-identifier-changed', 'mfa-phone-unenrolled', 'account-deactivated'];

// #/deliveries?state=&client_id=&session_id=&user_id=&initiator=&created_since=&created_before=&from=
export function renderList(root, params, ctx) {
  const field = (name, label, input) => h('div', {}, h('label', { for: `f-${name}` }, label), input);
  const text = (name) => h('input', { id: `f-${name}`, name, type: 'text', value: params.get(name) ?? '', autocomplete: 'off' });
  const time = (name) => h('input', { id: `f-${name}`, name, type: 'datetime-local', value: params.get(name) ?? '' });
  const select = (name, options) => h('select', { id: `f-${name}`, name },
    options.map((o) => h('option', { value: o, selected: (params.get(name) ?? '') === o }, o || 'any')));
  const form = h('form', { class: 'card filters', id: 'delivery-filters', role: 'search', 'aria-label': 'Filter deliveries' },
    field('state', 'State', select('state', STATES)),
    field('client_id', 'Client', text('client_id')),
    field('session_id', 'Session', text('session_id')),
    field('user_id', 'User', text('user_id')),
    field('initiator', 'Initiator', select('initiator', INITIATORS)),
    field('created_since', 'Created since', time('created_since')),
    field('created_before', 'Created before', time('created_before')),
    h('div', {}, h('button', { type: 'submit' }, 'Apply')));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) q.set(k, v);
    ctx.navigate(`#/deliveries?${q}`);
  });
  const out = h('div', { id: 'delivery-list' }, h('p', { class: 'muted' }, 'Loading…'));
  replace(root, h('h2', {}, 'Deliveries'), form, out);
  load(out, params, ctx);
}

async function load(out, params, ctx) {
  try {
    const page = await get('/logout-deliveries', {
      state: params.get('state'), client_id: params.get('client_id'), session_id: params.get('session_id'),
      user_id: params.get('user_id'), initiator: params.get('initiator'),
      created_since: instant(params.get('created_since')), created_before: instant(params.get('created_before')),
      from: params.get('from'), take: 50,
    });
    replace(out, listTable(page.deliveries, ctx), pager(page.next, params, ctx));
  } catch (err) {
    ctx.fail(err, out);
  }
}

// A datetime-local value (the operator's time zone) as RFC 3339; undefined when empty.
function instant(local) {
  if (!local) return undefined;
  const d = new Date(local);
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString();
}

function listTable(rows, ctx) {
  if (rows.length === 0) return h('p', { class: 'muted', id: 'no-deliveries' }, 'No deliveries match.');
  const selected = new Set();
  const bulk = h('button', { type: 'button', id: 'redrive-selected', disabled: true }, 'Re-drive selected');
  const cells = rows.map((d) => [
    ctx.canOperate && d.state === 'failed'
      ? h('td', {}, h('input', { type: 'checkbox', 'aria-label': `Select ${d.id}`, onchange: (e) => {
        if (e.target.checked) selected.add(d.id); else selected.delete(d.id);
        bulk.disabled = selected.size === 0;
      } }))
      : h('td', {}),
    h('td', { class: 'mono' }, h('a', { href: `#/delivery/${seg(d.id)}` }, d.id)),
    h('td', {}, d.client_id),
    h('td', {}, state(d.state)),
    h('td', { class: 'num' }, d.attempts),
    h('td', { class: 'hide-narrow' }, d.initiator),
    h('td', { class: 'num hide-narrow' }, d.last_status ?? '—'),
    h('td', { class: 'wrap' }, d.last_error ?? ''),
    h('td', { class: 'hide-narrow' }, when(d.created_at)),
  ]);
  bulk.addEventListener('click', async () => {
    bulk.disabled = true;
    const ids = [...selected];
    let done = 0;
    try {
      // One request per 100 ids (a page holds fewer), each under its own key.
      for (let i = 0; i < ids.length; i += REDRIVE_IDS_MAX) {
        done += (await redriveIds(ids.slice(i, i + REDRIVE_IDS_MAX), idempotencyKey())).redriven;
      }
      ctx.status(`Re-drove ${done} of ${ids.length} selected${done < ids.length ? ' (the others were no longer dead letters)' : ''}`);
    } catch (err) {
      ctx.fail(err);
    }
    ctx.refresh();
  });
  return h('div', { class: 'card' },
    ctx.canOperate ? h('div', { class: 'row' }, bulk, h('span', { class: 'muted' }, 'Select failed deliveries to queue them again.')) : null,
    table('Deliveries in the order they were written.',
      ['', 'Id', 'Client', 'State', { label: 'Attempts', cls: 'num' }, { label: 'Initiator', cls: 'hide-narrow' },
        { label: 'Status', cls: 'num hide-narrow' }, 'Last error', { label: 'Created', cls: 'hide-narrow' }],
      cells, (i) => ({ 'data-id': rows[i].id })));
}

function pager(next, params, ctx) {
  const first = new URLSearchParams(params);
  first.delete('from');
  const parts = [];
  if (params.get('from')) parts.push(h('button', { type: 'button', class: 'secondary', onclick: () => ctx.navigate(`#/deliveries?${first}`) }, 'First page'));
  if (next) {
    const q = new URLSearchParams(params);
    q.set('from', next);
    parts.push(h('button', { type: 'button', class: 'secondary', id: 'next-page', onclick: () => ctx.navigate(`#/deliveries?${q}`) }, 'Next page'));
  }
  return h('div', { class: 'row' }, parts);
}

// #/delivery/<id>: the row, its attempts, the next attempt's time, and its re-drive.
export function renderDetail(root, id, ctx) {
  const out = h('div', { id: 'delivery-detail' }, h('p', { class: 'muted' }, 'Loading…'));
  replace(root, h('h2', {}, 'Delivery ', h('span', { class: 'mono' }, id)), out);
  let timer = null;
  let alive = true;
  const show = async () => {
    try {
      const d = await get(`/logout-deliveries/${seg(id)}`);
      if (!alive) return;
      replace(out, detail(d, ctx, show));
      // A row on its way is shown as it moves.
      if (d.state === 'pending' || d.state === 'in_flight') timer = setTimeout(show, 1000);
    } catch (err) {
      ctx.fail(err, out);
    }
  };
  show();
  return () => { alive = false; clearTimeout(timer); };
}

function detail(d, ctx, again) {
  const redrive = ctx.canOperate && d.state === 'failed'
    ? h('button', { type: 'button', id: 'redrive', onclick: async (e) => {
      e.target.disabled = true;
      try { await post(`/logout-deliveries/${seg(d.id)}/retry`); ctx.status('Queued again'); } catch (err) { ctx.fail(err); }
      again();
    } }, 'Re-drive')
    : null;
  const attempts = d.attempt_history.map((a, i) => [
    h('td', { class: 'num' }, i + 1), when(a.at), h('td', { class: 'num' }, a.status ?? '—'),
    h('td', { class: 'wrap attempt-error' }, a.error ?? ''), h('td', { class: 'num' }, `${a.latency_ms} ms`),
    h('td', { class: 'mono wrap hide-narrow' }, a.jti),
  ]);
  return [
    h('div', { class: 'card' },
      kv([
        ['State', h('span', { id: 'detail-state' }, state(d.state))],
        ['Client', h('a', { href: `#/client/${seg(d.client_id)}` }, d.client_id)],
        ['Session', h('a', { href: `#/sessions?session_id=${seg(d.session_id)}` }, d.session_id)],
        ['User', h('a', { href: `#/sessions?user_id=${seg(d.user_id)}` }, d.user_id)],
        ['Scope', `${d.scope} (${d.sessions} session${d.sessions === 1 ? '' : 's'})`],
        ['Initiator', d.initiator],
        ['Attempts since last queued', String(d.attempts)],
        ['Next attempt', d.state === 'pending' || d.state === 'in_flight' ? when(d.next_attempt_at) : 'none'],
        ['Last status', d.last_status ?? '—'],
        ['Last error', h('span', { class: 'pre', id: 'detail-error' }, d.last_error ?? '—')],
        ['Created', when(d.created_at)],
        ['Delivered', when(d.delivered_at)],
      ]),
      redrive),
    h('h3', {}, 'Attempts'),
    attempts.length === 0 ? h('p', { class: 'muted' }, 'No attempt yet.')
      : h('div', { class: 'card', id: 'attempts' }, table('Every attempt, oldest first.',
        [{ label: '#', cls: 'num' }, 'At', { label: 'Status', cls: 'num' }, 'Error', { label: 'Latency', cls: 'num' }, { label: 'jti', cls: 'hide-narrow' }], attempts)),
  ];
}
