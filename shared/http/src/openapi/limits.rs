//! The numeric limits the document states (page sizes, expiry bounds, part counts, header
//! lengths), as schemas built from the core constants that enforce them, so the document cannot
//! drift from the checks. utoipa's `minimum`, `maximum` and `max_items` take literals only, hence
//! `schema_with` functions.

use prism_core::files::{DEFAULT_FILE_LIST_LIMIT, EXPIRES_AFTER_SECONDS};
use prism_core::jobs::service::MAX_IDEMPOTENCY_KEY_LEN;
use prism_core::list::{DEFAULT_LIMIT, MAX_LIMIT};
use prism_core::uploads::MAX_PARTS;
use prism_core::webhooks::service::{DEFAULT_ATTEMPTS_LIMIT, MAX_ATTEMPTS_LIMIT};
use utoipa::openapi::schema::{
    Array, ArrayBuilder, KnownFormat, Object, ObjectBuilder, SchemaFormat, SchemaType, Type,
};

/// A `limit` query parameter: 1 to `max`, `default` when absent.
fn page_size(default: usize, max: usize) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32)))
        .default(Some(default.into()))
        .minimum(Some(1))
        .maximum(Some(max))
        .build()
}

/// `limit` of `/v1/async`, `/v1/scheduled`, a schedule's runs and `/v1/batches`.
pub fn list_limit() -> Object {
    page_size(DEFAULT_LIMIT, MAX_LIMIT)
}

/// `limit` of `/v1/files`: OpenAI's default is also its largest page.
pub fn file_list_limit() -> Object {
    page_size(DEFAULT_FILE_LIST_LIMIT, DEFAULT_FILE_LIST_LIMIT)
}

/// `limit` of a webhook endpoint's deliveries.
pub fn delivery_list_limit() -> Object {
    page_size(DEFAULT_ATTEMPTS_LIMIT, MAX_ATTEMPTS_LIMIT)
}

fn expiry_seconds() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(*EXPIRES_AFTER_SECONDS.start()))
        .maximum(Some(*EXPIRES_AFTER_SECONDS.end()))
}

/// `expires_after.seconds` of an upload and a batch's output files.
pub fn expires_after_seconds() -> Object {
    expiry_seconds().build()
}

/// The `expires_after[seconds]` field of `POST /v1/files`' form.
pub fn form_expires_after_seconds() -> Object {
    expiry_seconds()
        .description(Some("Seconds after `created_at` when the file expires."))
        .build()
}

/// `part_ids` of `POST /v1/uploads/{id}/complete`.
pub fn part_ids() -> Array {
    ArrayBuilder::new()
        .items(ObjectBuilder::new().schema_type(Type::String))
        .min_items(Some(1))
        .max_items(Some(MAX_PARTS))
        .build()
}

/// How long an `Idempotency-Key` may be, in words, for the header's description.
pub fn idempotency_key_length() -> String {
    format!("1 to {MAX_IDEMPOTENCY_KEY_LEN} printable ASCII characters")
}

