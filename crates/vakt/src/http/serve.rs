//! Serving HTTP with bounds: at most `connections_max` open connections (more are closed at
//! once, and the first of them is logged), a deadline for a request's headers (which also
//! closes idle keep-alive connections) and, in the router, one for its body. Slow or silent
//! clients cannot hold the server. Graceful shutdown lets requests in flight finish.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::Layer;

/// How often a full connection table is logged, at most.
const FULL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// What bounds the listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub connections_max: usize,
    pub header_read_timeout: Duration,
}

/// Serves `app` on `listener` until `stop` turns true, then waits up to `grace` for the
/// connections' requests to finish. With `tls`, every connection is a TLS one (HTTP/1.1 or
/// HTTP/2 by ALPN), its handshake bounded by the header deadline. Each request counts as in
/// flight (the layer of the pair, read through its counter: `/metrics`, and a connection's
/// task re-polls itself only while its request is alone, `repoll`) until its response is
/// sent.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
    tls: Option<Arc<super::tls::HttpTls>>,
    (counting, in_flight): (
        tower_http::metrics::InFlightRequestsLayer,
        tower_http::metrics::in_flight_requests::InFlightRequestsCounter,
    ),
) {
    // HTTP/1.1 on plain TCP: the header deadline then runs from the first byte the
    // connection could send (detecting HTTP/2 first would wait for bytes without one).
    let mut plain = Builder::new(TokioExecutor::new()).http1_only();
    plain
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Some(limits.header_read_timeout));
    // Over TLS, ALPN has said which protocol comes.
    let mut secure = Builder::new(TokioExecutor::new());
    secure
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Some(limits.header_read_timeout));
    secure
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(limits.header_read_timeout));
    let (plain, secure) = (Arc::new(plain), Arc::new(secure));
    let open = Arc::new(Semaphore::new(limits.connections_max.max(1)));
    let graceful = GracefulShutdown::new();
    let mut last_full_log: Option<Instant> = None;
    let mut refused: u64 = 0;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, say: wait a moment instead of spinning.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => break,
        };
        let Ok(permit) = Arc::clone(&open).try_acquire_owned() else {
            refused += 1;
            if last_full_log.is_none_or(|at| at.elapsed() >= FULL_LOG_EVERY) {
                last_full_log = Some(Instant::now());
                tracing::warn!(
                    connections_max = limits.connections_max,
                    refused,
                    %peer,
                    "the connection limit is reached (server.connections_max): closing new connections until some end"
                );
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let watcher = graceful.watcher();
        let (plain, secure) = (Arc::clone(&plain), Arc::clone(&secure));
        let acceptor = tls.as_ref().map(|tls| tls.acceptor());
        let (counting, in_flight) = (counting.clone(), in_flight.clone());
        let task = async move {
            let result = match acceptor {
                None => {
                    let service =
                        TowerToHyperService::new(counting.layer(with_client(app, peer, None)));
                    let connection = plain
                        .serve_connection(TokioIo::new(stream), service)
                        .into_owned();
                    watcher.watch(connection).await
                }
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream))
                            .await;
                    let stream = match handshake {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(error)) => {
                            tracing::debug!(%peer, %error, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake too slow");
                            return;
                        }
                    };
                    let client = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|certs| certs.first())
                        .and_then(super::tls::client_name);
                    let service =
                        TowerToHyperService::new(counting.layer(with_client(app, peer, client)));
                    let connection = secure
                        .serve_connection(TokioIo::new(stream), service)
                        .into_owned();
                    watcher.watch(connection).await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
            drop(permit);
        };
        tokio::spawn(super::repoll::Repoll::new(task, in_flight));
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "requests still running after the grace period; stopping anyway"
        );
    }
}

/// The router with the client's address (and the name of its verified certificate) on
/// every request, for the auth guard and handlers.
fn with_client(
    app: Router,
    peer: std::net::SocketAddr,
    certificate: Option<String>,
) -> tower::util::MapRequest<
    Router,
    impl Fn(axum::http::Request<hyper::body::Incoming>) -> axum::http::Request<hyper::body::Incoming>
    + Clone,
> {
    // A closure of its own: passed inline, its kind would be taken from `map_request`'s
    // `FnMut` bound, and the service must be `Fn` to be shared by the connection.
    let add = move |mut request: axum::http::Request<hyper::body::Incoming>| {
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        if let Some(name) = &certificate {
            request
                .extensions_mut()
                .insert(crate::auth::ClientCertificate(name.clone()));
        }
        request
    };
    tower::ServiceExt::map_request(app, add)
}
