//! The express lane: one hot request, served straight off the socket.
//!
//! An agent's connection carries the same request over and over: `POST /packets` with a
//! `Content-Length` body. For it, hyper's connection machinery (its dispatcher, the
//! channel its body streams through, a `HeaderMap` of every header, the router, the
//! response encoder) costs more than reading the packet does. So a plain-HTTP connection
//! starts here: the head is parsed with `httparse` (hyper's own parser), and a request
//! the [`Express`] handler takes is read whole and answered with one write.
//!
//! Anything else, from the first request that is not plain (another path, chunked,
//! `Expect`, HTTP/1.0, no `Host` or more than one, a head over [`MAX_HEAD`] or one
//! `httparse` refuses, a body over the limit), hands the connection to hyper with every
//! byte read so far, and hyper serves it to its end exactly as it serves any connection:
//! the same routes, limits, errors and timeouts. The express lane answers only what it is
//! sure of.
//!
//! An idle connection holds no read buffer: between requests the lane waits for the
//! socket to be readable with none, takes [`READ_ROOM`] when bytes are there, and lets it
//! go once a request is answered and nothing of the next is left in it.

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::bodies;

/// A request head longer than this goes to hyper (which answers 431 past its own limit).
pub const MAX_HEAD: usize = 16 * 1024;
/// Headers the express lane reads; a request with more goes to hyper.
const MAX_HEADERS: usize = 32;
/// Room made in the read buffer before each read of a head: a packet of 100 messages
/// (about 12 KB) arrives with its head in one read. Taken only once the socket is
/// readable, so an idle connection does not hold it.
const READ_ROOM: usize = 16 * 1024;
/// Below this much free room, the next read gets a fresh [`READ_ROOM`].
const MIN_ROOM: usize = 8 * 1024;

/// Read buffers between requests. A connection waiting for its next request holds none;
/// the one it read its last request into waits here, on the worker's thread, for the next
/// connection that has bytes to read. Its room after the bodies cut from it takes the next
/// requests without a new allocation, as it did when each connection kept its own, and a
/// worker keeps at most `SPARES` of them, whatever the number of idle connections.
mod spare {
    use std::cell::RefCell;

    use bytes::BytesMut;

    use super::MIN_ROOM;

    /// Read buffers a worker keeps at most.
    pub const SPARES: usize = 16;

    thread_local! {
        static KEPT: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
    }

    /// Keeps `buf` (empty) for the next read, if it still has room for one.
    pub fn put(buf: BytesMut) {
        if buf.capacity() >= MIN_ROOM {
            KEPT.with_borrow_mut(|kept| {
                if kept.len() < SPARES {
                    kept.push(buf);
                }
            });
        }
    }

    /// A kept buffer, the last kept first, or a new empty one.
    pub fn take() -> BytesMut {
        KEPT.with_borrow_mut(Vec::pop).unwrap_or_default()
    }
}

/// What a server answers on the express lane.
pub trait Express: Clone + Send + Sync + 'static {
    /// Whether connections start on the express lane at all (a server without an express
    /// route sets `false` and every connection goes straight to hyper).
    const ENABLED: bool = true;

    /// The body limit in bytes when this request is answered here; `None` hands the
    /// connection to hyper. Called once the head is complete.
    fn take(&self, head: &Head) -> Option<usize>;

    /// How long the body may take to arrive once the head has.
    fn body_timeout(&self) -> Duration;

    /// The answer to a request whose whole body has been read.
    fn answer(&self, head: Head, body: Bytes) -> impl Future<Output = Reply> + Send;

    /// The answer to a request whose body did not arrive within [`Self::body_timeout`]
    /// (the connection is closed after it).
    fn late(&self) -> Response;
}

/// An answer on the express lane.
pub enum Reply {
    /// A JSON body and its status, written as they are: the hot request's answer, with no
    /// `Response` (its header map, boxed body and the collecting of that body) built for it.
    Json(StatusCode, Vec<u8>),
    /// Any other answer.
    Response(Response),
}

impl From<Response> for Reply {
    fn from(response: Response) -> Self {
        Self::Response(response)
    }
}

/// No express route: every connection is hyper's.
impl Express for () {
    const ENABLED: bool = false;

    fn take(&self, _: &Head) -> Option<usize> {
        None
    }

    fn body_timeout(&self) -> Duration {
        Duration::ZERO
    }

