//! Text an RP sent back (`error`, `error_description`), made safe to store, log and print.
//!
//! Everything an attempt records comes through here once, when the sender reads the RP's
//! answer, so the attempt history, the JSON log and `last_error` all hold the same cleaned
//! text:
//!
//! - control characters (CR, LF, ESC and the rest of Unicode's `Cc`), line and paragraph
//!   separators, and the bidirectional and zero-width format characters become spaces, so a
//!   value can neither add rows to a table or lines to a log nor restyle a terminal;
//! - anything shaped like a JWS or a JWE, or a segment of one, is replaced by `[redacted]`:
//!   a logout token's payload carries `session_metadata`, which must not reach a log;
//! - the result is cut at [`MAX_RP_TEXT_CHARS`] characters.

use crate::token::LogoutToken;

/// Longest RP-supplied text kept, in characters.
pub(super) const MAX_RP_TEXT_CHARS: usize = 200;

/// What replaces token-shaped text.
const REDACTED: &str = "[redacted]";
/// Shortest piece of a word that is redacted for appearing in the token that was sent.
const MIN_ECHO_CHARS: usize = 12;
/// Shortest base64url piece that counts as a segment in a dotted word with no `eyJ`.
const MIN_SEGMENT_CHARS: usize = 16;

/// Cleans RP text: control and format characters become spaces, token-shaped words and
/// any echo of `sent_token` are redacted, and the result is cut at [`MAX_RP_TEXT_CHARS`].
pub(crate) fn clean_rp_text(text: &str, sent_token: Option<&LogoutToken>) -> String {
    let cleaned = strip_controls(text);
    let redacted = redact_tokens(&cleaned, sent_token.map(LogoutToken::expose));
    let mut out: String = redacted.chars().take(MAX_RP_TEXT_CHARS).collect();
    if redacted.chars().nth(MAX_RP_TEXT_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// Replaces each control or invisible format character with a space.
pub(crate) fn strip_controls(text: &str) -> String {
    text.chars()
        .map(|c| if is_unsafe_char(c) { ' ' } else { c })
        .collect()
}

/// Writes each control or invisible format character as a visible escape (`\n`, `\r`,
/// `\u{1b}`, ...), for showing stored text on a terminal as it is without obeying it.
pub fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_unsafe_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Characters that move the cursor, end a line, restyle a terminal or hide text.
fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2069}'
                | '\u{FEFF}'
        )
}

/// A character of a base64url segment, of standard base64 (`+`, `/`, `=`), or the dot that
/// joins JOSE segments.
fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+' | '/' | '=' | '.')
}

/// Replaces every token-shaped word with [`REDACTED`]; a word is a maximal run of
/// [`is_word_char`] characters.
fn redact_tokens(text: &str, sent_token: Option<&str>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(is_word_char) {
        out.push_str(&rest[..start]);
        let word_and_after = &rest[start..];
        let end = word_and_after
            .find(|c: char| !is_word_char(c))
            .unwrap_or(word_and_after.len());
        let word = &word_and_after[..end];
        if is_token_shaped(word, sent_token) {
            out.push_str(REDACTED);
        } else {
            out.push_str(word);
        }
        rest = &word_and_after[end..];
    }
    out.push_str(rest);
    out
}

