//! Command-line entry for the mock OpenAI-compatible upstream, for manual runs and benchmarks.

use std::net::SocketAddr;

use clap::Parser;
use prism_testkit::spawn_mock_upstream;

/// Serves the Prism mock OpenAI-compatible upstream until interrupted.
#[derive(Debug, Parser)]
#[command(name = "prism-mock-upstream", version)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:9090")]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let upstream = spawn_mock_upstream(args.listen).await?;
    // Scripts wait for this exact line and read the port from it when they asked for port 0.
    println!("listening on {}", upstream.addr);
    tokio::signal::ctrl_c().await?;
    upstream.shutdown().await;
    Ok(())
}
