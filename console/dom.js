// Building the page from data without ever parsing it as HTML: every value the API returns
// goes in through textContent or an attribute set by the DOM, so an RP's error text or a
// session's metadata holding markup stays text.

const SVG = 'http://www.w3.org/2000/svg';

// h('td', {class: 'num'}, 'text', child...) -> an element; strings become text nodes.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  return fill(el, attrs, children);
}

// The same for SVG elements.
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  return fill(el, attrs, children);
}

function fill(el, attrs, children) {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value);
    } else {
      el.setAttribute(name, value === true ? '' : String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// Replaces the children of `el`.
export function replace(el, ...children) {
  el.replaceChildren();
  fill(el, {}, children);
  return el;
}

// A timestamp as the operator reads it, in their time zone; '—' for none.
export function when(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
}

// A duration in milliseconds, in words.
export function age(ms) {
  if (ms === null || ms === undefined) return '—';
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

// A state with its colour class.
export function state(value) {
  return h('span', { class: `state state-${value}` }, value);
}

// A definition list of [label, value] pairs; values may be nodes.
export function kv(pairs) {
  return h('dl', { class: 'kv' }, pairs.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v ?? '—')]));
}

// A table with a header row; `rows` are arrays of cells (strings, nodes or td elements).
export function table(caption, headers, rows, rowAttrs = () => ({})) {
  const head = h('tr', {}, headers.map((c) => h('th', { scope: 'col', class: c.cls }, c.label ?? c)));
  const body = rows.map((r, i) => h('tr', rowAttrs(i), r.map((c) => (c instanceof HTMLTableCellElement ? c : h('td', {}, c)))));
  return h('div', { class: 'table-wrap' },
    h('table', {}, h('caption', { class: 'muted' }, caption), h('thead', {}, head), h('tbody', {}, body)));
}
