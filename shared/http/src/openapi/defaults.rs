//! What the document says an omitted request field means, as schemas built from the core
//! constants the parsers apply, so the document cannot drift from the parsers: today a recurring
//! schedule's `timezone`. The test holds `ScheduleRequest`'s required fields and default to what
//! core's parser does with a schedule that leaves each field out.

use prism_core::recurring::request::DEFAULT_TIMEZONE;
use utoipa::openapi::schema::{Object, ObjectBuilder, SchemaType, Type};

/// `schedule.timezone`: an IANA zone, core's default when absent or `null`.
pub fn schedule_timezone() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .description(Some(format!(
            "An IANA time zone the cron's fields are read in; {DEFAULT_TIMEZONE} when absent or null."
        )))
        .default(Some(DEFAULT_TIMEZONE.into()))
        .examples(["Europe/Berlin"])
        .build()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use prism_core::Timestamp;
    use prism_core::error::ServiceError;
    use prism_core::recurring::request::parse_recurring_request;
    use serde_json::{Value, json};
    use utoipa::OpenApi;

    use crate::openapi::ApiDoc;

    const NOW: Timestamp = Timestamp(1_790_000_000_000);

    /// A `schedule` with every field the parser reads, each valid.
    fn every_field() -> serde_json::Map<String, Value> {
        let Value::Object(fields) = json!({
            "cron": "0 9 * * *",
            "timezone": "Europe/Berlin",
            "start_at": "2030-01-01T00:00:00Z",
            "end_at": "2031-01-01T00:00:00Z",
            "max_runs": 3,
            "overlap": "skip",
            "catch_up": "latest",
        }) else {
            unreachable!("an object literal")
        };
        fields
    }

    fn parse(schedule: serde_json::Map<String, Value>) -> Result<String, ServiceError> {
        let body = json!({
            "schedule": schedule,
            "request": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        });
        let parsed =
            parse_recurring_request(body.to_string().as_bytes(), NOW, Duration::from_secs(60))?;
        Ok(parsed.recurrence.timezone)
    }

    /// Each field the document lists as optional the parser takes without, each required one it
    /// refuses to go without, and an omitted `timezone` is the zone the document's default names.
    #[test]
    fn the_schedule_requests_required_fields_and_timezone_default_are_the_parsers() {
        let document = serde_json::to_value(ApiDoc::openapi()).expect("the document serialises");
        let schema = &document["components"]["schemas"]["ScheduleRequest"];
        let documented: BTreeSet<&str> = schema["properties"]
            .as_object()
            .expect("ScheduleRequest has properties")
            .keys()
            .map(String::as_str)
            .collect();
        let fields = every_field();
        assert_eq!(
            documented,
            fields.keys().map(String::as_str).collect(),
            "the document's schedule fields and the ones this test gives the parser"
        );
        let required: BTreeSet<&str> = schema["required"]
            .as_array()
            .map(|names| names.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for field in &documented {
            let mut without = fields.clone();
            without.remove(*field);
            match parse(without) {
                Ok(_) => assert!(
                    !required.contains(field),
                    "the document requires '{field}', the parser does without it"
                ),
                Err(ServiceError::InvalidRequest { param, code, .. })
                    if code.as_deref() == Some("missing_required_parameter") =>
                {
                    assert!(
                        required.contains(field),
                        "the parser requires '{field}', the document says it is optional"
                    );
                    assert_eq!(param.as_deref(), Some(format!("schedule.{field}").as_str()));
                }
                Err(other) => panic!("without '{field}': {other:?}"),
            }
        }
        let mut without_zone = fields;
        without_zone.remove("timezone");
        assert_eq!(
            schema["properties"]["timezone"]["default"].as_str(),
            Some(
                parse(without_zone)
                    .expect("a schedule without a zone")
                    .as_str()
            ),
            "the documented default zone is the one the parser applies"
        );
    }
}