    async fn answer(&self, _: Head, _: Bytes) -> Reply {
        Reply::Response(Response::default())
    }

    fn late(&self) -> Response {
        Response::default()
    }
}

/// A byte range within [`Head::bytes`].
#[derive(Debug, Clone, Copy, Default)]
struct Span {
    start: u16,
    end: u16,
}

impl Span {
    fn of(whole: &[u8], part: &[u8]) -> Self {
        let start = part.as_ptr() as usize - whole.as_ptr() as usize;
        Self {
            start: start as u16,
            end: (start + part.len()) as u16,
        }
    }

    fn range(self) -> std::ops::Range<usize> {
        usize::from(self.start)..usize::from(self.end)
    }
}

/// A parsed request head: a `POST` over HTTP/1.1 with one `Host` and a `Content-Length`
/// body, no `Transfer-Encoding`, `Expect` or `Upgrade`.
#[derive(Debug)]
pub struct Head {
    bytes: Bytes,
    path: Span,
    headers: [(Span, Span); MAX_HEADERS],
    count: usize,
    /// The body's declared length.
    pub content_length: usize,
    /// The client asked to close the connection after this request.
    pub close: bool,
}

impl Head {
    /// The request target as sent (path and query).
    pub fn path(&self) -> &[u8] {
        &self.bytes[self.path.range()]
    }

    /// The first value of header `name` (lowercase), sharing the head's buffer.
    pub fn header(&self, name: &str) -> Option<Bytes> {
        self.headers[..self.count]
            .iter()
            .find(|(n, _)| self.bytes[n.range()].eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| self.bytes.slice(v.range()))
    }
}

/// What the start of the buffer holds.
#[allow(
    clippy::large_enum_variant,
    reason = "a head is moved once per request; boxing it would allocate per request"
)]
enum Parsed {
    /// Not a whole head yet.
    Partial,
    /// A head of this many bytes the express lane can read; its spans are relative to the
    /// buffer's start.
    Plain(usize, Head),
    /// Anything else: hyper's to serve.
    Other,
}

fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => len,
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => return Parsed::Partial,
        _ => return Parsed::Other,
    };
    if request.method != Some("POST") || request.version != Some(1) {
        return Parsed::Other;
    }
    let Some(path) = request.path else {
        return Parsed::Other;
    };
    let mut head = Head {
        bytes: Bytes::new(),
        path: Span::of(buf, path.as_bytes()),
        headers: [(Span::default(), Span::default()); MAX_HEADERS],
        count: request.headers.len(),
        content_length: 0,
        close: false,
    };
    let mut length = None;
    // HTTP/1.1 needs exactly one `Host` (RFC 9112, section 3.2): a request with none or
    // more is hyper's, which answers 400.
    let mut hosts = 0u8;
    for (slot, header) in head.headers.iter_mut().zip(request.headers.iter()) {
        let name = header.name.as_bytes();
        if name.eq_ignore_ascii_case(b"host") {
            hosts = hosts.saturating_add(1);
        } else if name.eq_ignore_ascii_case(b"content-length") {
            // One length, digits only: anything else is hyper's to refuse.
            if length.is_some() || header.value.is_empty() || header.value.len() > 12 {
                return Parsed::Other;
            }
            let mut n = 0usize;
            for &b in header.value {
                if !b.is_ascii_digit() {
                    return Parsed::Other;
                }
                n = n * 10 + usize::from(b - b'0');
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"expect")
            || name.eq_ignore_ascii_case(b"upgrade")
        {
            return Parsed::Other;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in header.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    head.close = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    return Parsed::Other;
                }
            }
        }
        *slot = (Span::of(buf, name), Span::of(buf, header.value));
    }
    let Some(length) = length.filter(|_| hosts == 1) else {
        return Parsed::Other;
    };
    head.content_length = length;
    Parsed::Plain(len, head)
}

/// How an express connection ended.
pub enum Outcome {
    /// Closed (by the client, a timeout, shutdown or an answer that closes it).
    Closed,
    /// A request the express lane does not answer: hyper serves the rest of the
    /// connection, starting with the bytes already read.
    Handoff(Rewind),
}

