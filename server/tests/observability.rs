//! Metrics and traces at the system boundary: `prism serve`'s Prometheus text on its own
//! listener moving with real traffic (and counting a dead-lettered job, and a dead-lettered
//! batch chunk's lines, as failed once), and an async
//! job's spans received by a local OTLP receiver as one trace from the HTTP request through the
//! queue to the worker, from `prism serve` and from the Lambda functions alike.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use support::{Setup, chat_batch_input, chat_body, eventually, free_port, start};

const SOON: Duration = Duration::from_secs(20);

/// The value of every sample of `name` whose labels include all of `labels`, added up.
fn sample_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
            (metric == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse::<f64>().ok())
            .flatten()
        })
        .sum()
}

/// The Lambda functions write EMF lines instead of serving `/metrics`.
fn runs_on_lambda() -> bool {
    std::env::var("PRISM_TEST_BACKEND").as_deref() == Ok("lambda")
}

async fn scrape(http: &reqwest::Client, metrics: &str) -> String {
    let response = http.get(metrics).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

#[tokio::test]
async fn metrics_endpoint_shows_requests_jobs_upstream_calls_and_batch_lines_moving_after_traffic()
{
    if runs_on_lambda() {
        return; // the Lambda functions write EMF lines instead (shared/lambda's tests)
    }
    let port = free_port();
    let env = start(Setup {
        extra: &format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
        ..Setup::default()
    })
    .await;
    let metrics = format!("http://127.0.0.1:{port}/metrics");
    let before = scrape(&env.http, &metrics).await;
    let submitted = |text: &str| {
        sample_sum(
            text,
            "prism_jobs_submitted_total",
            &[("kind", "async"), ("model", "gpt-metrics")],
        )
    };
    assert_eq!(submitted(&before), 0.0);

    let sync = env
        .chat(&env.alpha, chat_body("gpt-metrics", "hello"), false)
        .await;
    assert_eq!(sync.status(), 200);
    let job = env.submit(&env.alpha, "gpt-metrics", "later").await;
    env.wait_for(&env.alpha, &job, &["completed"], SOON).await;
    let retried = env.submit(&env.alpha, "mock-429-1", "retry me").await;
    env.wait_for(&env.alpha, &retried, &["completed"], SOON)
        .await;
    let scheduled = env
        .schedule(&env.alpha, "gpt-metrics", "never", 3_600_000)
        .await;
    assert_eq!(
        env.delete(&env.alpha, &format!("/v1/scheduled/{scheduled}"))
            .await
            .status(),
        200
    );
    let batch = env
        .start_batch(&chat_batch_input("m", "gpt-metrics", 3))
        .await;
    env.wait_for_batch(&batch, &["completed"], SOON).await;

    // Histogram samples reach their buckets on the exporter's upkeep tick.
    eventually(SOON, "the metrics to show the traffic", || async {
        let after = scrape(&env.http, &metrics).await;
        let counts = [
            submitted(&after) == 1.0,
            sample_sum(
                &after,
                "prism_http_requests_total",
                &[("route", "/v1/chat/completions"), ("status", "200")],
            ) >= 1.0,
            sample_sum(
                &after,
                "prism_http_requests_total",
                &[("route", "/v1/async/{id}"), ("method", "GET")],
            ) >= 1.0,
            sample_sum(
                &after,
                "prism_jobs_completed_total",
                &[("kind", "async"), ("model", "gpt-metrics")],
            ) == 1.0,
            sample_sum(
                &after,
                "prism_jobs_started_total",
                &[("kind", "async"), ("model", "gpt-metrics")],
            ) == 1.0,
            sample_sum(
                &after,
                "prism_jobs_cancelled_total",
                &[("kind", "scheduled"), ("model", "gpt-metrics")],
            ) == 1.0,
            sample_sum(
                &after,
                "prism_job_queue_wait_seconds_count",
                &[("kind", "async"), ("model", "gpt-metrics")],
            ) == 1.0,
            sample_sum(&after, "prism_job_run_seconds_count", &[("kind", "async")]) >= 2.0,
            sample_sum(
                &after,
                "prism_upstream_calls_total",
                &[
                    ("provider", "mock"),
                    ("model", "mock-429-1"),
                    ("outcome", "rate_limited"),
                ],
            ) == 1.0,
            sample_sum(
                &after,
                "prism_upstream_retries_total",
                &[("kind", "async"), ("model", "mock-429-1")],
            ) == 1.0,
            sample_sum(
                &after,
                "prism_upstream_duration_seconds_count",
                &[
                    ("provider", "mock"),
                    ("model", "gpt-metrics"),
                    ("outcome", "ok"),
                ],
            ) >= 5.0,
            sample_sum(
                &after,
                "prism_jobs_completed_total",
                &[("kind", "batch_line"), ("model", "gpt-metrics")],
            ) == 3.0,
            sample_sum(
                &after,
                "prism_batch_lines_processed_total",
                &[("outcome", "completed")],
            ) == 3.0,
        ];
        let moved = counts.iter().all(|c| *c);
        if !moved {
            eprintln!("{counts:?}\n{after}");
        }
        moved
    })
    .await;

    // Never on the API's own listener, and never behind a tenant's key.
    let api = env.http.get(env.url("/metrics")).send().await.unwrap();
    assert_eq!(api.status(), 404);
}

#[tokio::test]
async fn a_job_that_exhausts_its_deliveries_shows_in_metrics_as_failed_once() {
    if runs_on_lambda() {
        return; // the dead-letters function fails it through the same core call
    }
    let port = free_port();
    // One delivery only, and every retry wait handed back to the queue: the first 429 sends
    // the job back, and its second delivery finds it over the limit and dead-letters it.
    let env = start(Setup {
        workers: "max_receives = 1\nmax_inline_retry_wait = \"0s\"\n",
        extra: &format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
        ..Setup::default()
    })
    .await;
    let metrics = format!("http://127.0.0.1:{port}/metrics");
    let model = "mock-429-5-deadlettered";
    let job = env.submit(&env.alpha, model, "never answered").await;
    let failed = env.wait_for(&env.alpha, &job, &["failed"], SOON).await;
    assert_eq!(failed["error"]["code"], "processing_failed", "{failed}");

    let labels = [("kind", "async"), ("model", model)];
    eventually(SOON, "the dead-lettered job counted as failed", || async {
        let text = scrape(&env.http, &metrics).await;
        let counts = (
            sample_sum(&text, "prism_jobs_failed_total", &labels),
            sample_sum(&text, "prism_jobs_started_total", &labels),
        );
        if counts != (1.0, 1.0) {
            eprintln!("failed, started: {counts:?}");
        }
        counts == (1.0, 1.0)
    })
    .await;
}

#[tokio::test]
async fn a_dead_lettered_chunk_counts_its_lines_as_failed_once_and_writes_each_to_the_error_file_once()
 {
    if runs_on_lambda() {
        return; // the Lambda functions write EMF lines instead (shared/lambda's tests)
    }
    const LINES: usize = 4;
    let model = "mock-slow-60000-deadchunk";
    let port = free_port();
    // Calls of a minute (under a longer upstream timeout): no line finishes before the kill.
    let mut env = start(Setup {
        workers: "max_receives = 10\nupstream_timeout = \"120s\"\n",
        batches: "lease = \"5s\"",
        extra: &format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
        ..Setup::default()
    })
    .await;
    let metrics = format!("http://127.0.0.1:{port}/metrics");
    let batch = env.start_batch(&chat_batch_input("d", model, LINES)).await;
    eventually(SOON, "every line of the chunk in flight", || async {
        env.mock.hits(model) as usize == LINES
    })
    .await;

    // The chunk's holder dies with its lines in flight. The next process sends every delivery
    // to the dead-letter path (a test-only hook: `max_receives = 0` is refused in a config file),
    // so the chunk's redelivery fails its unfinished lines. (A restart alone never dead-letters:
    // on embedded storage a delivery cut off by a crash does not count, and on SQS it takes
    // `max_receives` of them; no valid limit reaches that path on both.)
    env.kill_server().await;
    env.extra_env.push((
        "PRISM_TEST_DEAD_LETTER_EVERY_DELIVERY".to_owned(),
        "1".to_owned(),
    ));
    env.start_server().await;

    let done = env
        .wait_for_batch(&batch, &["completed", "failed"], 3 * SOON)
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["request_counts"]["failed"], LINES, "{done}");
    let (output, errors) = env.finished_batch_lines(&done, LINES).await;
    assert!(output.is_empty(), "{output:?}");
    assert!(
        errors
            .iter()
            .all(|line| line["error"]["code"] == "processing_failed"),
        "{errors:?}"
    );
    assert_eq!(env.mock.hits(model) as usize, LINES, "no line ran again");

    // The second process counted the dead chunk's lines, each once, and nothing else.
    let text = scrape(&env.http, &metrics).await;
    let counts = (
        sample_sum(
            &text,
            "prism_batch_lines_processed_total",
            &[("outcome", "failed")],
        ),
        sample_sum(
            &text,
            "prism_batch_lines_processed_total",
            &[("outcome", "completed")],
        ),
        sample_sum(
            &text,
            "prism_jobs_failed_total",
            &[("kind", "batch_line"), ("model", model)],
        ),
    );
    assert_eq!(counts, (LINES as f64, 0.0, LINES as f64), "{text}");
}

