//! Termination over SQLite: reading a step's sessions, and writing their end with their
//! outbox rows (the walk itself is [`crate::terminate`]).

use super::rows::{ending_select, ending_sessions};
use super::{db, json_list, ms, values};
use crate::initiator::Initiator;
use crate::outbox::NewDelivery;
use crate::session::Session;
use crate::store::StoreError;
use crate::store::backend::{Ending, EndingSet};
use crate::store::sql::rows::session_columns;
use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;
use std::sync::{Arc, LazyLock};

/// Sessions ended per transaction when one call ends a user's sessions (half as many while API
/// writes are arriving, see [`super::BatchSizes`]). Each step commits its sessions' end
/// together with their rows, so a single-session end waits behind one step on the writer,
/// never behind a whole user.
pub(super) const END_CHUNK: usize = 8;

/// Reads the sessions of one termination step with their clients' registrations, in one
/// select ([`ending_select`]): the write lock the transaction took at `BEGIN IMMEDIATE` keeps
/// every other writer, in this process or another, from changing them before it commits.
/// A user-wide end takes `chunk` sessions a step.
pub(super) async fn ending(
    conn: &mut SqliteConnection,
    which: Ending<'_>,
    chunk: usize,
) -> Result<EndingSet, StoreError> {
    match which {
        Ending::Session(id) => {
            let rows: String = sqlx::query_scalar(ending_select!(concat!(
                "SELECT ",
                session_columns!(),
                " FROM sessions WHERE id = ?"
            )))
            .bind(id.as_str())
            .fetch_one(conn)
            .await
            .map_err(db)?;
            let (sessions, clients) = ending_sessions(&rows)?;
            Ok(EndingSet {
                found: !sessions.is_empty(),
                sessions: sessions.into_iter().filter(|s| !s.is_ended()).collect(),
                clients,
                next: None,
            })
        }
        Ending::User { user, after } => {
            // The cursor starts below every id, so each step is one range of the
            // `sessions_user` index rather than a rescan of the sessions already ended.
            let rows: String = sqlx::query_scalar(ending_select!(concat!(
                "SELECT ",
                session_columns!(),
                " FROM sessions WHERE user_id = ?1 AND id > ?2 AND ended_at IS NULL",
                " ORDER BY id LIMIT +?3"
            )))
            .bind(user.as_str())
            .bind(after)
            .bind(i64::try_from(chunk).unwrap_or(i64::MAX))
            .fetch_one(conn)
            .await
            .map_err(db)?;
            let (sessions, clients) = ending_sessions(&rows)?;
            let next = match sessions.last() {
                Some(last) if sessions.len() >= chunk => Some(last.id.to_string()),
                _ => None,
            };
            Ok(EndingSet {
                sessions,
                clients,
                found: true,
                next,
            })
        }
        Ending::Expired { now, limit } => {
            let rows: String = sqlx::query_scalar(EXPIRED)
                .bind(ms(now))
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_one(conn)
                .await
                .map_err(db)?;
            let (sessions, clients) = ending_sessions(&rows)?;
            Ok(EndingSet {
                sessions,
                clients,
                found: true,
                next: None,
            })
        }
    }
}

/// The sessions [`end_expired`] ends, with their clients. Each kind of expiry is a range of
/// its partial index, earliest first and bounded by the limit, so the sweep reads about
/// `limit` sessions however many are active. (With the two conditions OR-ed under
/// `ORDER BY id`, SQLite walks every session in id order instead.)
const EXPIRED: &str = ending_select!(concat!(
    "SELECT ",
    session_columns!(),
    " FROM sessions WHERE id IN (",
    "SELECT id FROM (SELECT id FROM sessions WHERE ended_at IS NULL AND expires_at <= ?1",
    " ORDER BY expires_at LIMIT +?2)",
    " UNION SELECT id FROM (SELECT id FROM sessions",
    " WHERE ended_at IS NULL AND idle_expires_at <= ?1 ORDER BY idle_expires_at LIMIT +?2))",
    " ORDER BY id LIMIT +?2"
));

/// Marks sessions ended; runs before the first chunk of their rows (see [`write_ends`]).
static MARK_ENDED: LazyLock<values::Statement> = LazyLock::new(|| {
    values::Statement::fixed(
        "UPDATE sessions SET ended_at = ?, end_initiator = ?, updated_at = ? \
         WHERE id IN (SELECT value FROM json_each(?)) AND ended_at IS NULL",
    )
});

/// The insert of planned rows, pending and due at once; a `user` row that an earlier step of
/// the same user-wide end wrote (the same id) gets this step's sessions added instead.
static INSERT_ROWS: LazyLock<values::Statement> = LazyLock::new(|| {
    values::Statement::new(11, |rows| {
        format!(
            "WITH r (id, event_id, session_id, user_id, client_id, initiator, metadata, \
             created_at, sid, scope, sessions) AS (VALUES {rows}) \
             INSERT INTO deliveries (id, event_id, session_id, user_id, client_id, initiator, \
             metadata, state, attempts, next_attempt_at, budget_started_at, created_at, \
             updated_at, sid, scope, sessions_covered) \
             SELECT id, event_id, session_id, user_id, client_id, initiator, metadata, \
             'pending', 0, created_at, created_at, created_at, created_at, sid, scope, \
             sessions FROM r WHERE id IS NOT NULL \
             ON CONFLICT (id) DO UPDATE \
             SET sessions_covered = sessions_covered + excluded.sessions_covered"
        )
    })
});

