//! The measurements of `prism-lambda-cold-start` and what is made of them: per-function
//! statistics, the markdown report and the CSV of every sample.

use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use crate::FUNCTIONS;

/// One measurement.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Sample {
    /// `alone`, `stack`, `init`, `exec`, or an emulator call (`sdk-connect`, `ssm-first`,
    /// `ssm-warm`).
    pub(crate) mode: String,
    pub(crate) function: String,
    pub(crate) round: usize,
    pub(crate) pid: u32,
    /// Process start (or call start) to the end of the first response (or the call's end).
    pub(crate) ms: f64,
    /// The same event again, right after: the warm invocation, through the same hops.
    pub(crate) warm_ms: Option<f64>,
    pub(crate) error: Option<String>,
}

impl Sample {
    pub(crate) fn ok(mode: &str, function: &str, round: usize, pid: u32, ms: f64) -> Self {
        Self {
            mode: mode.to_owned(),
            function: function.to_owned(),
            round,
            pid,
            ms,
            warm_ms: None,
            error: None,
        }
    }

    pub(crate) fn failed(mode: &str, function: &str, round: usize, error: &anyhow::Error) -> Self {
        Self {
            error: Some(format!("{error:#}")),
            ..Self::ok(mode, function, round, 0, f64::NAN)
        }
    }
}

/// Nearest-rank percentile of sorted values.
pub(crate) fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted.get(rank - 1).copied()
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Stats {
    pub(crate) mode: String,
    pub(crate) function: String,
    pub(crate) n: usize,
    pub(crate) errors: usize,
    pub(crate) min: Option<f64>,
    p50: Option<f64>,
    pub(crate) max: Option<f64>,
    warm_p50: Option<f64>,
}

pub(crate) fn stats(samples: &[Sample], mode: &str, function: &str) -> Stats {
    let mine: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.mode == mode && s.function == function)
        .collect();
    let mut values: Vec<f64> = mine
        .iter()
        .filter(|s| s.error.is_none())
        .map(|s| s.ms)
        .collect();
    values.sort_by(f64::total_cmp);
    let mut warm: Vec<f64> = mine.iter().filter_map(|s| s.warm_ms).collect();
    warm.sort_by(f64::total_cmp);
    Stats {
        mode: mode.to_owned(),
        function: function.to_owned(),
        n: values.len(),
        errors: mine.len() - values.len(),
        min: values.first().copied(),
        p50: percentile(&values, 0.5),
        max: values.last().copied(),
        warm_p50: percentile(&warm, 0.5),
    }
}

pub(crate) fn cell(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.0}"))
}

pub(crate) fn cell1(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.1}"))
}

pub(crate) fn summary_of(values: &[f64]) -> String {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    format!(
        "p50 {} ms, max {} ms (n = {})",
        cell(percentile(&sorted, 0.5)),
        cell(sorted.last().copied()),
        sorted.len()
    )
}

#[derive(Debug, Serialize)]
pub(crate) struct Report<'a> {
    pub(crate) label: &'a str,
    pub(crate) binary_dir: String,
    pub(crate) stats: Vec<Stats>,
    pub(crate) stack_ready_ms: &'a [f64],
    pub(crate) stack_all_answered_ms: &'a [f64],
    pub(crate) samples: &'a [Sample],
}

pub(crate) fn markdown(report: &Report<'_>) -> String {
    let find = |mode: &str, function: &str| {
        report
            .stats
            .iter()
            .find(|s| s.mode == mode && s.function == function)
    };
    let mut out = format!(
        "Cold starts, {} binaries (`{}`), ms; n per cell in brackets when runs failed:\n\n",
        report.label, report.binary_dir
    );
    out.push_str(
        "| Function | Alone p50 | Alone max | All 7 at once p50 | All 7 at once max | Init alone p50 | Init alone max | Warm event p50 | `--version` p50 |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for function in FUNCTIONS {
        let with_errors = |s: Option<&Stats>, value: Option<f64>| match s {
            Some(s) if s.errors > 0 => format!("{} [{} failed]", cell(value), s.errors),
            _ => cell(value),
        };
        let alone = find("alone", function);
        let stack = find("stack", function);
        let init = find("init", function);
        let exec = find("exec", function);
        out.push_str(&format!(
            "| {function} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            with_errors(alone, alone.and_then(|s| s.p50)),
            cell(alone.and_then(|s| s.max)),
            with_errors(stack, stack.and_then(|s| s.p50)),
            cell(stack.and_then(|s| s.max)),
            with_errors(init, init.and_then(|s| s.p50)),
            cell(init.and_then(|s| s.max)),
            cell1(alone.and_then(|s| s.warm_p50)),
            cell1(exec.and_then(|s| s.p50)),
        ));
    }
    let n = |mode: &str| find(mode, FUNCTIONS[0]).map_or(0, |s| s.n + s.errors);
    out.push_str(&format!(
        "\nRuns per function: alone {}, all at once {}, init {}. Stack start \
         (`LocalFunctions::start`, the runtime emulator listening): {}; from it to the last of \
         the seven first answers: {}.\n",
        n("alone"),
        n("stack"),
        n("init"),
        summary_of(report.stack_ready_ms),
        summary_of(report.stack_all_answered_ms),
    ));
    let call = |mode: &str| {
        find(mode, "-").map_or_else(
            || "–".to_owned(),
            |s| {
                format!(
                    "first {} ms, p50 {} ms",
                    cell1(
                        report
                            .samples
                            .iter()
                            .find(|x| x.mode == mode && x.error.is_none())
                            .map(|x| x.ms)
                    ),
                    cell1(s.p50)
                )
            },
        )
    };
    out.push_str(&format!(
        "\nEmulator calls of init, from this driver: SDK config and clients \
         (`AwsBackend::connect`) {}; config parameter `GetParameter` on a fresh client {}, on a \
         warm one {}.\n",
        call("sdk-connect"),
        call("ssm-first"),
        call("ssm-warm"),
    ));
    let errors: Vec<&Sample> = report
        .samples
        .iter()
        .filter(|s| s.error.is_some())
        .collect();
    if !errors.is_empty() {
        out.push_str("\nFailed runs:\n\n");
        for s in errors {
            out.push_str(&format!(
                "- {} {} round {}: {}\n",
                s.mode,
                s.function,
                s.round,
                s.error.as_deref().unwrap_or_default()
            ));
        }
    }
    out
}

pub(crate) fn write_samples(path: &Path, samples: &[Sample]) -> anyhow::Result<()> {
    let mut text = String::from("mode,function,round,pid,ms,warm_ms,error\n");
    for s in samples {
        text.push_str(&format!(
            "{},{},{},{},{:.3},{},{}\n",
            s.mode,
            s.function,
            s.round,
            s.pid,
            s.ms,
            s.warm_ms.map_or_else(String::new, |w| format!("{w:.3}")),
            s.error
                .as_deref()
                .map_or_else(String::new, |e| format!("\"{}\"", e.replace('"', "'")))
        ));
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
