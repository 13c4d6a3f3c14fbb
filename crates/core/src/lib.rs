//! logoutd ends sessions properly: when a session ends, every relying party that took part
//! receives a signed OpenID Connect Back-Channel Logout token, durably and with bounded retry.
//!
//! # Layout
//!
//! The modules in the order data flows through them:
//!
//! - [`ids`], [`clock`], [`alg`], [`initiator`], [`config`]: identifier newtypes, injected
//!   time, algorithms, Auth0's logout initiators and validated settings.
//! - [`session`] and [`metadata`]: sessions, the session-store trait and the metadata rules.
//! - [`clients`] and [`net_policy`]: relying-party registration, URL rules, initiator
//!   subscription.
//! - [`terminate`]: the pure fan-out of a session end into outbox rows.
//! - [`expiry`]: the sweeper that ends sessions past their expiry (`session-expired`).
//! - [`outbox`]: delivery rows, states, leases; the outbox trait.
//! - [`store`]: the `memory`, `sqlite` and `postgres` backends.
//! - [`dispatcher`]: claim, mint, send, record; concurrency caps; shutdown.
//! - [`token`] and [`keys`]: logout claims and their builder (pure); signing keys, rotation,
//!   JWKS.
//! - [`sender`]: the only code that touches the HTTP client (form POST, no redirects, SSRF
//!   guard).
//! - [`retry`]: classification of an attempt and the backoff schedule (pure).
//! - [`retention`]: pruning of finished deliveries and old ended sessions.
//! - [`verify`]: validation of a logout token as OIDC Back-Channel Logout 1.0 §2.6 asks of
//!   an RP.
//! - [`api`] and [`tokens`]: the axum router, one file per resource, one error mapping;
//!   the scoped API tokens.
//! - [`mock_rp`]: the conformance receiver.
//! - [`console`]: what the binaries share with their terminal (batched logs, stdout, signals).
//! - [`error`]: an error with its sources, for the logs of the API and the workers.

pub mod alg;
pub mod api;
pub mod clients;
pub mod clock;
pub mod config;
pub mod console;
pub mod dispatcher;
pub mod error;
pub mod expiry;
pub mod ids;
pub mod initiator;
pub mod keys;
pub mod metadata;
pub mod metrics;
pub mod mock_rp;
pub mod net_policy;
pub mod outbox;
pub mod retention;
pub mod retry;
pub mod sender;
pub mod server;
pub mod session;
pub mod store;
pub mod terminate;
pub mod token;
pub mod tokens;
pub mod verify;