/// One received span: what the assertions need of it.
#[derive(Debug, Clone)]
struct Span {
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    attributes: HashMap<String, String>,
}

type Received = Arc<Mutex<Vec<Span>>>;

/// A local OTLP/HTTP receiver: decodes each protobuf export request into its spans.
async fn otlp_receiver() -> (String, Received) {
    async fn export(State(received): State<Received>, body: Bytes) -> &'static str {
        let request = ExportTraceServiceRequest::decode(body).unwrap();
        let mut spans = received.lock().unwrap();
        for span in request
            .resource_spans
            .into_iter()
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans)
        {
            let attributes = span
                .attributes
                .into_iter()
                .map(|kv| {
                    let value = match kv.value.and_then(|v| v.value) {
                        Some(AnyValue::StringValue(s)) => s,
                        Some(other) => format!("{other:?}"),
                        None => String::new(),
                    };
                    (kv.key, value)
                })
                .collect();
            spans.push(Span {
                name: span.name,
                trace_id: span.trace_id,
                span_id: span.span_id,
                parent_span_id: span.parent_span_id,
                attributes,
            });
        }
        ""
    }
    let received = Received::default();
    let app = Router::new()
        .route("/v1/traces", post(export))
        .with_state(Arc::clone(&received));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}/v1/traces"), received)
}