/// Serves `stream` on the express lane until it closes or a request is not one for it.
/// `header_timeout` bounds each head from the moment the last answer was written (an idle
/// connection is closed after it, as hyper does); on `shutdown`, an idle connection is
/// closed and a request in flight is answered first. While no bytes of a request are
/// there, the connection holds no read buffer.
pub async fn serve<E: Express>(
    mut stream: TcpStream,
    express: &E,
    header_timeout: Duration,
    shutdown: &CancellationToken,
) -> Outcome {
    let mut buf = BytesMut::new();
    let mut out = Vec::with_capacity(256);
    // The connection's own child of the server's token: a token's state sits behind a
    // lock, and the server's is shared by every connection on every worker.
    let shutdown = shutdown.child_token();
    let mut stopping = pin!(shutdown.cancelled());
    loop {
        // The head.
        let deadline = Instant::now() + header_timeout;
        let (len, mut head) = loop {
            if !buf.is_empty() {
                match parse(&buf) {
                    Parsed::Plain(len, head) => break (len, head),
                    Parsed::Other => return Outcome::Handoff(Rewind::new(stream, buf)),
                    Parsed::Partial => {}
                }
            }
            if buf.is_empty() {
                // Nothing of a request yet: leave the buffer with the worker's spares (the
                // bodies cut from it keep their part) and wait with none until bytes are
                // there; then take a spare back, whose room the last requests left.
                spare::put(std::mem::take(&mut buf));
                let readable = tokio::select! {
                    biased;
                    readable = tokio::time::timeout_at(deadline, stream.readable()) => readable,
                    () = &mut stopping => return Outcome::Closed,
                };
                match readable {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) | Err(_) => return Outcome::Closed,
                }
                buf = spare::take();
            }
            if buf.capacity() - buf.len() < MIN_ROOM {
                buf.reserve(READ_ROOM);
            }
            let read = tokio::select! {
                biased;
                read = tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)) => read,
                () = &mut stopping, if buf.is_empty() => return Outcome::Closed,
            };
            match read {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return Outcome::Closed,
                Ok(Ok(_)) => {}
            }
        };
        head.bytes = buf.split_to(len).freeze();
        // Over the limit, hyper answers 413 and drains what is still coming.
        let taken = express.take(&head);
        let Some(_) = taken.filter(|&limit| head.content_length <= limit) else {
            let mut all = BytesMut::with_capacity(head.bytes.len() + buf.len());
            all.extend_from_slice(&head.bytes);
            all.extend_from_slice(&buf);
            return Outcome::Handoff(Rewind::new(stream, all));
        };

        // The body.
        let need = head.content_length;
        let body = if buf.len() >= need {
            buf.split_to(need).freeze()
        } else {
            // What has arrived is the body's start and nothing else.
            let mut own = bodies::take(need);
            own.extend_from_slice(&buf);
            buf.clear();
            let deadline = Instant::now() + express.body_timeout();
            while own.len() < need {
                match tokio::time::timeout_at(deadline, read_up_to(&mut stream, &mut own, need))
                    .await
                {
                    Ok(Ok(0)) | Ok(Err(_)) => return Outcome::Closed,
                    Ok(Ok(_)) => {}
                    Err(_) => {
                        let late = express.late().into();
                        let _ = answer(&mut stream, &mut out, late, true).await;
                        return Outcome::Closed;
                    }
                }
            }
            bodies::freeze(own)
        };
        let close = head.close;
        let reply = express.answer(head, body).await;
        match answer(&mut stream, &mut out, reply, close).await {
            Ok(true) => {}
            Ok(false) | Err(_) => return Outcome::Closed,
        }
    }
}

/// Reads into `buf` no further than `len` bytes: what follows the body is the next
/// request's, and belongs in the connection's buffer.
async fn read_up_to(stream: &mut TcpStream, buf: &mut Vec<u8>, len: usize) -> io::Result<usize> {
    let room = len - buf.len();
    stream.read_buf(&mut (&mut *buf).limit(room)).await
}