/// The `Idempotency-Key` header: printable ASCII, as long as core allows.
pub fn idempotency_key() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .pattern(Some(format!("^[!-~]{{1,{MAX_IDEMPOTENCY_KEY_LEN}}}$")))
        .build()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::{Value, json};
    use utoipa::OpenApi;

    use super::*;
    use crate::openapi::ApiDoc;

    fn document() -> Value {
        serde_json::to_value(ApiDoc::openapi()).expect("the document serialises")
    }

    /// The JSON pointer of a parameter's schema, for the checks below and the inventory.
    fn parameter(document: &Value, path: &str, verb: &str, name: &str) -> String {
        let escaped = path.replace('~', "~0").replace('/', "~1");
        let parameters = document["paths"][path][verb]["parameters"]
            .as_array()
            .unwrap_or_else(|| panic!("{verb} {path} has no parameters"));
        let index = parameters
            .iter()
            .position(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{verb} {path} has no parameter {name}"));
        format!("/paths/{escaped}/{verb}/parameters/{index}/schema")
    }

    /// Each limit the document states, where it stands and what core says it is.
    fn expected(document: &Value) -> Vec<(String, &'static str, Value)> {
        let mut limits = Vec::new();
        let mut page = |pointer: String, default: usize, max: usize| {
            limits.push((pointer.clone(), "minimum", json!(1)));
            limits.push((pointer.clone(), "maximum", json!(max)));
            limits.push((pointer, "default", json!(default)));
        };
        for (path, verb) in [
            ("/v1/async", "get"),
            ("/v1/batches", "get"),
            ("/v1/scheduled", "get"),
            ("/v1/scheduled/{id}/runs", "get"),
        ] {
            page(
                parameter(document, path, verb, "limit"),
                DEFAULT_LIMIT,
                MAX_LIMIT,
            );
        }
        page(
            parameter(document, "/v1/files", "get", "limit"),
            DEFAULT_FILE_LIST_LIMIT,
            DEFAULT_FILE_LIST_LIMIT,
        );
        page(
            parameter(
                document,
                "/v1/webhook_endpoints/{id}/deliveries",
                "get",
                "limit",
            ),
            DEFAULT_ATTEMPTS_LIMIT,
            MAX_ATTEMPTS_LIMIT,
        );
        for pointer in [
            "/components/schemas/ExpiresAfter/properties/seconds",
            "/components/schemas/FileUploadForm/properties/expires_after[seconds]",
        ] {
            limits.push((
                pointer.into(),
                "minimum",
                json!(EXPIRES_AFTER_SECONDS.start()),
            ));
            limits.push((
                pointer.into(),
                "maximum",
                json!(EXPIRES_AFTER_SECONDS.end()),
            ));
        }
        let part_ids = "/components/schemas/CompleteUploadRequest/properties/part_ids";
        limits.push((part_ids.into(), "minItems", json!(1)));
        limits.push((part_ids.into(), "maxItems", json!(MAX_PARTS)));
        for (path, verb) in [
            ("/v1/chat/completions", "post"),
            ("/v1/completions", "post"),
            ("/v1/embeddings", "post"),
            ("/v1/moderations", "post"),
            ("/v1/responses", "post"),
            ("/v1/scheduled", "post"),
        ] {
            limits.push((
                parameter(document, path, verb, "Idempotency-Key"),
                "pattern",
                json!(format!("^[!-~]{{1,{MAX_IDEMPOTENCY_KEY_LEN}}}$")),
            ));
        }
        limits
    }

    #[test]
    fn the_documents_limits_are_cores_constants() {
        let document = document();
        for (pointer, key, value) in expected(&document) {
            assert_eq!(
                document.pointer(&pointer).map(|schema| &schema[key]),
                Some(&value),
                "{pointer}: {key}"
            );
        }
    }

    /// Every bound in the document other than the ones a type implies (an unsigned integer's
    /// minimum 0, at least one item or character), by pointer and keyword.
    fn stated_bounds(value: &Value, pointer: &str, found: &mut BTreeSet<(String, String)>) {
        match value {
            Value::Object(map) => {
                for (key, inner) in map {
                    let bound = match key.as_str() {
                        "maximum" | "maxItems" | "maxLength" | "default" => inner.is_number(),
                        "minimum" | "minItems" | "minLength" => inner.as_u64() > Some(1),
                        "pattern" => inner.as_str().is_some_and(|p| p.contains("{1,")),
                        _ => false,
                    };
                    if bound {
                        found.insert((pointer.to_owned(), key.clone()));
                    }
                    let escaped = key.replace('~', "~0").replace('/', "~1");
                    stated_bounds(inner, &format!("{pointer}/{escaped}"), found);
                }
            }
            Value::Array(items) => {
                for (index, inner) in items.iter().enumerate() {
                    stated_bounds(inner, &format!("{pointer}/{index}"), found);
                }
            }
            _ => {}
        }
    }

    /// A numeric limit written into an attribute as a literal fails here, naming it: build it
    /// in this module from the constant core checks against, and add it to `expected`.
    #[test]
    fn every_limit_in_the_document_comes_from_core() {
        let document = document();
        let mut stated = BTreeSet::new();
        stated_bounds(&document, "", &mut stated);
        let checked: BTreeSet<_> = expected(&document)
            .into_iter()
            .map(|(pointer, key, _)| (pointer, key.to_owned()))
            .collect();
        let unchecked: Vec<_> = stated.difference(&checked).collect();
        assert!(
            unchecked.is_empty(),
            "limits not built from core's constants: {unchecked:?}"
        );
    }
}
