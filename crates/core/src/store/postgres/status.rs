//! The delivery status views over PostgreSQL: filtered listing and one row with its history.

use super::rows::{AttemptRow, DeliveryRow, delivery_columns};
use super::{db, overfetch};
use crate::ids::DeliveryId;
use crate::outbox::{Delivery, DeliveryDetail, DeliveryFilter};
use crate::store::{Page, StoreError};
use sqlx::{PgPool, Postgres, QueryBuilder};

/// Rows matching `filter`, ordered by id, after cursor `from`. Only the set filters become
/// conditions, so the planner can use the index of the most selective one.
pub(super) async fn list(
    pool: &PgPool,
    filter: &DeliveryFilter,
    from: Option<&str>,
    take: usize,
) -> Result<Page<Delivery>, StoreError> {
    let mut sql: QueryBuilder<Postgres> = QueryBuilder::new(concat!(
        "SELECT ",
        delivery_columns!(),
        " FROM deliveries WHERE true"
    ));
    let conditions = [
        ("state", filter.state.map(|s| s.as_str().to_owned())),
        (
            "client_id",
            filter.client_id.as_ref().map(|c| c.to_string()),
        ),
        (
            "session_id",
            filter.session_id.as_ref().map(|s| s.to_string()),
        ),
        ("user_id", filter.user_id.as_ref().map(|u| u.to_string())),
    ];
    for (column, value) in conditions {
        if let Some(value) = value {
            sql.push(format_args!(" AND {column} = ")).push_bind(value);
        }
    }
    if let Some(cursor) = from {
        sql.push(" AND id > ").push_bind(cursor.to_owned());
    }
    sql.push(" ORDER BY id LIMIT ").push_bind(overfetch(take));
    let rows: Vec<DeliveryRow> = sql.build_query_as().fetch_all(pool).await.map_err(db)?;
    let items = rows
        .iter()
        .map(DeliveryRow::to_delivery)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_overfetch(items, take, |d: &Delivery| {
        d.id.to_string()
    }))
}

/// One row with its attempt history, oldest first, read in one transaction so both belong
/// to the same moment.
pub(super) async fn detail(
    pool: &PgPool,
    id: &DeliveryId,
) -> Result<Option<DeliveryDetail>, StoreError> {
    let mut tx = pool
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(db)?;
    let row: Option<DeliveryRow> = sqlx::query_as(concat!(
        "SELECT ",
        delivery_columns!(),
        " FROM deliveries WHERE id = $1"
    ))
    .bind(id.as_str())
    .fetch_optional(&mut *tx)
    .await
    .map_err(db)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let attempts: Vec<AttemptRow> = sqlx::query_as(
        "SELECT at, status, error, latency_ms, jti FROM delivery_attempts \
         WHERE delivery_id = $1 ORDER BY id",
    )
    .bind(id.as_str())
    .fetch_all(&mut *tx)
    .await
    .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(Some(DeliveryDetail {
        delivery: row.to_delivery()?,
        attempt_history: attempts
            .into_iter()
            .map(AttemptRow::into_record)
            .collect::<Result<_, _>>()?,
    }))
}
