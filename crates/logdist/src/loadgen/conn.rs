//! An agent's own HTTP/1.1 connection: opened on first use, kept alive between packets,
//! and replaced after any failure. An agent sends one request at a time and waits for
//! its answer, so it needs no pool and no connection task: the agent's own task writes
//! the request and reads the answer on the socket.
//!
//! The request is its head and the pool's body in one `writev`; the answer's head is
//! parsed with `httparse` (hyper's parser) and its body framed by `Content-Length`,
//! chunked encoding or the end of the connection. Like wrk, this spends a few hundred
//! nanoseconds of user time per request where hyper's client spent about three
//! microseconds, so that the load generator does not become the bottleneck of what it
//! measures (see the README's load generator table).

use std::io::{self, IoSlice};
use std::task::{Context, Waker};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use http::uri::{Authority, PathAndQuery};
use http::{HeaderName, HeaderValue, StatusCode, Uri, header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnError {
    /// The connection could not be opened: nothing was sent.
    #[error("connecting to {authority}: {reason}")]
    Connect { authority: String, reason: String },
    /// The connection failed during the exchange, or the answer was not HTTP/1.1.
    #[error("{0}")]
    Exchange(String),
}

impl ConnError {
    fn exchange(what: &str, e: impl std::fmt::Display) -> Self {
        Self::Exchange(format!("{what}: {e}"))
    }
}

/// Where an agent's requests go: what to connect to and what to put in the request line.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// `host:port` to connect to.
    address: String,
    /// The `Host` header.
    host: HeaderValue,
    /// The request target (origin form).
    path: PathAndQuery,
}

impl Target {
    /// The target of an `http` URL.
    pub fn new(uri: &Uri) -> Result<Self, String> {
        let authority = uri
            .authority()
            .ok_or_else(|| format!("{uri}: no host in the URL"))?;
        let host =
            HeaderValue::from_str(authority.as_str()).map_err(|e| format!("{uri}: host: {e}"))?;
        let path = uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        Ok(Self {
            address: address(authority),
            host,
            path,
        })
    }
}

/// The part of an answer the agent acts on.
#[derive(Debug)]
pub(crate) struct Answer<'a> {
    pub status: StatusCode,
    /// The `Retry-After` header's value, if any.
    pub retry_after: Option<&'a [u8]>,
    /// The first [`BODY_KEPT`] bytes of the body, for the log.
    pub body: &'a [u8],
}

/// How much of an answer's body is kept for the log; the rest is read and dropped.
pub(crate) const BODY_KEPT: usize = 300;

/// An answer's head larger than this is refused (hyper's default limit is about 400 KB;
/// the answers of a log ingest endpoint are a few hundred bytes).
const MAX_HEAD: usize = 64 * 1024;

/// Headers parsed per answer; more is an error, as in hyper.
const MAX_HEADERS: usize = 64;

/// Room made in the read buffer before each read. A read that fills less of it tells
/// tokio that the socket is drained, which keeps the idle check below free of syscalls.
const READ_ROOM: usize = 16 * 1024;

/// One keep-alive connection to the target.
pub(crate) struct Connection {
    target: Target,
    connect_timeout: Duration,
    stream: Option<TcpStream>,
    /// The request head being written.
    head: Vec<u8>,
    /// Bytes read and not yet parsed.
    read: BytesMut,
    /// The kept start of the last answer's body.
    body: Vec<u8>,
    /// The last answer's `Retry-After`.
    retry_after: Option<Vec<u8>>,
}

/// How the body of an answer ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    /// HTTP/1.0 style: the body is the rest of the connection.
    UntilClose,
}

/// What the head of an answer says.
struct Head {
    /// Its length in bytes, `\r\n\r\n` included.
    len: usize,
    status: StatusCode,
    framing: Framing,
    /// The server will close the connection after this answer.
    close: bool,
}

