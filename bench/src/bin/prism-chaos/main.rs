//! `prism-chaos`: the fault matrix and soak driver (bench/faults.sh, bench/soak.sh). Owns a
//! `prism serve` (embedded, or `--backend aws` on the emulator, optionally through the fault
//! proxy), runs async jobs, scheduled jobs and one batch together against a mock model, SIGKILLs
//! and restarts prism at random moments, waits for every job and line to end, checks exactly
//! once, outcomes and upstream call bounds, and samples RSS and data directory size each second.

mod sampler;
mod server;
mod work;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use rand::Rng;
use serde_json::{Value, json};

use prism_testkit::chaos::{
    Bound, CHAOS_CODES, Calls, Submitted, Verdict, check_batch, check_calls, check_jobs,
    timed_out_attempts,
};
use server::{Prism, Storage};
use work::Api;

#[derive(Debug, Parser)]
#[command(name = "prism-chaos", version)]
struct Args {
    /// The `prism` binary.
    #[arg(long)]
    prism: PathBuf,
    /// The mock upstream's base URL (http://host:port).
    #[arg(long)]
    mock: String,
    /// `embedded` or `aws` (the emulator named by AWS_ENDPOINT_URL).
    #[arg(long, default_value = "embedded")]
    backend: String,
    /// aws: the endpoint prism talks to instead of AWS_ENDPOINT_URL (the fault proxy).
    #[arg(long)]
    aws_endpoint: Option<String>,
    /// Model prefix; `-async`, `-sched` and `-batch` are appended so the mock counts each kind
    /// apart. `mock-chaos-<ms>-<seed>` draws faults; `mock-slow-<ms>` never fails.
    #[arg(long, default_value = "mock-chaos-50-1")]
    model: String,
    #[arg(long, default_value_t = 200)]
    jobs: usize,
    #[arg(long, default_value_t = 20)]
    clients: usize,
    /// Async jobs submitted per second in all (0: as fast as the clients go). A paced run keeps
    /// prism under steady load for `jobs / submit_rate` seconds.
    #[arg(long, default_value_t = 0.0)]
    submit_rate: f64,
    /// Seconds to keep sampling prism after all work ended and was read back, with no load:
    /// whether RSS returns toward its baseline once idle.
    #[arg(long, default_value_t = 0)]
    idle_tail_s: u64,
    #[arg(long, default_value_t = 40)]
    scheduled: usize,
    #[arg(long, default_value_t = 1000)]
    lines: usize,
    #[arg(long, default_value_t = 3)]
    kills: u32,
    /// Kills fall at random moments in this many seconds after the batch is created.
    #[arg(long, default_value_t = 30)]
    kill_window_s: u64,
    /// Scheduled jobs fall due evenly over this many seconds, from 3 s after the start.
    #[arg(long, default_value_t = 20)]
    schedule_spread_s: u64,
    /// `[workers] concurrency`, `max_attempts` and `upstream_timeout` (seconds).
    #[arg(long, default_value_t = 64)]
    worker_concurrency: u64,
    #[arg(long, default_value_t = 5)]
    max_attempts: u64,
    #[arg(long, default_value_t = 2)]
    upstream_timeout_s: u64,
    /// `[batches] model_concurrency`, `line_concurrency`, `lines_per_chunk`.
    #[arg(long, default_value_t = 100)]
    model_concurrency: u64,
    #[arg(long, default_value_t = 100)]
    line_concurrency: u64,
    #[arg(long, default_value_t = 1000)]
    lines_per_chunk: u64,
    /// Extra lines for the `[batches]` section (e.g. checkpoint settings).
    #[arg(long, default_value = "")]
    batches_extra: String,
    /// Give up waiting for the work to end after this many seconds.
    #[arg(long, default_value_t = 900)]
    max_wait_s: u64,
    /// Directory for prism's data, config and log, and the run's outputs.
    #[arg(long)]
    out: PathBuf,
    /// `PRISM_LOG` for `prism serve`; its log (stdout and stderr, appended across restarts)
    /// is `<out>/prism.log`.
    #[arg(long, default_value = server::PRISM_LOG)]
    prism_log: String,
    /// Seed of the kill moments (the mock's faults have their own, in the model name).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn config(args: &Args) -> String {
    format!(
        "[[providers]]\nname = \"mock\"\nbase_url = \"{}/v1\"\nmodels = [\"*\"]\n\n\
         [workers]\nconcurrency = {}\nmax_attempts = {}\nupstream_timeout = \"{}s\"\n\
         shutdown_grace = \"5s\"\nlease_margin = \"2s\"\nvisibility = \"4s\"\nreconcile_every = \"2s\"\n\n\
         [batches]\nmodel_concurrency = {}\nline_concurrency = {}\nlines_per_chunk = {}\n{}\n",
        args.mock.trim_end_matches('/'),
        args.worker_concurrency,
        args.max_attempts,
        args.upstream_timeout_s,
        args.model_concurrency,
        args.line_concurrency,
        args.lines_per_chunk,
        args.batches_extra.replace("\\n", "\n"),
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.out)?;
    let run = format!("r{}", std::process::id());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(60))
        .build()?;
    let storage = match args.backend.as_str() {
        "embedded" => Storage::Embedded,
        "aws" => Storage::provision_aws(&format!("chaos-{run}"), args.aws_endpoint.clone()).await?,
        other => anyhow::bail!("unknown backend {other:?}"),
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut prism = Prism::new(args.prism.clone(), &args.out, port, storage);
    prism.log_filter = args.prism_log.clone();
    std::fs::write(&prism.config, config(&args))?;
    let key = prism.create_key("chaos").await?;
    prism.start(&http).await?;
    let api = Api {
        http: http.clone(),
        base: prism.base(),
        key,
    };
    let started = Instant::now();
    let sampler = sampler::Sampler::start(prism.pid.clone(), prism.data.clone(), started);
    let models = ["async", "sched", "batch"].map(|kind| format!("{}-{kind}-{run}", args.model));

    let (input, prompts) = work::batch_input(&models[2], &run, args.lines);
    let batch_id = work::create_batch(&api, input).await?;
    eprintln!("[chaos] batch {batch_id} of {} lines created", args.lines);

    let kill_times = kill_moments(&args);
    let killer = async {
        let mut log = Vec::new();
        for at in &kill_times {
            tokio::time::sleep_until((started + *at).into()).await;
            prism.kill().await?;
            let down = Instant::now();
            prism.start(&http).await?;
            log.push(json!({"at_s": at.as_secs_f64(), "restart_s": down.elapsed().as_secs_f64()}));
            eprintln!("[chaos] kill {} at {:.1} s", log.len(), at.as_secs_f64());
        }
        anyhow::Ok(log)
    };
    let lead = Duration::from_secs(3);
    let spread = Duration::from_secs(args.schedule_spread_s);
    let (kill_log, asyncs, scheduled) = tokio::join!(
        killer,
        work::submit_async(
            &api,
            &models[0],
            &run,
            args.jobs,
            args.clients,
            args.submit_rate
        ),
        work::submit_scheduled(&api, &models[1], &run, args.scheduled, lead, spread),
    );
    let kill_log = kill_log?;
    eprintln!(
        "[chaos] submitted after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let deadline = Instant::now() + Duration::from_secs(args.max_wait_s);
    let ids = |submitted: &[anyhow::Result<Submitted>]| {
        submitted
            .iter()
            .filter_map(|s| s.as_ref().ok().map(|s| s.ids[0].clone()))
            .collect::<Vec<_>>()
    };
    let mut all_ids = ids(&asyncs);
    all_ids.extend(ids(&scheduled));
    let (finals, batch) = tokio::join!(
        work::wait_for_jobs(&api, all_ids, deadline),
        work::wait_for_batch(&api, &batch_id, deadline),
    );
    let batch = batch?;
    let finished_s = started.elapsed().as_secs_f64();
    eprintln!("[chaos] work ended after {finished_s:.1} s");
    let output = work::file_lines(&api, &batch["output_file_id"]).await?;
    let errors = work::file_lines(&api, &batch["error_file_id"]).await?;
    let stats: Value = http
        .get(format!("{}/_stats", args.mock.trim_end_matches('/')))
        .send()
        .await?
        .json()
        .await
        .context("reading the mock's counters")?;
    if args.idle_tail_s > 0 {
        eprintln!("[chaos] idle for {} s, still sampling", args.idle_tail_s);
        tokio::time::sleep(Duration::from_secs(args.idle_tail_s)).await;
    }
    let samples = sampler.finish().await;
    prism.stop(Duration::from_secs(10)).await;

    let chaos = args.model.starts_with("mock-chaos-");
    let allowed: &[&str] = if chaos { &CHAOS_CODES } else { &[] };
    let mut verdict = Verdict::default();
    check_jobs(&mut verdict, "async", &asyncs, &finals, allowed);
    check_jobs(&mut verdict, "scheduled", &scheduled, &finals, allowed);
    check_batch(&mut verdict, &batch, &output, &errors, &prompts, allowed);
    let kills = u64::from(prism.kills);
    let [async_calls, sched_calls, batch_calls] = [0, 1, 2].map(|i| Calls::of(&stats, &models[i]));
    let jobs_calls = Calls {
        requests: async_calls.requests + sched_calls.requests,
        ok: async_calls.ok + sched_calls.ok,
        rate_limited: async_calls.rate_limited + sched_calls.rate_limited,
    };
    let prism_log = std::fs::read_to_string(&prism.log).unwrap_or_default();
    let timed_out = |models: &[&String]| {
        models
            .iter()
            .map(|m| timed_out_attempts(&prism_log, m))
            .sum::<u64>()
    };
    let (jobs_timed_out, batch_timed_out) = (
        timed_out(&[&models[0], &models[1]]),
        timed_out(&[&models[2]]),
    );
    check_calls(
        &mut verdict,
        jobs_calls,
        &Bound {
            kind: "jobs",
            items: (args.jobs + args.scheduled) as u64,
            attempts: args.max_attempts,
            rate_limits_count: true,
            kills,
            in_flight: args.worker_concurrency,
            timed_out: jobs_timed_out,
        },
    );
    check_calls(
        &mut verdict,
        batch_calls,
        &Bound {
            kind: "batch",
            items: args.lines as u64,
            attempts: args.max_attempts,
            rate_limits_count: false,
            kills,
            in_flight: args.model_concurrency,
            timed_out: batch_timed_out,
        },
    );

    // The evidence behind a failed check: keys answered with two ids, and ids that never ended.
    let doubled: Vec<&Vec<String>> = asyncs
        .iter()
        .chain(&scheduled)
        .filter_map(|s| s.as_ref().ok())
        .filter(|s| s.ids.len() > 1)
        .map(|s| &s.ids)
        .collect();
    let open: Vec<Value> = asyncs
        .iter()
        .chain(&scheduled)
        .filter_map(|s| s.as_ref().ok())
        .map(|s| &s.ids[0])
        .filter_map(|id| match finals.get(id) {
            None => Some(json!({"id": id, "status": null})),
            Some(job) if !work::is_terminal(job["status"].as_str().unwrap_or("")) => {
                Some(json!({"id": id, "status": job["status"]}))
            }
            Some(_) => None,
        })
        .collect();
    let report = json!({
        "doubled_keys": doubled,
        "open_jobs": open,
        "args": format!("{args:?}"),
        "backend": args.backend,
        "proxy": args.aws_endpoint,
        "jobs": args.jobs, "clients": args.clients, "scheduled": args.scheduled, "lines": args.lines,
        "kills": kill_log,
        "wall_s": finished_s,
        "idle_tail_s": args.idle_tail_s,
        "calls": {"async": async_calls, "scheduled": sched_calls, "batch": batch_calls},
        "attempts_timed_out": {"jobs": jobs_timed_out, "batch": batch_timed_out},
        "mock_drawn": stats["drawn"],
        "batch_status": batch["status"], "request_counts": batch["request_counts"],
        "peak_rss_kb": samples.iter().map(|s| s.rss_kb).max(),
        "peak_data_bytes": samples.iter().map(|s| s.data_bytes).max(),
        "peak_wal_bytes": samples.iter().map(|s| s.wal_bytes).max(),
        "verdict": verdict,
    });
    std::fs::write(
        args.out.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let mut csv = String::from("second,rss_kb,data_bytes,wal_bytes\n");
    for s in &samples {
        csv.push_str(&format!(
            "{},{},{},{}\n",
            s.second, s.rss_kb, s.data_bytes, s.wal_bytes
        ));
    }
    std::fs::write(args.out.join("samples.csv"), csv)?;
    for check in &verdict.checks {
        println!(
            "{} {}: {}",
            if check.pass { "PASS" } else { "FAIL" },
            check.name,
            check.detail
        );
    }
    println!("outcomes: {:?}", verdict.outcomes);
    println!("wall {finished_s:.1} s, kills {kills}");
    if !verdict.passed() {
        std::process::exit(1);
    }
    Ok(())
}

/// `kills` moments, uniformly at random in the kill window, at least 2 s apart so each restart
/// has come up before the next kill.
fn kill_moments(args: &Args) -> Vec<Duration> {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let window = args.kill_window_s.max(1) as f64;
    let mut times: Vec<f64> = (0..args.kills)
        .map(|_| rng.random::<f64>() * window + 1.0)
        .collect();
    times.sort_by(f64::total_cmp);
    let mut last = f64::NEG_INFINITY;
    for t in &mut times {
        *t = t.max(last + 2.0);
        last = *t;
    }
    times.into_iter().map(Duration::from_secs_f64).collect()
}
