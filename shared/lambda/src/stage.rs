//! Keeps the API Gateway stage out of routing: undoes the `/{stage}` prefix `lambda_http` puts in
//! front of a REST API (payload 1.0) event's path, so `api` routes the same behind API Gateway
//! (`/prod/v1/...` on the wire of `execute-api`) as behind its function URL (`/v1/...`).
//!
//! `lambda_http` 1.3 builds the request URI of a REST event from `/{requestContext.stage}` +
//! `path` unless `path` already starts with `/{stage}/`, or the process has
//! `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH` set. Setting that at run time takes `unsafe`, which the
//! workspace forbids, and setting it in the template would leave routing to deployment
//! configuration; so the prefix is undone here, in tested code. Undoing exactly what
//! `lambda_http` added, and nothing more, keeps the event's `path` (the resource path API Gateway
//! matched, never the stage on `execute-api`) as the one the router sees.

use lambda_http::http::Uri;
use lambda_http::http::uri::PathAndQuery;
use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};

/// Returns `request` with the leading `/{stage}` removed when it comes from an API Gateway REST
/// API stage and `lambda_http` added that prefix itself. Every other request (function URL,
/// `$default` stage, a path that really starts with the stage's name) passes unchanged.
pub fn strip_stage(mut request: Request) -> Request {
    let Some(RequestContext::ApiGatewayV1(context)) = request.request_context_ref() else {
        return request;
    };
    let Some(stage) = context.stage.as_deref() else {
        return request;
    };
    let Some(path) =
        path_without_stage(request.uri().path(), stage, request.raw_http_path()).map(str::to_owned)
    else {
        return request;
    };
    if let Some(uri) = with_path(request.uri(), &path) {
        *request.uri_mut() = uri;
    }
    request
}

/// The part of `uri_path` after `/{stage}` when `lambda_http` put that prefix in front of the
/// event's own path `event_path`; `None` when there is nothing to undo. An empty remainder is
/// the root, `/`.
pub fn path_without_stage<'a>(uri_path: &'a str, stage: &str, event_path: &str) -> Option<&'a str> {
    // `lambda_http` adds no prefix for these, and none when the event's path already has it.
    if stage.is_empty() || stage == "$default" || starts_with_segment(event_path, stage) {
        return None;
    }
    let rest = uri_path.strip_prefix('/')?.strip_prefix(stage)?;
    match rest {
        "" => Some("/"),
        rest if rest.starts_with('/') => Some(rest),
        // `/production/...` under stage `prod`: not the stage's segment.
        _ => None,
    }
}

/// Whether `path` starts with the whole segment `/{segment}/`, the test `lambda_http` applies.
fn starts_with_segment(path: &str, segment: &str) -> bool {
    path.strip_prefix('/')
        .and_then(|rest| rest.strip_prefix(segment))
        .is_some_and(|rest| rest.starts_with('/'))
}

/// `uri` with its path replaced, query, scheme and authority kept. `None` only if the new path
/// does not form a valid URI, which a suffix of a valid one always does.
fn with_path(uri: &Uri, path: &str) -> Option<Uri> {
    let path_and_query = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(path_and_query).ok()?);
    Uri::from_parts(parts).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stage_lambda_http_added_is_removed() {
        assert_eq!(
            path_without_stage("/prod/v1/async/job_1", "prod", "/v1/async/job_1"),
            Some("/v1/async/job_1")
        );
    }

    #[test]
    fn the_root_of_a_stage_becomes_the_root() {
        assert_eq!(path_without_stage("/prod/", "prod", "/"), Some("/"));
        assert_eq!(path_without_stage("/prod", "prod", ""), Some("/"));
    }

    #[test]
    fn the_default_stage_and_a_missing_one_leave_the_path_alone() {
        assert_eq!(
            path_without_stage("/v1/files", "$default", "/v1/files"),
            None
        );
        assert_eq!(path_without_stage("/v1/files", "", "/v1/files"), None);
    }

    #[test]
    fn a_stage_named_like_the_first_segment_of_the_event_path_is_not_removed() {
        // A stage called `v1`: lambda_http keeps `/v1/chat/completions` as is, and so do we.
        assert_eq!(
            path_without_stage("/v1/chat/completions", "v1", "/v1/chat/completions"),
            None
        );
    }

    #[test]
    fn a_segment_that_only_starts_with_the_stage_name_is_kept() {
        assert_eq!(
            path_without_stage("/production/v1", "prod", "/production/v1"),
            None
        );
    }

    #[test]
    fn with_path_keeps_the_query_scheme_and_host() {
        let uri: Uri =
            "https://abc.execute-api.us-east-1.amazonaws.com/prod/v1/files?limit=2&after=f"
                .parse()
                .unwrap();

        let uri = with_path(&uri, "/v1/files").unwrap();

        assert_eq!(
            uri.to_string(),
            "https://abc.execute-api.us-east-1.amazonaws.com/v1/files?limit=2&after=f"
        );
    }
}
