// logoutd-glue.js: everything oidc-provider needs so that logoutd sends its OIDC Back-Channel
// Logout tokens. oidc-provider's own backchannelLogout feature stays off; this file tells
// logoutd's management API (/api/v2, Auth0-shaped) about clients, sessions and session ends.
//
// Three hooks, each awaited, so the IdP answers only once logoutd has recorded the change:
//   registerClients(clients)        RPs with a backchannel_logout_uri -> POST /clients
//   provider.use (post-middleware)  after an authorization response   -> POST /sessions[/{id}/clients]
//   Session adapter's destroy       end-session confirm               -> logout-events rp-logout
//                                   any other destroy (admin, code)   -> logout-events session-revoked
// Expiry has no hook (stores such as Redis drop expired keys silently), so each session is
// registered with its absolute expires_at and logoutd ends it with session-expired itself.
import { Provider } from 'oidc-provider';

/** Client metadata the IdP keeps for logoutd; its own back-channel logout feature is off. */
const CLIENT_PROPERTIES = ['backchannel_logout_uri', 'backchannel_logout_session_required'];

export function createLogoutdGlue({ url, token, sessionMetadata = () => ({}) }) {
  async function api(method, path, body, expected) {
    const response = await fetch(`${url}/api/v2${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!expected.includes(response.status)) {
      throw new Error(`logoutd ${method} ${path} answered ${response.status}: ${await response.text()}`);
    }
    return response;
  }
  const iso = (epochSeconds) => (epochSeconds ? new Date(epochSeconds * 1000).toISOString() : undefined);

  // The oidc-provider session's uid names the session in logoutd: unlike its id (jti), which
  // changes at each login and partial logout, the uid lasts as long as the session.
  async function join(ctx) {
    const { session, client } = ctx.oidc;
    const entry = { client_id: client.clientId, sid: session.sidFor(client.clientId) };
    const path = `/sessions/${encodeURIComponent(session.uid)}/clients`;
    if ((await api('POST', path, entry, [200, 404])).status === 200) return;
    await api('POST', '/sessions', {
      id: session.uid,
      user_id: session.accountId,
      clients: [entry],
      authenticated_at: iso(session.loginTs),
      expires_at: iso(session.exp),
      device: { initial_ip: ctx.ip, initial_user_agent: ctx.get('user-agent').slice(0, 1024) },
      session_metadata: sessionMetadata(ctx),
    }, [201]);
  }

  // Session.save() destroys the record under the old id when it rotates the id; that is
  // not an end. A rotation is a destroy of this request's session under another id.
  function rotating(id, uid) {
    const session = Provider.ctx?.oidc?.session;
    return session !== undefined && session.uid === uid && session.id !== id;
  }

  async function end(id, stored) {
    if (!stored?.accountId || rotating(id, stored.uid)) return;
    const ctx = Provider.ctx;
    const initiator = ctx?.oidc?.route === 'end_session_confirm' ? 'rp-logout' : 'session-revoked';
    // 404: logoutd never heard of it (no RP joined), so there is nobody to tell.
    await api('POST', '/logout-events', { session_id: stored.uid, initiator }, [202, 404]);
  }

  return {
    /** Provider configuration to merge: the wrapped adapter and the client metadata kept. */
    configuration(adapterFactory) {
      return {
        adapter(name) {
          const inner = adapterFactory(name);
          if (name !== 'Session') return inner;
          // logoutd first: if it cannot record the end, the IdP session stays and the error
          // reaches the user, who can log out again.
          return Object.assign(Object.create(inner), {
            async destroy(id) {
              await end(id, await inner.find(id));
              return inner.destroy(id);
            },
          });
        },
        extraClientMetadata: { properties: CLIENT_PROPERTIES },
        discovery: { backchannel_logout_supported: true, backchannel_logout_session_supported: true },
      };
    },

    /** Hooks on the running provider. */
    attach(provider) {
      // oidc-provider puts `sid` in ID tokens only for clients its own (disabled) back-channel
      // logout serves; logoutd serves every client, so every ID token carries its sid.
      provider.Client.prototype.includeSid = () => true;
      provider.on('authorization.success', (ctx) => { ctx.state.logoutdJoin = true; });
      provider.use(async (ctx, next) => {
        await next();
        // After next(): the session has been saved, so its exp is known.
        if (ctx.state.logoutdJoin) await join(ctx);
      });
    },

    /** Registers (or updates) every RP that has a back-channel logout URI. */
    async registerClients(clients) {
      for (const c of clients.filter((m) => m.backchannel_logout_uri)) {
        const body = {
          name: c.client_name ?? c.client_id,
          oidc_logout: {
            backchannel_logout_urls: [c.backchannel_logout_uri],
            backchannel_logout_initiators: { mode: 'all' }, // every kind of session end
            backchannel_logout_session_metadata: { include: true },
          },
          backchannel_logout_session_required: c.backchannel_logout_session_required ?? false,
          id_token_signed_response_alg: c.id_token_signed_response_alg ?? 'RS256',
        };
        const created = await api('POST', '/clients', { client_id: c.client_id, ...body }, [201, 409]);
        if (created.status === 409) await api('PATCH', `/clients/${encodeURIComponent(c.client_id)}`, body, [200]);
      }
    },
  };
}
