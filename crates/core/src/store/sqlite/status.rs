//! The delivery status views over SQLite: filtered listing and one row with its history.

use super::db;
use super::rows::{AttemptRow, DeliveryRow, delivery_columns};
use crate::ids::DeliveryId;
use crate::outbox::{Delivery, DeliveryDetail, DeliveryFilter};
use crate::store::sql::overfetch as limit;
use crate::store::{Page, StoreError};
use sqlx::{QueryBuilder, Sqlite, SqlitePool};

/// Rows matching `filter`, ordered by id, after cursor `from`. Only the set filters become
/// conditions, so SQLite can use the index of the most selective one.
pub(super) async fn list(
    pool: &SqlitePool,
    filter: &DeliveryFilter,
    from: Option<&str>,
    take: usize,
) -> Result<Page<Delivery>, StoreError> {
    let mut sql: QueryBuilder<Sqlite> = QueryBuilder::new(concat!(
        "SELECT ",
        delivery_columns!(),
        " FROM deliveries WHERE 1 = 1"
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
    sql.push(" ORDER BY id LIMIT +").push_bind(limit(take));
    let rows: Vec<DeliveryRow> = sql.build_query_as().fetch_all(pool).await.map_err(db)?;
    let items = rows
        .into_iter()
        .map(DeliveryRow::into_delivery)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_overfetch(items, take, |d: &Delivery| {
        d.id.to_string()
    }))
}

/// One row with its attempt history, oldest first.
pub(super) async fn detail(
    pool: &SqlitePool,
    id: &DeliveryId,
) -> Result<Option<DeliveryDetail>, StoreError> {
    let mut conn = pool.acquire().await.map_err(db)?;
    let row: Option<DeliveryRow> = sqlx::query_as(concat!(
        "SELECT ",
        delivery_columns!(),
        " FROM deliveries WHERE id = ?"
    ))
    .bind(id.as_str())
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let attempts: Vec<AttemptRow> = sqlx::query_as(
        "SELECT at, status, error, latency_ms, jti FROM delivery_attempts \
         WHERE delivery_id = ? ORDER BY id",
    )
    .bind(id.as_str())
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    Ok(Some(DeliveryDetail {
        delivery: row.into_delivery()?,
        attempt_history: attempts
            .into_iter()
            .map(AttemptRow::into_record)
            .collect::<Result<_, _>>()?,
    }))
}
