// A browser-less user agent for the authorization code flow and RP-initiated logout: it
// follows redirects by hand, keeps cookies, and submits the IdP's HTML forms (oidc-provider's
// development login and consent pages, its logout confirmation).
import { createHash, randomBytes } from 'node:crypto';

const MAX_STEPS = 12;

const decodeHtml = (s) => s.replace(/&quot;/g, '"').replace(/&#39;|&#x27;/g, "'")
  .replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
const attr = (tag, name) => {
  const m = tag.match(new RegExp(`\\s${name}="([^"]*)"`, 'i'));
  return m ? decodeHtml(m[1]) : undefined;
};

/** The first POST form of a page: its action and hidden fields. */
export function parseForm(html, pageUrl) {
  const form = html.match(/<form\b[^>]*>/i);
  if (!form || (attr(form[0], 'method') ?? 'get').toLowerCase() !== 'post') {
    throw new Error(`no POST form on ${pageUrl}:\n${html.slice(0, 2000)}`);
  }
  const fields = {};
  for (const [input] of html.matchAll(/<input\b[^>]*>/gi)) {
    const name = attr(input, 'name');
    if (name && attr(input, 'type') === 'hidden') fields[name] = attr(input, 'value') ?? '';
  }
  return { action: new URL(attr(form[0], 'action') ?? '', pageUrl).href, fields };
}

export class Browser {
  #cookies = new Map();

  constructor({ userAgent }) {
    this.userAgent = userAgent;
  }

  /** One request, no redirect followed; cookies sent and stored (paths are not tracked). */
  async request(url, { form } = {}) {
    const headers = { 'user-agent': this.userAgent };
    if (this.#cookies.size > 0) {
      headers.cookie = [...this.#cookies].map(([k, v]) => `${k}=${v}`).join('; ');
    }
    const response = await fetch(url, {
      method: form ? 'POST' : 'GET',
      headers,
      body: form ? new URLSearchParams(form) : undefined,
      redirect: 'manual',
    });
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attributes] = line.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const expired = attributes.some((a) => /^\s*expires=.*1970/i.test(a));
      if (value === '' || expired) this.#cookies.delete(name); else this.#cookies.set(name, value);
    }
    return response;
  }

  /**
   * Drives GET `url` through redirects and forms until a redirect to a URL starting with
   * `stopAt` (returned), filling each form with `fill(fields)`.
   */
  async drive(url, { stopAt, fill = (fields) => fields }) {
    let next = { url, form: undefined };
    for (let step = 0; step < MAX_STEPS; step += 1) {
      const response = await this.request(next.url, { form: next.form });
      if (response.status >= 300 && response.status < 400) {
        const location = new URL(response.headers.get('location'), next.url).href;
        if (location.startsWith(stopAt)) return new URL(location);
        next = { url: location, form: undefined };
      } else if (response.status === 200) {
        const { action, fields } = parseForm(await response.text(), next.url);
        next = { url: action, form: fill(fields) };
      } else {
        throw new Error(`${next.url} answered ${response.status}: ${await response.text()}`);
      }
    }
    throw new Error(`no redirect to ${stopAt} after ${MAX_STEPS} steps`);
  }
}

/**
 * The authorization code flow for `client` as `login`: authorize (logging in and consenting
 * on the IdP's pages as needed), then exchange the code. Resolves the token response.
 */
export async function signIn(browser, discovery, client, login) {
  const verifier = randomBytes(32).toString('base64url');
  const state = randomBytes(16).toString('base64url');
  const nonce = randomBytes(16).toString('base64url');
  const authorize = new URL(discovery.authorization_endpoint);
  authorize.search = new URLSearchParams({
    client_id: client.clientId,
    response_type: 'code',
    scope: 'openid',
    redirect_uri: client.redirectUri,
    state,
    nonce,
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
  }).toString();
  const callback = await browser.drive(authorize.href, {
    stopAt: client.redirectUri,
    fill: (fields) => (fields.prompt === 'login' ? { ...fields, login, password: 'any' } : fields),
  });
  if (callback.searchParams.get('state') !== state || !callback.searchParams.get('code')) {
    throw new Error(`unexpected authorization response ${callback}`);
  }
  const response = await fetch(discovery.token_endpoint, {
    method: 'POST',
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code: callback.searchParams.get('code'),
      redirect_uri: client.redirectUri,
      client_id: client.clientId,
      code_verifier: verifier,
    }),
  });
  if (response.status !== 200) throw new Error(`token endpoint: ${response.status} ${await response.text()}`);
  return { ...(await response.json()), nonce };
}

/**
 * RP-initiated logout at the end-session endpoint with `idToken` as the hint, confirming on
 * the IdP's page ("Yes, sign me out"). Resolves the final redirect.
 */
export async function signOut(browser, discovery, idToken) {
  const endSession = new URL(discovery.end_session_endpoint);
  endSession.searchParams.set('id_token_hint', idToken);
  const done = new URL('/session/end/success', discovery.issuer).href;
  return browser.drive(endSession.href, {
    stopAt: done,
    fill: (fields) => ({ ...fields, logout: 'yes' }),
  });
}
