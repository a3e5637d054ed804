//! `prism-validate`: throughput of batch input validation (`prism_core::batches::input::Planner`)
//! over a realistic JSONL file generated in memory, fed in 64 KiB chunks as an upload streams.

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use prism_core::batches::input::{PlanOutcome, Planner, PlannerLimits};

const ENDPOINT: prism_core::ApiEndpoint = prism_core::ApiEndpoint::ChatCompletions;
const FEED_CHUNK: usize = 64 * 1024;

#[derive(Debug, Parser)]
#[command(name = "prism-validate", about = "Batch input validation throughput")]
struct Cli {
    /// Size of the generated file in MiB.
    #[arg(long, default_value_t = 200)]
    mb: u64,
}

const WORDS: &[&str] = &[
    "the",
    "model",
    "answer",
    "request",
    "summarize",
    "following",
    "customer",
    "support",
    "ticket",
    "please",
    "translate",
    "into",
    "French",
    "and",
    "keep",
    "tone",
    "friendly",
    "order",
    "delayed",
    "refund",
    "policy",
    "explain",
    "why",
    "sky",
    "blue",
    "in",
    "two",
    "sentences",
    "café",
    "naïve",
    "résumé",
    "data",
    "pipeline",
    "batch",
    "of",
    "quarterly",
];

/// xorshift64: deterministic, so runs are comparable, and needs no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn content(rng: &mut Rng, out: &mut String) {
    let target = 100 + rng.below(301) as usize;
    let start = out.len();
    while out.len() - start < target {
        if out.len() > start {
            // The odd escaped newline or quote keeps the string scanner off its fastest path,
            // as real prompts do.
            match rng.below(40) {
                0 => out.push_str("\\n"),
                1 => out.push_str(" \\\""),
                _ => out.push(' '),
            }
        }
        out.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
    }
}

fn generate(bytes: u64) -> (Vec<u8>, u64) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut file = String::with_capacity(bytes as usize + 4096);
    let mut lines = 0u64;
    let roles = ["system", "user", "assistant"];
    while (file.len() as u64) < bytes {
        file.push_str(r#"{"custom_id":"request-"#);
        file.push_str(&lines.to_string());
        file.push_str(r#"","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":["#);
        let messages = 1 + rng.below(3) as usize;
        for (i, role) in roles.iter().skip(3 - messages).enumerate() {
            if i > 0 {
                file.push(',');
            }
            file.push_str(r#"{"role":""#);
            file.push_str(role);
            file.push_str(r#"","content":""#);
            content(&mut rng, &mut file);
            file.push_str("\"}");
        }
        file.push_str(r#"],"max_tokens":256,"temperature":0.2}}"#);
        file.push('\n');
        lines += 1;
    }
    (file.into_bytes(), lines)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (file, lines) = generate(cli.mb * 1024 * 1024);
    let routes = |_: &str| true;
    let limits = PlannerLimits {
        max_lines: usize::MAX,
        max_bytes: u64::MAX,
        ..PlannerLimits::default()
    };

    let started = Instant::now();
    let mut planner = Planner::new(ENDPOINT, limits, &routes);
    for chunk in file.chunks(FEED_CHUNK) {
        planner.feed(chunk);
    }
    let outcome = planner.finish();
    let seconds = started.elapsed().as_secs_f64();

    match outcome {
        PlanOutcome::Valid { total, chunks, .. } if total == lines => {
            let mb_per_s = file.len() as f64 / (1024.0 * 1024.0) / seconds;
            println!(
                "bytes={} lines={lines} chunks={} seconds={seconds:.3} MiB/s={mb_per_s:.1}",
                file.len(),
                chunks.len()
            );
            ExitCode::SUCCESS
        }
        PlanOutcome::Valid { total, .. } => {
            eprintln!("validated {total} lines, generated {lines}");
            ExitCode::FAILURE
        }
        PlanOutcome::Invalid {
            errors,
            total_errors,
        } => {
            eprintln!("generated file is invalid ({total_errors} errors): {errors:?}");
            ExitCode::FAILURE
        }
    }
}