/// True when `word` is, or holds, part of a JWS or JWE:
///
/// - a base64url piece starts with `eyJ`, the encoding of `{"` that begins every JOSE header
///   and every JWT claims set (so a lone header or payload segment is caught);
/// - it is dotted and has two or more pieces of [`MIN_SEGMENT_CHARS`] or more (a compact
///   serialization whose header does not start with `eyJ`, such as `header.payload`);
/// - a piece of [`MIN_ECHO_CHARS`] or more appears in the token that was sent (an echo of
///   its signature, or of part of a segment).
///
/// Pieces are the runs between `.`, `+`, `/` and `=`.
fn is_token_shaped(word: &str, sent_token: Option<&str>) -> bool {
    let pieces = || {
        word.split(['.', '+', '/', '='])
            .filter(|piece| !piece.is_empty())
    };
    if pieces().any(|piece| piece.starts_with("eyJ")) {
        return true;
    }
    let long = pieces()
        .filter(|piece| piece.len() >= MIN_SEGMENT_CHARS)
        .count();
    if word.contains('.') && long >= 2 {
        return true;
    }
    let sent = sent_token.filter(|token| !token.is_empty());
    sent.is_some_and(|token| {
        pieces().any(|piece| piece.len() >= MIN_ECHO_CHARS && token.contains(piece))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "eyJhbGciOiJFUzI1NiIsInR5cCI6ImxvZ291dCtqd3QifQ";
    const PAYLOAD: &str = "eyJzaWQiOiJzIiwic2Vzc2lvbl9tZXRhZGF0YSI6eyJ0ZW5hbnQiOiJhY21lIn19";
    const SIGNATURE: &str = "c2lnbmF0dXJlLWJ5dGVzLW9mLXRoZS10b2tlbi1zaWduZWQ";

    fn token() -> LogoutToken {
        LogoutToken::new(format!("{HEADER}.{PAYLOAD}.{SIGNATURE}"))
    }

    #[test]
    fn every_jws_or_jwe_shape_and_segment_is_redacted() {
        let token = token();
        let sent = token.expose();
        let jwe = format!(
            "{HEADER}..aXYtaXYtaXYtaXYtaXY.Y2lwaGVydGV4dC1jaXBoZXJ0ZXh0.dGFnLXRhZy10YWctdGFn"
        );
        let cases = [
            format!("bad token {sent}"),
            format!("bad token {HEADER}.{PAYLOAD}"),
            format!("claims were {PAYLOAD}"),
            format!("header={HEADER};"),
            format!("sig \"{SIGNATURE}\""),
            format!("bad: {jwe}"),
            format!("part {}", &PAYLOAD[10..40]),
            "abcdefghijklmnopqrst.ABCDEFGHIJKLMNOPQRST".to_owned(),
        ];
        for text in cases {
            let clean = clean_rp_text(&text, Some(&token));
            assert!(clean.contains(REDACTED), "{text} -> {clean}");
            for secret in [HEADER, PAYLOAD, SIGNATURE, &PAYLOAD[10..40]] {
                assert!(!clean.contains(secret), "{text} -> {clean}");
            }
        }
    }

    #[test]
    fn ordinary_words_hosts_and_kids_stay() {
        let text = "unknown kid Qx8w0dFQbWk9xY2JkRmZkRmZkRmZkRmZkRmZkRmZkRm at https://rp.example.com/bc v1.2.3";
        assert_eq!(clean_rp_text(text, Some(&token())), text);
        assert_eq!(clean_rp_text("invalid_request", None), "invalid_request");
    }

    #[test]
    fn control_and_invisible_characters_become_spaces() {
        let text = "bad\r\nFAKE ROW\x1b[31m red\u{7}\u{85}\u{2028}\u{202E}x\u{200B}y";
        let clean = clean_rp_text(text, None);
        assert!(!clean.chars().any(is_unsafe_char), "{clean:?}");
        assert_eq!(clean, "bad  FAKE ROW [31m red    x y");
    }

    #[test]
    fn escapes_make_controls_visible() {
        assert_eq!(
            escape_controls("a\r\nb\x1b[0m\u{202E}"),
            "a\\r\\nb\\u{1b}[0m\\u{202e}"
        );
        assert_eq!(escape_controls("plain ü"), "plain ü");
    }

    #[test]
    fn long_text_is_cut_and_cleaning_is_idempotent() {
        let long = "word ".repeat(100);
        let once = clean_rp_text(&long, None);
        assert_eq!(once.chars().count(), MAX_RP_TEXT_CHARS + 1);
        let redacted = clean_rp_text(&format!("x {} y", token().expose()), Some(&token()));
        assert_eq!(clean_rp_text(&redacted, None), redacted);
    }
}
