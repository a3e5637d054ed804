//! `prism serve`: wires the embedded adapters, the upstream client, the router and the worker
//! runtime into one process, and shuts them down in order.

use std::path::PathBuf;
use std::sync::Arc;

use prism_core::ids::IdGenerator;
use prism_core::ports::{JobStore, KeyStore, Upstream, WorkQueue};
use prism_core::service::Deps;
use prism_core::{Clock, StoreError, SystemClock};
use prism_embedded::{
    DATABASE_FILE, DataDirLock, Database, LockError, RuntimeConfig, SqliteJobStore, SqliteKeyStore,
    SqliteWorkQueue, WorkerRuntime,
};
use prism_http::{AppState, DEFAULT_KEY_CACHE_TTL, HttpLimits, KeyCache, router};
use prism_upstream::{HttpUpstream, UpstreamBuildError, UpstreamOptions};
use tokio_util::sync::CancellationToken;

use crate::cli::ServeArgs;
use crate::config::{Config, ConfigError};
use crate::keys::{KeysError, create_key};

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
    #[error("cannot create data directory {0}: {1}")]
    DataDir(PathBuf, std::io::Error),
    #[error("cannot listen on {0}: {1}")]
    Listen(std::net::SocketAddr, std::io::Error),
    #[error("server failed: {0}")]
    Server(std::io::Error),
}

/// Serves until `shutdown` is cancelled (SIGTERM or SIGINT in `main`).
pub async fn serve(args: ServeArgs, shutdown: CancellationToken) -> Result<(), ServeError> {
    let config = Config::load(args.config.as_deref())?;
    let data_dir = args.data.data_dir;
    std::fs::create_dir_all(&data_dir).map_err(|e| ServeError::DataDir(data_dir.clone(), e))?;
    let _lock = DataDirLock::acquire(&data_dir)?;

    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let db = Database::open(&data_dir.join(DATABASE_FILE))?;
    let store = SqliteJobStore::new(db.clone());
    let reclaimed = store.reclaim_all_leases(clock.now()).await?;
    if reclaimed > 0 {
        tracing::info!(reclaimed, "reclaimed leases of the previous process");
    }
    let queue = SqliteWorkQueue::new(db.clone(), Arc::clone(&clock));
    let keys: Arc<dyn KeyStore> = Arc::new(SqliteKeyStore::new(db));
    ensure_a_key_exists(keys.as_ref()).await?;

    let upstream = HttpUpstream::new(
        config.providers(|name| std::env::var(name).ok()),
        UpstreamOptions::default(),
    )?;
    let deps = Deps {
        store: Arc::new(store.clone()) as Arc<dyn JobStore>,
        queue: Arc::new(queue.clone()) as Arc<dyn WorkQueue>,
        upstream: Arc::new(upstream) as Arc<dyn Upstream>,
        clock,
        ids: Arc::new(IdGenerator::new()),
        policy: config.job_policy(),
    };
    let app = router(AppState {
        deps: deps.clone(),
        keys: KeyCache::new(keys, DEFAULT_KEY_CACHE_TTL),
        limits: HttpLimits {
            max_body_bytes: config.http.max_body_bytes,
        },
    });
    let runtime = WorkerRuntime::new(
        deps,
        store,
        queue,
        RuntimeConfig {
            concurrency: config.workers.concurrency,
            reconcile_every: config.workers.reconcile_every,
            shutdown_grace: config.workers.shutdown_grace,
            ..RuntimeConfig::default()
        },
    );

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| ServeError::Listen(args.listen, e))?;
    let local = listener
        .local_addr()
        .map_err(|e| ServeError::Listen(args.listen, e))?;
    tracing::info!(address = %local, data_dir = %data_dir.display(), "prism listening");

    let workers = tokio::spawn(runtime.run(shutdown.clone()));
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await;
    // The HTTP side has stopped taking requests; let the workers finish or release their work.
    shutdown.cancel();
    if let Err(error) = workers.await {
        tracing::error!(%error, "worker runtime ended abnormally");
    }
    tracing::info!("prism stopped");
    served.map_err(ServeError::Server)
}

/// The quick start needs a key on first run: mint one for tenant `default` and show it once.
async fn ensure_a_key_exists(keys: &dyn KeyStore) -> Result<(), ServeError> {
    if keys.is_empty().await? {
        let secret = create_key(keys, "default").await?;
        println!("Created an API key for tenant 'default' (shown only once): {secret}");
    }
    Ok(())
}
