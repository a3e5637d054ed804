//! Command-line entry for the fault-injecting proxy in front of the AWS emulator (bench/faults.sh).

use std::net::SocketAddr;

use clap::Parser;
use prism_testkit::fault_proxy::{FaultRates, spawn_fault_proxy};
use tokio::signal::unix::{SignalKind, signal};

/// Forwards to the emulator at `--upstream`, injecting AWS faults at the given per-cent rates;
/// prints what it injected (JSON) when stopped with SIGINT or SIGTERM.
#[derive(Debug, Parser)]
#[command(name = "prism-fault-proxy", version)]
struct Args {
    /// Loopback address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The emulator, e.g. http://127.0.0.1:5000.
    #[arg(long)]
    upstream: hyper::Uri,
    /// Per cent of DynamoDB requests answered 400 ThrottlingException.
    #[arg(long, default_value_t = 3.0)]
    dynamodb_throttle: f64,
    /// Per cent of SQS requests answered 500/503.
    #[arg(long, default_value_t = 3.0)]
    sqs_5xx: f64,
    /// Per cent of S3 requests answered 503 SlowDown.
    #[arg(long, default_value_t = 3.0)]
    s3_slow_down: f64,
    /// Per cent of DynamoDB, SQS and S3 requests whose connection is reset before forwarding.
    #[arg(long, default_value_t = 2.0)]
    reset_before: f64,
    /// Per cent whose connection is reset after the emulator did the request.
    #[arg(long, default_value_t = 2.0)]
    reset_after: f64,
    /// Per cent whose answer is held back, after the emulator did the request, until the client
    /// gives up (a call that never answers).
    #[arg(long, default_value_t = 0.0)]
    hang: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rates = FaultRates {
        dynamodb_throttle: args.dynamodb_throttle / 100.0,
        sqs_5xx: args.sqs_5xx / 100.0,
        s3_slow_down: args.s3_slow_down / 100.0,
        reset_before: args.reset_before / 100.0,
        reset_after: args.reset_after / 100.0,
        hang: args.hang / 100.0,
    };
    let proxy = spawn_fault_proxy(args.listen, args.upstream, rates, args.seed).await?;
    // Scripts wait for this exact line and read the port from it.
    println!("listening on {}", proxy.addr);
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    println!("{}", serde_json::to_string(&proxy.counts().0)?);
    Ok(())
}
