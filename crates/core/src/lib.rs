//! logoutd ends sessions properly: when a session ends, every relying party that took part
//! receives a signed OpenID Connect Back-Channel Logout token, durably and with bounded retry.
//!
//! This crate is everything the service is; the `logoutd` binary (the command line) and
//! `logoutd-bench` (the benchmarks) are thin crates over it. Its modules are private: what the
//! binaries and the tests use is re-exported below, flat, at the crate root.
//!
//! # Layout
//!
//! The modules in the order data flows through them:
//!
//! - `ids`, `clock`, `alg`, `initiator`, `config`: identifier newtypes, injected
//!   time, algorithms, Auth0's logout initiators and validated settings.
//! - `session` and `metadata`: sessions and the metadata rules.
//! - `clients` and `net_policy`: relying-party registration, URL rules, initiator
//!   subscription.
//! - `terminate`: the pure fan-out of a session end into outbox rows.
//! - `expiry`: the sweeper that ends sessions past their expiry (`session-expired`).
//! - `outbox`: delivery rows, states, leases.
//! - `store`: the rules over one database, the seams each user of it needs, and the
//!   `memory`, `sqlite` and `postgres` backends.
//! - `dispatcher`: claim, mint, send, record; concurrency caps; shutdown.
//! - `token` and `keys`: logout claims and their builder (pure); signing keys, rotation,
//!   JWKS.
//! - `jwe`: encryption of the signed token for clients that registered ID-token encryption
//!   (JWE over aws-lc-rs), and the cache of their keys.
//! - `sender`: the only code that touches the HTTP client (form POST, no redirects, SSRF
//!   guard).
//! - `retry`: classification of an attempt and the backoff schedule (pure).
//! - `health`: per-client success rate, latency and failure streak, kept as attempts are
//!   recorded, and the policy that pauses a client that keeps failing.
//! - `operator_events`: what the operator is told (`client.paused`, `client.resumed`,
//!   `delivery.failed`), written with its cause and posted to the operator webhook.
//! - `ssf`: the Shared Signals transmitter: receivers, streams, and the CAEP
//!   `session-revoked` SETs a session end writes beside its logout tokens.
//! - `retention`: pruning of finished deliveries and old ended sessions.
//! - `verify`: validation of a logout token as OIDC Back-Channel Logout 1.0 §2.6 asks of
//!   an RP.
//! - `api` and `tokens`: the axum router, one file per resource, one error mapping;
//!   the scoped API tokens.
//! - `mock_rp`: the conformance receiver.
//! - `mock_ssf`: the strict SSF receiver (push or poll) for testing the transmitter.
//! - `console`: what the binaries share with their terminal (batched logs, stdout, signals).
//! - `error`: an error with its sources, for the logs of the API and the workers.

#![warn(missing_docs, unreachable_pub)]

mod alg;
mod api;
mod clients;
mod clock;
mod config;
mod console;
mod dispatcher;
mod error;
mod expiry;
mod health;
mod ids;
mod initiator;
mod jwe;
mod keys;
mod metadata;
mod metrics;
mod mock_rp;
mod mock_ssf;
mod net_policy;
mod operator_events;
mod outbox;
mod pacing;
mod retention;
mod retry;
mod sender;
mod server;
mod session;
mod ssf;
mod store;
mod terminate;
mod token;
mod tokens;
mod verify;

