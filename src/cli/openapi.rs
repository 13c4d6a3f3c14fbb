//! `logoutd openapi`: prints the HTTP API's OpenAPI 3.1 document, the text of
//! `docs/openapi.json`.

use std::process::ExitCode;

/// Prints the document as pretty JSON.
pub fn run() -> anyhow::Result<ExitCode> {
    let text = crate::api::openapi::to_json(&crate::api::openapi::document())?;
    crate::outln!("{text}");
    Ok(ExitCode::SUCCESS)
}
