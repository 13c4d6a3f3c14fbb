// Clients: the list with health, one client's registration, its pause and resume (operate
// tokens only), and its recent failures grouped by error: which RP fails, since when, why.
// Lists are read a page of 100 at a time, up to 10 pages, and say when more exist.

import { get, post, seg, pages, MAX_PAGES, PAGE_SIZE } from './api.js';
import { h, replace, when, kv, table } from './dom.js';
import { failing } from './overview.js';

export async function renderList(root, _params, ctx) {
  const out = h('div', { id: 'client-list' }, h('p', { class: 'muted' }, 'Loading…'));
  replace(root, h('h2', {}, 'Clients'), out);
  try {
    const [clients, health] = await Promise.all([pages('/clients', 'clients'), pages('/client-health', 'clients')]);
    const byId = new Map(health.items.map((c) => [c.client_id, c]));
    const caption = clients.more
      ? `Registered clients: the first ${clients.items.length.toLocaleString()}; more exist.`
      : `Registered clients: ${clients.items.length.toLocaleString()}.`;
    replace(out, h('div', { class: 'card' }, table(caption, ['Client', 'Name', 'Health', 'Paused'],
      clients.items.map((c) => {
        const hc = byId.get(c.client_id);
        return [h('td', {}, h('a', { href: `#/client/${seg(c.client_id)}` }, c.client_id)), c.name ?? '',
          hc && failing(hc) ? h('span', { class: 'bad' }, 'failing') : h('span', { class: 'ok' }, 'healthy'),
          hc?.paused ? 'yes' : 'no'];
      }))));
  } catch (err) {
    ctx.fail(err, out);
  }
}

export function renderDetail(root, id, ctx) {
  const out = h('div', { id: 'client-detail' }, h('p', { class: 'muted' }, 'Loading…'));
  replace(root, h('h2', {}, 'Client ', h('span', { class: 'mono' }, id)), out);
  const show = async () => {
    try {
      const [client, health, failed, retrying] = await Promise.all([
        get(`/clients/${seg(id)}`), get(`/clients/${seg(id)}/health`),
        pages('/logout-deliveries', 'deliveries', { client_id: id, state: 'failed' }),
        pages('/logout-deliveries', 'deliveries', { client_id: id, state: 'pending' }),
      ]);
      replace(out, healthCard(health, ctx, show),
        failures([...failed.items, ...retrying.items], failed.more || retrying.more), registration(client));
    } catch (err) {
      ctx.fail(err, out);
    }
  };
  show();
}

function healthCard(hc, ctx, again) {
  const act = async (what) => {
    try { await post(`/clients/${seg(hc.client_id)}/${what}`); ctx.status(`Client ${what === 'pause' ? 'paused' : 'resumed'}`); } catch (err) { ctx.fail(err); }
    again();
  };
  const button = !ctx.canOperate ? null : hc.paused
    ? h('button', { type: 'button', id: 'resume', onclick: () => act('resume') }, 'Resume deliveries')
    : h('button', { type: 'button', id: 'pause', class: 'danger', onclick: () => act('pause') }, 'Pause deliveries');
  return h('div', { class: 'card' }, kv([
    ['Now', failing(hc) ? h('span', { class: 'bad' }, `failing: ${hc.failures_since_success} in a row since ${when(hc.failing_since)}`) : h('span', { class: 'ok' }, 'healthy')],
    ['Paused', h('span', { id: 'paused' }, hc.paused ? `yes, by ${hc.paused_by ?? '?'} at ${when(hc.paused_at)}` : 'no')],
    ['Success rate (24 h)', hc.success_rate === null ? '—' : `${(hc.success_rate * 100).toFixed(1)} % of ${hc.attempts}`],
    ['Latency p50 / p99', hc.latency_ms ? `${hc.latency_ms.p50} ms / ${hc.latency_ms.p99} ms` : '—'],
    ['Last success', when(hc.last_success_at)],
    ['Last failure', when(hc.last_failure_at)],
  ]), button);
}

// Dead letters and retrying rows, grouped by their last error, the largest group first;
// `more` when either list had more rows than were read.
function failures(rows, more) {
  const groups = new Map();
  for (const d of rows.filter((r) => r.last_error || r.state === 'failed')) {
    const key = d.last_error ?? `HTTP ${d.last_status ?? '?'}`;
    const g = groups.get(key) ?? { error: key, failed: 0, retrying: 0, example: d };
    if (d.state === 'failed') g.failed += 1; else g.retrying += 1;
    groups.set(key, g);
  }
  const list = [...groups.values()].sort((a, b) => (b.failed + b.retrying) - (a.failed + a.retrying));
  return h('div', { class: 'card', id: 'failure-groups' }, h('h3', {}, 'Recent failures by error'),
    list.length === 0 ? h('p', { class: 'muted' }, 'No failed or retrying deliveries.')
      : table(`Failed (dead letter) and retrying deliveries, grouped by their last error${more
        ? `: over the first ${(MAX_PAGES * PAGE_SIZE).toLocaleString()} of each; more exist (see Deliveries)` : ''}.`, ['Error', { label: 'Failed', cls: 'num' }, { label: 'Retrying', cls: 'num' }, 'Example'],
        list.map((g) => [h('td', { class: 'wrap pre' }, g.error), h('td', { class: 'num' }, g.failed), h('td', { class: 'num' }, g.retrying),
          h('td', { class: 'mono' }, h('a', { href: `#/delivery/${seg(g.example.id)}` }, g.example.id))])));
}

function registration(client) {
  const pairs = Object.entries(client).map(([k, v]) => [k, typeof v === 'object' && v !== null ? h('span', { class: 'mono pre' }, JSON.stringify(v, null, 1)) : String(v)]);
  return h('div', { class: 'card' }, h('h3', {}, 'Registration'), kv(pairs));
}
