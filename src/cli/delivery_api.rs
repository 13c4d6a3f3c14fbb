//! What `logoutd deliveries` and `logoutd ssf-deliveries` share: a delivery listing of the API
//! (logout deliveries or SET deliveries) to page through and print as a table, one row to
//! show field by field, and re-drives of one row or of every failed row matching filters.

use super::http::{ApiClient, cell, print_json, spinner, table};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

/// How long the bulk re-drive may take to answer: the server pages through every match
/// before it does.
const BULK_TIMEOUT: Duration = Duration::from_secs(600);

/// The key of a delivery listing's page that holds its rows.
const ROWS_KEY: &str = "deliveries";

/// One delivery listing of `/api/v2`, and how its rows are named and printed.
pub(super) struct DeliveryApi {
    /// The listing's path segment under `/api/v2` (e.g. `logout-deliveries`).
    pub path: &'static str,
    /// One row, as messages name it (e.g. `delivery`).
    pub noun: &'static str,
    /// Failed rows, as the bulk re-drive's message names them (e.g. `failed deliveries`).
    pub failed: &'static str,
    /// The columns of `list`: header and field.
    pub columns: &'static [(&'static str, &'static str)],
    /// The fields of `show`, in order.
    pub fields: &'static [&'static str],
}

impl DeliveryApi {
    /// Every row matching `query`, oldest first, following every page and stopping after
    /// `limit` rows; printed as JSON or as a table of the columns.
    pub async fn list(
        &self,
        client: &ApiClient,
        query: Vec<(&str, String)>,
        limit: Option<usize>,
        json: bool,
    ) -> anyhow::Result<()> {
        let items = client.walk(&[self.path], query, ROWS_KEY, limit).await?;
        if json {
            return print_json(&Value::Array(items));
        }
        let headers: Vec<&str> = self.columns.iter().map(|(h, _)| *h).collect();
        let rows: Vec<Vec<String>> = items
            .iter()
            .map(|d| self.columns.iter().map(|(_, f)| cell(&d[*f])).collect())
            .collect();
        logoutd_core::outln!("{}", table(&headers, &rows));
        Ok(())
    }

    /// One row, printed as JSON or as a table of its fields. Returns the row when it printed
    /// the table, for the caller to print more of it below.
    pub async fn show(
        &self,
        client: &ApiClient,
        id: &str,
        json: bool,
    ) -> anyhow::Result<Option<Value>> {
        let url = client.url(&[self.path, id], &[])?;
        let detail = client.send(Method::GET, url, None).await?;
        if json {
            print_json(&detail)?;
            return Ok(None);
        }
        let rows: Vec<Vec<String>> = self
            .fields
            .iter()
            .map(|f| vec![(*f).to_owned(), cell(&detail[*f])])
            .collect();
        logoutd_core::outln!("{}", table(&["FIELD", "VALUE"], &rows));
        Ok(Some(detail))
    }

    /// Re-drives the row `id` and says so.
    pub async fn retry_one(&self, client: &ApiClient, id: &str, json: bool) -> anyhow::Result<()> {
        let url = client.url(&[self.path, id, "retry"], &[])?;
        let reply = client.send(Method::POST, url, None).await?;
        if json {
            return print_json(&reply);
        }
        logoutd_core::outln!("{} {id} re-driven", self.noun);
        Ok(())
    }

    /// Re-drives every failed row matching the `filters` that were given, with one request.
    /// Every dead letter at once is one request away through the API (`{}`); on the command
    /// line it takes a filter, so that a forgotten id does not re-drive everything: with none
    /// given, it fails with `missing`.
    pub async fn retry_all(
        &self,
        client: ApiClient,
        filters: &[(&str, &Option<String>)],
        key: Option<&str>,
        missing: &str,
        json: bool,
    ) -> anyhow::Result<()> {
        let body = given(filters);
        if body.as_object().is_some_and(serde_json::Map::is_empty) {
            anyhow::bail!("{missing}");
        }
        self.retry_in_bulk(client, body, key, json).await
    }

    /// Sends a bulk re-drive of `body`, with the idempotency key if given, and prints how many
    /// rows it re-drove and whether that was a replay. The server pages through every match
    /// before it answers; a spinner with the elapsed time runs while it waits.
    async fn retry_in_bulk(
        &self,
        client: ApiClient,
        body: Value,
        key: Option<&str>,
        json: bool,
    ) -> anyhow::Result<()> {
        let client = client.with_timeout(BULK_TIMEOUT);
        let url = client.url(&[self.path, "retry"], &[])?;
        let headers: Vec<(&str, &str)> = key
            .map(|key| ("Idempotency-Key", key))
            .into_iter()
            .collect();
        let rows = self.failed;
        let bar = spinner(&format!("re-driving {rows}"));
        let reply = client
            .send_with(Method::POST, url, Some(body), &headers)
            .await;
        bar.finish_and_clear();
        let (reply, response_headers) = reply?;
        let redriven = reply["redriven"].as_u64().unwrap_or_default();
        let replayed = response_headers
            .get("idempotent-replayed")
            .is_some_and(|v| v.as_bytes() == b"true");
        if json {
            return print_json(&json!({ "redriven": redriven, "replayed": replayed }));
        }
        if replayed {
            logoutd_core::outln!(
                "re-drove {redriven} {rows} (the answer to an earlier request with this key; \
                 nothing more was re-driven)"
            );
        } else {
            logoutd_core::outln!("re-drove {redriven} {rows}");
        }
        Ok(())
    }
}

/// The query parameters of the `filters` that were given.
pub(super) fn query(filters: &[(&'static str, &Option<String>)]) -> Vec<(&'static str, String)> {
    filters
        .iter()
        .filter_map(|(k, v)| Some((*k, (*v).clone()?)))
        .collect()
}

/// A JSON object of the `fields` that were given, as strings.
fn given(fields: &[(&str, &Option<String>)]) -> Value {
    Value::Object(
        fields
            .iter()
            .filter_map(|(k, v)| Some(((*k).to_owned(), Value::String((*v).clone()?))))
            .collect(),
    )
}