pub use alg::{SigningAlg, TokenTyp};
pub use api::{
    AppState, CONSOLE_CSP, Credentials, DEFAULT_BODY_LIMIT, DEFAULT_LONG_POLL, DEFAULT_POLL_LEASE,
    DEFAULT_POLL_RECHECK, DEFAULT_TAKE as DEFAULT_PAGE_TAKE, MAX_EXCLUDED_SUBJECTS,
    MAX_LISTED_RESULTS, MAX_POLL_EVENTS, MAX_TAKE as MAX_PAGE_TAKE, MAX_WAIT_MS, MintError,
    MintSet, RECHECK_INTERVAL, STATS_BUCKETS, STATS_MINUTES, STATS_TTL, SsfApi, StatsCache, Waits,
    openapi::BEARER, openapi::REGENERATE, openapi::document as openapi_document,
    openapi::to_json as openapi_json, router,
};
pub use clients::{
    InitiatorMode, LogoutInitiators, MetadataOptIn, OidcLogout, RateLimit, RelyingParty,
    TokenEncryption, UserWide,
};
pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use config::{
    ApiToken, ConfigError, DEFAULT_CONFIG_FILE, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_LEASE,
    DEFAULT_LISTEN, DEFAULT_MAX_PER_ORIGIN, DEFAULT_MAX_WAITING_REQUESTS, DispatchSettings,
    Environment, HousekeepingSettings, HttpSettings, Knobs, MAX_CONNECTIONS_CEILING,
    MAX_CONNECTIONS_FLOOR, OperatorWebhook, Settings, default_max_connections, describe_flags,
    load as load_config, parse_issuer,
};
pub use console::{
    finish as finish_command, init_logging, print_line, runtime as command_runtime, stop_signal,
};
pub use dispatcher::{Dispatcher, DispatcherParts, MAX_DEFER};
pub use expiry::ExpirySweeper;
pub use health::{
    ClientHealth, HealthPolicy, LatencyQuantiles, PauseState, PausedBy, WINDOW_HOURS,
};
pub use ids::{
    ClientId, DeliveryId, EventId, Issuer, Jti, KeyId, LeaseId, OperatorEventId, SessionId, SetId,
    UserId, random_secret, random_token,
};
pub use initiator::Initiator;
pub use jwe::{
    ClientKeys, ContentEnc, DEFAULT_JWKS_TTL, Decrypted, DecryptionKey, JWKS_MAX_BYTES, JweError,
    KeyAlg, MAX_JWKS_TTL, MIN_JWKS_TTL, REFETCH_INTERVAL as JWKS_REFETCH_INTERVAL, RecipientKey,
    choose_key as choose_encryption_key, decrypt as decrypt_jwe, encrypt as encrypt_jwe,
};
pub use keys::{
    ImportRequest, Jwks, KeyRing, KeySet, RETIRED_GRACE_SECS as RETIRED_KEY_GRACE_SECS, SignError,
    SigningKey, activate as activate_key, ensure_set_signing_key, generate as generate_key,
    import as import_key, rotate as rotate_key, rotate_all as rotate_keys, store::KeyEntry,
    store::check_permissions as check_key_permissions, store::read_manifest as read_key_manifest,
};
pub use metadata::{
    MAX_PAIRS as MAX_METADATA_PAIRS, MAX_VALUE_CHARS as MAX_METADATA_VALUE_CHARS, MetadataError,
    MetadataOp, SessionMetadata,
};
pub use metrics::Metrics;
pub use mock_rp::{
    DEFAULT_FAIL_STATUS, DEFAULT_MEMORY_RECEIPT_BYTES, DEFAULT_RECEIPTS_FILE_MAX_BYTES, Faults,
    LogLimits, MockRp, MockRpConfig, MockRpHandle, Receipt, rotated_path,
};
pub use mock_ssf::{
    DEFAULT_MAX_EVENTS as DEFAULT_POLL_MAX_EVENTS, EVENTS_PATH as MOCK_SSF_EVENTS_PATH, MockSsf,
    MockSsfConfig, MockSsfError, MockSsfHandle, SetReceipt, StreamInfo,
    well_known_url as ssf_well_known_url,
};
pub use net_policy::NetPolicy;
pub use operator_events::{
    ClaimedOperatorEvent, EventRedrive, EventTally, EventWorker, EventWorkerParts,
    NewOperatorEvent, OperatorEvent, OperatorEventFilter, OperatorEventResult, OperatorEventState,
    OperatorEventType, WebhookSecret, WebhookSecretError, sign_webhook,
};
pub use outbox::{
    AttemptRecord, AttemptResult, BucketCounts, BulkRedrive, ClaimedDelivery, Delivery,
    DeliveryDetail, DeliveryFilter, DeliveryProgress, DeliveryScope, DeliveryState, DeliveryStats,
    FailedFilter, IdempotentRequest, MAX_REDRIVE_IDS, MinuteCounts, NewDelivery, OutboxStats,
    Redrive, STATS_BUCKET_MS, StateCounts, StoredKey,
};
pub use pacing::{Pace, PaceState};
pub use retention::{prune, prune_keys};
pub use retry::{
    DEFAULT_CAP as DEFAULT_RETRY_CAP, Decision, Outcome, RetryPolicy, RpError, Terminal,
    decide as decide_retry, escape_controls, parse_retry_after,
};
pub use sender::{DEFAULT_TIMEOUT as DEFAULT_SEND_TIMEOUT, SendResult, Sender, SenderConfig};
pub use server::{
    MAX_HEAD_BYTES, MAX_HEADERS, ServerParts, delivery_runtime, run as run_server, serve_api,
};
pub use session::{Device, Session, SessionClient};
pub use ssf::{
    ClaimedSet, EVENTS_SUPPORTED, FailedSetFilter, FanoutStream, InitiatingEntity,
    MIN_VERIFICATION_INTERVAL_SECS, NewSet, POLL_METHOD, PUSH_METHOD, PollBatch, PollRequest,
    PushRoom, PushVerdict, ReceiverScope, SESSION_REVOKED, STREAM_UPDATED, SetError, SetFilter,
    SetKind, SetMintError, SetRedrive, SetResult, SetState, SetWorker, SetWorkerParts, SsfReceiver,
    SsfStream, StoredSet, StreamDelivery, StreamStatus, VERIFICATION, VerifyOutcome, decide_push,
    excluded, initiating_entity, mint as mint_set, plan_sets, set_claims,
};
#[cfg(feature = "postgres")]
pub use store::postgres::PostgresStore;
#[cfg(feature = "sqlite")]
pub use store::sqlite::SqliteStore;
pub use store::{
    Backend, ClientHealthStats, Clients, Deliveries, Ending, EndingSet, Health, Housekeeping, Lane,
    OperatorEvents, Page, Queue, Redrives, Sessions, SsfStore, StoreError, Stores, Tx,
    emit as emit_operator_events, memory::MemoryStore, millis, open as open_store,
};
pub use terminate::{ClientNote, EndReport, EndTarget, SkipReason};
pub use token::{
    BACKCHANNEL_LOGOUT_EVENT, DEFAULT_LIFETIME_SECS as DEFAULT_TOKEN_LIFETIME_SECS, LogoutClaims,
    LogoutToken, LogoutTokenBuilder, MAX_LIFETIME_SECS as MAX_TOKEN_LIFETIME_SECS, Subject,
};
pub use tokens::{DEFAULT_TOKENS_FILE, Scope, TokenFile};
pub use verify::{
    DEFAULT_FETCH_TIMEOUT, DEFAULT_LEEWAY_SECS, DEFAULT_REFETCH_INTERVAL, JwksSource, TypPolicy,
    VerifiedToken, VerifyError, VerifyOptions, decrypt_token, verify,
};