impl Connection {
    /// A connection to `target`, opened on first use.
    pub fn new(target: Target, connect_timeout: Duration) -> Self {
        Self {
            target,
            connect_timeout,
            stream: None,
            head: Vec::with_capacity(256),
            read: BytesMut::new(),
            body: Vec::with_capacity(BODY_KEPT),
            retry_after: None,
        }
    }

    /// POSTs `body` with `headers` (`Host` and `Content-Length` are added here) and reads
    /// the whole answer. A kept connection that the server closed while it was idle is
    /// replaced before anything is written on it.
    pub async fn post(
        &mut self,
        headers: &[(&HeaderName, &HeaderValue)],
        body: &[u8],
    ) -> Result<Answer<'_>, ConnError> {
        self.write_head(headers, body.len());
        let mut stream = match self.stream.take() {
            Some(stream) if !closed_while_idle(&stream) => stream,
            _ => self.open().await?,
        };
        write_request(&mut stream, &self.head, body)
            .await
            .map_err(|e| ConnError::exchange("sending the request", e))?;
        let (status, keep) = self.read_answer(&mut stream).await?;
        if keep {
            self.stream = Some(stream);
        }
        Ok(Answer {
            status,
            retry_after: self.retry_after.as_deref(),
            body: &self.body,
        })
    }

    /// Forgets the connection, after an exchange that did not finish (a timeout): the
    /// next request opens a new one rather than read a stale answer.
    pub fn reset(&mut self) {
        self.stream = None;
    }

    fn write_head(&mut self, headers: &[(&HeaderName, &HeaderValue)], body_len: usize) {
        let head = &mut self.head;
        head.clear();
        head.extend_from_slice(b"POST ");
        head.extend_from_slice(self.target.path.as_str().as_bytes());
        head.extend_from_slice(b" HTTP/1.1\r\nhost: ");
        head.extend_from_slice(self.target.host.as_bytes());
        head.extend_from_slice(b"\r\ncontent-length: ");
        head.extend_from_slice(itoa::Buffer::new().format(body_len).as_bytes());
        head.extend_from_slice(b"\r\n");
        for (name, value) in headers {
            head.extend_from_slice(name.as_str().as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"\r\n");
    }

    /// Reads one answer (skipping any `1xx`), keeping its `retry_after` and the start of
    /// its body; its status, and whether the connection can carry the next request.
    async fn read_answer(
        &mut self,
        stream: &mut TcpStream,
    ) -> Result<(StatusCode, bool), ConnError> {
        self.read.clear();
        let head = loop {
            let head = loop {
                if let Some(head) = self.parse_head()? {
                    break head;
                }
                if self.read.len() > MAX_HEAD {
                    return Err(ConnError::Exchange(format!(
                        "the answer's head is over {MAX_HEAD} bytes"
                    )));
                }
                if fill(stream, &mut self.read).await? == 0 {
                    return Err(ConnError::Exchange(
                        "the connection closed before an answer".to_owned(),
                    ));
                }
            };
            self.read.advance(head.len);
            if !head.status.is_informational() {
                break head;
            }
            if head.status == StatusCode::SWITCHING_PROTOCOLS {
                return Err(ConnError::Exchange(
                    "the server switched protocols".to_owned(),
                ));
            }
        };
        self.body.clear();
        match head.framing {
            Framing::Empty => {}
            Framing::Length(len) => self.read_body(stream, len).await?,
            Framing::Chunked => self.read_chunked(stream).await?,
            Framing::UntilClose => {
                loop {
                    self.keep(self.read.len());
                    if fill(stream, &mut self.read).await? == 0 {
                        break;
                    }
                }
                return Ok((head.status, false));
            }
        }
        // Bytes after the answer were never asked for: do not read them as the next one.
        Ok((head.status, !head.close && self.read.is_empty()))
    }

    /// Parses the answer's head if it has all arrived.
    fn parse_head(&mut self) -> Result<Option<Head>, ConnError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        let len = match response.parse(&self.read) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(ConnError::exchange("reading the answer's head", e)),
        };
        let code = response.code.unwrap_or_default();
        let status = StatusCode::from_u16(code)
            .map_err(|e| ConnError::exchange("reading the answer's status", e))?;
        let mut close = response.version == Some(0);
        let mut length = None;
        let mut chunked = false;
        self.retry_after = None;
        for header in response.headers.iter() {
            let name = header.name;
            if name.eq_ignore_ascii_case(header::CONTENT_LENGTH.as_str()) {
                let value = std::str::from_utf8(header.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .ok_or_else(|| {
                        ConnError::Exchange(format!(
                            "the answer's Content-Length {:?} is not a number",
                            String::from_utf8_lossy(header.value)
                        ))
                    })?;
                if length.is_some_and(|l| l != value) {
                    return Err(ConnError::Exchange(
                        "the answer has two different Content-Lengths".to_owned(),
                    ));
                }
                length = Some(value);
            } else if name.eq_ignore_ascii_case(header::TRANSFER_ENCODING.as_str()) {
                chunked = last_token(header.value).eq_ignore_ascii_case(b"chunked");
            } else if name.eq_ignore_ascii_case(header::CONNECTION.as_str()) {
                let value = header.value;
                if has_token(value, b"close") {
                    close = true;
                } else if has_token(value, b"keep-alive") {
                    close = false;
                }
            } else if name.eq_ignore_ascii_case(header::RETRY_AFTER.as_str()) {
                self.retry_after = Some(header.value.to_vec());
            }
        }
        // RFC 9112 section 6.3: these answers have no body whatever the headers say,
        // and chunked encoding wins over a Content-Length.
        let framing = if status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            Framing::Empty
        } else if chunked {
            Framing::Chunked
        } else {
            match length {
                Some(0) => Framing::Empty,
                Some(len) => Framing::Length(len),
                None => Framing::UntilClose,
            }
        };
        Ok(Some(Head {
            len,
            status,
            framing,
            close,
        }))
    }

    /// Consumes `len` bytes of body (all of a `Content-Length` body, or one chunk's data),
    /// reading more as needed.
    async fn read_body(&mut self, stream: &mut TcpStream, len: u64) -> Result<(), ConnError> {
        let mut left = len;
        loop {
            let here = self
                .read
                .len()
                .min(usize::try_from(left).unwrap_or(usize::MAX));
            self.keep(here);
            left -= here as u64;
            if left == 0 {
                return Ok(());
            }
            if fill(stream, &mut self.read).await? == 0 {
                return Err(ConnError::Exchange(format!(
                    "the connection closed {left} bytes before the end of the answer"
                )));
            }
        }
    }

    async fn read_chunked(&mut self, stream: &mut TcpStream) -> Result<(), ConnError> {
        loop {
            let size = loop {
                match httparse::parse_chunk_size(&self.read) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        self.read.advance(used);
                        break size;
                    }
                    Ok(httparse::Status::Partial) => self.fill_or_fail(stream).await?,
                    Err(httparse::InvalidChunkSize) => {
                        return Err(ConnError::Exchange(
                            "the answer's chunk size is not valid".to_owned(),
                        ));
                    }
                }
            };
            if size == 0 {
                // Trailer fields, if any, then the empty line.
                loop {
                    match memchr::memmem::find(&self.read, b"\r\n") {
                        Some(0) => {
                            self.read.advance(2);
                            return Ok(());
                        }
                        Some(end) => self.read.advance(end + 2),
                        None if self.read.len() > MAX_HEAD => {
                            return Err(ConnError::Exchange(
                                "the answer's trailer is too long".to_owned(),
                            ));
                        }
                        None => self.fill_or_fail(stream).await?,
                    }
                }
            }
            self.read_body(stream, size).await?;
            while self.read.len() < 2 {
                self.fill_or_fail(stream).await?;
            }
            if &self.read[..2] != b"\r\n" {
                return Err(ConnError::Exchange(
                    "the answer's chunk does not end with CRLF".to_owned(),
                ));
            }
            self.read.advance(2);
        }
    }

    async fn fill_or_fail(&mut self, stream: &mut TcpStream) -> Result<(), ConnError> {
        match fill(stream, &mut self.read).await? {
            0 => Err(ConnError::Exchange(
                "the connection closed in the middle of the answer".to_owned(),
            )),
            _ => Ok(()),
        }
    }

    /// Consumes `n` body bytes from the read buffer, keeping the first [`BODY_KEPT`].
    fn keep(&mut self, n: usize) {
        let room = BODY_KEPT.saturating_sub(self.body.len()).min(n);
        self.body.extend_from_slice(&self.read[..room]);
        self.read.advance(n);
    }

    async fn open(&self) -> Result<TcpStream, ConnError> {
        let failed = |reason: String| ConnError::Connect {
            authority: self.target.address.clone(),
            reason,
        };
        let stream = tokio::time::timeout(
            self.connect_timeout,
            TcpStream::connect(&self.target.address),
        )
        .await
        .map_err(|_| failed(format!("no connection within {:?}", self.connect_timeout)))?
        .map_err(|e| failed(e.to_string()))?;
        stream
            .set_nodelay(true)
            .map_err(|e| failed(e.to_string()))?;
        Ok(stream)
    }
}

