//! The express lane on raw sockets: `POST /packets` is answered without hyper, and hyper
//! takes a connection over, with the bytes already read, at the first request that is not
//! plain. Every answer must be the one hyper's router gives, on one connection throughout.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

/// One answer read off `stream`: status, head (lowercased) and body.
struct Raw {
    status: u16,
    head: String,
    body: String,
}

/// Reads one answer with a Content-Length body (skipping `100 Continue`).
fn read_answer(stream: &mut TcpStream, pending: &mut Vec<u8>) -> Raw {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    loop {
        let end = loop {
            if let Some(at) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            fill(stream, pending);
        };
        let head = String::from_utf8_lossy(&pending[..end]).to_ascii_lowercase();
        let status: u16 = head[9..12].parse().unwrap();
        if status == 100 {
            pending.drain(..end);
            continue;
        }
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .map_or(0, |v| v.trim().parse().unwrap());
        while pending.len() < end + length {
            fill(stream, pending);
        }
        let body = String::from_utf8_lossy(&pending[end..end + length]).into_owned();
        pending.drain(..end + length);
        return Raw { status, head, body };
    }
}

fn fill(stream: &mut TcpStream, pending: &mut Vec<u8>) {
    let mut buf = [0u8; 4096];
    let n = stream.read(&mut buf).expect("the answer");
    assert!(n > 0, "closed before a whole answer");
    pending.extend_from_slice(&buf[..n]);
}

