//! `logoutd openapi`: prints the HTTP API's OpenAPI 3.1 document, the text of
//! `docs/openapi.json`.

use std::process::ExitCode;

/// Prints the document as pretty JSON.
pub fn run() -> anyhow::Result<ExitCode> {
    let text = logoutd_core::openapi_json(&logoutd_core::openapi_document())?;
    logoutd_core::outln!("{text}");
    Ok(ExitCode::SUCCESS)
}
