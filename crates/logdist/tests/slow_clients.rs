//! Slow and lying clients on raw sockets: headers that never finish (slowloris), a body
//! that stalls, a body shorter or longer than its Content-Length. Each is cut off or
//! answered, and the distributor keeps serving everyone else meanwhile.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

const GOOD: &str =
    r#"{"timestamp":1020,"severity":"WARN","source":"app","message":"hello world!"}"#;

/// Reads until the server closes the connection (or 10 s pass); returns what it sent and
/// how long it took.
fn read_to_close(stream: &mut TcpStream) -> (String, Duration) {
    let start = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    (
        String::from_utf8_lossy(&answer).into_owned(),
        start.elapsed(),
    )
}

fn connect(url: &str) -> TcpStream {
    TcpStream::connect(url.trim_start_matches("http://")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_lying_clients_are_cut_off_while_others_are_served() {
    let dir = scratch("slow-clients");
    let http = Http::new();
    let (_d, url) = distributor(&dir, &["--header-timeout", "1s", "--body-timeout", "1s"]);
    let (_a, _) = analyzer(&dir, 1, 1.0, &url, &[]);
    http.wait_stats(&url, "analyzer_1", |s| online(s, &["analyzer_1"]))
        .await;

    // Slowloris: 200 connections each send half a request's headers, one byte at a time.
    let mut loris: Vec<TcpStream> = (0..200).map(|_| connect(&url)).collect();
    for stream in &mut loris {
        stream
            .write_all(b"POST /packets HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
    }
    // Meanwhile everyone else is served at once.
    let started = Instant::now();
    let answer = http
        .post(&format!("{url}/message/send"), "application/json", GOOD)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(started.elapsed() < Duration::from_millis(500));
    let trickle = tokio::task::spawn_blocking(move || {
        // Trickling a header byte every 100 ms does not reset the clock.
        let mut stream = loris.pop().unwrap();
        for b in b"X-Slow: 1234567890123456789012345678901234567890" {
            if stream.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let cut = read_to_close(&mut stream);
        let rest: Vec<_> = loris.iter_mut().map(read_to_close).collect();
        (cut, rest)
    });
    let ((text, took), rest) = trickle.await.unwrap();
    assert!(
        took < Duration::from_secs(5),
        "trickler kept for {took:?}: {text}"
    );
    for (text, took) in rest {
        assert!(
            took < Duration::from_secs(3),
            "slowloris kept for {took:?}: {text}"
        );
    }

    // A body that stalls: 408 with a JSON error once the body timeout passes.
    let mut stream = connect(&url);
    stream
        .write_all(
            b"POST /packets HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: 1000\r\n\r\n{\"timestamp\":",
        )
        .unwrap();
    let (text, took) = tokio::task::spawn_blocking(move || read_to_close(&mut stream))
        .await
        .unwrap();
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("was not received within 1s"), "{text}");
    assert!(took < Duration::from_secs(3), "{took:?}");

    // A body shorter than it says, then the client hangs up: nothing is delivered.
    let before = delivered(&http, &url).await;
    let mut stream = connect(&url);
    stream
        .write_all(
            format!(
                "POST /packets HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: 500\r\n\r\n{GOOD}\n"
            )
            .as_bytes(),
        )
        .unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let _ = tokio::task::spawn_blocking(move || read_to_close(&mut stream)).await;

    // A body longer than it says: the packet is what Content-Length covers (a cut-off
    // message, refused whole), and the rest is a malformed next request (400).
    let mut stream = connect(&url);
    stream
        .write_all(
            format!(
                "POST /packets HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: 20\r\n\r\n{GOOD}\n"
            )
            .as_bytes(),
        )
        .unwrap();
    let (text, _) = tokio::task::spawn_blocking(move || read_to_close(&mut stream))
        .await
        .unwrap();
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("line 1"), "{text}");

    // Nothing of either reached the analyzer, and the distributor still serves.
    assert_eq!(delivered(&http, &url).await, before);
    let answer = http
        .post(&format!("{url}/message/send"), "application/json", GOOD)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(delivered(&http, &url).await, before + 1);
}

async fn delivered(http: &Http, url: &str) -> u64 {
    http.stats(url).await.iter().map(|a| a.messages_total).sum()
}
