// oidc-provider as the IdP, logoutd sending its back-channel logout tokens, three RPs on
// loopback: one signs with RS256, one with ES256, one is down during the logout.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createRemoteJWKSet, exportJWK, generateKeyPair, jwtVerify } from 'jose';

import { createIdp, REGION, sessionMetadata } from '../idp.js';
import { createLogoutdGlue } from '../logoutd-glue.js';
import { Browser, signIn, signOut } from './support/browser.js';
import { importKeys, startLogoutd } from './support/logoutd.js';
import { startReceiver } from './support/receiver.js';

/** How long a delivery may take to arrive, retries included; no fixed sleeps anywhere. */
const DELIVERY_DEADLINE_MS = 30_000;
const USER_AGENT = 'example-browser/1.0 (loopback test)';

/** A private signing JWK with the kid the IdP chose, as a file logoutd can import. */
async function signingKey(dir, alg, kid) {
  const { privateKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = { ...(await exportJWK(privateKey)), kid, alg, use: 'sig' };
  const file = path.join(dir, `${kid}.jwk.json`);
  await writeFile(file, JSON.stringify(jwk), { mode: 0o600 });
  return { jwk, file, alg };
}

describe('oidc-provider with logoutd doing back-channel logout', { timeout: 100_000 }, () => {
  let tmp;
  let logoutd;
  let server;
  let provider;
  let discovery;
  let idpKeys;
  const rp = {};

  async function logoutdApi(pathAndQuery) {
    const response = await fetch(`${logoutd.url}/api/v2${pathAndQuery}`, {
      headers: { authorization: `Bearer ${logoutd.token}` },
    });
    assert.equal(response.status, 200, `GET ${pathAndQuery}: ${response.status}`);
    return response.json();
  }

  async function idTokenClaims(tokens, client) {
    const { payload } = await jwtVerify(tokens.id_token, idpKeys, {
      issuer: discovery.issuer, audience: client.clientId, algorithms: [client.alg],
    });
    assert.equal(payload.nonce, tokens.nonce);
    assert.equal(typeof payload.sid, 'string', `${client.clientId}'s ID token has a sid`);
    return payload;
  }

  before(async () => {
    tmp = await mkdtemp(path.join(tmpdir(), 'logoutd-oidc-provider-'));
    const keysDir = path.join(tmp, 'keys');

    // The IdP's keys; logoutd signs logout tokens with the very same ones.
    const keys = [await signingKey(tmp, 'RS256', 'idp-2026'), await signingKey(tmp, 'ES256', 'idp-2026-es')];
    await importKeys(keysDir, keys);

    rp.rs = await startReceiver({ clientId: 'app-rs', alg: 'RS256' });
    rp.es = await startReceiver({ clientId: 'app-es', alg: 'ES256' });
    rp.down = await startReceiver({ clientId: 'app-down', alg: 'RS256' });

    // The IdP's address comes first: logoutd must be started with its issuer.
    server = http.createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const issuer = `http://127.0.0.1:${server.address().port}`;

    logoutd = await startLogoutd({ issuer, keysDir, dbPath: path.join(tmp, 'logoutd.db') });
    const glue = createLogoutdGlue({ url: logoutd.url, token: logoutd.token, sessionMetadata });
    const clients = Object.values(rp).map((r) => ({
      client_id: r.clientId,
      client_name: `RP ${r.clientId}`,
      redirect_uris: [r.redirectUri],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      id_token_signed_response_alg: r.alg,
      backchannel_logout_uri: r.backchannelLogoutUri,
      backchannel_logout_session_required: true,
    }));
    provider = createIdp({ issuer, jwks: { keys: keys.map((k) => k.jwk) }, clients, glue });
    server.on('request', provider.callback());
    await glue.registerClients(clients);

    // What an RP knows of its IdP: the discovery document and the keys behind its jwks_uri.
    discovery = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json();
    idpKeys = createRemoteJWKSet(new URL(discovery.jwks_uri));
    for (const r of Object.values(rp)) r.trust({ issuer: discovery.issuer, jwks: idpKeys });
  });

  after(async () => {
    await logoutd?.stop();
    await Promise.all(Object.values(rp).map((r) => r.close()));
    if (server?.listening) {
      server.closeAllConnections();
      server.close();
    }
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  const alice = { browser: new Browser({ userAgent: USER_AGENT }), tokens: {}, sid: {} };

  it('discovery advertises back-channel logout with sid', () => {
    assert.equal(discovery.issuer, `http://127.0.0.1:${server.address().port}`);
    assert.equal(discovery.backchannel_logout_supported, true);
    assert.equal(discovery.backchannel_logout_session_supported, true);
  });

  it('each login is recorded in logoutd: one session, every client, the IdP\'s expiry', async () => {
    for (const [name, client] of Object.entries(rp)) {
      alice.tokens[name] = await signIn(alice.browser, discovery, client, 'alice');
      alice.sid[name] = (await idTokenClaims(alice.tokens[name], client)).sid;
      assert.equal((await idTokenClaims(alice.tokens[name], client)).sub, 'alice');
    }
    // oidc-provider gives each client its own sid for the one session.
    assert.equal(new Set(Object.values(alice.sid)).size, 3);

    const { sessions } = await logoutdApi('/users/alice/sessions');
    assert.equal(sessions.length, 1, 'the later logins joined the first session (an id rotation is no end)');
    const [session] = sessions;
    assert.deepEqual(session.clients.map((c) => c.client_id).sort(), ['app-down', 'app-es', 'app-rs']);
    assert.deepEqual(session.session_metadata, { device: USER_AGENT, region: REGION });
    assert.equal(session.device.initial_user_agent, USER_AGENT);
    assert.equal(session.ended_at, undefined);
    const idpSession = await provider.Session.findByUid(session.id);
    assert.equal(idpSession.accountId, 'alice');
    assert.equal(Date.parse(session.expires_at), idpSession.exp * 1000);
    alice.sessionId = session.id;
  });

  it('RP-initiated logout sends every RP a §2.6-valid token with its sid and the metadata', async () => {
    assert.ok(alice.sessionId, 'needs the login above');
    rp.down.setDown(true);
    const done = await signOut(alice.browser, discovery, alice.tokens.rs.id_token);
    assert.equal(done.pathname, '/session/end/success');
    assert.equal(await provider.Session.findByUid(alice.sessionId), undefined, 'the IdP session is gone');

    for (const [name, kid] of [['rs', 'idp-2026'], ['es', 'idp-2026-es']]) {
      const token = await rp[name].waitFor((r) => r.claims?.sub === 'alice', {
        timeoutMs: DELIVERY_DEADLINE_MS, what: 'logout token for alice',
      });
      assert.deepEqual(token.errors, [], `${rp[name].clientId}: ${token.errors}`);
      assert.equal(token.valid, true);
      assert.deepEqual(token.header, { alg: rp[name].alg, typ: 'logout+jwt', kid });
      assert.equal(token.claims.iss, discovery.issuer);
      assert.equal(token.claims.aud, rp[name].clientId);
      assert.equal(token.claims.sid, alice.sid[name], 'the sid of this client\'s ID token');
      assert.deepEqual(token.claims.session_metadata, { device: USER_AGENT, region: REGION });
      assert.equal('nonce' in token.claims, false);
    }
    const { deliveries } = await logoutdApi(`/logout-deliveries?session_id=${encodeURIComponent(alice.sessionId)}`);
    assert.deepEqual(deliveries.map((d) => d.initiator), ['rp-logout', 'rp-logout', 'rp-logout']);
  });

  it('an RP that is down during the logout gets its token once it is back', async () => {
    assert.ok(alice.sessionId, 'needs the logout above');
    const refused = await rp.down.waitFor((r) => r.status === 503, {
      timeoutMs: DELIVERY_DEADLINE_MS, what: 'attempt while down',
    });
    assert.equal(refused.valid, false);
    rp.down.setDown(false);

    const token = await rp.down.waitFor((r) => r.status !== 503, {
      timeoutMs: DELIVERY_DEADLINE_MS, what: 'retried logout token',
    });
    assert.deepEqual(token.errors, []);
    assert.equal(token.claims.sid, alice.sid.down);
    assert.equal(token.claims.sub, 'alice');
    assert.deepEqual(token.claims.session_metadata, { device: USER_AGENT, region: REGION });

    const { deliveries } = await logoutdApi(`/logout-deliveries?client_id=app-down&session_id=${encodeURIComponent(alice.sessionId)}`);
    assert.equal(deliveries.length, 1);
    const [delivery] = deliveries;
    // The outbox records the result just after the RP answers.
    const deadline = Date.now() + DELIVERY_DEADLINE_MS;
    let current = delivery;
    while (current.state !== 'delivered' && Date.now() < deadline) {
      await new Promise((resolve) => { setTimeout(resolve, 50); });
      current = await logoutdApi(`/logout-deliveries/${encodeURIComponent(delivery.id)}`);
    }
    assert.equal(current.state, 'delivered');
    assert.ok(current.attempts >= 2, `attempts: ${current.attempts}`);
  });

  it('a session the IdP destroys elsewhere (an admin sign-out) ends as session-revoked', async () => {
    const bob = new Browser({ userAgent: USER_AGENT });
    const tokens = await signIn(bob, discovery, rp.rs, 'bob');
    const { sid } = await idTokenClaims(tokens, rp.rs);
    const { sessions: [session] } = await logoutdApi('/users/bob/sessions');

    // What an IdP's admin action does: find the session and destroy it, outside any request.
    await (await provider.Session.findByUid(session.id)).destroy();

    const token = await rp.rs.waitFor((r) => r.claims?.sub === 'bob', {
      timeoutMs: DELIVERY_DEADLINE_MS, what: 'logout token for bob',
    });
    assert.deepEqual(token.errors, []);
    assert.equal(token.claims.sid, sid);
    const { deliveries } = await logoutdApi(`/logout-deliveries?session_id=${encodeURIComponent(session.id)}`);
    assert.deepEqual(deliveries.map((d) => d.initiator), ['session-revoked']);
  });
});
