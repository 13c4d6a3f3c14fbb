// The overview's chart: delivered and failed rows per minute over the last hour, as an SVG
// built with DOM calls (no library, nothing inline for the CSP to refuse).

import { h, s } from './dom.js';

const W = 720;
const H = 180;
const PAD = { left: 36, right: 8, top: 8, bottom: 22 };

// `minutes`: [{minute, delivered, failed}], oldest first.
export function chart(minutes) {
  const peak = Math.max(1, ...minutes.map((m) => m.delivered + m.failed));
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const step = plotW / Math.max(1, minutes.length);
  const y = (v) => PAD.top + plotH - (v / peak) * plotH;
  const bars = minutes.flatMap((m, i) => {
    const x = PAD.left + i * step + 1;
    const w = Math.max(1, step - 2);
    const tip = `${new Date(m.minute).toLocaleTimeString()}: ${m.delivered} delivered, ${m.failed} failed`;
    return [
      m.delivered > 0 && s('rect', { class: 'delivered', x, y: y(m.delivered), width: w, height: y(0) - y(m.delivered) }, s('title', {}, tip)),
      m.failed > 0 && s('rect', { class: 'failed', x, y: y(m.delivered + m.failed), width: w, height: y(0) - y(m.failed) }, s('title', {}, tip)),
    ].filter(Boolean);
  });
  const total = minutes.reduce((a, m) => ({ d: a.d + m.delivered, f: a.f + m.failed }), { d: 0, f: 0 });
  const first = minutes[0] ? new Date(minutes[0].minute).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }) : '';
  const svg = s('svg', {
    viewBox: `0 0 ${W} ${H}`, role: 'img',
    'aria-label': `Per minute over the last hour: ${total.d} delivered, ${total.f} failed; peak ${peak} per minute`,
  },
  s('line', { class: 'axis', x1: PAD.left, y1: y(0), x2: W - PAD.right, y2: y(0) }),
  s('line', { class: 'axis', x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: y(0) }),
  s('text', { x: 2, y: PAD.top + 8 }, `${peak}/min`),
  s('text', { x: 2, y: y(0) }, '0'),
  s('text', { x: PAD.left, y: H - 6 }, first),
  s('text', { x: W - PAD.right - 24, y: H - 6 }, 'now'),
  bars);
  return h('figure', { class: 'chart card', id: 'chart' },
    h('figcaption', {},
      h('strong', {}, 'Last hour, per minute'),
      ' ',
      h('span', { class: 'legend' },
        h('span', {}, h('span', { class: 'swatch delivered' }), `delivered (${total.d}, ${(total.d / 3600).toFixed(2)}/s)`),
        h('span', {}, h('span', { class: 'swatch failed' }), `failed (${total.f}, ${(total.f / 3600).toFixed(2)}/s)`))),
    svg);
}
