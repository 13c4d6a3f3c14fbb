//! Session metadata and its rules, as Auth0's Session Metadata defines them.
//!
//! At most [`MAX_PAIRS`] pairs; keys match `[A-Za-z0-9_-]{1,255}`; values are strings of at
//! most [`MAX_VALUE_CHARS`] Unicode scalar values; the object is flat. Values are never
//! printed: `Debug` shows keys only.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Most key/value pairs a session may carry.
pub const MAX_PAIRS: usize = 25;
/// Longest key, in characters.
pub(crate) const MAX_KEY_CHARS: usize = 255;
/// Longest value, in Unicode scalar values.
pub const MAX_VALUE_CHARS: usize = 255;

/// A metadata rule that was broken. Messages name keys (shortened) but never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// The metadata is not a JSON object (or `null`).
    #[error("session_metadata must be an object of string values")]
    NotAnObject,
    /// More than [`MAX_PAIRS`] pairs.
    #[error("session_metadata has {count} pairs; at most {MAX_PAIRS} are allowed")]
    TooManyPairs {
        /// How many pairs the result would have had.
        count: usize,
    },
    /// A key is empty, too long, or uses characters outside `[A-Za-z0-9_-]`.
    #[error(
        "session_metadata key {key:?} is invalid: keys are 1-255 characters of A-Z, a-z, 0-9, '_' and '-'"
    )]
    InvalidKey {
        /// The key, shortened to 40 characters.
        key: String,
    },
    /// A value is not a string (a number, boolean, object, array or null).
    #[error("session_metadata value for key {key:?} must be a string")]
    NotAString {
        /// The key, shortened.
        key: String,
    },
    /// A value holds U+0000, which PostgreSQL's text cannot store and no RP expects; refused on
    /// every backend alike.
    #[error("session_metadata value for key {key:?} must not contain the NUL character (U+0000)")]
    NulInValue {
        /// The key, shortened.
        key: String,
    },
    /// A value is longer than [`MAX_VALUE_CHARS`].
    #[error("session_metadata value for key {key:?} is longer than {MAX_VALUE_CHARS} characters")]
    ValueTooLong {
        /// The key, shortened.
        key: String,
    },
}

/// A validated, flat map of string metadata.
///
/// The map is shared: a clone (one per planned row, claim and token) only counts a reference.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SessionMetadata(Arc<BTreeMap<String, String>>);

/// One change to a session's metadata.
#[derive(Clone, PartialEq, Eq)]
pub enum MetadataOp {
    /// Replace everything (Auth0 PATCH; an empty map clears).
    Replace(SessionMetadata),
    /// Set one key (Auth0 `setMetadata`).
    Set {
        /// The key.
        key: String,
        /// Its new value.
        value: String,
    },
    /// Delete one key; absent keys are ignored (Auth0 `deleteMetadata`).
    Delete {
        /// The key.
        key: String,
    },
    /// Remove every key (Auth0 `evictMetadata`).
    Evict,
}

impl fmt::Debug for MetadataOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Replace(m) => f.debug_tuple("Replace").field(m).finish(),
            Self::Set { key, .. } => write!(f, "Set {{ key: {key:?}, value: [redacted] }}"),
            Self::Delete { key } => write!(f, "Delete {{ key: {key:?} }}"),
            Self::Evict => f.write_str("Evict"),
        }
    }
}

fn shorten(key: &str) -> String {
    key.chars().take(40).collect()
}

/// Checks one key against `[A-Za-z0-9_-]{1,255}`.
pub(crate) fn validate_key(key: &str) -> Result<(), MetadataError> {
    let ok = !key.is_empty()
        && key.len() <= MAX_KEY_CHARS
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(MetadataError::InvalidKey { key: shorten(key) })
    }
}

/// Checks one value: its length in Unicode scalar values, and no NUL.
pub(crate) fn validate_value(key: &str, value: &str) -> Result<(), MetadataError> {
    if value.contains('\0') {
        return Err(MetadataError::NulInValue { key: shorten(key) });
    }
    if value.chars().count() > MAX_VALUE_CHARS {
        return Err(MetadataError::ValueTooLong { key: shorten(key) });
    }
    Ok(())
}