/// Writes `reply` in one write; `Ok(false)` when the connection is to be closed after
/// it (the client asked, or the answer says so).
async fn answer(
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    reply: Reply,
    close: bool,
) -> io::Result<bool> {
    // The body as a `Vec`: the JSON's own buffer as it is (a `Bytes` made of it would
    // allocate for its shared state), and any other answer's bytes.
    let (status, headers, body) = match reply {
        Reply::Json(status, body) => (status, None, body),
        Reply::Response(response) => {
            let (parts, body) = response.into_parts();
            (
                parts.status,
                Some(parts.headers),
                Vec::from(body_bytes(body).await),
            )
        }
    };
    let close = close
        || headers.as_ref().is_some_and(|headers| {
            headers
                .get(http::header::CONNECTION)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"))
        });
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\n");
    match &headers {
        None => out.extend_from_slice(b"content-type: application/json\r\n"),
        Some(headers) => {
            for (name, value) in headers {
                if name == http::header::CONNECTION || name == http::header::CONTENT_LENGTH {
                    continue;
                }
                out.extend_from_slice(name.as_str().as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(value.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
    out.extend_from_slice(b"\r\ndate: ");
    out.extend_from_slice(&http_date());
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(&body);
    stream.write_all(out).await?;
    if close {
        let _ = stream.shutdown().await;
    }
    Ok(!close)
}

/// A response body's bytes: the handlers' bodies are whole buffers, so this does not wait.
async fn body_bytes(body: Body) -> Bytes {
    axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default()
}

/// `Date` in IMF-fixdate, formatted once a second per thread.
fn http_date() -> [u8; 29] {
    use std::cell::Cell;
    thread_local! {
        static CACHED: Cell<(u64, [u8; 29])> = const { Cell::new((u64::MAX, [0; 29])) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with(|cached| {
        let (at, text) = cached.get();
        if at == secs {
            return text;
        }
        let mut text = [0u8; 29];
        text.copy_from_slice(httpdate::fmt_http_date(now).as_bytes());
        cached.set((secs, text));
        text
    })
}

/// A connection with the bytes already read from it put back in front, for hyper.
pub struct Rewind {
    prefix: BytesMut,
    stream: TcpStream,
}

impl Rewind {
    /// `stream`, with `prefix` read first.
    pub fn new(stream: TcpStream, prefix: BytesMut) -> Self {
        Self { prefix, stream }
    }
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.prefix.is_empty() {
            return Pin::new(&mut self.stream).poll_read(cx, buf);
        }
        let n = self.prefix.len().min(buf.remaining());
        buf.put_slice(&self.prefix[..n]);
        self.prefix.advance(n);
        if self.prefix.is_empty() {
            // Read out: free the express lane's buffer rather than keep it for the
            // connection's life.
            self.prefix = BytesMut::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spare_read_buffers_are_reused_and_bounded() {
        // A buffer with room comes back as it is; one without room is not kept.
        let mut roomy = BytesMut::with_capacity(READ_ROOM);
        roomy.extend_from_slice(b"a request");
        let _body = roomy.split_to(9);
        let at = roomy.as_ptr();
        spare::put(roomy);
        let back = spare::take();
        assert_eq!(back.as_ptr(), at, "the same room");
        spare::put(BytesMut::with_capacity(MIN_ROOM - 1));
        assert_eq!(
            spare::take().capacity(),
            0,
            "nothing kept: a new empty buffer"
        );
        for _ in 0..spare::SPARES + 5 {
            spare::put(BytesMut::with_capacity(READ_ROOM));
        }
        let kept = std::iter::from_fn(|| Some(spare::take()))
            .take_while(|b| b.capacity() > 0)
            .count();
        assert_eq!(kept, spare::SPARES);
    }

    fn plain(request: &str) -> (usize, Head) {
        match parse(request.as_bytes()) {
            Parsed::Plain(len, mut head) => {
                head.bytes = Bytes::copy_from_slice(&request.as_bytes()[..len]);
                (len, head)
            }
            Parsed::Partial => panic!("partial: {request:?}"),
            Parsed::Other => panic!("other: {request:?}"),
        }
    }

    fn is_other(request: &[u8]) -> bool {
        matches!(parse(request), Parsed::Other)
    }

    /// Answers `POST /toy` with `express <body length>`.
    #[derive(Clone)]
    struct Toy;

    impl Express for Toy {
        fn take(&self, head: &Head) -> Option<usize> {
            (head.path() == b"/toy").then_some(64)
        }

        fn body_timeout(&self) -> Duration {
            Duration::from_secs(5)
        }

        async fn answer(&self, _: Head, body: Bytes) -> Reply {
            Response::new(Body::from(format!("express {}", body.len()))).into()
        }

        fn late(&self) -> Response {
            Response::new(Body::from("late"))
        }
    }

    /// Sends `requests` on one connection and reads `count` answers' bodies.
    async fn exchange(addr: std::net::SocketAddr, requests: &[&str]) -> Vec<String> {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut bodies = Vec::new();
        let mut buf = BytesMut::new();
        for request in requests {
            stream.write_all(request.as_bytes()).await.unwrap();
            loop {
                let mut headers = [httparse::EMPTY_HEADER; 16];
                let mut response = httparse::Response::new(&mut headers);
                let parsed = match response.parse(&buf).unwrap() {
                    httparse::Status::Complete(len) => response
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                        .map(|h| (len, std::str::from_utf8(h.value).unwrap().parse().unwrap())),
                    httparse::Status::Partial => None,
                };
                if let Some((len, length)) =
                    parsed.filter(|(len, length)| buf.len() >= len + length)
                {
                    let body = buf.split_to(len + length).split_off(len);
                    bodies.push(String::from_utf8(body.to_vec()).unwrap());
                    break;
                }
                assert!(stream.read_buf(&mut buf).await.unwrap() > 0, "closed");
            }
        }
        bodies
    }

    #[tokio::test]
    async fn the_express_lane_answers_its_route_and_hyper_takes_over_for_good() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = axum::Router::new()
            .route("/toy", axum::routing::post(|| async { "hyper toy" }))
            .fallback(|| async { "hyper fallback" });
        let stop = CancellationToken::new();
        let server = tokio::spawn(super::super::serve(
            listener,
            router,
            Toy,
            super::super::ServeOptions::plain(Duration::from_secs(5)),
            crate::workers::Workers::current(),
            stop.clone(),
        ));
        let toy = "POST /toy HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
        let other = "POST /other HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc";
        let chunked = "POST /toy HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
                       2\r\nhi\r\n0\r\n\r\n";
        let big = "POST /toy HTTP/1.1\r\nHost: x\r\nContent-Length: 65\r\n\r\n";
        let big = format!("{big}{}", "x".repeat(65));
        // The express lane, until a request it does not take; hyper from then on, even
        // for its route.
        assert_eq!(
            exchange(addr, &[toy, toy, other, toy]).await,
            ["express 5", "express 5", "hyper fallback", "hyper toy"]
        );
        // A pipeline whose second request is not plain: both answered, in order.
        assert_eq!(
            exchange(addr, &[&format!("{toy}{chunked}"), toy]).await[..2],
            ["express 5", "hyper toy"]
        );
        // Over the express lane's limit: hyper's.
        assert_eq!(
            exchange(addr, &[toy, &big]).await,
            ["express 5", "hyper toy"]
        );
        stop.cancel();
        server.await.unwrap();
    }

    #[test]
    fn a_plain_post_is_parsed_with_its_headers() {
        let request = "POST /packets HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n\
                       Content-Length: 12\r\nAuthorization: Bearer t\r\n\r\n{\"a\":1}\n{\"b\":";
        let (len, head) = plain(request);
        assert_eq!(len, request.find("\r\n\r\n").unwrap() + 4);
        assert_eq!(head.path(), b"/packets");
        assert_eq!(head.content_length, 12);
        assert!(!head.close);
        assert_eq!(
            head.header("content-type").as_deref(),
            Some(&b"application/x-ndjson"[..])
        );
        assert_eq!(
            head.header("authorization").as_deref(),
            Some(&b"Bearer t"[..])
        );
        assert_eq!(head.header("idempotency-key"), None);
    }

    #[test]
    fn connection_close_is_seen_among_other_tokens() {
        let (_, head) = plain(
            "POST /p HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n",
        );
        assert!(head.close);
        assert_eq!(head.content_length, 0);
    }

    #[test]
    fn a_head_in_pieces_is_partial_until_it_ends() {
        let request = b"POST /packets HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n";
        for end in 1..request.len() {
            assert!(
                matches!(parse(&request[..end]), Parsed::Partial),
                "{end} bytes"
            );
        }
        assert!(matches!(parse(request), Parsed::Plain(..)));
    }

    #[test]
    fn what_is_not_plain_is_left_to_hyper() {
        let others: [&[u8]; 14] = [
            b"GET /health HTTP/1.1\r\n\r\n",
            b"POST /packets HTTP/1.0\r\nContent-Length: 1\r\n\r\n",
            b"POST /packets HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST /packets HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST /packets HTTP/1.1\r\nContent-Length: 1\r\nExpect: 100-continue\r\n\r\n",
            b"POST /packets HTTP/1.1\r\nContent-Length: 1\r\nConnection: upgrade\r\n\r\n",
            b"POST /packets HTTP/1.1\r\nHost: x\r\n\r\n",
            b"POST /packets HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
            b"POST /packets HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
            b"POST /packets HTTP/1.1\r\nContent-Length: 99999999999999\r\n\r\n",
            b"POST /pack ets HTTP/1.1\r\nContent-Length: 1\r\n\r\n",
            // HTTP/1.1 needs exactly one Host: hyper answers 400.
            b"POST /packets HTTP/1.1\r\nContent-Length: 1\r\n\r\n",
            b"POST /packets HTTP/1.1\r\nHost: x\r\nHost: y\r\nContent-Length: 1\r\n\r\n",
            b"POST /packets HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nhost: x\r\n\r\n",
        ];
        for request in others {
            assert!(is_other(request), "{}", String::from_utf8_lossy(request));
        }
    }

    #[test]
    fn a_head_too_long_or_with_too_many_headers_is_left_to_hyper() {
        let long = format!(
            "POST /packets HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\nContent-Length: 1\r\n\r\n",
            "a".repeat(MAX_HEAD)
        );
        assert!(is_other(long.as_bytes()));
        let unfinished = format!("POST /packets HTTP/1.1\r\nX-Pad: {}", "a".repeat(MAX_HEAD));
        assert!(is_other(unfinished.as_bytes()));
        let many = format!(
            "POST /packets HTTP/1.1\r\nHost: x\r\n{}Content-Length: 1\r\n\r\n",
            "X-A: b\r\n".repeat(MAX_HEADERS)
        );
        assert!(is_other(many.as_bytes()));
    }

    /// A header line for the property test: a name that matters to the parser (or not)
    /// and a value that may or may not be a length.
    fn header_line() -> impl proptest::strategy::Strategy<Value = (String, String)> {
        use proptest::prelude::*;
        let name = prop::sample::select(vec![
            "Host",
            "Content-Length",
            "content-length",
            "Transfer-Encoding",
            "Expect",
            "Upgrade",
            "Connection",
            "Content-Type",
            "X-Other",
        ]);
        let value = prop_oneof![
            "[0-9]{1,14}",
            "[ -~]{0,12}",
            prop::sample::select(vec![
                "close",
                "keep-alive",
                "upgrade",
                "chunked",
                "+5",
                " 7"
            ])
            .prop_map(String::from),
        ];
        (name.prop_map(String::from), value)
    }

    proptest::proptest! {
        /// Whatever the head holds, the parser does not panic, and it takes a head exactly
        /// when a plain reading of the same lines says the express lane may: one `Host`,
        /// one `Content-Length` of digits, no `Transfer-Encoding`, `Expect` or `Upgrade`.
        #[test]
        fn the_parser_takes_exactly_the_plain_heads(
            host in proptest::bool::weighted(0.8),
            lines in proptest::collection::vec(header_line(), 0..6),
            tail in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
        ) {
            let mut request = String::from("POST /packets HTTP/1.1\r\n");
            if host {
                request.push_str("Host: x\r\n");
            }
            for (name, value) in &lines {
                request.push_str(&format!("{name}: {value}\r\n"));
            }
            request.push_str("\r\n");
            let head_len = request.len();
            let mut bytes = request.into_bytes();
            bytes.extend_from_slice(&tail);

            let trimmed = |v: &str| v.trim_matches([' ', '\t']).to_owned();
            let lengths: Vec<String> = lines
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .map(|(_, v)| trimmed(v))
                .collect();
            let banned = lines.iter().any(|(n, v)| {
                ["transfer-encoding", "expect", "upgrade"].iter().any(|b| n.eq_ignore_ascii_case(b))
                    || (n == "Connection" && v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")))
            });
            let hosts = usize::from(host) + lines.iter().filter(|(n, _)| n == "Host").count();
            let plain = !banned
                && hosts == 1
                && lengths.len() == 1
                && !lengths[0].is_empty()
                && lengths[0].len() <= 12
                && lengths[0].bytes().all(|b| b.is_ascii_digit());
            match parse(&bytes) {
                Parsed::Plain(len, head) => {
                    proptest::prop_assert!(plain, "took {:?}", lines);
                    proptest::prop_assert_eq!(len, head_len);
                    proptest::prop_assert_eq!(head.content_length, lengths[0].parse::<usize>().unwrap());
                }
                Parsed::Other => proptest::prop_assert!(!plain, "left {:?}", lines),
                Parsed::Partial => proptest::prop_assert!(false, "a whole head read as partial"),
            }
        }
    }
}
