//! Refuses a JSON body that repeats a key within one object. serde keeps the last of two
//! equal keys, a derived struct refuses them, and a `serde_json::Map` silently keeps one: the
//! same body would mean different things on different routes. Refusing duplicates everywhere
//! makes every route read a body the one way.

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

/// The first key repeated within one object of `bytes`, at any depth. Malformed JSON yields
/// `None`: the real parser reports it with its own message.
pub(super) fn first_duplicate_key(bytes: &[u8]) -> Option<String> {
    let found = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let _ = Walk { found: &found }.deserialize(&mut de);
    found.into_inner()
}

/// Walks one JSON value, recording the first repeated key it meets.
#[derive(Clone, Copy)]
struct Walk<'a> {
    found: &'a RefCell<Option<String>>,
}

/// The error that stops the walk at the first duplicate; its text is never shown.
const STOP: &str = "duplicate key";

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if seen.contains(&key) {
                *self.found.borrow_mut() = Some(key);
                return Err(serde::de::Error::custom(STOP));
            }
            map.next_value_seed(self)?;
            seen.insert(key);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::first_duplicate_key;

    #[test]
    fn finds_a_repeated_key_at_any_depth() {
        assert_eq!(first_duplicate_key(br#"{"a":1,"a":2}"#), Some("a".into()));
        assert_eq!(
            first_duplicate_key(br#"{"m":{"k":"1","k":"2"}}"#),
            Some("k".into())
        );
        assert_eq!(
            first_duplicate_key(br#"[{"x":[{"y":1,"y":1}]}]"#),
            Some("y".into())
        );
        assert_eq!(
            first_duplicate_key(br#"{"\u0061":1,"a":2}"#),
            Some("a".into()),
            "escaped spellings of one key are the same key"
        );
    }

    #[test]
    fn distinct_keys_and_malformed_json_pass() {
        assert_eq!(
            first_duplicate_key(br#"{"a":{"a":1},"b":[{"a":1},{"a":2}]}"#),
            None
        );
        assert_eq!(first_duplicate_key(b"{\"a\":"), None);
        assert_eq!(first_duplicate_key(b""), None);
    }
}
