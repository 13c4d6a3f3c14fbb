//! The HTTP client behind the operator commands (`deliveries`, `ssf-deliveries`, `sessions`):
//! the API URL and token, request helpers with clear errors, aligned tables, the progress bar
//! and the spinner.

use anyhow::{Context as _, anyhow, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::io::IsTerminal as _;
use std::time::Duration;
use url::Url;

/// Default API base URL of the operator commands.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";
/// Page size used when walking listings.
pub const PAGE: usize = 100;
/// Timeout of one API request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the API is, and how to print.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// Base URL of the logoutd API.
    #[arg(long, env = "LOGOUTD_URL", default_value = DEFAULT_URL, global = true)]
    pub url: Url,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The management API over HTTP, authenticated with `LOGOUTD_API_TOKEN`.
pub struct ApiClient {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
    timeout: Duration,
}

impl ApiClient {
    /// A client for `base`, with the token from `LOGOUTD_API_TOKEN` if set.
    pub fn new(base: &Url) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("cannot build the HTTP client")?;
        let token = std::env::var("LOGOUTD_API_TOKEN")
            .ok()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty());
        Ok(Self {
            http,
            base: base.clone(),
            token,
            timeout: REQUEST_TIMEOUT,
        })
    }

    /// The same client, waiting up to `timeout` for each answer instead of 30 s.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// `base` + `/api/v2/` + the segments (each percent-encoded), with a query.
    pub fn url(&self, segments: &[&str], query: &[(&str, String)]) -> anyhow::Result<Url> {
        let mut url = self.base.clone();
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|()| anyhow!("{} cannot be an API base URL", self.base))?;
            path.pop_if_empty().extend(["api", "v2"]).extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        Ok(url)
    }

    /// Sends a request and returns the JSON answer; non-2xx statuses become errors that say
    /// what went wrong.
    pub async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        self.send_with(method, url, body, &[])
            .await
            .map(|(value, _)| value)
    }

    /// [`ApiClient::send`] with extra request headers; also returns the response headers.
    pub async fn send_with(
        &self,
        method: Method,
        url: Url,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<(Value, reqwest::header::HeaderMap)> {
        let mut req = self.http.request(method, url.clone()).timeout(self.timeout);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req
            .send()
            .await
            .map_err(|e| transport_error(&self.base, &e))?;
        let status = res.status();
        let response_headers = res.headers().clone();
        let text = res.text().await.unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok((value, response_headers));
        }
        Err(status_error(status, &value, url.path()))
    }

    /// Every item under `key` of a paged listing, following `next`.
    pub async fn walk(
        &self,
        segments: &[&str],
        mut query: Vec<(&str, String)>,
        key: &str,
        limit: Option<usize>,
    ) -> anyhow::Result<Vec<Value>> {
        query.push(("take", PAGE.to_string()));
        let mut items = Vec::new();
        let mut from: Option<String> = None;
        loop {
            let mut q = query.clone();
            if let Some(cursor) = &from {
                q.push(("from", cursor.clone()));
            }
            let page = self
                .send(Method::GET, self.url(segments, &q)?, None)
                .await?;
            if let Some(list) = page[key].as_array() {
                items.extend(list.iter().cloned());
            }
            from = page["next"].as_str().map(str::to_owned);
            if from.is_none() || limit.is_some_and(|n| items.len() >= n) {
                break;
            }
        }
        if let Some(n) = limit {
            items.truncate(n);
        }
        Ok(items)
    }
}

/// A connection failure, said plainly.
fn transport_error(base: &Url, err: &reqwest::Error) -> anyhow::Error {
    if err.is_connect() {
        anyhow!(
            "cannot connect to {base}: connection refused or unreachable (is `logoutd serve` running? set --url or LOGOUTD_URL)"
        )
    } else if err.is_timeout() {
        anyhow!("{base} did not answer in time")
    } else {
        anyhow!("request to {base} failed: {err}")
    }
}

/// An API refusal, with the server's message.
fn status_error(status: StatusCode, body: &Value, path: &str) -> anyhow::Error {
    let message = body["message"].as_str().unwrap_or("no details");
    match status {
        StatusCode::UNAUTHORIZED => {
            anyhow!("401 Unauthorized: the API token was refused; set LOGOUTD_API_TOKEN")
        }
        StatusCode::NOT_FOUND => anyhow!("404 Not Found: {path}: {message}"),
        _ => anyhow!("{status}: {message}"),
    }
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json(value: &Value) -> anyhow::Result<()> {
    logoutd_core::outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Rows as columns aligned under `headers`, two spaces apart.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// A JSON field as table text: strings bare, null as `-`. Control characters are shown as
/// escapes, so a stored value can neither add rows to the table nor drive the terminal.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => logoutd_core::escape_controls(s),
        other => other.to_string(),
    }
}

/// A progress bar of `len` steps drawn on stderr, hidden when stderr is not a terminal.
pub fn progress(len: usize, what: &str) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(len as u64), target);
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({eta})") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}

/// A spinner with the elapsed time, drawn on stderr while one long request runs, hidden when
/// stderr is not a terminal.
pub fn spinner(what: &str) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(None, target);
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
        bar.set_style(style);
    }
    bar.set_message(what.to_owned());
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// Fails with a summary when any step of a bulk operation failed.
pub fn bulk_outcome(done: usize, failures: &[String], what: &str) -> anyhow::Result<()> {
    for failure in failures {
        eprintln!("error: {failure}");
    }
    if !failures.is_empty() {
        bail!("{what}: {done} succeeded, {} failed", failures.len());
    }
    Ok(())
}
