//! `vakt serve`: logging, configuration, the server, and the signals that stop it.

use crate::cli::{Failure, ServeArgs};
use crate::config::Config;
use crate::server;

pub fn run(args: ServeArgs) -> Result<(), Failure> {
    init_logging();
    let overrides = args.overrides();
    let config = Config::load(args.config.config.as_deref(), &overrides).map_err(Failure::user)?;
    let runtime = super::access::threaded_runtime(None)?;
    runtime.block_on(async move {
        let server = server::launch(config, overrides)
            .await
            .map_err(Failure::internal)?;
        shutdown_signal().await;
        tracing::info!("shutting down: finishing requests and draining the ingest queue");
        server.shutdown();
        server.wait().await.map_err(Failure::internal)
    })
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

/// Structured logs to stderr: `VAKT_LOG` filters (default `info`), `VAKT_LOG_FORMAT=json` for JSON lines.
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("VAKT_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let json = std::env::var("VAKT_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