/// Whether the server closed (or wrote on) a kept connection since its last answer.
///
/// tokio keeps the readiness epoll reported: after an answer that was read with room to
/// spare, the socket is marked drained, so a connection still open costs no syscall
/// here. Readiness set means an event came (the server's FIN, or bytes nobody asked
/// for), or the last read filled its buffer exactly; a read settles which.
fn closed_while_idle(stream: &TcpStream) -> bool {
    // A waker that does nothing: the next read of the answer replaces it with its own.
    let mut cx = Context::from_waker(Waker::noop());
    if stream.poll_read_ready(&mut cx).is_pending() {
        return false;
    }
    !matches!(
        stream.try_read(&mut [0u8; 1]),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock
    )
}

/// Writes the head and the body with as few `writev` calls as the socket allows.
async fn write_request(stream: &mut TcpStream, head: &[u8], body: &[u8]) -> io::Result<()> {
    let mut slices = [IoSlice::new(head), IoSlice::new(body)];
    let mut slices = &mut slices[..];
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        match stream.write_vectored(slices).await? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => IoSlice::advance_slices(&mut slices, n),
        }
    }
    Ok(())
}

/// One read into `buf`; 0 at the end of the connection.
async fn fill(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<usize, ConnError> {
    buf.reserve(READ_ROOM);
    stream
        .read_buf(buf)
        .await
        .map_err(|e| ConnError::exchange("reading the answer", e))
}

/// The last element of a comma-separated header value, trimmed.
fn last_token(value: &[u8]) -> &[u8] {
    let last = value.rsplit(|&b| b == b',').next().unwrap_or_default();
    last.trim_ascii()
}

/// Whether a comma-separated header value holds `token` (ASCII case-insensitive).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// `host:port`, with the scheme's default port when the URL names none.
fn address(authority: &Authority) -> String {
    match authority.port_u16() {
        Some(_) => authority.as_str().to_owned(),
        None => format!("{}:80", authority.host()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_has_a_port_and_the_request_target_is_a_path() {
        let target = Target::new(&"http://127.0.0.1:9000/packets?x=1".parse().unwrap()).unwrap();
        assert_eq!(target.address, "127.0.0.1:9000");
        assert_eq!(target.host, "127.0.0.1:9000");
        assert_eq!(target.path, "/packets?x=1");
        let target = Target::new(&"http://example.test".parse().unwrap()).unwrap();
        assert_eq!(target.address, "example.test:80");
        assert_eq!(target.host, "example.test");
        assert_eq!(target.path, "/");
        assert!(Target::new(&"/packets".parse().unwrap()).is_err());
    }

    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::net::TcpListener;

    /// What the test server does with each request on a connection.
    #[derive(Clone)]
    enum Reply {
        /// Writes these pieces, a moment apart, and keeps the connection.
        Pieces(Vec<&'static [u8]>),
        /// Writes this, then closes.
        ThenClose(&'static [u8]),
    }

    /// A server that answers every connection's requests with `replies` in turn; it
    /// counts connections, and records each request's head and body.
    async fn server(
        replies: Vec<Reply>,
    ) -> (
        Target,
        Arc<AtomicUsize>,
        Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url: Uri = format!("http://{}/packets", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (count, seen) = (connections.clone(), requests.clone());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let (replies, seen) = (replies.clone(), seen.clone());
                tokio::spawn(async move {
                    for reply in replies {
                        let Some(request) = read_request(&mut socket).await else {
                            return;
                        };
                        seen.lock().unwrap().push(request);
                        match reply {
                            Reply::Pieces(pieces) => {
                                for piece in pieces {
                                    socket.write_all(piece).await.unwrap();
                                    tokio::time::sleep(Duration::from_millis(5)).await;
                                }
                            }
                            Reply::ThenClose(bytes) => {
                                socket.write_all(bytes).await.unwrap();
                                return;
                            }
                        }
                    }
                });
            }
        });
        (Target::new(&url).unwrap(), connections, requests)
    }

    /// One request, head and `Content-Length` body; `None` at the end of the connection.
    async fn read_request(socket: &mut TcpStream) -> Option<Vec<u8>> {
        let mut buf = Vec::new();
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut request = httparse::Request::new(&mut headers);
            if let httparse::Status::Complete(head) = request.parse(&buf).unwrap() {
                let length: usize = request
                    .headers
                    .iter()
                    .find(|h| h.name == "content-length")
                    .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
                    .unwrap();
                if buf.len() >= head + length {
                    return Some(buf);
                }
            }
            let mut chunk = [0u8; 4096];
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// A connection to a new [`server`], with the server's counts.
    async fn connect(
        replies: Vec<Reply>,
    ) -> (
        Connection,
        Arc<AtomicUsize>,
        Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    ) {
        let (target, connections, requests) = server(replies).await;
        let conn = Connection::new(target, Duration::from_secs(1));
        (conn, connections, requests)
    }

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 14\r\n\r\n{\"accepted\":1}";

    async fn post(
        conn: &mut Connection,
    ) -> Result<(StatusCode, Vec<u8>, Option<Vec<u8>>), ConnError> {
        let ndjson = HeaderValue::from_static("application/x-ndjson");
        let answer = conn
            .post(&[(&header::CONTENT_TYPE, &ndjson)], b"{\"m\":1}\n")
            .await?;
        Ok((
            answer.status,
            answer.body.to_vec(),
            answer.retry_after.map(<[u8]>::to_vec),
        ))
    }

    #[tokio::test]
    async fn answers_in_pieces_keep_the_connection() {
        let (mut conn, connections, requests) = connect(vec![
            Reply::Pieces(vec![
                b"HTTP/1.1 200 OK\r\ncontent-len",
                b"gth: 14\r\n\r\n{\"acc",
                b"epted\":1}",
            ]),
            Reply::Pieces(vec![OK]),
        ])
        .await;
        for _ in 0..2 {
            let (status, body, _) = post(&mut conn).await.unwrap();
            assert_eq!(status, StatusCode::OK);
            assert_eq!(body, b"{\"accepted\":1}");
        }
        assert_eq!(connections.load(Ordering::SeqCst), 1);
        let requests = requests.lock().unwrap();
        let first = String::from_utf8(requests[0].clone()).unwrap();
        assert!(
            first.starts_with("POST /packets HTTP/1.1\r\nhost: 127.0.0.1:"),
            "{first}"
        );
        assert!(first.contains("\r\ncontent-length: 8\r\n"), "{first}");
        assert!(
            first.contains("\r\ncontent-type: application/x-ndjson\r\n"),
            "{first}"
        );
        assert!(first.ends_with("\r\n\r\n{\"m\":1}\n"), "{first}");
    }

    #[tokio::test]
    async fn chunked_answers_after_a_continue_with_retry_after() {
        let (mut conn, connections, _) = connect(vec![
            Reply::Pieces(vec![
                b"HTTP/1.1 100 Continue\r\n\r\n",
                b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"5\r\nqueue\r\n",
                b"5;ext=1\r\n full\r\n0\r\nx-trailer: 1\r\n\r\n",
            ]),
            Reply::Pieces(vec![OK]),
        ]).await;
        let (status, body, retry_after) = post(&mut conn).await.unwrap();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, b"queue full");
        assert_eq!(retry_after.as_deref(), Some(&b"2"[..]));
        assert_eq!(post(&mut conn).await.unwrap().0, StatusCode::OK);
        assert_eq!(connections.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_long_body_is_read_to_its_end_and_its_start_kept() {
        const LONG: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 1000\r\n\r\n";
        let filler: &'static [u8] = Box::leak(vec![b'x'; 1000].into_boxed_slice());
        let (mut conn, connections, _) = connect(vec![
            Reply::Pieces(vec![LONG, filler]),
            Reply::Pieces(vec![OK]),
        ])
        .await;
        let (status, body, _) = post(&mut conn).await.unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body.len(), BODY_KEPT);
        assert_eq!(post(&mut conn).await.unwrap().0, StatusCode::OK);
        assert_eq!(connections.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn closed_connections_are_replaced_before_the_next_request() {
        // A body that ends with the connection, a `Connection: close`, and a server that
        // closes an idle keep-alive connection: each next request goes on a new one.
        let (mut conn, connections, requests) = connect(vec![Reply::ThenClose(
            b"HTTP/1.0 200 OK\r\n\r\n{\"accepted\":1}",
        )])
        .await;
        for _ in 0..3 {
            let (status, body, _) = post(&mut conn).await.unwrap();
            assert_eq!(status, StatusCode::OK);
            assert_eq!(body, b"{\"accepted\":1}");
        }
        assert_eq!(connections.load(Ordering::SeqCst), 3);
        assert_eq!(requests.lock().unwrap().len(), 3);

        let (mut conn, connections, _) = connect(vec![Reply::ThenClose(OK)]).await;
        for _ in 0..3 {
            assert_eq!(post(&mut conn).await.unwrap().0, StatusCode::OK);
            // The server's FIN has arrived by the next request.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(connections.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn broken_answers_are_errors_that_say_what_was_wrong() {
        let cases: [(&'static [u8], &str); 6] = [
            (b"SMTP ready\r\n\r\n", "reading the answer's head"),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: ten\r\n\r\n",
                "is not a number",
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\nshort",
                "45 bytes before the end",
            ),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
                "chunk size",
            ),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n9\r\nshort",
                "4 bytes before the end",
            ),
            (b"", "closed before an answer"),
        ];
        for (reply, expected) in cases {
            let (mut conn, _, _) = connect(vec![Reply::ThenClose(reply)]).await;
            let error = post(&mut conn).await.unwrap_err().to_string();
            assert!(
                error.contains(expected),
                "{error:?} should say {expected:?}"
            );
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url: Uri = format!("http://{}/", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        drop(listener);
        let mut conn = Connection::new(Target::new(&url).unwrap(), Duration::from_secs(1));
        assert!(matches!(
            post(&mut conn).await,
            Err(ConnError::Connect { .. })
        ));
    }

    #[test]
    fn header_tokens() {
        assert_eq!(last_token(b"gzip, chunked "), b"chunked");
        assert_eq!(last_token(b"chunked, gzip"), b"gzip");
        assert!(has_token(b"Keep-Alive, Close", b"close"));
        assert!(!has_token(b"closed", b"close"));
    }
}
