//! Caller-supplied labels (OpenAI's `metadata`) on scheduled jobs and batches, and their rules:
//! an object of at most 16 string pairs, keys up to 64 characters, values up to 512.

use std::collections::BTreeMap;

use serde_json::value::RawValue;

use crate::error::ServiceError;

/// Caller-supplied labels, as OpenAI's `metadata`: up to 16 string pairs.
pub type Metadata = BTreeMap<String, String>;

pub const MAX_METADATA_PAIRS: usize = 16;
const MAX_METADATA_KEY_CHARS: usize = 64;
const MAX_METADATA_VALUE_CHARS: usize = 512;

/// OpenAI's metadata rules: an object of at most 16 string pairs, keys up to 64 characters,
/// values up to 512. `null` means none.
pub fn parse_metadata(raw: &RawValue) -> Result<Option<Metadata>, ServiceError> {
    let invalid = |message: String| {
        ServiceError::invalid(message, Some("metadata"), Some("invalid_metadata"))
    };
    let Ok(map) = serde_json::from_str::<Option<Metadata>>(raw.get()) else {
        return Err(invalid(
            "Invalid 'metadata': expected an object whose values are strings.".into(),
        ));
    };
    let Some(map) = map else {
        return Ok(None);
    };
    if map.len() > MAX_METADATA_PAIRS {
        return Err(invalid(format!(
            "Invalid 'metadata': {} pairs given, at most {MAX_METADATA_PAIRS} are allowed.",
            map.len()
        )));
    }
    for (key, value) in &map {
        if key.chars().count() > MAX_METADATA_KEY_CHARS {
            return Err(invalid(format!(
                "Invalid 'metadata': keys are at most {MAX_METADATA_KEY_CHARS} characters."
            )));
        }
        if value.chars().count() > MAX_METADATA_VALUE_CHARS {
            return Err(invalid(format!(
                "Invalid 'metadata': values are at most {MAX_METADATA_VALUE_CHARS} characters."
            )));
        }
    }
    Ok(Some(map))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_capped_at_sixteen_string_pairs() {
        let raw = |json: &str| RawValue::from_string(json.to_owned()).unwrap();
        assert!(parse_metadata(&raw(r#"{"a": "b"}"#)).unwrap().is_some());
        assert!(parse_metadata(&raw("null")).unwrap().is_none());
        assert!(parse_metadata(&raw(r#"{"a": 1}"#)).is_err());
        let seventeen: serde_json::Map<String, serde_json::Value> = (0..17)
            .map(|i| (format!("k{i}"), serde_json::Value::String("v".into())))
            .collect();
        let json = serde_json::to_string(&seventeen).unwrap();
        assert!(parse_metadata(&raw(&json)).is_err());
    }
}
