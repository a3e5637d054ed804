//! Borrowing probes of a request line and its body: hand-written serde visitors that read only
//! the keys validation looks at (`custom_id`, `method`, `url`, `body`; the body's
//! [`crate::requests::BodyFields`]) in one pass, without copying the line or building a tree.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::requests::BodyFields;

/// The string a raw JSON value holds, or None if it is not a string. Borrows unless the string
/// has escapes, so plain ids and models cost no allocation.
pub(super) fn json_str(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    if inner.contains('\\') {
        serde_json::from_str::<String>(text).ok().map(Cow::Owned)
    } else {
        Some(Cow::Borrowed(inner))
    }
}

/// The top-level keys of a request line, borrowed from it. Hand-written rather than derived so
/// a repeated key keeps the last value (as most JSON readers do) instead of failing the line.
pub(super) struct LineProbe<'a, B> {
    pub(super) custom_id: Option<&'a RawValue>,
    pub(super) method: Option<&'a RawValue>,
    pub(super) url: Option<&'a RawValue>,
    pub(super) body: Option<B>,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum LineKey {
    CustomId,
    Method,
    Url,
    Body,
    #[serde(other)]
    Other,
}

impl<'de, B: Deserialize<'de>> Deserialize<'de> for LineProbe<'de, B> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LineVisitor<B>(PhantomData<fn() -> B>);

        impl<'de, B: Deserialize<'de>> Visitor<'de> for LineVisitor<B> {
            type Value = LineProbe<'de, B>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut probe = LineProbe {
                    custom_id: None,
                    method: None,
                    url: None,
                    body: None,
                };
                while let Some(key) = map.next_key::<LineKey>()? {
                    match key {
                        LineKey::CustomId => probe.custom_id = Some(map.next_value()?),
                        LineKey::Method => probe.method = Some(map.next_value()?),
                        LineKey::Url => probe.url = Some(map.next_value()?),
                        LineKey::Body => probe.body = Some(map.next_value()?),
                        LineKey::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(probe)
            }
        }

        deserializer.deserialize_map(LineVisitor(PhantomData))
    }
}

/// The body fields validation looks at. Parsed in the same pass as the line, so the bulk of
/// the line (the messages) is scanned once, never copied or built into a tree.
pub(super) enum BodyCheck<'a> {
    Object(BodyProbe<'a>),
    NotObject,
}

pub(super) type BodyProbe<'a> = BodyFields<'a>;

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum BodyKey {
    Model,
    Messages,
    Prompt,
    Input,
    Stream,
    Dimensions,
    EncodingFormat,
    Background,
    #[serde(other)]
    Other,
}

impl<'de> Deserialize<'de> for BodyCheck<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(BodyVisitor)
    }
}

struct BodyVisitor;

impl<'de> Visitor<'de> for BodyVisitor {
    type Value = BodyCheck<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut probe = BodyProbe::default();
        while let Some(key) = map.next_key::<BodyKey>()? {
            match key {
                BodyKey::Model => probe.model = Some(map.next_value()?),
                BodyKey::Messages => probe.messages = Some(map.next_value()?),
                BodyKey::Prompt => probe.prompt = Some(map.next_value()?),
                BodyKey::Input => probe.input = Some(map.next_value()?),
                BodyKey::Stream => probe.stream = Some(map.next_value()?),
                BodyKey::Dimensions => probe.dimensions = Some(map.next_value()?),
                BodyKey::EncodingFormat => probe.encoding_format = Some(map.next_value()?),
                BodyKey::Background => probe.background = Some(map.next_value()?),
                BodyKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(BodyCheck::Object(probe))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(BodyCheck::NotObject)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(BodyCheck::NotObject)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(BodyCheck::NotObject)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(BodyCheck::NotObject)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(BodyCheck::NotObject)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(BodyCheck::NotObject)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(BodyCheck::NotObject)
    }
}
