//! `prism serve`: wiring only. Calls a backend's one wiring function, starts its worker runtime,
//! serves the router on a listener, and shuts them down in order. `--backend embedded` runs on
//! SQLite in the data directory (`EmbeddedBackend`, `WorkerRuntime`); `--backend aws` runs the
//! same router and workers against DynamoDB, SQS and S3 (`prism_app::aws::connect_aws`,
//! `prism_app::runtime::run_workers`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use prism_app::aws::{AppError, ConfigSource, ProviderKeys, connect_aws};
use prism_app::config::{Config, ConfigError, HttpSection};
use prism_app::http::{HttpHost, app_state};
use prism_app::runtime::{SQS_RECEIVE_WAIT, run_workers};
use prism_core::consumer::ConsumerConfig;
use prism_core::deps::Deps;
use prism_core::ports::KeyStore;
use prism_core::{Clock, StoreError, SystemClock};
use prism_embedded::{
    DATABASE_FILE, DataDirLock, Database, EmbeddedBackend, LockError, RuntimeConfig,
    SqliteKeyStore, WorkerRuntime, WriterConfig,
};
use prism_http::router;
use prism_upstream::{HttpUpstream, UpstreamBuildError};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::cli::{Backend, ServeArgs};
use crate::keys::{KeysError, create_key};
use crate::telemetry::{TelemetryError, serve_metrics};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] KeysError),
    #[error(transparent)]
    Upstream(#[from] UpstreamBuildError),
    #[error(transparent)]
    Aws(#[from] AppError),
    #[error("cannot create data directory {0}: {1}")]
    DataDir(PathBuf, std::io::Error),
    #[error("cannot listen on {0}: {1}")]
    Listen(std::net::SocketAddr, std::io::Error),
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
}

/// Crash tests: while the file this names exists, the embedded writer holds each group before
/// its commit (see `WriterConfig::hold_commit_while`).
const HOLD_COMMIT_ENV: &str = "PRISM_TEST_HOLD_COMMIT_WHILE";

/// Tests of the dead-letter path: when set, every delivery is past its receive limit
/// (`max_receives` 0, which a config file may not say), so the next delivery of any message goes
/// to its dead-letter handling. On embedded storage a delivery cut off by a crash does not count,
/// so no valid limit lets a test reach that path after a restart; unset in production.
const DEAD_LETTER_EVERY_DELIVERY_ENV: &str = "PRISM_TEST_DEAD_LETTER_EVERY_DELIVERY";

/// Serves until `shutdown` is cancelled (SIGTERM or SIGINT in `main`).
pub async fn serve(
    args: ServeArgs,
    mut config: Config,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    if std::env::var_os(DEAD_LETTER_EVERY_DELIVERY_ENV).is_some() {
        tracing::warn!("test hook: every delivery goes to the dead-letter path");
        config.workers.max_receives = 0;
    }
    if let Some(listen) = config.metrics.listen {
        serve_metrics(listen, shutdown.clone()).await?;
    }
    match args.backend {
        Backend::Embedded => serve_embedded(args, config, shutdown).await,
        Backend::Aws => serve_aws(args, config, shutdown).await,
    }
}

async fn serve_embedded(
    args: ServeArgs,
    config: Config,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let data_dir = args.data.data_dir.clone();
    std::fs::create_dir_all(&data_dir).map_err(|e| ServeError::DataDir(data_dir.clone(), e))?;
    let _lock = DataDirLock::acquire(&data_dir)?;

    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let db = Database::open_with(
        &data_dir.join(DATABASE_FILE),
        WriterConfig {
            max_group_writes: config.storage.group_max_writes.max(1),
            max_group_bytes: config.storage.group_max_bytes,
            max_group_time: Duration::from_micros(config.storage.group_max_time_us),
            // The crash tests' hook (server/tests/group_commit_crash.rs); unset in production.
            hold_commit_while: std::env::var_os(HOLD_COMMIT_ENV).map(PathBuf::from),
            thread_nice: config.storage.writer_nice,
            wal_restart_frames: config.storage.wal_restart_frames,
        },
    )?;
    let upstream = Arc::new(HttpUpstream::new(
        config.providers(|name| std::env::var(name).ok(), &Default::default()),
        config.upstream_options(),
    )?);
    let EmbeddedBackend {
        deps,
        jobs,
        batches,
        queue,
    } = EmbeddedBackend::new(
        &db,
        &data_dir,
        Arc::clone(&clock),
        upstream.clone(),
        config.embedded_policies(),
    );
    // The same client runs `native` providers' lines through their own Batch API.
    let deps = deps.with_provider_batches(upstream);
    let reclaimed = jobs.reclaim_all_leases(clock.now()).await?
        + batches.reclaim_all_leases(clock.now()).await?;
    if reclaimed > 0 {
        tracing::info!(reclaimed, "reclaimed leases of the previous process");
    }
    let keys: Arc<dyn KeyStore> = Arc::new(SqliteKeyStore::new(db));
    ensure_a_key_exists(keys.as_ref()).await?;

    let runtime = WorkerRuntime::new(
        deps.clone(),
        jobs,
        queue,
        RuntimeConfig {
            consumer: ConsumerConfig {
                concurrency: config.workers.concurrency,
                shutdown_grace: config.workers.shutdown_grace,
                ..RuntimeConfig::default().consumer
            },
            reconcile_every: config.workers.reconcile_every,
        },
    );
    let workers = tokio::spawn(runtime.run(shutdown.clone()));
    let served = serve_http(&args, &config, deps, keys, &shutdown).await;
    if let Err(error) = workers.await {
        tracing::error!(%error, "worker runtime ended abnormally");
    }
    tracing::info!("prism stopped");
    served
}

async fn serve_aws(
    args: ServeArgs,
    config: Config,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let app = connect_aws(
        ConfigSource::Loaded(Box::new(config.clone())),
        |name| std::env::var(name).ok(),
        SQS_RECEIVE_WAIT,
        ProviderKeys::Fetch,
    )
    .await?;
    let (deps, keys): (Deps, Arc<dyn KeyStore>) =
        (app.deps.clone(), Arc::new(app.backend.keys.clone()));
    let workers = tokio::spawn(run_workers(app, shutdown.clone()));
    let served = serve_http(&args, &config, deps, keys, &shutdown).await;
    if let Err(error) = workers.await {
        tracing::error!(%error, "worker runtime ended abnormally");
    }
    tracing::info!("prism stopped");
    served
}

/// Serves the API until `shutdown`; then cancels `shutdown` for everyone else too, so a failed
/// listener also stops the workers.
async fn serve_http(
    args: &ServeArgs,
    config: &Config,
    deps: Deps,
    keys: Arc<dyn KeyStore>,
    shutdown: &CancellationToken,
) -> Result<(), ServeError> {
    let app = router(app_state(config, deps, keys, HttpHost::Listener));
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            shutdown.cancel();
            return Err(ServeError::Listen(args.listen, e));
        }
    };
    let local = listener
        .local_addr()
        .map_err(|e| ServeError::Listen(args.listen, e))?;
    tracing::info!(address = %local, backend = ?args.backend, "prism listening");
    accept_connections(listener, app, &config.http, shutdown).await;
    shutdown.cancel();
    Ok(())
}

