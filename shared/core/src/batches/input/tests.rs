//! The input file's validation, chunk planning and line reading, end to end over byte chunks.

use super::lines::*;
use bytes::Bytes;

use super::*;

const ENDPOINT: crate::ApiEndpoint = crate::ApiEndpoint::ChatCompletions;

fn line(id: &str) -> String {
    format!(
        r#"{{"custom_id":"{id}","method":"POST","url":"/v1/chat/completions","body":{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"hi {id}"}}]}}}}"#
    )
}

fn line_with_body(id: &str, body: &str) -> String {
    format!(r#"{{"custom_id":"{id}","method":"POST","url":"/v1/chat/completions","body":{body}}}"#)
}

fn plan_with(file: &[u8], limits: PlannerLimits, chunk: usize) -> PlanOutcome {
    let routes = |model: &str| model != "unknown-model";
    let mut planner = Planner::new(ENDPOINT, limits, &routes);
    for piece in file.chunks(chunk.max(1)) {
        planner.feed(piece);
    }
    planner.finish()
}

fn plan(file: &[u8]) -> PlanOutcome {
    plan_with(file, PlannerLimits::default(), file.len().max(1))
}

fn errors(file: &[u8]) -> Vec<BatchError> {
    match plan(file) {
        PlanOutcome::Invalid { errors, .. } => errors,
        valid => panic!("expected errors, got {valid:?}"),
    }
}

/// (code, param, line) triples, the part of an error tests pin down.
fn codes(file: &[u8]) -> Vec<(String, Option<String>, Option<u64>)> {
    errors(file)
        .into_iter()
        .map(|e| (e.code, e.param, e.line))
        .collect()
}

fn at(code: &str, param: Option<&str>, line: u64) -> (String, Option<String>, Option<u64>) {
    (code.to_owned(), param.map(str::to_owned), Some(line))
}

fn file_level(code: &str) -> (String, Option<String>, Option<u64>) {
    (code.to_owned(), None, None)
}

fn valid(outcome: PlanOutcome) -> (u64, Vec<ChunkPlan>, Vec<String>) {
    match outcome {
        PlanOutcome::Valid {
            total,
            chunks,
            models,
        } => (total, chunks, models),
        invalid => panic!("expected a valid file, got {invalid:?}"),
    }
}

fn file_of(lines: &[String]) -> Vec<u8> {
    lines
        .iter()
        .flat_map(|l| format!("{l}\n").into_bytes())
        .collect()
}

#[test]
fn valid_file_is_planned_as_one_chunk_covering_the_whole_file() {
    let file = file_of(&[line("a"), line("b")]);
    let (total, chunks, models) = valid(plan(&file));
    assert_eq!(total, 2);
    assert_eq!(
        chunks,
        vec![ChunkPlan {
            index: 0,
            start: 0,
            end: file.len() as u64,
            lines: 2,
            native: None,
        }]
    );
    assert_eq!(models, vec!["gpt-4o-mini".to_owned()]);
}

#[test]
fn models_are_listed_once_each_in_first_seen_order() {
    let body = |m: &str| format!(r#"{{"model":"{m}","messages":[{{"role":"user"}}]}}"#);
    let file = file_of(&[
        line_with_body("a", &body("m2")),
        line_with_body("b", &body("m1")),
        line_with_body("c", &body("m2")),
    ]);
    let (_, _, models) = valid(plan(&file));
    assert_eq!(models, vec!["m2".to_owned(), "m1".to_owned()]);
}

#[test]
fn invalid_json_is_reported_with_its_line_and_no_param() {
    let file = format!("{}\n{{\"custom_id\": \n", line("a"));
    let errors = errors(file.as_bytes());
    assert_eq!(
        errors,
        vec![BatchError {
            code: "invalid_json_line".to_owned(),
            message: "This line is not parseable as valid JSON.".to_owned(),
            param: None,
            line: Some(2),
        }]
    );
}

#[test]
fn a_duplicated_key_is_reported_with_its_path_and_line_like_every_other_request() {
    let body = r#"{"model":"gpt-4o-mini","model":"gpt-4o","messages":[{"role":"user"}]}"#;
    let file = file_of(&[
        line("a"),
        line_with_body("b", body),
        r#"{"custom_id":"c","custom_id":"d","method":"POST","url":"/v1/chat/completions","body":{}}"#.to_owned(),
    ]);
    assert_eq!(
        codes(&file),
        vec![
            at("duplicate_key", Some("body.model"), 2),
            at("duplicate_key", Some("custom_id"), 3),
        ]
    );
}

#[test]
fn json_that_is_not_an_object_is_an_invalid_json_line() {
    let file = format!("[{}]\n\"text\"\n42\n", line("a"));
    assert_eq!(
        codes(file.as_bytes()),
        vec![
            at("invalid_json_line", None, 1),
            at("invalid_json_line", None, 2),
            at("invalid_json_line", None, 3),
        ]
    );
}

#[test]
fn invalid_utf8_in_a_line_is_an_invalid_json_line() {
    let mut file = file_of(&[line("a")]);
    file.extend_from_slice(b"{\"custom_id\":\"\xff\xfe\",\"method\":\"POST\"}\n");
    assert_eq!(codes(&file), vec![at("invalid_json_line", None, 2)]);
}

#[test]
fn each_missing_key_is_reported_as_missing_required_parameter() {
    let errors = errors(b"{\"method\":\"POST\"}\n");
    let got: Vec<_> = errors
        .iter()
        .map(|e| (e.code.as_str(), e.param.as_deref(), e.line))
        .collect();
    assert_eq!(
        got,
        vec![
            ("missing_required_parameter", Some("custom_id"), Some(1)),
            ("missing_required_parameter", Some("url"), Some(1)),
            ("missing_required_parameter", Some("body"), Some(1)),
        ]
    );
    assert_eq!(
        errors[0].message,
        "Missing required parameter: 'custom_id'."
    );
}

#[test]
fn custom_id_that_is_not_a_non_empty_string_is_invalid_request() {
    let ok_rest =
        r#""method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[1]}"#;
    let file = format!(
        "{{\"custom_id\":\"\",{ok_rest}}}\n{{\"custom_id\":7,{ok_rest}}}\n{{\"custom_id\":null,{ok_rest}}}\n"
    );
    assert_eq!(
        codes(file.as_bytes()),
        vec![
            at("invalid_request", Some("custom_id"), 1),
            at("invalid_request", Some("custom_id"), 2),
            at("invalid_request", Some("custom_id"), 3),
        ]
    );
}

#[test]
fn duplicate_custom_id_is_reported_with_its_line() {
    let file = file_of(&[line("a"), line("b"), line("a"), line("a")]);
    let errors = errors(&file);
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0].code, "duplicate_custom_id");
    assert_eq!(errors[0].param.as_deref(), Some("custom_id"));
    assert_eq!(errors[0].line, Some(3));
    assert_eq!(errors[1].line, Some(4));
    assert!(errors[0].message.contains("'a'"), "{}", errors[0].message);
    assert!(
        errors[0].message.contains("line 1"),
        "{}",
        errors[0].message
    );
}

