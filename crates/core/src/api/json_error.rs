//! serde's JSON errors rewritten for API callers: where in the body, and what was expected in
//! JSON's words, never a Rust type name.
//!
//! serde describes what a derived type expected by its Rust name ("expected struct
//! ValueBody"), which means nothing to a caller and leaks internals. Such phrases become JSON
//! words ("a JSON object"), and at the top of the body the object's field names are listed.

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use std::fmt::Write as _;

/// Longest message returned, in characters; serde echoes parts of the caller's input.
const MAX_CHARS: usize = 300;

/// The caller-facing text of a data error (the JSON was well formed but did not fit `T`):
/// the path of the offending value when it is not the whole body, then serde's message with
/// Rust type names replaced.
pub(super) fn describe_data<T: DeserializeOwned>(path: &str, err: &serde_json::Error) -> String {
    let mut message = plain(err);
    let whole_body = path == "." || path.is_empty();
    if whole_body && let Some(fields) = field_names::<T>() {
        message = message.replace(OBJECT, &object_with(fields));
    }
    let text = if whole_body || message.contains(&format!("`{path}`")) {
        message
    } else {
        format!("at `{path}`: {message}")
    };
    shorten(text)
}

/// The caller-facing text of a syntax error: serde's message with its position.
pub(super) fn describe_syntax(err: &serde_json::Error) -> String {
    shorten(err.to_string())
}

/// What replaces "struct Name".
const OBJECT: &str = "a JSON object";

/// serde's message without the position suffix, with every Rust type name replaced.
fn plain(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let suffix = format!(" at line {} column {}", err.line(), err.column());
    let text = text.strip_suffix(&suffix).unwrap_or(&text);
    without_rust_names(text)
}

/// Replaces the phrases serde builds from Rust names ("struct X", "enum X", "tuple struct
/// X", "unit variant X::Y", primitive names such as `usize`) with JSON words.
fn without_rust_names(text: &str) -> String {
    const KINDS: [(&str, &str); 9] = [
        ("tuple struct ", "a JSON array"),
        ("unit struct ", "null"),
        ("newtype struct ", "a value"),
        ("struct variant ", "a JSON object"),
        ("tuple variant ", "a JSON array"),
        ("newtype variant ", "a value"),
        ("unit variant ", "a string naming an allowed value"),
        ("struct ", OBJECT),
        ("enum ", "one of the allowed values"),
    ];
    const WORDS: [(&str, &str); 17] = [
        ("string or map", "a string naming an allowed value"),
        ("a map", "a JSON object"),
        ("a sequence", "a JSON array"),
        ("usize", "a non-negative integer"),
        ("u64", "a non-negative integer"),
        ("u32", "a non-negative integer"),
        ("u16", "a non-negative integer"),
        ("u8", "a non-negative integer"),
        ("isize", "an integer"),
        ("i64", "an integer"),
        ("i32", "an integer"),
        ("i16", "an integer"),
        ("i8", "an integer"),
        ("f64", "a number"),
        ("f32", "a number"),
        ("a borrowed string", "a string"),
        ("char", "a single character"),
    ];
    let text = text
        .replace("unknown variant ", "unknown value ")
        .replace("invalid type: map,", "invalid type: object,")
        .replace("invalid type: sequence,", "invalid type: array,");
    let Some((head, expected)) = text.split_once("expected ") else {
        return text;
    };
    // serde also reads a struct from an array of its fields in order; an array that does not
    // fit is reported by length, which only makes sense to someone who knows that.
    if head.starts_with("invalid length ") && expected.starts_with("struct ") {
        return format!("invalid type: array, expected {OBJECT}");
    }
    let mut out = format!("{head}expected ");
    for (kind, word) in KINDS {
        if let Some(name) = expected.strip_prefix(kind) {
            let rest =
                name.trim_start_matches(|c: char| c.is_alphanumeric() || c == '_' || c == ':');
            let _ = write!(out, "{word}{rest}");
            return out;
        }
    }
    for (rust, word) in WORDS {
        if let Some(rest) = expected.strip_prefix(rust)
            && !rest.starts_with(|c: char| c.is_alphanumeric())
        {
            let _ = write!(out, "{word}{rest}");
            return out;
        }
    }
    out.push_str(expected);
    out
}

/// "a JSON object with the field(s) `a`, `b`".
fn object_with(fields: &[&str]) -> String {
    let names: Vec<String> = fields.iter().map(|f| format!("`{f}`")).collect();
    match names.len() {
        0 => OBJECT.to_owned(),
        1 => format!("{OBJECT} with the field {}", names.join("")),
        _ => format!("{OBJECT} with the fields {}", names.join(", ")),
    }
}

/// The field names of `T` when it deserializes as a struct (every derived struct does).
fn field_names<T: DeserializeOwned>() -> Option<&'static [&'static str]> {
    let mut probe = FieldProbe(None);
    let _ = T::deserialize(&mut probe);
    probe.0
}

/// A deserializer that records the field list a struct asks for, then stops.
struct FieldProbe(Option<&'static [&'static str]>);

impl<'de> Deserializer<'de> for &mut FieldProbe {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        self.0 = Some(fields);
        Err(de::Error::custom("probed"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// Cuts `text` to [`MAX_CHARS`].
fn shorten(text: String) -> String {
    if text.chars().count() > MAX_CHARS {
        let cut: String = text.chars().take(MAX_CHARS).collect();
        format!("{cut}...")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct ValueBody {
        value: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        inner: Vec<ValueBody>,
        take: Option<usize>,
    }

    fn data<T: DeserializeOwned + std::fmt::Debug>(json: &str) -> String {
        let mut de = serde_json::Deserializer::from_str(json);
        let err = serde_path_to_error::deserialize::<_, T>(&mut de).unwrap_err();
        let path = err.path().to_string();
        describe_data::<T>(&path, err.inner())
    }

    #[test]
    fn the_body_s_wrong_type_names_its_fields_not_the_struct() {
        let text = data::<ValueBody>("5");
        assert_eq!(
            text,
            "invalid type: integer `5`, expected a JSON object with the field `value`"
        );
        assert_eq!(
            data::<Outer>("[]"),
            "invalid type: array, expected a JSON object with the fields `inner`, `take`"
        );
    }

    #[test]
    fn nested_errors_name_their_path_in_json_words() {
        assert_eq!(
            data::<Outer>(r#"{"inner": [{"value": 1}]}"#),
            "at `inner[0].value`: invalid type: integer `1`, expected a string"
        );
        assert_eq!(
            data::<Outer>(r#"{"inner": [7]}"#),
            "at `inner[0]`: invalid type: integer `7`, expected a JSON object"
        );
        assert_eq!(
            data::<Outer>(r#"{"inner": [], "take": "x"}"#),
            "at `take`: invalid type: string \"x\", expected a non-negative integer"
        );
        assert_eq!(
            data::<Outer>(r#"{"inner": {}}"#),
            "at `inner`: invalid type: object, expected a JSON array"
        );
    }

    #[test]
    fn missing_and_unknown_fields_are_named() {
        assert_eq!(data::<ValueBody>("{}"), "missing field `value`");
        let unknown = data::<ValueBody>(r#"{"value": "a", "extra": 1}"#);
        assert!(
            unknown.contains("unknown field `extra`, expected `value`"),
            "{unknown}"
        );
    }
}
