//! The HTTP server edge shared by the distributor and the analyzer: accepts connections
//! (TLS when configured), serves HTTP/1.1 with keep-alive, cuts off clients that are slow
//! to send their headers (slowloris), bounds the connections served at once, and on
//! shutdown stops accepting and lets the requests in flight finish.
//!
//! axum's own `serve` offers none of the timeouts or TLS, so this is hyper's connection
//! builder driven directly, as axum's `serve` does underneath. A plain-HTTP connection
//! starts on the [`express`] lane when the server has one: its hot request is answered
//! without hyper, and hyper takes the connection over at the first request that is not
//! that one.

mod bodies;
mod express;

pub use express::{Express, Head, Reply};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{debug, warn};

use crate::workers::Workers;

/// How a listener serves its connections.
#[derive(Clone)]
pub struct ServeOptions {
    /// Serve HTTPS with this configuration; plain HTTP when `None`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// A client must send a request's complete headers (and finish the TLS handshake)
    /// within this time, and an idle keep-alive connection is closed after it.
    pub header_timeout: Duration,
    /// Connections served at once; further clients wait in the kernel's accept queue.
    pub max_connections: usize,
}

impl ServeOptions {
    /// Plain HTTP with the given header timeout and a generous connection bound.
    pub fn plain(header_timeout: Duration) -> Self {
        Self {
            tls: None,
            header_timeout,
            max_connections: 16_384,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then stops accepting and
/// returns once every open connection has finished its request in flight (callers bound
/// that wait with their grace period). Each accepted connection is served on one of
/// `workers` (the least busy), start to end.
pub async fn serve<E: Express>(
    listener: TcpListener,
    app: Router,
    express: E,
    options: ServeOptions,
    workers: Arc<Workers>,
    shutdown: CancellationToken,
) {
    let acceptor = options.tls.clone().map(TlsAcceptor::from);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(options.max_connections.max(1)));
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, usually: wait instead of spinning.
                    warn!(error = %e, "Accepting a connection failed.");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        // The accepted socket is registered with this (the accepting) runtime's reactor:
        // take it out, so the worker registers it with its own. Otherwise every read
        // event would arrive here and wake the worker across threads.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                warn!(%peer, error = %e, "Handing a connection to a worker failed.");
                continue;
            }
        };
        let connection = Connection {
            app: app.clone(),
            express: express.clone(),
            shutdown: shutdown.clone(),
            http: http.clone(),
            acceptor: acceptor.clone(),
            header_timeout: options.header_timeout,
            watcher: graceful.watcher(),
        };
        workers.spawn_connection(async move {
            connection.run(stream, peer).await;
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// What serving one accepted connection needs.
struct Connection<E> {
    app: Router,
    express: E,
    shutdown: CancellationToken,
    http: hyper::server::conn::http1::Builder,
    acceptor: Option<TlsAcceptor>,
    /// Bounds each request's head and the TLS handshake.
    header_timeout: Duration,
    watcher: hyper_util::server::graceful::Watcher,
}

impl<E: Express> Connection<E> {
    async fn run(self, stream: std::net::TcpStream, peer: SocketAddr) {
        let stream = match TcpStream::from_std(stream) {
            Ok(stream) => stream,
            Err(e) => {
                warn!(%peer, error = %e, "Registering a connection with its worker failed.");
                return;
            }
        };
        // Answers are single writes that must not wait for Nagle.
        let _ = stream.set_nodelay(true);
        let app = self.app;
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(request)
        });
        let outcome = match self.acceptor {
            None => {
                let stream = if E::ENABLED {
                    match express::serve(stream, &self.express, self.header_timeout, &self.shutdown)
                        .await
                    {
                        express::Outcome::Closed => return,
                        express::Outcome::Handoff(stream) => stream,
                    }
                } else {
                    express::Rewind::new(stream, bytes::BytesMut::new())
                };
                let conn = self.http.serve_connection(TokioIo::new(stream), service);
                self.watcher.watch(conn).await
            }
            Some(acceptor) => {
                let stream = match tokio::time::timeout(
                    self.header_timeout,
                    acceptor.accept(stream),
                )
                .await
                {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        debug!(%peer, error = %e, "TLS handshake failed.");
                        return;
                    }
                    Err(_) => {
                        debug!(%peer, "TLS handshake not finished in time; closing.");
                        return;
                    }
                };
                let conn = self.http.serve_connection(TokioIo::new(stream), service);
                self.watcher.watch(conn).await
            }
        };
        if let Err(e) = outcome {
            // Slow headers, resets and malformed requests end here; hyper has already
            // answered what can be answered (400, 431).
            debug!(%peer, error = %e, "Connection ended with an error.");
        }
    }
}