#[test]
fn escaped_custom_ids_are_compared_decoded() {
    let file = file_of(&[line("ab"), line("a\\u0062")]);
    assert_eq!(
        codes(&file),
        vec![at("duplicate_custom_id", Some("custom_id"), 2)]
    );
}

#[test]
fn method_other_than_post_is_invalid_request() {
    let file = format!("{}\n", line("a").replace("\"POST\"", "\"GET\""));
    let errors = errors(file.as_bytes());
    assert_eq!(
        codes(file.as_bytes()),
        vec![at("invalid_request", Some("method"), 1)]
    );
    assert_eq!(errors[0].message, "Only POST is supported.");
}

#[test]
fn url_other_than_the_batch_endpoint_is_invalid_url() {
    let file = format!(
        "{}\n",
        line("a").replace("/v1/chat/completions", "/v1/embeddings")
    );
    let errors = errors(file.as_bytes());
    assert_eq!(
        codes(file.as_bytes()),
        vec![at("invalid_url", Some("url"), 1)]
    );
    assert_eq!(
        errors[0].message,
        "The URL provided for this request does not match the batch endpoint."
    );
}

#[test]
fn body_that_is_not_an_object_is_invalid_request() {
    let file = file_of(&[
        line_with_body("a", "[1,{\"model\":\"m\"}]"),
        line_with_body("b", "\"text\""),
        line_with_body("c", "null"),
    ]);
    assert_eq!(
        codes(&file),
        vec![
            at("invalid_request", Some("body"), 1),
            at("invalid_request", Some("body"), 2),
            at("invalid_request", Some("body"), 3),
        ]
    );
}

