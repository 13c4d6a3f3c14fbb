// An RP's back-channel logout endpoint. It validates logout tokens the way OIDC Back-Channel
// Logout 1.0 §2.6 tells an RP to, with `jose` alone (nothing of logoutd's), against the keys
// and issuer it was told to trust (the IdP's discovery document).
import { EventEmitter, once } from 'node:events';
import http from 'node:http';
import { jwtVerify } from 'jose';

const BACKCHANNEL_LOGOUT_EVENT = 'http://schemas.openid.net/event/backchannel-logout';
const MAX_BODY_BYTES = 64 * 1024;

const isPlainObject = (v) => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * The §2.6 checks: signature by a key of `jwks` with `alg`, explicit type `logout+jwt`,
 * `iss`, `aud` = `clientId`, `iat`, `exp`, `jti`, `events` holding exactly the back-channel
 * logout member with the value `{}`, `sid` and/or `sub`, and no `nonce`.
 * Resolves `{ header, claims, errors }`; `errors` is empty when the token is valid.
 */
export async function validateLogoutToken(token, { jwks, issuer, clientId, alg }) {
  let verified;
  try {
    verified = await jwtVerify(token, jwks, {
      issuer,
      audience: clientId,
      algorithms: [alg],
      typ: 'logout+jwt',
      requiredClaims: ['iat', 'exp', 'jti', 'events'],
    });
  } catch (err) {
    return { header: undefined, claims: undefined, errors: [`${err.code ?? err.name}: ${err.message}`] };
  }
  const { payload: claims, protectedHeader: header } = verified;
  const errors = [];
  const { events } = claims;
  if (!isPlainObject(events) || Object.keys(events).join() !== BACKCHANNEL_LOGOUT_EVENT) {
    errors.push(`events must have exactly the member ${BACKCHANNEL_LOGOUT_EVENT}`);
  } else if (!isPlainObject(events[BACKCHANNEL_LOGOUT_EVENT])
    || Object.keys(events[BACKCHANNEL_LOGOUT_EVENT]).length !== 0) {
    errors.push('the back-channel logout event must be {}');
  }
  if (typeof claims.jti !== 'string' || claims.jti === '') errors.push('jti must be a non-empty string');
  if (claims.sid === undefined && claims.sub === undefined) errors.push('sid or sub is required');
  if ('nonce' in claims) errors.push('nonce is forbidden');
  return { header, claims, errors };
}

async function readBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new Error('body too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Starts the RP `clientId` on 127.0.0.1 (a free port). Every POST to `/backchannel-logout` is
 * recorded in `received` as `{ status, valid, errors, header, claims }`. While `down` is set
 * it answers 503 without looking at the token, like an RP in maintenance.
 */
export async function startReceiver({ clientId, alg }) {
  const received = [];
  const arrivals = new EventEmitter();
  let trusted;
  let down = false;

  async function handle(req) {
    if (req.method !== 'POST' || new URL(req.url, 'http://rp').pathname !== '/backchannel-logout') {
      return { status: 404 };
    }
    if (down) return { status: 503 };
    if (!(req.headers['content-type'] ?? '').startsWith('application/x-www-form-urlencoded')) {
      return { status: 400, errors: ['content type must be application/x-www-form-urlencoded'] };
    }
    const form = new URLSearchParams(await readBody(req));
    const token = form.get('logout_token');
    if (!token || form.getAll('logout_token').length !== 1) {
      return { status: 400, errors: ['exactly one logout_token is required'] };
    }
    if (!trusted) return { status: 400, errors: ['no issuer trusted yet'] };
    const result = await validateLogoutToken(token, { ...trusted, clientId, alg });
    return { status: result.errors.length === 0 ? 200 : 400, ...result };
  }

  const server = http.createServer((req, res) => {
    handle(req).catch((err) => ({ status: 400, errors: [err.message] })).then((outcome) => {
      const record = { valid: outcome.status === 200, errors: [], ...outcome };
      received.push(record);
      arrivals.emit('record', record);
      res.statusCode = outcome.status;
      res.setHeader('cache-control', 'no-store');
      if (outcome.status === 400) {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ error: 'invalid_request', error_description: outcome.errors.join('; ') }));
      } else {
        res.end();
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const origin = `http://127.0.0.1:${server.address().port}`;

  return {
    clientId,
    alg,
    backchannelLogoutUri: `${origin}/backchannel-logout`,
    redirectUri: `${origin}/callback`,
    received,
    /** Accepts tokens of `issuer` signed by a key of `jwks` (a jose key set function). */
    trust({ issuer, jwks }) { trusted = { issuer, jwks }; },
    setDown(value) { down = value; },
    /** The first record (already here or yet to come) `predicate` accepts, within `timeoutMs`. */
    waitFor(predicate, { timeoutMs = 30_000, what = 'a matching request' } = {}) {
      const found = received.find(predicate);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const onRecord = (record) => {
          if (!predicate(record)) return;
          clearTimeout(timer);
          arrivals.off('record', onRecord);
          resolve(record);
        };
        const timer = setTimeout(() => {
          arrivals.off('record', onRecord);
          reject(new Error(`${clientId}: no ${what} within ${timeoutMs} ms; received `
            + `${JSON.stringify(received.map(({ status, errors }) => ({ status, errors })))}`));
        }, timeoutMs);
        arrivals.on('record', onRecord);
      });
    },
    async close() {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}
