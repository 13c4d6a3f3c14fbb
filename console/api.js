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

// Calls `path` under /api/v2; `query` is an object of parameters, empty ones dropped.
export async function call(method, path, query = {}) {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v !== undefined && v !== null && v !== '') params.set(k, v);
  }
  const qs = params.toString();
  const response = await fetch(`/api/v2${path}${qs ? `?${qs}` : ''}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, Accept: 'application/json' },
    cache: 'no-store',
    credentials: 'omit',
    referrerPolicy: 'no-referrer',
  });
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = { message: text }; }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

export const get = (path, query) => call('GET', path, query);
export const post = (path, query) => call('POST', path, query);

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
