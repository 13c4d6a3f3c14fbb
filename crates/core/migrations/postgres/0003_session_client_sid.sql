-- Per-client sid. An IdP that gives each RP of a session its own `sid` (panva's oidc-provider
-- does) registers it with the client; that RP's logout token carries it. NULL means the
-- session id, as before. Each delivery row keeps the sid its tokens carry, so minting needs no
-- join. Nullable columns without a default: adding them rewrites no rows.
ALTER TABLE session_clients ADD COLUMN sid TEXT;
ALTER TABLE deliveries ADD COLUMN sid TEXT;
