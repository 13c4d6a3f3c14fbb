// Overview: is anything stuck, and which RP is failing? Rows per state, the dead letter, how
// late the oldest due row is, the last hour per second, and each client's health, polled.

import { get, pages, MAX_PAGES, PAGE_SIZE } from './api.js';
import { h, replace, when, age } from './dom.js';
import { chart } from './chart.js';

const POLL_MS = 5000;
// When the clients' health takes more than one page, it is read again every this many polls
// (30 s) rather than every poll, so that a large deployment's overview stays cheap.
const PAGED_HEALTH_EVERY = 6;

export function render(root, _params, ctx) {
  const tiles = h('div', { class: 'tiles', id: 'counts', 'aria-live': 'polite' });
  const graph = h('div');
  const health = h('div', { id: 'client-health' });
  replace(root, h('h2', {}, 'Overview'), tiles, graph, h('h3', {}, 'Client health'), health);
  let timer = null;
  let alive = true;
  let clients = null;
  let polls = 0;
  const tick = async () => {
    try {
      const stale = !clients || clients.pages === 1 || polls % PAGED_HEALTH_EVERY === 0;
      polls += 1;
      const [stats, read] = await Promise.all([get('/delivery-stats'),
        stale ? pages('/client-health', 'clients') : clients]);
      if (!alive) return;
      clients = read;
      replace(tiles, countTiles(stats));
      replace(graph, chart(stats.per_bucket, stats.bucket_seconds));
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

function tile(id, label, value, bad = false, title = undefined) {
  return h('div', { class: bad ? 'tile bad' : 'tile', id: `count-${id}`, title },
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
    tile('oldest', 'Oldest due row, late by', age(stats.oldest_due_age_ms), (stats.oldest_due_age_ms ?? 0) > 60000,
      'How long the earliest due pending or in-flight row has been due. Not the age of the oldest pending row: a row waiting for a later retry is not due yet.'),
  ];
}

// A client is failing when its current streak of failures is not zero.
export function failing(c) {
  return c.failures_since_success > 0;
}

function rate(c) {
  return c.success_rate === null ? '—' : `${(c.success_rate * 100).toFixed(1)} %`;
}

function healthTable({ items: clients, more, pages: read }) {
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
      h('caption', { class: 'muted', id: 'health-caption' }, 'Failing clients first. Success rate and p99 latency over the last 24 hours.',
        more ? ` Only the first ${(MAX_PAGES * PAGE_SIZE).toLocaleString()} clients are shown; more exist.` : '',
        read > 1 ? ' With more than one page of clients, this table is refreshed every 30 s.' : ''),
      h('thead', {}, h('tr', {}, ['Client', 'Now', 'Success rate', 'p99 latency', 'Last success', 'Failing since', 'Paused']
        .map((l, i) => h('th', { scope: 'col', class: [2, 3].includes(i) ? `num${i === 3 ? ' hide-narrow' : ''}` : (i === 4 ? 'hide-narrow' : undefined) }, l)))),
      h('tbody', {}, rows.map((r, i) => h('tr', { class: failing(sorted[i]) ? 'failing' : undefined, 'data-client': sorted[i].client_id }, r))))));
}
