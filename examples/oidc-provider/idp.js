// idp.js: the identity provider, panva's oidc-provider with its development login and consent
// pages, an in-memory store, and the logoutd glue merged into its configuration.
import { randomBytes } from 'node:crypto';
import Provider from 'oidc-provider';
import { createMemoryAdapter } from 'oidc-provider/lib/adapters/memory_adapter.js';

/** Absolute session lifetime; logoutd learns the same expiry and ends the session then. */
export const SESSION_SECONDS = 8 * 60 * 60;

/** Where this IdP deployment runs; it goes into every session's metadata. */
export const REGION = 'eu-central';

/** Session metadata set at login, sent to RPs in their logout tokens (values are strings). */
export function sessionMetadata(ctx) {
  return { device: (ctx.get('user-agent') || 'unknown').slice(0, 255), region: REGION };
}

function logoutSource(ctx, form) {
  ctx.body = `<!DOCTYPE html><html><head><meta charset="utf-8"><title>Sign out</title></head>
<body><h1>Sign out?</h1>${form}
<button type="submit" form="op.logoutForm" name="logout" value="yes">Yes, sign me out</button>
<button type="submit" form="op.logoutForm">No, stay signed in</button></body></html>`;
}

/**
 * An oidc-provider for `issuer` signing with `jwks` (private JWKs), serving `clients`
 * (static metadata, `backchannel_logout_uri` included), with `glue` attached.
 */
export function createIdp({ issuer, jwks, clients, glue }) {
  const provider = new Provider(issuer, {
    clients,
    jwks,
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    features: {
      devInteractions: { enabled: true },
      // A plain confirmation page (the default one loads a web font).
      rpInitiatedLogout: { enabled: true, logoutSource },
      backchannelLogout: { enabled: false }, // logoutd sends the logout tokens
    },
    ttl: {
      AccessToken: 600,
      IdToken: 600,
      Interaction: 600,
      Grant: SESSION_SECONDS,
      // The expiry is fixed at the first save and never slides, so the expires_at logoutd
      // got at login stays true.
      Session: (ctx, session) => (session.exp
        ? Math.max(session.exp - Math.floor(Date.now() / 1000), 1)
        : SESSION_SECONDS),
    },
    findAccount: (ctx, accountId) => ({ accountId, claims: () => ({ sub: accountId }) }),
    ...glue.configuration(createMemoryAdapter()),
  });
  glue.attach(provider);
  return provider;
}
