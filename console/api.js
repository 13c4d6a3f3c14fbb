// The console's only way to the server: the documented /api/v2 routes, each call with the
// operator's token as a bearer credential. The token lives in this module's variable, and in
// sessionStorage only when the operator asks; never in a cookie, localStorage or a URL.

const KEY = 'logoutd.console.token';
let token = null;

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

export function restore() {
  token = sessionStorage.getItem(KEY);
  return token !== null;
}

export function setToken(value, remember) {
  token = value;
  if (remember) sessionStorage.setItem(KEY, value);
  else sessionStorage.removeItem(KEY);
}

export function currentToken() {
  return token;
}

export function forget() {
  token = null;
  sessionStorage.removeItem(KEY);
}

// Calls `path` under /api/v2; `query` is an object of parameters, empty ones dropped; `body`,
// if given, is sent as JSON, with `extra` headers.
export async function call(method, path, query = {}, body = undefined, extra = {}) {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v !== undefined && v !== null && v !== '') params.set(k, v);
  }
  const qs = params.toString();
  const headers = { Authorization: `Bearer ${token}`, Accept: 'application/json', ...extra };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(`/api/v2${path}${qs ? `?${qs}` : ''}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: 'no-store',
    credentials: 'omit',
    referrerPolicy: 'no-referrer',
  });
  const text = await response.text();
  let answer = null;
  try { answer = text ? JSON.parse(text) : null; } catch { answer = { message: text }; }
  if (!response.ok) throw new ApiError(response.status, answer);
  return answer;
}

export const get = (path, query) => call('GET', path, query);
export const post = (path, query) => call('POST', path, query);

// Most pages a view reads from a listing route, 100 items each: enough for a large
// deployment, bounded so that one view never walks an unbounded table.
export const MAX_PAGES = 10;
export const PAGE_SIZE = 100;

// The items (the body's `field`) of up to MAX_PAGES pages of `path`, following `next`;
// `more` is true when the last page read had a `next`.
export async function pages(path, field, query = {}, maxPages = MAX_PAGES) {
  const items = [];
  let from;
  for (let i = 0; i < maxPages; i += 1) {
    const page = await get(path, { ...query, take: PAGE_SIZE, from });
    items.push(...page[field]);
    if (!page.next) return { items, more: false, pages: i + 1 };
    from = page.next;
  }
  return { items, more: true, pages: maxPages };
}

// A fresh Idempotency-Key: 128 random bits, hex, so that a repeated click or a retried
// request re-drives nothing twice.
export function idempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return `console-${[...bytes].map((b) => b.toString(16).padStart(2, '0')).join('')}`;
}

// Re-drives the dead letters among `ids` (at most 100) in one request; `key` is its
// Idempotency-Key. Answers {redriven}.
export const redriveIds = (ids, key) => call('POST', '/logout-deliveries/retry', {}, { ids }, { 'Idempotency-Key': key });

// A path segment, encoded.
export const seg = (value) => encodeURIComponent(value);

// What this token may do, as the server answers it (GET /api/v2/token-info):
// { scope: 'read' | 'operate' | 'admin', metadata: whether it may read metadata values }.
// An answer of another shape counts as the least: read, without metadata values.
// Throws on 401 (not a token of this server).
export async function tokenInfo() {
  const info = await get('/token-info');
  const scope = ['read', 'operate', 'admin'].includes(info?.scope) ? info.scope : 'read';
  return { scope, metadata: info?.metadata === true };
}