impl SessionMetadata {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Validates a map built elsewhere.
    pub fn try_from_map(map: BTreeMap<String, String>) -> Result<Self, MetadataError> {
        if map.len() > MAX_PAIRS {
            return Err(MetadataError::TooManyPairs { count: map.len() });
        }
        for (key, value) in &map {
            validate_key(key)?;
            validate_value(key, value)?;
        }
        Ok(Self(Arc::new(map)))
    }

    /// Parses and validates a snapshot as a store wrote it (the JSON of [`Serialize`]),
    /// straight into the map rather than through a `serde_json::Value`.
    pub fn from_stored(text: &str) -> Result<Self, StoredMetadataError> {
        let map: BTreeMap<String, String> =
            serde_json::from_str(text).map_err(|_| StoredMetadataError)?;
        Self::try_from_map(map).map_err(|_| StoredMetadataError)
    }

    /// Parses and validates a JSON value; `null` is the empty map.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, MetadataError> {
        let object = match value {
            serde_json::Value::Null => return Ok(Self::default()),
            serde_json::Value::Object(object) => object,
            _ => return Err(MetadataError::NotAnObject),
        };
        if object.len() > MAX_PAIRS {
            return Err(MetadataError::TooManyPairs {
                count: object.len(),
            });
        }
        let mut map = BTreeMap::new();
        for (key, value) in object {
            validate_key(key)?;
            let serde_json::Value::String(value) = value else {
                return Err(MetadataError::NotAString { key: shorten(key) });
            };
            validate_value(key, value)?;
            map.insert(key.clone(), value.clone());
        }
        Ok(Self(Arc::new(map)))
    }

    /// The result of applying `op`, validated; `self` is unchanged.
    pub fn apply(&self, op: &MetadataOp) -> Result<Self, MetadataError> {
        match op {
            MetadataOp::Replace(next) => Ok(next.clone()),
            MetadataOp::Set { key, value } => {
                let mut map = self.0.as_ref().clone();
                map.insert(key.clone(), value.clone());
                Self::try_from_map(map)
            }
            MetadataOp::Delete { key } => {
                let mut map = self.0.as_ref().clone();
                map.remove(key);
                Ok(Self(Arc::new(map)))
            }
            MetadataOp::Evict => Ok(Self::default()),
        }
    }

    /// True when there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Pairs in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The underlying map.
    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// The same keys with every value replaced by `mask`: what a caller that may not read the
    /// values is shown.
    pub fn redacted(&self, mask: &str) -> Self {
        let map = self
            .0
            .keys()
            .map(|k| (k.clone(), mask.to_owned()))
            .collect();
        Self(Arc::new(map))
    }
}

/// A stored metadata snapshot that is not a valid metadata object.
#[derive(Debug, thiserror::Error)]
#[error("stored session metadata is not a valid metadata object")]
pub struct StoredMetadataError;

impl Serialize for SessionMetadata {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.as_ref().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SessionMetadata {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        Self::from_json(&value).map_err(serde::de::Error::custom)
    }
}

/// The rules above as a JSON Schema, for the API's OpenAPI document. JSON Schema's
/// `maxLength` counts code points, which for a JSON string are Unicode scalar values.
impl utoipa::PartialSchema for SessionMetadata {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        let value = ObjectBuilder::new()
            .schema_type(Type::String)
            .max_length(Some(MAX_VALUE_CHARS));
        let key = ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(format!("^[A-Za-z0-9_-]{{1,{MAX_KEY_CHARS}}}$")));
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(format!(
                "Flat string metadata: at most {MAX_PAIRS} pairs, keys match \
                 `[A-Za-z0-9_-]{{1,{MAX_KEY_CHARS}}}`, values are strings of at most \
                 {MAX_VALUE_CHARS} Unicode scalar values."
            )))
            .max_properties(Some(MAX_PAIRS))
            .property_names(Some(key))
            .additional_properties(Some(value))
            .into()
    }
}

