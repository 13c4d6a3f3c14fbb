//! Strict JSON parsing for JOSE headers and claim sets: duplicate member names are refused
//! at any depth (RFC 7515 §5.2 step 4 and RFC 7519 §7.2 step 9 allow refusing them).

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

/// The start of the error message for a repeated member name.
pub(super) const DUPLICATE_PREFIX: &str = "duplicate member ";

/// Why a part could not be parsed.
#[derive(Debug)]
pub(super) enum JsonProblem {
    /// A member name occurs twice in one object; holds the name.
    Duplicate(String),
    /// Not JSON, or not an object.
    Invalid(String),
}

/// Parses `bytes` as one JSON object, refusing duplicate member names.
pub(super) fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, JsonProblem> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Strict.deserialize(&mut de).map_err(classify)?;
    de.end().map_err(classify)?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(JsonProblem::Invalid("not a JSON object".into())),
    }
}

fn classify(err: serde_json::Error) -> JsonProblem {
    let text = err.to_string();
    match text.strip_prefix(DUPLICATE_PREFIX) {
        Some(rest) => {
            let name = rest.split(" at line").next().unwrap_or(rest);
            JsonProblem::Duplicate(name.to_owned())
        }
        None => JsonProblem::Invalid(format!("invalid JSON ({})", err.classify_name())),
    }
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "io",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected data",
            serde_json::error::Category::Eof => "truncated",
        }
    }
}

struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Strict)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                let shown: String = key.chars().take(40).collect();
                return Err(A::Error::custom(format!("{DUPLICATE_PREFIX}{shown:?}")));
            }
            let value = map.next_value_seed(Strict)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_found_at_any_depth() {
        assert!(matches!(
            parse_object(br#"{"a":1,"a":2}"#),
            Err(JsonProblem::Duplicate(name)) if name == "\"a\""
        ));
        assert!(matches!(
            parse_object(br#"{"x":{"b":1,"b":1}}"#),
            Err(JsonProblem::Duplicate(_))
        ));
        assert!(matches!(parse_object(b"[1]"), Err(JsonProblem::Invalid(_))));
        assert!(matches!(
            parse_object(b"{} x"),
            Err(JsonProblem::Invalid(_))
        ));
        assert_eq!(
            parse_object(br#"{"a":[1,2.5,null,true]}"#).unwrap().len(),
            1
        );
    }
}
