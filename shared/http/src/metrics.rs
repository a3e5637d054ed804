//! The request metrics layer: every answered request counted and timed by route template,
//! method and status ([`prism_core::telemetry::Metric::HttpRequests`]).

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

/// The label of a request that matched no route (its path is the client's to choose, so it
/// never becomes a label).
const UNMATCHED: &str = "unmatched";

/// Outermost: times the whole request and records it once the response head is ready.
pub(crate) async fn record_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let response = next.run(request).await;
    let route = response
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, MatchedPath::as_str);
    prism_core::telemetry::record_http_request(
        route,
        method.as_str(),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// A route layer (it runs only once a route matched, where axum knows the template): hands the
/// template out on the response for [`record_request`].
pub(crate) async fn note_route(request: Request, next: Next) -> Response {
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let mut response = next.run(request).await;
    if let Some(matched) = matched {
        response.extensions_mut().insert(matched);
    }
    response
}