/// Whether `spans` hold the job's spans from both sides of the queue.
fn has_worker_spans(spans: &[Span], job: &str) -> bool {
    ["queue", "handle_delivery"].iter().all(|name| {
        spans
            .iter()
            .any(|s| s.name == *name && s.attributes.get("job_id").map(String::as_str) == Some(job))
    }) && ["request", "submit_async_job", "upstream_complete"]
        .iter()
        .all(|name| spans.iter().any(|s| s.name == *name))
}

#[tokio::test]
async fn an_async_job_is_one_trace_from_submit_through_the_queue_to_the_worker() {
    let (endpoint, received) = otlp_receiver().await;
    // `prism serve` reads `[traces]`; the Lambda functions read the OpenTelemetry variables. The
    // exporter's timer is set past the test, so on Lambda only the flush that ends every
    // invocation (before Lambda would freeze the sandbox) sends the spans.
    let lambda_env = [
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
    ];
    let mut env = start(Setup {
        extra: &format!("[traces]\notlp_endpoint = \"{endpoint}\"\n"),
        env: if runs_on_lambda() {
            &lambda_env[..]
        } else {
            &[]
        },
        ..Setup::default()
    })
    .await;
    let prompt = "a secret prompt that no span may carry";
    let job = env.submit(&env.alpha, "gpt-traced", prompt).await;
    env.wait_for(&env.alpha, &job, &["completed"], SOON).await;
    if runs_on_lambda() {
        // The functions keep running: what arrives was flushed by the invocations themselves
        // (the api's request span ends after its invocation's flush, so a later one sends it:
        // each poll here is one).
        eventually(SOON, "the functions to send the job's spans", || async {
            let _ = env.job(&env.alpha, &job).await;
            has_worker_spans(&received.lock().unwrap(), &job)
        })
        .await;
    } else {
        // Shutting down flushes the exporter's buffer.
        env.stop_server(SOON).await;
    }

    let spans = received.lock().unwrap().clone();
    let named = |name: &str| -> Vec<&Span> { spans.iter().filter(|s| s.name == name).collect() };
    let queue = named("queue")
        .into_iter()
        .find(|s| s.attributes.get("job_id") == Some(&job))
        .unwrap_or_else(|| panic!("no queue span for {job} in {spans:#?}"));
    let trace: Vec<&Span> = spans
        .iter()
        .filter(|s| s.trace_id == queue.trace_id)
        .collect();
    let in_trace = |name: &str| {
        trace
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no {name} span in the job's trace: {trace:#?}"))
    };
    let request = in_trace("request");
    let submit = in_trace("submit_async_job");
    let worker = in_trace("handle_delivery");
    let upstream = in_trace("upstream_complete");
    assert_eq!(submit.parent_span_id, request.span_id);
    assert_eq!(queue.parent_span_id, submit.span_id);
    // Across the queue: the worker's span continues the one that queued the job.
    assert_eq!(worker.parent_span_id, queue.span_id);
    assert_eq!(worker.attributes.get("job_id"), Some(&job));
    assert_eq!(
        worker.attributes.get("tenant").map(String::as_str),
        queue.attributes.get("tenant").map(String::as_str)
    );
    assert!(queue.attributes.contains_key("tenant"));
    assert!(trace.iter().any(|s| s.parent_span_id == worker.span_id));
    assert_eq!(
        upstream.attributes.get("model").map(String::as_str),
        Some("gpt-traced")
    );
    for span in &spans {
        for value in span.attributes.values() {
            assert!(
                !value.contains(prompt),
                "span {} carries the prompt",
                span.name
            );
        }
    }
}
