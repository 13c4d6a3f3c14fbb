//! Error formatting shared by the API and the background workers (dispatcher, retention,
//! expiry, JWKS fetching), so that none of them reaches into the API for it.

use std::error::Error;
use std::fmt;

/// An error followed by its sources, joined by `": "`, for one log field or message.
///
/// Most errors here wrap a cause (a database driver's, an HTTP client's) whose text is what
/// an operator needs, and `Display` of the outer error alone drops it. `Chain` writes the
/// whole chain straight into the formatter, so logging it allocates nothing.
#[derive(Clone, Copy)]
pub(crate) struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(inner) = source {
            write!(f, ": {inner}")?;
            source = inner.source();
        }
        Ok(())
    }
}

impl fmt::Debug for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The chain of `err`, for a log field: `tracing::error!(error = %error::chain(&err), ...)`.
pub(crate) fn chain<'a>(err: &'a (dyn Error + 'static)) -> Chain<'a> {
    Chain(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("middle")]
    struct Middle(#[source] std::io::Error);

    #[test]
    fn every_source_follows_the_error() {
        let err = Outer(Middle(std::io::Error::other("inner")));
        assert_eq!(chain(&err).to_string(), "outer: middle: inner");
        assert_eq!(format!("{:?}", chain(&err)), "outer: middle: inner");
    }

    #[test]
    fn an_error_without_a_source_is_its_own_text() {
        let err = std::io::Error::other("alone");
        assert_eq!(chain(&err).to_string(), "alone");
    }
}
