//! Operator events as both SQL databases store them, written once (see [`EventStatements`]).

use super::rows::{DeliveryRow, delivery_columns};
use super::{
    Dialect, StoredJson, by_id, db, from_ms, limit, ms, opt_from_ms, overfetch, parse, unsigned,
};
use crate::health::{PauseState, PausedBy};
use crate::ids::{LeaseId, OperatorEventId};
use crate::operator_events::{
    ClaimedOperatorEvent, NewOperatorEvent, OperatorEvent, OperatorEventFilter, OperatorEventResult,
};
use crate::outbox::Delivery;
use crate::retry::Decision;
use crate::store::{Page, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{Encode, Executor, FromRow, IntoArguments, QueryBuilder, Type};

/// The columns of [`EventRow`], for `concat!`.
macro_rules! event_columns {
    () => {
        "id, type, payload, created_at, state, attempts, next_attempt_at, last_status, \
         last_error, delivered_at, updated_at, budget_started_at"
    };
}

/// A row of `operator_events`.
#[derive(sqlx::FromRow)]
pub(in crate::store) struct EventRow<J> {
    id: String,
    #[sqlx(rename = "type")]
    kind: String,
    payload: J,
    created_at: i64,
    state: String,
    attempts: i32,
    next_attempt_at: Option<i64>,
    last_status: Option<i32>,
    last_error: Option<String>,
    delivered_at: Option<i64>,
    updated_at: i64,
    budget_started_at: i64,
}

impl<J: StoredJson> EventRow<J> {
    /// The event, and when its age budget started.
    fn into_event(self) -> Result<(OperatorEvent, DateTime<Utc>), StoreError> {
        let event = OperatorEvent {
            kind: parse(&self.kind, "type")?,
            data: self.payload.decode("payload")?,
            created_at: from_ms(self.created_at)?,
            state: parse(&self.state, "state")?,
            attempts: unsigned(self.attempts, "attempts")?,
            next_attempt_at: opt_from_ms(self.next_attempt_at)?,
            last_status: self
                .last_status
                .map(|s| unsigned(s, "last_status"))
                .transpose()?,
            last_error: self.last_error,
            delivered_at: opt_from_ms(self.delivered_at)?,
            updated_at: from_ms(self.updated_at)?,
            id: self.id.into(),
        };
        Ok((event, from_ms(self.budget_started_at)?))
    }
}

/// The operator-event statements both databases run alike.
#[async_trait]
pub(in crate::store) trait EventStatements: Dialect {
    /// Inserts events, pending and due at their creation.
    async fn insert_events(
        conn: &mut Self::Connection,
        events: &[NewOperatorEvent],
    ) -> Result<(), StoreError>;

    /// The client's pause, locked until commit.
    async fn client_pause(
        conn: &mut Self::Connection,
        id: &str,
    ) -> Result<Option<PauseState>, StoreError>;

    /// The delivery rows among `leases` that are in flight under their lease, locked until
    /// commit: the rows a give-up in this transaction turns into dead letters.
    async fn leased_rows(
        conn: &mut Self::Connection,
        leases: &[(&str, &str)],
    ) -> Result<Vec<Delivery>, StoreError>;

    /// Claims up to `take` due events, oldest first, under `lease` until `until`.
    async fn claim_events(
        conn: &mut Self::Connection,
        now: DateTime<Utc>,
        lease: &LeaseId,
        until: DateTime<Utc>,
        take: usize,
    ) -> Result<Vec<ClaimedOperatorEvent>, StoreError>;

    /// Records one result if its lease is current.
    async fn record_event(
        conn: &mut Self::Connection,
        result: &OperatorEventResult,
    ) -> Result<bool, StoreError>;

    /// Gives one claimed event back, due at `now`.
    async fn release_event(
        conn: &mut Self::Connection,
        id: &OperatorEventId,
        lease: &LeaseId,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Events matching `filter`, ordered by id, after `from`.
    async fn list_events(
        conn: &mut Self::Connection,
        filter: &OperatorEventFilter,
        from: Option<&str>,
        take: usize,
    ) -> Result<Page<OperatorEvent>, StoreError>;

    /// One event, with when its budget started.
    async fn get_event(
        conn: &mut Self::Connection,
        id: &OperatorEventId,
    ) -> Result<Option<OperatorEvent>, StoreError>;

    /// Requeues a `failed` event with a fresh budget; `false` when it is not failed.
    async fn requeue_failed_event(
        conn: &mut Self::Connection,
        id: &OperatorEventId,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Pending and in-flight events.
    async fn pending_events(conn: &mut Self::Connection) -> Result<u64, StoreError>;

    /// Deletes up to `take` delivered and failed events last changed before `before`.
    async fn prune_events(
        conn: &mut Self::Connection,
        before: DateTime<Utc>,
        take: usize,
    ) -> Result<u64, StoreError>;
}

#[async_trait]
impl<DB> EventStatements for DB
where
    DB: Dialect,
    DB::Arguments: IntoArguments<DB>,
    for<'e> &'e mut DB::Connection: Executor<'e, Database = DB>,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> Option<i64>: Encode<'t, DB> + Type<DB>,
    for<'t> Option<i32>: Encode<'t, DB> + Type<DB>,
    for<'t> Option<&'t str>: Encode<'t, DB> + Type<DB>,
    for<'t> Json<&'t serde_json::Value>: Encode<'t, DB> + Type<DB>,
    for<'r> EventRow<DB::Json>: FromRow<'r, DB::Row>,
    for<'r> DeliveryRow<DB::Json>: FromRow<'r, DB::Row>,
    for<'r> (bool, Option<String>, Option<i64>): FromRow<'r, DB::Row>,
    for<'r> (i64,): FromRow<'r, DB::Row>,
{
    async fn insert_events(
        conn: &mut DB::Connection,
        events: &[NewOperatorEvent],
    ) -> Result<(), StoreError> {
        for event in events {
            let at = ms(event.created_at);
            sqlx::query::<DB>(
                "INSERT INTO operator_events (id, type, payload, created_at, state, attempts, \
                 next_attempt_at, budget_started_at, updated_at) \
                 VALUES ($1, $2, $3, $4, 'pending', 0, $4, $4, $4) ON CONFLICT (id) DO NOTHING",
            )
            .bind(event.id.as_str())
            .bind(event.kind.as_str())
            .bind(Json(&event.data))
            .bind(at)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
        }
        Ok(())
    }

    async fn client_pause(
        conn: &mut DB::Connection,
        id: &str,
    ) -> Result<Option<PauseState>, StoreError> {
        let sql = format!(
            "SELECT paused, paused_by, paused_at FROM clients WHERE client_id = $1{}",
            DB::FOR_UPDATE
        );
        let row: Option<(bool, Option<String>, Option<i64>)> =
            sqlx::query_as::<DB, _>(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .fetch_optional(conn)
                .await
                .map_err(db)?;
        let Some((paused, by, at)) = row else {
            return Ok(None);
        };
        Ok(Some(PauseState {
            paused,
            by: by.as_deref().and_then(PausedBy::parse).filter(|_| paused),
            at: opt_from_ms(at)?.filter(|_| paused),
        }))
    }

    async fn leased_rows(
        conn: &mut DB::Connection,
        leases: &[(&str, &str)],
    ) -> Result<Vec<Delivery>, StoreError> {
        let sql = format!(
            concat!(
                "SELECT ",
                delivery_columns!(),
                " FROM deliveries WHERE id = $1 AND lease_id = $2 AND state = 'in_flight'{}"
            ),
            DB::FOR_UPDATE
        );
        let mut rows = Vec::new();
        for (id, lease) in leases {
            let row: Option<DeliveryRow<DB::Json>> =
                sqlx::query_as::<DB, _>(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(*id)
                    .bind(*lease)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(db)?;
            if let Some(row) = row {
                rows.push(row.into_delivery()?);
            }
        }
        Ok(rows)
    }

    async fn claim_events(
        conn: &mut DB::Connection,
        now: DateTime<Utc>,
        lease: &LeaseId,
        until: DateTime<Utc>,
        take: usize,
    ) -> Result<Vec<ClaimedOperatorEvent>, StoreError> {
        let sql = format!(
            concat!(
                "SELECT ",
                event_columns!(),
                " FROM operator_events WHERE state IN ('pending', 'in_flight') \
                 AND next_attempt_at <= $1 ORDER BY id {}$2{}"
            ),
            DB::LIMIT,
            DB::SKIP_LOCKED
        );
        let rows: Vec<EventRow<DB::Json>> = sqlx::query_as::<DB, _>(sqlx::AssertSqlSafe(sql))
            .bind(ms(now))
            .bind(limit(take))
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?;
        let mut claims = Vec::with_capacity(rows.len());
        for row in rows {
            let (mut event, budget_started_at) = row.into_event()?;
            sqlx::query::<DB>(
                "UPDATE operator_events SET state = 'in_flight', lease_id = $1, \
                 lease_until = $2, next_attempt_at = $2, updated_at = $3 WHERE id = $4",
            )
            .bind(lease.as_str())
            .bind(ms(until))
            .bind(ms(now))
            .bind(event.id.as_str())
            .execute(&mut *conn)
            .await
            .map_err(db)?;
            event.state = crate::operator_events::OperatorEventState::InFlight;
            event.next_attempt_at = Some(until);
            event.updated_at = now;
            claims.push(ClaimedOperatorEvent {
                event,
                lease: lease.clone(),
                budget_started_at,
            });
        }
        Ok(claims)
    }

    async fn record_event(
        conn: &mut DB::Connection,
        result: &OperatorEventResult,
    ) -> Result<bool, StoreError> {
        let at = ms(result.at);
        let (state, next, delivered) = match &result.decision {
            Decision::Delivered => ("delivered", None, Some(at)),
            Decision::RetryAt(t) => ("pending", Some(ms(*t)), None),
            Decision::GiveUp(_) => ("failed", None, None),
        };
        let done = sqlx::query::<DB>(
            "UPDATE operator_events SET state = $1, next_attempt_at = $2, delivered_at = $3, \
             last_status = $4, last_error = $5, attempts = attempts + 1, lease_id = NULL, \
             lease_until = NULL, updated_at = $6 \
             WHERE id = $7 AND lease_id = $8 AND state = 'in_flight'",
        )
        .bind(state)
        .bind(next)
        .bind(delivered)
        .bind(result.status.map(i32::from))
        .bind(result.error.as_deref())
        .bind(at)
        .bind(result.id.as_str())
        .bind(result.lease.as_str())
        .execute(conn)
        .await
        .map_err(db)?;
        Ok(DB::affected(&done) > 0)
    }

    async fn release_event(
        conn: &mut DB::Connection,
        id: &OperatorEventId,
        lease: &LeaseId,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query::<DB>(
            "UPDATE operator_events SET state = 'pending', next_attempt_at = $1, \
             lease_id = NULL, lease_until = NULL, updated_at = $1 \
             WHERE id = $2 AND lease_id = $3 AND state = 'in_flight'",
        )
        .bind(ms(now))
        .bind(id.as_str())
        .bind(lease.as_str())
        .execute(conn)
        .await
        .map_err(db)?;
        Ok(DB::affected(&done) > 0)
    }

    async fn list_events(
        conn: &mut DB::Connection,
        filter: &OperatorEventFilter,
        from: Option<&str>,
        take: usize,
    ) -> Result<Page<OperatorEvent>, StoreError> {
        let mut sql: QueryBuilder<DB> = QueryBuilder::new(concat!(
            "SELECT ",
            event_columns!(),
            " FROM operator_events WHERE 1 = 1"
        ));
        if let Some(kind) = filter.kind {
            sql.push(" AND type = ").push_bind(kind.as_str().to_owned());
        }
        if let Some(state) = filter.state {
            sql.push(" AND state = ")
                .push_bind(state.as_str().to_owned());
        }
        by_id(&mut sql, from, overfetch(take), "");
        let rows: Vec<EventRow<DB::Json>> =
            sql.build_query_as().fetch_all(conn).await.map_err(db)?;
        let items = rows
            .into_iter()
            .map(|r| r.into_event().map(|(e, _)| e))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(items, take, |e: &OperatorEvent| {
            e.id.to_string()
        }))
    }

    async fn get_event(
        conn: &mut DB::Connection,
        id: &OperatorEventId,
    ) -> Result<Option<OperatorEvent>, StoreError> {
        let row: Option<EventRow<DB::Json>> = sqlx::query_as(concat!(
            "SELECT ",
            event_columns!(),
            " FROM operator_events WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(conn)
        .await
        .map_err(db)?;
        row.map(|r| r.into_event().map(|(e, _)| e)).transpose()
    }

    async fn requeue_failed_event(
        conn: &mut DB::Connection,
        id: &OperatorEventId,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query::<DB>(
            "UPDATE operator_events SET state = 'pending', next_attempt_at = $1, attempts = 0, \
             budget_started_at = $1, lease_id = NULL, lease_until = NULL, updated_at = $1 \
             WHERE id = $2 AND state = 'failed'",
        )
        .bind(ms(now))
        .bind(id.as_str())
        .execute(conn)
        .await
        .map_err(db)?;
        Ok(DB::affected(&done) > 0)
    }

    async fn pending_events(conn: &mut DB::Connection) -> Result<u64, StoreError> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM operator_events WHERE state IN ('pending', 'in_flight')",
        )
        .fetch_one(conn)
        .await
        .map_err(db)?;
        Ok(n.unsigned_abs())
    }

    async fn prune_events(
        conn: &mut DB::Connection,
        before: DateTime<Utc>,
        take: usize,
    ) -> Result<u64, StoreError> {
        let sql = format!(
            "DELETE FROM operator_events WHERE id IN (SELECT id FROM operator_events \
             WHERE state IN ('delivered', 'failed') AND updated_at < $1 ORDER BY id {}$2)",
            DB::LIMIT
        );
        let done = sqlx::query::<DB>(sqlx::AssertSqlSafe(sql))
            .bind(ms(before))
            .bind(limit(take))
            .execute(conn)
            .await
            .map_err(db)?;
        Ok(DB::affected(&done))
    }
}