/// Marking the sessions ended, then the first chunk of their rows, in one round trip.
static END_AND_INSERT: LazyLock<values::Sequence> =
    LazyLock::new(|| values::Sequence::new(&[&MARK_ENDED, &INSERT_ROWS]));

/// Marks `sessions` (not empty) ended and inserts their planned rows as pending and due at
/// once, up to 256 rows per statement. The first statement carries the marking too.
pub(super) async fn write_ends(
    conn: &mut SqliteConnection,
    sessions: &[Session],
    initiator: Initiator,
    now: DateTime<Utc>,
    rows: &[NewDelivery],
) -> Result<(), StoreError> {
    let ended = json_list(sessions.iter().map(|s| s.id.as_str()))?;
    let mark = move |query: Query<'static>| {
        query
            .bind(ms(now))
            .bind(initiator.as_str())
            .bind(ms(now))
            .bind(ended)
    };
    let snapshots = snapshots(rows)?;
    let mut chunks = rows
        .chunks(values::MAX_ROWS)
        .zip(snapshots.chunks(values::MAX_ROWS));
    let Some((first, first_snapshots)) = chunks.next() else {
        return mark(sqlx::query(MARK_ENDED.sql(1)))
            .execute(&mut *conn)
            .await
            .map(|_| ())
            .map_err(db);
    };
    let query = mark(sqlx::query(END_AND_INSERT.sql(first.len())));
    bind_rows(query, first, first_snapshots)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    for (chunk, chunk_snapshots) in chunks {
        bind_rows(
            sqlx::query(INSERT_ROWS.sql(chunk.len())),
            chunk,
            chunk_snapshots,
        )
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    }
    Ok(())
}

/// Each planned row's metadata snapshot as stored, serialized once per session: a session's
/// rows are planned next to each other and share one text (a `user` row, planned among them,
/// stores none).
fn snapshots(rows: &[NewDelivery]) -> Result<Vec<Arc<str>>, StoreError> {
    let mut texts: Vec<Arc<str>> = Vec::with_capacity(rows.len());
    let mut previous: Option<(&NewDelivery, Arc<str>)> = None;
    for r in rows {
        let text = match previous {
            Some((p, text)) if p.session_id == r.session_id && p.scope == r.scope => text,
            _ => {
                Arc::from(serde_json::to_string(&r.session_metadata).map_err(StoreError::backend)?)
            }
        };
        texts.push(text.clone());
        previous = Some((r, text));
    }
    Ok(texts)
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>;

/// Binds a chunk of planned rows, with their snapshots, to [`INSERT_ROWS`], padding included.
fn bind_rows<'q>(
    mut query: Query<'q>,
    chunk: &'q [NewDelivery],
    snapshots: &[Arc<str>],
) -> Query<'q> {
    for (r, snapshot) in chunk.iter().zip(snapshots) {
        query = query
            .bind(r.id.as_str())
            .bind(r.event_id.as_str())
            .bind(r.session_id.as_str())
            .bind(r.user_id.as_str())
            .bind(r.client_id.as_str())
            .bind(r.initiator.as_str())
            .bind(snapshot.clone())
            .bind(ms(r.created_at))
            .bind(r.sid.as_ref().map(|sid| sid.as_str()))
            .bind(r.scope.as_str())
            .bind(i64::from(r.sessions));
    }
    INSERT_ROWS.pad(query, chunk.len())
}

#[cfg(test)]
mod tests {
    use super::super::{SqliteStore, query_plan};
    use super::*;
    use crate::ids::{ClientId, DeliveryId, EventId, SessionId, UserId};
    use crate::metadata::SessionMetadata;

    #[test]
    fn each_session_s_snapshot_is_serialized_once_and_shared_by_its_rows() {
        let now = Utc::now();
        let row = |session: &str, metadata: &SessionMetadata| NewDelivery {
            id: DeliveryId::generate_at(now),
            event_id: EventId::generate(),
            session_id: SessionId::new(session),
            sid: None,
            user_id: UserId::new("u"),
            client_id: ClientId::new("c"),
            initiator: Initiator::RpLogout,
            session_metadata: metadata.clone(),
            scope: crate::outbox::DeliveryScope::Session,
            sessions: 1,
            created_at: now,
        };
        let acme = SessionMetadata::from_json(&serde_json::json!({ "tenant": "acme" })).unwrap();
        let none = SessionMetadata::new();
        let rows = [
            row("s1", &acme),
            row("s1", &acme),
            row("s2", &none),
            row("s3", &acme),
        ];
        let texts = snapshots(&rows).unwrap();
        let written: Vec<&str> = texts.iter().map(|t| &**t).collect();
        let acme_text = r#"{"tenant":"acme"}"#;
        assert_eq!(written, [acme_text, acme_text, "{}", acme_text]);
        assert!(Arc::ptr_eq(&texts[0], &texts[1]));
        assert!(!Arc::ptr_eq(&texts[1], &texts[3]));
    }

    #[tokio::test]
    async fn the_expiry_sweep_reads_index_ranges_not_every_session() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        let steps = query_plan(&store, EXPIRED, &[], &[0, 10]).await;
        assert!(
            steps
                .iter()
                .any(|s| s.contains("USING INDEX sessions_expires")),
            "{steps:?}"
        );
        assert!(
            steps
                .iter()
                .any(|s| s.contains("USING INDEX sessions_idle_expires")),
            "{steps:?}"
        );
        assert!(
            !steps.iter().any(|s| s.starts_with("SCAN sessions")),
            "{steps:?}"
        );
    }
}
