// Overview: is anything stuck, and which RP is failing? Rows per state, the dead letter, the
// oldest due row's age, the last hour per minute, and each client's health, polled.

import { get } from './api.js';
import { h, replace, when, age } from './dom.js';
import { chart } from './chart.js';

const POLL_MS = 5000;

export function render(root, _params, ctx) {
  const tiles = h('div', { class: 'tiles', id: 'counts', 'aria-live': 'polite' });
  const graph = h('div');
  const health = h('div', { id: 'client-health' });
  replace(root, h('h2', {}, 'Overview'), tiles, graph, h('h3', {}, 'Client health'), health);
  let timer = null;
  let alive = true;
  const tick = async () => {
    try {
      const [stats, clients] = await Promise.all([get('/delivery-stats'), allHealth()]);
      if (!alive) return;
      replace(tiles, countTiles(stats));
      replace(graph, chart(stats.per_minute));
      replace(health, healthTable(clients));
      ctx.status(`Updated ${new Date().toLocaleTimeString()}`);
    } catch (err) {
      ctx.fail(err);
    }
    if (alive) timer = setTimeout(tick, POLL_MS);
  };
  tick();
  return () => { alive = false; clearTimeout(timer); };
}

async function allHealth() {
  const out = [];
  let from;
  for (let i = 0; i < 10; i += 1) {
    const page = await get('/client-health', { take: 100, from });
    out.push(...page.clients);
    if (!page.next) break;
    from = page.next;
  }
  return out;
}

function tile(id, label, value, bad = false) {
  return h('div', { class: bad ? 'tile bad' : 'tile', id: `count-${id}` },
    h('span', { class: 'label' }, label), h('span', { class: 'value' }, value));
}

function countTiles(stats) {
  const c = stats.counts;
  return [
    tile('pending', 'Pending', c.pending),
    tile('in_flight', 'In flight', c.in_flight),
    tile('delivered', 'Delivered', c.delivered),
    tile('failed', 'Dead letter (failed)', stats.dead_letters, stats.dead_letters > 0),
    tile('cancelled', 'Cancelled', c.cancelled),
    tile('oldest', 'Oldest due row waiting', age(stats.oldest_due_age_ms), (stats.oldest_due_age_ms ?? 0) > 60000),
  ];
}

// A client is failing when its current streak of failures is not zero.
export function failing(c) {
  return c.failures_since_success > 0;
}

function rate(c) {
  return c.success_rate === null ? '—' : `${(c.success_rate * 100).toFixed(1)} %`;
}

function healthTable(clients) {
  const sorted = [...clients].sort((a, b) => Number(failing(b)) - Number(failing(a)) || a.client_id.localeCompare(b.client_id));
  if (sorted.length === 0) return h('p', { class: 'muted' }, 'No clients registered.');
  const rows = sorted.map((c) => [
    h('td', {}, h('a', { href: `#/client/${encodeURIComponent(c.client_id)}` }, c.client_id)),
    h('td', {}, failing(c) ? h('span', { class: 'bad' }, `failing (${c.failures_since_success} in a row)`) : h('span', { class: 'ok' }, 'healthy')),
    h('td', { class: 'num' }, rate(c)),
    h('td', { class: 'num hide-narrow' }, c.latency_ms ? `${c.latency_ms.p99} ms` : '—'),
    h('td', { class: 'hide-narrow' }, when(c.last_success_at)),
    h('td', {}, when(c.failing_since)),
    h('td', {}, c.paused ? `paused (${c.paused_by ?? '?'})` : 'no'),
  ]);
  return h('div', { class: 'card' },
    h('div', { class: 'table-wrap' }, h('table', { id: 'health-table' },
      h('caption', { class: 'muted' }, 'Failing clients first. Success rate and p99 latency over the last 24 hours.'),
      h('thead', {}, h('tr', {}, ['Client', 'Now', 'Success rate', 'p99 latency', 'Last success', 'Failing since', 'Paused']
        .map((l, i) => h('th', { scope: 'col', class: [2, 3].includes(i) ? `num${i === 3 ? ' hide-narrow' : ''}` : (i === 4 ? 'hide-narrow' : undefined) }, l)))),
      h('tbody', {}, rows.map((r, i) => h('tr', { class: failing(sorted[i]) ? 'failing' : undefined, 'data-client': sorted[i].client_id }, r))))));
}