#[test]
fn body_without_a_model_or_messages_is_invalid_request() {
    let file = file_of(&[
        line_with_body("a", r#"{"messages":[{"role":"user"}]}"#),
        line_with_body("b", r#"{"model":"","messages":[{"role":"user"}]}"#),
        line_with_body("c", r#"{"model":"m"}"#),
        line_with_body("d", r#"{"model":"m","messages":[ ]}"#),
        line_with_body("e", r#"{"model":"m","messages":{}}"#),
    ]);
    let errors = errors(&file);
    let got: Vec<_> = errors
        .iter()
        .map(|e| (e.param.as_deref(), e.line, e.message.as_str()))
        .collect();
    let model = "Model parameter is required.";
    let messages = "Messages parameter is required.";
    assert_eq!(
        got,
        vec![
            (Some("body.model"), Some(1), model),
            (Some("body.model"), Some(2), model),
            (Some("body.messages"), Some(3), messages),
            (Some("body.messages"), Some(4), messages),
            (Some("body.messages"), Some(5), messages),
        ]
    );
    assert!(errors.iter().all(|e| e.code == "invalid_request"));
}

#[test]
fn streaming_body_is_streaming_unsupported() {
    let file = file_of(&[
        line_with_body("a", r#"{"model":"m","messages":[1],"stream":false}"#),
        line_with_body("b", r#"{"model":"m","messages":[1],"stream":true}"#),
    ]);
    let errors = errors(&file);
    assert_eq!(
        codes(&file),
        vec![at("streaming_unsupported", Some("body.stream"), 2)]
    );
    assert_eq!(
        errors[0].message,
        "Chat Completions: Streaming is not supported in the Batch API."
    );
}

#[test]
fn model_the_routes_reject_is_model_not_found() {
    let file = file_of(&[
        line("a"),
        line_with_body("b", r#"{"model":"unknown-model","messages":[1]}"#),
    ]);
    let errors = errors(&file);
    assert_eq!(
        codes(&file),
        vec![at("model_not_found", Some("body.model"), 2)]
    );
    assert_eq!(
        errors[0].message,
        "The provided model 'unknown-model' is not supported by the Batch API."
    );
}

#[test]
fn unknown_keys_are_ignored() {
    let file = b"{\"custom_id\":\"a\",\"extra\":{\"x\":[1]},\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{\"model\":\"m\",\"temperature\":0.2,\"messages\":[1]}}\n";
    let (total, _, _) = valid(plan(file));
    assert_eq!(total, 1);
}

#[test]
fn bom_crlf_and_blank_lines_are_tolerated_and_lines_numbered_physically() {
    let mut file = b"\xEF\xBB\xBF".to_vec();
    file.extend_from_slice(format!("{}\r\n\r\n  \t\r\n{}\r\n\n", line("a"), line("b")).as_bytes());
    let (total, chunks, _) = valid(plan(&file));
    assert_eq!(total, 2);
    assert_eq!(chunks.len(), 1);
    assert_eq!((chunks[0].start, chunks[0].end), (0, file.len() as u64));

    file.extend_from_slice(b"{oops}\r\n");
    assert_eq!(codes(&file), vec![at("invalid_json_line", None, 6)]);
}

#[test]
fn a_bom_anywhere_but_the_file_start_is_invalid_json() {
    let file = format!("{}\n\u{feff}{}\n", line("a"), line("b"));
    assert_eq!(
        codes(file.as_bytes()),
        vec![at("invalid_json_line", None, 2)]
    );
}

#[test]
fn last_line_without_a_newline_is_a_normal_line() {
    let file = format!("{}\n{}", line("a"), line("b"));
    let (total, chunks, _) = valid(plan(file.as_bytes()));
    assert_eq!(total, 2);
    assert_eq!(chunks[0].end, file.len() as u64);

    let file = format!("{}\n{}", line("a"), line("a"));
    assert_eq!(
        codes(file.as_bytes()),
        vec![at("duplicate_custom_id", Some("custom_id"), 2)]
    );
}

#[test]
fn feeding_byte_by_byte_in_sevens_or_whole_gives_the_same_outcome() {
    let mut good = b"\xEF\xBB\xBF".to_vec();
    for i in 0..10 {
        good.extend_from_slice(
            format!("{}\r\n", line(&format!("r-\u{e9}\u{1f600}-{i}"))).as_bytes(),
        );
        if i % 3 == 0 {
            good.extend_from_slice(b"\r\n \n");
        }
    }
    let mut bad = good.clone();
    bad.extend_from_slice(b"{\"custom_id\":\"r-x\"}\r\n[1]\n");
    bad.extend_from_slice(line("r-\u{e9}\u{1f600}-3").as_bytes());
    for file in [good, bad] {
        let limits = PlannerLimits {
            lines_per_chunk: 3,
            ..PlannerLimits::default()
        };
        let whole = plan_with(&file, limits.clone(), file.len());
        assert_eq!(plan_with(&file, limits.clone(), 1), whole);
        assert_eq!(plan_with(&file, limits.clone(), 7), whole);
        assert_eq!(plan_with(&file, limits, 64 * 1024), whole);
    }
}

#[test]
fn chunk_plans_cover_every_line_once_and_read_back_in_order() {
    let ids: Vec<String> = (0..10).map(|i| format!("req-{i}")).collect();
    let mut file = b"\xEF\xBB\xBF\n".to_vec();
    for (i, id) in ids.iter().enumerate() {
        let eol = if i % 2 == 0 { "\r\n" } else { "\n" };
        file.extend_from_slice(format!("{}{eol}", line(id)).as_bytes());
        if i % 3 == 2 {
            file.extend_from_slice(b"\r\n   \n");
        }
    }
    file.extend_from_slice(b"\n\n");
    let limits = PlannerLimits {
        lines_per_chunk: 3,
        ..PlannerLimits::default()
    };
    for step in [1, 7, file.len()] {
        let (total, chunks, _) = valid(plan_with(&file, limits.clone(), step));
        assert_eq!(total, 10);
        assert_eq!(
            chunks.iter().map(|c| c.lines).collect::<Vec<_>>(),
            vec![3, 3, 3, 1]
        );
        assert_eq!(chunks[0].start, 0);
        assert_eq!(chunks.last().map(|c| c.end), Some(file.len() as u64));
        let mut read = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            assert_eq!(chunk.index as usize, i);
            if i > 0 {
                assert_eq!(chunk.start, chunks[i - 1].end);
            }
            let range = &file[chunk.start as usize..chunk.end as usize];
            let lines = request_lines(range, chunk.start == 0).expect("chunk reads back");
            assert_eq!(lines.len(), chunk.lines as usize);
            read.extend(lines);
        }
        let got: Vec<_> = read.iter().map(|r| r.custom_id.clone()).collect();
        assert_eq!(got, ids);
        assert!(read.iter().all(|r| r.model == "gpt-4o-mini"));
        assert_eq!(
            read[0].body,
            Bytes::from_static(
                br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi req-0"}]}"#
            )
        );
    }
}

#[test]
fn request_lines_decode_escapes_and_report_an_unparseable_line_by_index() {
    let file = format!("\u{feff}{}\r\n\n{}\n", line("a\\u0062"), line("c"));
    let lines = request_lines(file.as_bytes(), true).expect("valid lines");
    assert_eq!(lines[0].custom_id, "ab");
    assert_eq!(lines[1].custom_id, "c");

    let file = format!("{}\n\n{{\"custom_id\":\"x\"}}\n", line("a"));
    assert_eq!(request_lines(file.as_bytes(), false), Err(1));
}

#[test]
fn errors_are_capped_at_max_errors_but_all_counted() {
    let file = "not json\n".repeat(25);
    let limits = PlannerLimits {
        max_errors: 10,
        ..PlannerLimits::default()
    };
    match plan_with(file.as_bytes(), limits, 4) {
        PlanOutcome::Invalid {
            errors,
            total_errors,
        } => {
            assert_eq!(errors.len(), 10);
            assert_eq!(total_errors, 25);
            assert_eq!(errors[9].line, Some(10));
        }
        valid => panic!("expected errors, got {valid:?}"),
    }
}

#[test]
fn more_lines_than_max_lines_is_reported_once_as_too_many_tasks() {
    let ids: Vec<String> = (0..6).map(|i| line(&format!("r{i}"))).collect();
    let limits = PlannerLimits {
        max_lines: 3,
        ..PlannerLimits::default()
    };
    let file = file_of(&ids);
    match plan_with(&file, limits.clone(), 5) {
        PlanOutcome::Invalid {
            errors,
            total_errors,
        } => {
            assert_eq!(total_errors, 1);
            assert_eq!(errors[0].code, "too_many_tasks");
            assert_eq!(errors[0].line, None);
            assert_eq!(
                errors[0].message,
                "The input file has more than 3 requests."
            );
        }
        valid => panic!("expected errors, got {valid:?}"),
    }
    let (total, _, _) = valid(plan_with(&file_of(&ids[..3]), limits, 5));
    assert_eq!(total, 3);
}

#[test]
fn more_bytes_than_max_bytes_is_file_too_large() {
    let file = file_of(&[line("a"), line("b"), line("c")]);
    let limits = |max_bytes| PlannerLimits {
        max_bytes,
        ..PlannerLimits::default()
    };
    for step in [1, 7, file.len()] {
        match plan_with(&file, limits(file.len() as u64 - 1), step) {
            PlanOutcome::Invalid {
                errors,
                total_errors,
            } => {
                assert_eq!(total_errors, 1);
                assert_eq!(errors[0].code, "file_too_large");
                assert_eq!(errors[0].line, None);
            }
            valid => panic!("expected errors, got {valid:?}"),
        }
        valid(plan_with(&file, limits(file.len() as u64), step));
    }
}

#[test]
fn a_file_without_request_lines_is_empty_file() {
    for file in [
        &b""[..],
        b"\n\r\n  \n",
        b"\xEF\xBB\xBF",
        b"\xEF\xBB\xBF\r\n",
    ] {
        let errors = errors(file);
        assert_eq!(
            errors,
            vec![BatchError {
                code: "empty_file".to_owned(),
                message: "The input file is empty.".to_owned(),
                param: None,
                line: None,
            }]
        );
    }
    assert_eq!(codes(b"\n\n"), vec![file_level("empty_file")]);
}

#[test]
fn batch_error_serializes_all_four_keys_with_nulls() {
    let error = BatchError::file("empty_file", "The input file is empty.".to_owned());
    let json = serde_json::to_value(&error).expect("serializes");
    assert_eq!(
        json,
        serde_json::json!({
            "code": "empty_file",
            "message": "The input file is empty.",
            "param": null,
            "line": null,
        })
    );
    let back: BatchError = serde_json::from_value(json).expect("deserializes");
    assert_eq!(back, error);
}

#[test]
fn newline_search_finds_the_first_newline_at_any_offset() {
    for len in 0..40 {
        for nl in 0..len {
            let mut hay = vec![b'a'; len];
            hay[nl] = b'\n';
            if nl + 3 < len {
                hay[nl + 3] = b'\n';
            }
            assert_eq!(find_newline(&hay), Some(nl));
        }
        assert_eq!(find_newline(&vec![0x8a; len]), None);
    }
}

#[test]
fn long_lines_close_chunks_by_bytes_before_lines() {
    let body = "x".repeat(400);
    let file: String = (0..10)
        .map(|i| {
            format!(
                "{{\"custom_id\":\"c{i}\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{{\"model\":\"m\",\"messages\":[{{\"role\":\"user\",\"content\":\"{body}\"}}]}}}}\n"
            )
        })
        .collect();
    let routes = |_: &str| true;
    let limits = PlannerLimits {
        lines_per_chunk: 1000,
        max_chunk_bytes: 1000,
        ..PlannerLimits::default()
    };
    let mut planner = Planner::new(ENDPOINT, limits, &routes);
    planner.feed(file.as_bytes());
    let PlanOutcome::Valid { chunks, total, .. } = planner.finish() else {
        panic!("expected a valid file");
    };
    assert_eq!(total, 10);
    // Each line is ~520 bytes, so a chunk closes after its second line.
    assert_eq!(chunks.len(), 5);
    assert!(chunks.iter().all(|c| c.lines == 2));
    assert_eq!(chunks.last().map(|c| c.end), Some(file.len() as u64));
}

#[test]
fn a_responses_batch_takes_responses_bodies_but_no_background_and_no_stream() {
    let responses_line = |id: &str, extra: &str| {
        format!(
            r#"{{"custom_id":"{id}","method":"POST","url":"/v1/responses","body":{{"model":"gpt-4o-mini","input":"hi"{extra}}}}}"#
        )
    };
    let file = file_of(&[
        responses_line("a", ""),
        responses_line("b", r#","background":true"#),
        responses_line("c", r#","stream":true"#),
        line("d"),
    ]);
    let routes = |_: &str| true;
    let mut planner = Planner::new(
        crate::ApiEndpoint::Responses,
        PlannerLimits::default(),
        &routes,
    );
    planner.feed(&file);
    let PlanOutcome::Invalid { errors, .. } = planner.finish() else {
        panic!("expected errors");
    };
    let got: Vec<_> = errors
        .into_iter()
        .map(|e| (e.code, e.param, e.line))
        .collect();
    assert_eq!(
        got,
        vec![
            at("invalid_request", Some("body.background"), 2),
            at("streaming_unsupported", Some("body.stream"), 3),
            at("invalid_url", Some("url"), 4),
        ]
    );
}