fn post(path: &str, extra: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn connect(url: &str) -> TcpStream {
    let stream = TcpStream::connect(url.trim_start_matches("http://")).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Sends `request` on a new connection and reads its answer; the connection stays open.
fn send_fresh(url: &str, request: &str) -> (TcpStream, Raw) {
    let mut stream = connect(url);
    stream.write_all(request.as_bytes()).unwrap();
    let answer = read_answer(&mut stream, &mut Vec::new());
    (stream, answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_is_served_on_the_express_lane_then_by_hyper() {
    let dir = scratch("express");
    let http = Http::new();
    let (_d, url) = distributor(&dir, &["--max-body", "64KiB"]);
    let (_a, _) = analyzer(&dir, 1, 1.0, &url, &[]);
    http.wait_stats(&url, "analyzer_1", |s| online(s, &["analyzer_1"]))
        .await;

    let target = url.clone();
    let answers = tokio::task::spawn_blocking(move || {
        let mut stream = connect(&target);
        let mut pending = Vec::new();
        let mut answers = Vec::new();
        let mut next = |stream: &mut TcpStream| read_answer(stream, &mut pending);
        // Express: one packet, then two in one write (pipelined), then a malformed one.
        stream.write_all(post("/packets", "", &packet(0, 3)).as_bytes()).unwrap();
        answers.push(next(&mut stream));
        let two = post("/packets", "", &packet(3, 2)) + &post("/packets", "", &packet(5, 1));
        stream.write_all(two.as_bytes()).unwrap();
        answers.push(next(&mut stream));
        answers.push(next(&mut stream));
        stream.write_all(post("/packets", "", "{\"timestamp\":1}\n").as_bytes()).unwrap();
        answers.push(next(&mut stream));
        // A head and body in pieces, a byte at a time at first.
        let piecemeal = post("/packets", "", &packet(6, 2));
        let (head, body) = piecemeal.split_at(piecemeal.find("\r\n\r\n").unwrap() + 4);
        for byte in head.as_bytes() {
            stream.write_all(&[*byte]).unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
        let (first, second) = body.split_at(10);
        stream.write_all(first.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        stream.write_all(second.as_bytes()).unwrap();
        answers.push(next(&mut stream));
        // A packet bigger than the connection's read buffer, in two writes, the second
        // with the next packet after it: the body gets a buffer of its own, read no
        // further than its end, and the next head is found where it starts.
        let large = post("/packets", "", &packet(8, 400));
        assert!(large.len() > 32 * 1024, "{}", large.len());
        let (start, end) = large.split_at(20 * 1024);
        stream.write_all(start.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let end = end.to_owned() + &post("/packets", "", &packet(408, 1));
        stream.write_all(end.as_bytes()).unwrap();
        answers.push(next(&mut stream));
        answers.push(next(&mut stream));
        // Not plain: hyper takes the connection over, in the middle of a pipeline.
        let mixed = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n".to_owned() + &post("/packets", "", &packet(8, 1));
        stream.write_all(mixed.as_bytes()).unwrap();
        answers.push(next(&mut stream));
        answers.push(next(&mut stream));
        // From here on hyper serves it: Expect, chunked, a body over the limit.
        stream
            .write_all(post("/packets", "Expect: 100-continue\r\n", &packet(9, 1)).as_bytes())
            .unwrap();
        answers.push(next(&mut stream));
        let chunk = packet(10, 1);
        let chunked = format!(
            "POST /packets HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
            chunk.len()
        );
        stream.write_all(chunked.as_bytes()).unwrap();
        answers.push(next(&mut stream));
        answers
    })
    .await
    .unwrap();

    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(
        statuses,
        [200, 200, 200, 400, 200, 200, 200, 200, 200, 200, 200]
    );
    let messages: Vec<&str> = answers
        .iter()
        .map(|a| a.body.as_str())
        .filter(|b| b.contains("\"messages\""))
        .collect();
    assert_eq!(messages.len(), 9, "{messages:?}");
    for (answer, count) in messages.iter().zip([3, 2, 1, 2, 400, 1, 1, 1, 1]) {
        assert!(
            answer.starts_with(&format!("{{\"messages\":{count},\"status\":\"delivered\"")),
            "{answer}"
        );
    }
    assert!(answers[3].body.contains("line 1"), "{}", answers[3].body);
    assert!(
        answers[7].body.contains("\"status\":\"ok\""),
        "{}",
        answers[7].body
    );
    for answer in &answers {
        assert!(answer.head.contains("\r\ndate: "), "{}", answer.head);
        assert!(
            answer.head.contains("content-type: application/json"),
            "{}",
            answer.head
        );
        assert!(
            !answer.head.contains("connection: close"),
            "{}",
            answer.head
        );
    }
    // Every packet answered 200 was delivered, once.
    http.wait_stats(&url, "analyzer_1 to have 412 messages", |s| {
        s.iter()
            .any(|a| a.id == "analyzer_1" && a.messages_total == 412)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_oversize_idle_and_shutdown_on_the_express_lane() {
    let dir = scratch("express-close");
    let http = Http::new();
    let (mut d, url) = distributor(&dir, &["--max-body", "1KiB", "--header-timeout", "1s"]);
    let (_a, _) = analyzer(&dir, 1, 1.0, &url, &[]);
    http.wait_stats(&url, "analyzer_1", |s| online(s, &["analyzer_1"]))
        .await;

    let target = url.clone();
    tokio::task::spawn_blocking(move || {
        // A client that asks to close gets its answer, then the close.
        let request = post("/packets", "Connection: close\r\n", &packet(0, 1));
        let (mut stream, answer) = send_fresh(&target, &request);
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert!(answer.head.contains("connection: close"), "{}", answer.head);
        assert_eq!(stream.read(&mut [0u8; 16]).unwrap(), 0, "not closed");

        // Over --max-body: hyper's 413, which closes the connection.
        let (_, answer) = send_fresh(&target, &post("/packets", "", &packet(1, 20)));
        assert_eq!(answer.status, 413, "{}", answer.body);
        assert!(
            answer.body.contains("limit of 1024 bytes"),
            "{}",
            answer.body
        );

        // An idle keep-alive connection is closed after the header timeout.
        let (mut stream, answer) = send_fresh(&target, &post("/packets", "", &packet(21, 1)));
        assert_eq!(answer.status, 200, "{}", answer.body);
        let idle = Instant::now();
        assert_eq!(stream.read(&mut [0u8; 16]).unwrap(), 0, "not closed");
        let waited = idle.elapsed();
        assert!(
            waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
            "{waited:?}"
        );
    })
    .await
    .unwrap();

    // On SIGTERM an idle express connection is closed at once, and the distributor exits
    // well within its grace period.
    let (mut idle, answer) = send_fresh(&url, &post("/packets", "", &packet(22, 1)));
    assert_eq!(answer.status, 200, "{}", answer.body);
    let stopping = Instant::now();
    d.signal("TERM");
    assert_eq!(idle.read(&mut [0u8; 16]).unwrap(), 0, "not closed");
    assert!(d.wait_exit(Duration::from_secs(5)).success());
    assert!(
        stopping.elapsed() < Duration::from_secs(2),
        "{:?}",
        stopping.elapsed()
    );
}