/// The accept loop, in place of `axum::serve` for what it does not offer: hyper's header read
/// timeout (a slowloris connection is closed) and a cap on open connections. Past the cap no
/// connection is accepted until one closes: new ones wait in the kernel's listen backlog (and
/// are refused by the kernel once that is full), so memory stays bounded. On shutdown every
/// connection finishes its in-flight request, then closes.
async fn accept_connections(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    http: &HttpSection,
    shutdown: &CancellationToken,
) {
    let max_connections = u32::try_from(http.max_connections.max(1)).unwrap_or(u32::MAX);
    let slots = Arc::new(Semaphore::new(max_connections as usize));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(http.header_read_timeout);
    let service = TowerToHyperService::new(app);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot,
            () = shutdown.cancelled() => break,
        };
        let Ok(slot) = slot else { break };
        let stream = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let stream = match stream {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors and the like: pause instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let connection = builder.serve_connection(TokioIo::new(stream), service.clone());
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = served {
                tracing::debug!(%error, "connection ended with an error");
            }
            drop(slot);
        });
    }
    // Every slot back means every connection has finished.
    let _ = slots.acquire_many(max_connections).await;
}

/// The quick start needs a key on first run: mint one for tenant `default` and show it once.
async fn ensure_a_key_exists(keys: &dyn KeyStore) -> Result<(), ServeError> {
    if keys.is_empty().await? {
        let secret = create_key(keys, "default").await?;
        println!("Created an API key for tenant 'default' (shown only once): {secret}");
    }
    Ok(())
}
