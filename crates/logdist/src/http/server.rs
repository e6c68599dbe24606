//! The HTTP server edge shared by the distributor and the analyzer: accepts connections
//! (TLS when configured), serves HTTP/1.1 with keep-alive, cuts off clients that are slow
//! to send their headers (slowloris), bounds the connections served at once (refusing
//! those past the bound at once with 503), answers 400 to an HTTP/1.1 request without
//! exactly one `Host`, and on shutdown stops accepting and lets the requests in flight
//! finish.
//!
//! axum's own `serve` offers none of the timeouts or TLS, so this is hyper's connection
//! builder driven directly, as axum's `serve` does underneath. A plain-HTTP connection
//! starts on the `express` lane when the server has one: its hot request is answered
//! without hyper, and hyper takes the connection over at the first request that is not
//! that one.

mod bodies;
mod express;

pub use express::{Express, Head, Reply};

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{debug, warn};

use crate::api::ErrorBody;
use crate::workers::Workers;

/// Refused connections kept open at once to take in what their clients still send after
/// the 503 (see [`linger`]); past this, a refused connection is closed right after its
/// answer is written.
const LINGERING: usize = 64;
/// How long a refused connection is kept open for that, at most.
const LINGER: Duration = Duration::from_secs(1);
/// The least time between two warnings that connections are being refused.
const REFUSAL_WARNING_EVERY: Duration = Duration::from_secs(60);

/// How a listener serves its connections.
#[derive(Clone)]
pub struct ServeOptions {
    /// Serve HTTPS with this configuration; plain HTTP when `None`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// A client must send a request's complete headers (and finish the TLS handshake)
    /// within this time, and an idle keep-alive connection is closed after it.
    pub header_timeout: Duration,
    /// Connections served at once; a connection past them is answered 503 with
    /// `Retry-After: 1` and closed.
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
///
/// A connection accepted while `max_connections` are served is refused at once (see
/// `refuse`) rather than left in the kernel's accept queue, where its client would wait
/// for a slot until it gave up.
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
    let max_connections = options.max_connections.max(1);
    let slots = Arc::new(Semaphore::new(max_connections));
    let refusal = refusal(max_connections);
    let lingering = Arc::new(Semaphore::new(LINGERING));
    let mut warned: Option<Instant> = None;
    loop {
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
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            metrics::counter!("logdist_connections_refused_total").increment(1);
            if warned.is_none_or(|at| at.elapsed() >= REFUSAL_WARNING_EVERY) {
                warned = Some(Instant::now());
                warn!(
                    max_connections,
                    "Serving the most connections allowed; refusing new ones with 503 \
                     (counted in logdist_connections_refused_total)."
                );
            }
            refuse(stream, acceptor.is_none().then_some(&refusal), &lingering);
            continue;
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
        // Boxed: a task holds the future it was given and, once polled, that future's
        // state again (an upvar and its awaitee do not share space), so the connection's
        // state of about 2.5 KB would be counted twice for every connection open.
        workers.spawn_connection(Box::pin(connection.run(stream, peer, permit)));
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The answer to a connection past the bound: 503, `Retry-After: 1`, `Connection:
/// close` and a JSON error, as the distributor's other errors; all but the `Date` line,
/// which [`refuse`] writes in front of the rest.
fn refusal(max_connections: usize) -> Vec<u8> {
    let body = serde_json::to_vec(&ErrorBody {
        error: format!(
            "the server is serving its limit of {max_connections} connections; retry in a second"
        ),
    })
    .unwrap_or_default();
    let mut rest = format!(
        "content-type: application/json\r\nretry-after: 1\r\nconnection: close\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    rest.extend_from_slice(&body);
    rest
}

/// Refuses a connection past the bound without waiting on its client: writes the 503
/// (`refusal`, after a status and `Date` line) in one non-blocking write, which a new
/// socket's empty send buffer takes whole, and ends the sending side. With TLS (`refusal`
/// is `None`) there is nothing to answer before a handshake, and the connection is closed.
///
/// Closing a socket while some of the client's request is unread makes the kernel answer
/// with a reset, which can destroy the 503 before the client reads it. So the connection
/// stays open for [`LINGER`] at most, reading and dropping what arrives until the client
/// closes, in a task that holds one of `lingering`'s [`LINGERING`] permits; when none is
/// free, the connection is closed at once. Refusing never holds more than that.
fn refuse(stream: TcpStream, refusal: Option<&Vec<u8>>, lingering: &Arc<Semaphore>) {
    let Some(refusal) = refusal else {
        return;
    };
    // A std socket writes now: tokio's would wait for the reactor to report it writable.
    let Ok(stream) = stream.into_std() else {
        return;
    };
    let mut answer = Vec::with_capacity(96 + refusal.len());
    answer.extend_from_slice(b"HTTP/1.1 503 Service Unavailable\r\ndate: ");
    answer.extend_from_slice(httpdate::fmt_http_date(SystemTime::now()).as_bytes());
    answer.extend_from_slice(b"\r\n");
    answer.extend_from_slice(refusal);
    match (&stream).write(&answer) {
        Ok(n) if n == answer.len() => {}
        _ => return,
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let Ok(permit) = lingering.clone().try_acquire_owned() else {
        return;
    };
    let Ok(stream) = TcpStream::from_std(stream) else {
        return;
    };
    tokio::spawn(async move {
        let _ = tokio::time::timeout(LINGER, linger(stream)).await;
        drop(permit);
    });
}

/// Reads and drops what the client sends until it closes its side.
async fn linger(mut stream: TcpStream) {
    let mut sink = [0u8; 1024];
    while let Ok(1..) = stream.read(&mut sink).await {}
}

/// The 400 for a request that breaks HTTP's rule on `Host` (RFC 9112, section 3.2): an
/// HTTP/1.1 request must have exactly one, and no request may have more than one.
/// HTTP/1.0 has no such rule, so a 1.0 request without `Host` is served.
fn host_refusal<B>(request: &hyper::Request<B>) -> Option<Response> {
    let hosts = request.headers().get_all(header::HOST).iter().count();
    if hosts == 1 || (hosts == 0 && request.version() < Version::HTTP_11) {
        return None;
    }
    let error = match hosts {
        0 => "an HTTP/1.1 request needs a Host header, and this one has none".to_owned(),
        n => format!("a request may have one Host header, and this one has {n}"),
    };
    Some((StatusCode::BAD_REQUEST, axum::Json(ErrorBody { error })).into_response())
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
    /// Serves the connection to its end; `permit` is its slot among the connections
    /// served at once, given back when this returns.
    async fn run(
        self,
        stream: std::net::TcpStream,
        peer: SocketAddr,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) {
        let _permit = permit;
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
            let refused = host_refusal(&request);
            request.extensions_mut().insert(ConnectInfo(peer));
            let app = app.clone();
            async move {
                match refused {
                    Some(response) => Ok(response),
                    None => app.oneshot(request).await,
                }
            }
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
                // Boxed, as the handshake below: hyper's state is large, and a connection
                // on the express lane would otherwise carry room for it all its life.
                let conn = self.http.serve_connection(TokioIo::new(stream), service);
                Box::pin(self.watcher.watch(conn)).await
            }
            Some(acceptor) => {
                let stream = match Box::pin(tokio::time::timeout(
                    self.header_timeout,
                    acceptor.accept(stream),
                ))
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
                Box::pin(self.watcher.watch(conn)).await
            }
        };
        if let Err(e) = outcome {
            // Slow headers, resets and malformed requests end here; hyper has already
            // answered what can be answered (400, 431).
            debug!(%peer, error = %e, "Connection ended with an error.");
        }
    }
}
