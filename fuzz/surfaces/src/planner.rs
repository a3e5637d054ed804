//! The batch input planner (`batches::input::Planner`) and the chunk reader processors use
//! (`request_lines`), with the product's limits and with tiny ones that make every cap bite on
//! small inputs.

use prism_core::batches::input::{
    BatchError, ChunkPlan, PlanOutcome, Planner, PlannerLimits, request_lines,
};

const ENDPOINT: prism_core::ApiEndpoint = prism_core::ApiEndpoint::ChatCompletions;
/// Longest error message a line may produce: ids, models and keys are echoed cut short, so a
/// hostile file cannot balloon the error list (stored with the batch).
const MAX_MESSAGE_BYTES: usize = 1024;

fn routes(model: &str) -> bool {
    !model.starts_with("no-")
}

fn tiny_limits() -> PlannerLimits {
    PlannerLimits {
        max_lines: 6,
        max_bytes: 4096,
        max_errors: 3,
        lines_per_chunk: 2,
        max_chunk_bytes: 300,
    }
}

fn plan(data: &[u8], limits: PlannerLimits, splits: &[usize]) -> PlanOutcome {
    let mut planner = Planner::new(ENDPOINT, limits, &routes);
    let mut at = 0;
    for &split in splits {
        let split = split.clamp(at, data.len());
        planner.feed(&data[at..split]);
        at = split;
    }
    planner.feed(&data[at..]);
    planner.finish()
}

/// Split points that depend only on the bytes, so a crash replays exactly.
fn splits_of(data: &[u8]) -> Vec<usize> {
    let hash = data.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let len = data.len().max(1) as u64;
    let mut points: Vec<usize> = (0..3)
        .map(|i| ((hash >> (i * 20)) % len) as usize)
        .collect();
    points.sort_unstable();
    points
}

/// Request lines as the planner counts them: non-blank after CR and a leading BOM are removed.
fn request_line_count(data: &[u8]) -> u64 {
    let mut count = 0;
    for (i, raw) in data.split(|&b| b == b'\n').enumerate() {
        let mut text = raw.strip_suffix(b"\r").unwrap_or(raw);
        if i == 0 {
            text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
        }
        if !text.iter().all(u8::is_ascii_whitespace) {
            count += 1;
        }
    }
    count
}

pub fn batch_planner(data: &[u8]) {
    for limits in [PlannerLimits::default(), tiny_limits()] {
        let whole = plan(data, limits.clone(), &[]);
        let split = plan(data, limits.clone(), &splits_of(data));
        assert_eq!(whole, split, "the plan depends on how the file was fed");
        check(data, &limits, whole);
    }
}

fn check(data: &[u8], limits: &PlannerLimits, outcome: PlanOutcome) {
    match outcome {
        PlanOutcome::Valid {
            total,
            chunks,
            models,
        } => {
            assert!(data.len() as u64 <= limits.max_bytes);
            assert_eq!(
                total,
                request_line_count(data),
                "total is not the line count"
            );
            assert!(total >= 1 && total <= limits.max_lines as u64);
            assert!(models.iter().all(|m| routes(m)));
            check_chunks(data, limits, total, &chunks);
        }
        PlanOutcome::Invalid {
            errors,
            total_errors,
        } => {
            assert!(!errors.is_empty(), "an invalid file without an error");
            assert!(errors.len() <= limits.max_errors);
            assert!(total_errors >= errors.len() as u64);
            errors.iter().for_each(check_error);
        }
    }
}

fn check_error(error: &BatchError) {
    assert!(
        error.message.len() <= MAX_MESSAGE_BYTES,
        "a {}-byte message for {}",
        error.message.len(),
        error.code
    );
    assert!(
        error
            .param
            .as_ref()
            .is_none_or(|p| p.len() <= MAX_MESSAGE_BYTES),
        "a long param"
    );
}

/// The chunks tile the file, each reads back into as many requests as it claims, and every
/// custom_id is read exactly once.
fn check_chunks(data: &[u8], limits: &PlannerLimits, total: u64, chunks: &[ChunkPlan]) {
    let mut at = 0u64;
    let mut lines = 0u64;
    let mut ids = std::collections::HashSet::new();
    for (index, chunk) in chunks.iter().enumerate() {
        assert_eq!(chunk.index as usize, index);
        assert_eq!(chunk.start, at, "chunks do not tile the file");
        assert!(chunk.end > chunk.start && chunk.lines >= 1);
        assert!(chunk.lines as usize <= limits.lines_per_chunk.max(1));
        let range = &data[chunk.start as usize..chunk.end as usize];
        let read = request_lines(range, chunk.start == 0).expect("a planned chunk reads back");
        assert_eq!(read.len(), chunk.lines as usize);
        for line in read {
            assert!(!line.model.is_empty() && routes(&line.model));
            assert!(ids.insert(line.custom_id), "a custom_id read twice");
        }
        lines += u64::from(chunk.lines);
        at = chunk.end;
    }
    assert_eq!(at, data.len() as u64, "the chunks stop short of the end");
    assert_eq!(lines, total);
}
