//! `prism`: parses arguments, sets up logging and signals, and runs a command.

use clap::Parser;
use prism_app::config::Config;
use prism_server::cli::{Cli, Command, KeysCommand, WebhooksCommand};
use prism_server::keys::{create_key, list_keys, open_key_store, revoke_key};
use prism_server::remote;
use prism_server::serve::serve;
use prism_server::telemetry::init_tracing;
use prism_server::webhooks::{
    create_endpoint, delete_endpoint, list_endpoints, open_webhook_store,
};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Serve(args) = cli.command {
        // The config first: it says whether spans are exported.
        let config = Config::load(args.config.as_deref())?;
        let traces = init_tracing(cli.log_format, Some(&config.traces))?;
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        let served = serve(args, config, shutdown).await;
        traces.shutdown().await;
        served?;
        return Ok(());
    }
    init_tracing(cli.log_format, None)?;
    match cli.command {
        Command::Serve(_) => {}
        Command::Keys(KeysCommand::Create { tenant, store }) => {
            let store = open_key_store(&store).await?;
            println!("{}", create_key(store.as_ref(), &tenant).await?);
        }
        Command::Keys(KeysCommand::List { store }) => {
            let store = open_key_store(&store).await?;
            for key in list_keys(store.as_ref()).await? {
                let state = if key.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                println!(
                    "{}\t{}\t{}…\t{}",
                    key.id, key.tenant, key.display_prefix, state
                );
            }
        }
        Command::Keys(KeysCommand::Revoke { key, store }) => {
            let store = open_key_store(&store).await?;
            revoke_key(store.as_ref(), &key).await?;
            eprintln!("revoked {key}");
        }
        Command::Batches(args) => exit(remote::run_batches(args).await?),
        Command::Jobs(args) => exit(remote::run_jobs(args).await?),
        Command::Scheduled(args) => exit(remote::run_scheduled(args).await?),
        Command::Files(args) => exit(remote::run_files(args).await?),
        Command::Webhooks(WebhooksCommand::Create {
            tenant,
            url,
            events,
            allow_private_targets,
            store,
        }) => {
            let store = open_webhook_store(&store).await?;
            let endpoint = create_endpoint(
                store.as_ref(),
                &tenant,
                &url,
                &events,
                allow_private_targets,
            )
            .await?;
            let secret = endpoint.secrets.first().map(|s| s.value.as_str());
            println!(
                "{}\t{}\t{}",
                endpoint.id,
                endpoint.url,
                secret.unwrap_or("")
            );
        }
        Command::Webhooks(WebhooksCommand::List { tenant, store }) => {
            let store = open_webhook_store(&store).await?;
            for e in list_endpoints(store.as_ref(), &tenant).await? {
                let events: Vec<&str> = e.events.iter().map(|k| k.as_str()).collect();
                println!(
                    "{}\t{}\t{}\t{}",
                    e.id,
                    e.url,
                    e.status.as_str(),
                    if events.is_empty() {
                        "*".to_owned()
                    } else {
                        events.join(",")
                    }
                );
            }
        }
        Command::Webhooks(WebhooksCommand::Delete { id, tenant, store }) => {
            let store = open_webhook_store(&store).await?;
            delete_endpoint(store.as_ref(), &tenant, &id).await?;
            eprintln!("deleted {id}");
        }
    }
    Ok(())
}

/// Ends the process with the outcome's status at once: a Ctrl-C prompt may still be reading stdin
/// on a blocking thread that the runtime would otherwise wait for.
fn exit(outcome: remote::Outcome) -> ! {
    std::process::exit(i32::from(outcome.exit_code()))
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGTERM");
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
    }
    shutdown.cancel();
}
