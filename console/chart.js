// The overview's chart: deliveries and failures per second over the last hour, each bar one
// bucket of `delivery-stats`' per_bucket (10 s) as its rate, built as an SVG with DOM calls
// (no library, nothing inline for the CSP to refuse).

import { h, s } from './dom.js';

const W = 720;
const H = 180;
const PAD = { left: 44, right: 8, top: 8, bottom: 22 };

// A rate per second as the axis and legend show it.
export function perSecond(rate) {
  if (rate === 0) return '0';
  if (rate >= 10) return rate.toFixed(0);
  if (rate >= 1) return rate.toFixed(1);
  if (rate >= 0.01) return rate.toFixed(2);
  return String(Number(rate.toPrecision(1)));
}

// `buckets`: [{start, delivered, failed}], oldest first, each `seconds` wide.
export function chart(buckets, seconds) {
  const width = Math.max(1, seconds);
  const rates = buckets.map((b) => ({ start: b.start, delivered: b.delivered / width, failed: b.failed / width }));
  const peak = Math.max(...rates.map((r) => r.delivered + r.failed), 0);
  const top = peak > 0 ? peak : 1;
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const step = plotW / Math.max(1, rates.length);
  const gap = step > 4 ? 1 : 0.15;
  const y = (v) => PAD.top + plotH - (v / top) * plotH;
  const bars = rates.flatMap((r, i) => {
    const x = PAD.left + i * step + gap;
    const w = Math.max(0.5, step - 2 * gap);
    const tip = `${new Date(r.start).toLocaleTimeString()}, ${width} s: ${perSecond(r.delivered)}/s delivered, ${perSecond(r.failed)}/s failed`;
    return [
      r.delivered > 0 && s('rect', { class: 'delivered', x, y: y(r.delivered), width: w, height: y(0) - y(r.delivered) }, s('title', {}, tip)),
      r.failed > 0 && s('rect', { class: 'failed', x, y: y(r.delivered + r.failed), width: w, height: y(0) - y(r.failed) }, s('title', {}, tip)),
    ].filter(Boolean);
  });
  const total = buckets.reduce((a, b) => ({ d: a.d + b.delivered, f: a.f + b.failed }), { d: 0, f: 0 });
  const span = Math.max(1, buckets.length * width);
  const first = buckets[0] ? new Date(buckets[0].start).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }) : '';
  const svg = s('svg', {
    viewBox: `0 0 ${W} ${H}`, role: 'img', id: 'chart-svg',
    'aria-label': `Per second over the last hour, in ${width}-second buckets: ${total.d} delivered (${perSecond(total.d / span)}/s on average), ${total.f} failed (${perSecond(total.f / span)}/s); peak ${perSecond(peak)}/s`,
  },
  s('line', { class: 'axis', x1: PAD.left, y1: y(0), x2: W - PAD.right, y2: y(0) }),
  s('line', { class: 'axis', x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: y(0) }),
  s('text', { class: 'y-label', x: 2, y: PAD.top + 8 }, `${perSecond(top)}/s`),
  s('text', { class: 'y-label', x: 2, y: PAD.top + plotH / 2 + 4 }, `${perSecond(top / 2)}/s`),
  s('text', { class: 'y-label', x: 2, y: y(0) }, '0/s'),
  s('text', { x: PAD.left, y: H - 6 }, first),
  s('text', { x: W - PAD.right - 24, y: H - 6 }, 'now'),
  bars);
  return h('figure', { class: 'chart card', id: 'chart' },
    h('figcaption', {},
      h('strong', {}, 'Last hour, per second'),
      ' ',
      h('span', { class: 'muted' }, `(${width} s buckets)`),
      ' ',
      h('span', { class: 'legend' },
        h('span', { id: 'legend-delivered' }, h('span', { class: 'swatch delivered' }), `delivered/s (${total.d} in the hour, ${perSecond(total.d / span)}/s on average)`),
        h('span', { id: 'legend-failed' }, h('span', { class: 'swatch failed' }), `failed/s (${total.f}, ${perSecond(total.f / span)}/s)`))),
    svg);
}