impl utoipa::ToSchema for SessionMetadata {}

impl fmt::Debug for SessionMetadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, "[redacted]")))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redacted_keeps_every_key_and_masks_every_value() {
        let meta = SessionMetadata::from_json(&json!({ "email": "a@b.test", "t": "" })).unwrap();
        let shown = serde_json::to_value(meta.redacted("[redacted]")).unwrap();
        assert_eq!(shown, json!({ "email": "[redacted]", "t": "[redacted]" }));
        assert_eq!(
            meta.get("email"),
            Some("a@b.test"),
            "the original is unchanged"
        );
        assert!(SessionMetadata::new().redacted("[redacted]").is_empty());
    }

    #[test]
    fn a_stored_snapshot_reads_back_as_written_and_bad_ones_are_refused() {
        let meta = SessionMetadata::from_json(&json!({ "b": "2", "a": "日本\"" })).unwrap();
        let text = serde_json::to_string(&meta).unwrap();
        assert_eq!(SessionMetadata::from_stored(&text).unwrap(), meta);
        assert!(SessionMetadata::from_stored("{}").unwrap().is_empty());
        let many: serde_json::Map<_, _> = (0..26).map(|i| (format!("k{i}"), json!("v"))).collect();
        let many = serde_json::Value::Object(many).to_string();
        let refused = [
            "",
            "{",
            "[]",
            "null",
            r#"{"k": 1}"#,
            r#"{"k": {"x": "y"}}"#,
            r#"{"bad key": "v"}"#,
            many.as_str(),
        ];
        for text in refused {
            assert!(SessionMetadata::from_stored(text).is_err(), "{text}");
        }
    }

    #[test]
    fn counts_unicode_scalar_values_not_bytes() {
        let ok = "日".repeat(255);
        assert!(SessionMetadata::from_json(&json!({ "k": ok })).is_ok());
        let long = "日".repeat(256);
        assert!(matches!(
            SessionMetadata::from_json(&json!({ "k": long })),
            Err(MetadataError::ValueTooLong { .. })
        ));
    }

    #[test]
    fn rejects_26_pairs_and_nested_values() {
        let many: serde_json::Map<_, _> = (0..26).map(|i| (format!("k{i}"), json!("v"))).collect();
        assert_eq!(
            SessionMetadata::from_json(&serde_json::Value::Object(many)),
            Err(MetadataError::TooManyPairs { count: 26 })
        );
        assert!(matches!(
            SessionMetadata::from_json(&json!({ "k": { "x": "y" } })),
            Err(MetadataError::NotAString { .. })
        ));
        assert!(matches!(
            SessionMetadata::from_json(&json!({ "k": 1 })),
            Err(MetadataError::NotAString { .. })
        ));
    }

    #[test]
    fn key_rules() {
        assert!(validate_key("a-b_C9").is_ok());
        assert!(validate_key("").is_err());
        assert!(validate_key("a.b").is_err());
        assert!(validate_key(&"k".repeat(255)).is_ok());
        assert!(validate_key(&"k".repeat(256)).is_err());
    }

    #[test]
    fn set_past_the_limit_is_refused() {
        let full: BTreeMap<_, _> = (0..25).map(|i| (format!("k{i}"), "v".to_owned())).collect();
        let meta = SessionMetadata::try_from_map(full).unwrap();
        let op = MetadataOp::Set {
            key: "extra".into(),
            value: "v".into(),
        };
        assert!(meta.apply(&op).is_err());
        let overwrite = MetadataOp::Set {
            key: "k1".into(),
            value: "w".into(),
        };
        assert_eq!(meta.apply(&overwrite).unwrap().get("k1"), Some("w"));
    }

    #[test]
    fn debug_hides_values() {
        let meta = SessionMetadata::from_json(&json!({ "k": "secret-value" })).unwrap();
        assert!(!format!("{meta:?}").contains("secret-value"));
    }
}
