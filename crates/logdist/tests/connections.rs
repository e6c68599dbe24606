//! Connections on raw sockets, so the bytes on the wire are the test's own: at the bound
//! of `--max-connections` a new connection is refused at once with 503 and served again
//! once a slot is free; a request breaking HTTP's rule on `Host` gets 400 on both the
//! express lane and hyper's path; and an idle keep-alive connection costs a bounded,
//! measured amount of memory.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

/// A packet of one message, as `POST /packets` sends it.
fn post_packets(host: Option<&str>, version: &str) -> Vec<u8> {
    let body = packet(1, 1);
    let host = host.map_or(String::new(), |h| format!("Host: {h}\r\n"));
    format!(
        "POST /packets {version}\r\n{host}Content-Type: application/x-ndjson\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn connect(url: &str) -> TcpStream {
    let stream = TcpStream::connect(url.trim_start_matches("http://")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// Reads one answer (its head and a `Content-Length` body); returns the head and body.
fn read_answer(stream: &mut TcpStream) -> (String, String) {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).into_owned();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&data[end + 4..end + 4 + length]).into_owned();
                return (head, body);
            }
        }
        let n = stream.read(&mut buf).unwrap_or_else(|e| {
            panic!("no whole answer ({e}): {}", String::from_utf8_lossy(&data))
        });
        assert!(
            n > 0,
            "closed before a whole answer: {}",
            String::from_utf8_lossy(&data)
        );
        data.extend_from_slice(&buf[..n]);
    }
}

/// Sends `request` on a new connection and reads its answer.
fn exchange(url: &str, request: &[u8]) -> (String, String) {
    let mut stream = connect(url);
    stream.write_all(request).unwrap();
    read_answer(&mut stream)
}

/// Whether the server closed `stream` (EOF or a reset) within `within`.
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                );
            }
        }
    }
}

#[test]
fn at_the_connection_bound_a_new_connection_is_refused_at_once_and_served_once_a_slot_frees() {
    let dir = scratch("connections-bound");
    let (d, url) = distributor(&dir, &["--max-connections", "8", "--header-timeout", "60s"]);
    // Eight idle connections, each served once so it surely holds its slot.
    let mut held: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut stream = connect(&url);
            stream
                .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            assert!(read_answer(&mut stream).0.starts_with("HTTP/1.1 200"));
            stream
        })
        .collect();

    // The ninth, which sends its request at once: 503 with Retry-After, then closed,
    // well under a second after it connected.
    for _ in 0..3 {
        let started = Instant::now();
        let mut ninth = connect(&url);
        ninth
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let (head, body) = read_answer(&mut ninth);
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
        let head = head.to_ascii_lowercase();
        assert!(head.contains("\r\nretry-after: 1\r\n"), "{head}");
        assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
        assert!(
            head.contains("\r\ncontent-type: application/json\r\n"),
            "{head}"
        );
        let error: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(
            error["error"]
                .as_str()
                .unwrap()
                .contains("limit of 8 connections"),
            "{body}"
        );
        assert!(closed_within(&mut ninth, Duration::from_secs(2)));
        let took = started.elapsed();
        assert!(took < Duration::from_millis(500), "refused after {took:?}");
    }
    // One that sends nothing is answered and closed as well: the refusal waits on no one.
    let started = Instant::now();
    let mut silent = connect(&url);
    assert!(read_answer(&mut silent).0.starts_with("HTTP/1.1 503 "));
    assert!(closed_within(&mut silent, Duration::from_secs(2)));
    assert!(started.elapsed() < Duration::from_millis(500));

    // The held connections were not disturbed.
    held[0]
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert!(read_answer(&mut held[0]).0.starts_with("HTTP/1.1 200"));

    // One of the eight closes: its slot is free again (once the server has seen the close).
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut served = loop {
        let mut stream = connect(&url);
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let (head, _) = read_answer(&mut stream);
        if head.starts_with("HTTP/1.1 200") {
            break stream;
        }
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
        assert!(Instant::now() < deadline, "no slot came free");
        std::thread::sleep(Duration::from_millis(20));
    };

    // Refusals are counted (asked on the connection just served: all slots are taken).
    served
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (_, metrics) = read_answer(&mut served);
    let refused: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("logdist_connections_refused_total "))
        .unwrap_or_else(|| panic!("no refusal counter: {metrics}"))
        .trim()
        .parse()
        .unwrap();
    assert!(refused >= 4.0, "{refused}");
    assert!(d.log_text().contains("refusing new ones with 503"));
}

#[test]
fn a_request_without_exactly_one_host_gets_400_and_http_1_0_needs_none() {
    let dir = scratch("connections-host");
    let (_d, url) = distributor(&dir, &[]);
    let health = |host: &str, version: &str| {
        exchange(
            &url,
            format!("GET /health {version}\r\n{host}\r\n").as_bytes(),
        )
    };
    // hyper's path.
    let (head, body) = health("", "HTTP/1.1");
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
    assert!(body.contains("needs a Host header"), "{body}");
    assert!(
        serde_json::from_str::<serde_json::Value>(&body).is_ok(),
        "{body}"
    );
    let (head, body) = health("Host: a\r\nHost: b\r\n", "HTTP/1.1");
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
    assert!(body.contains("this one has 2"), "{body}");
    assert!(
        health("Host: x\r\n", "HTTP/1.1")
            .0
            .starts_with("HTTP/1.1 200")
    );
    // hyper answers a 1.0 request in 1.0.
    assert!(health("", "HTTP/1.0").0.starts_with("HTTP/1.0 200"));

    // The express lane (no analyzer: a packet it takes is answered 503).
    let (head, body) = exchange(&url, &post_packets(None, "HTTP/1.1"));
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
    assert!(body.contains("needs a Host header"), "{body}");
    let mut two = post_packets(Some("a"), "HTTP/1.1");
    let at = two.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
    two.splice(at..at, b"Host: b\r\n".iter().copied());
    let (head, _) = exchange(&url, &two);
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
    let (head, body) = exchange(&url, &post_packets(Some("x"), "HTTP/1.1"));
    assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
    assert!(body.contains("analyzer"), "{body}");
    let (head, _) = exchange(&url, &post_packets(None, "HTTP/1.0"));
    assert!(head.starts_with("HTTP/1.0 503 "), "{head}");

    // With an analyzer, the same packets are taken: with Host, and over 1.0 without.
    let (_a, _) = analyzer(&dir, 1, 1.0, &url, &[]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !exchange(&url, &post_packets(Some("x"), "HTTP/1.1"))
        .0
        .starts_with("HTTP/1.1 200")
    {
        assert!(
            Instant::now() < deadline,
            "the analyzer did not come online"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        exchange(&url, &post_packets(None, "HTTP/1.0"))
            .0
            .starts_with("HTTP/1.0 200")
    );
    assert!(
        exchange(&url, &post_packets(None, "HTTP/1.1"))
            .0
            .starts_with("HTTP/1.1 400 ")
    );
}

/// Opens `count` connections to `url`, each sending `request` and reading its answer.
fn open_idle(url: &str, count: usize, request: &[u8]) -> Vec<TcpStream> {
    (0..count)
        .map(|_| {
            let mut stream = connect(url);
            stream.write_all(request).unwrap();
            read_answer(&mut stream);
            stream
        })
        .collect()
}

/// VmRSS once it has stopped moving (two equal readings 100 ms apart, at most 3 s).
fn settled_rss_kib(pid: i32) -> u64 {
    let mut last = rss_kib(pid).unwrap();
    for _ in 0..30 {
        std::thread::sleep(Duration::from_millis(100));
        let now = rss_kib(pid).unwrap();
        if now == last {
            break;
        }
        last = now;
    }
    last
}

/// This process's limit on open files, soft and hard, from /proc.
fn open_files_limit() -> (u64, u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let mut numbers = line
        .split_whitespace()
        .filter_map(|w| w.parse::<u64>().ok());
    let soft = numbers.next().unwrap_or(1024);
    (soft, numbers.next().unwrap_or(soft))
}

/// Raises this process's soft limit on open files to its hard limit (`prlimit`, as the
/// workspace has no `unsafe` for `setrlimit`); the distributor started after inherits it.
/// Returns the soft limit then in force.
fn raise_open_files_limit() -> u64 {
    let (soft, hard) = open_files_limit();
    if soft < hard {
        let _ = std::process::Command::new("prlimit")
            .arg(format!("--pid={}", std::process::id()))
            .arg(format!("--nofile={hard}:{hard}"))
            .status();
    }
    open_files_limit().0
}

/// Idle keep-alive connections cost a bounded amount each. Measured with
/// `bench/idle_connections.py` (N = 2,000 and 10,000, this build): about 3.7 KiB on the
/// express lane and 17 KiB on hyper's path (hyper keeps an 8 KiB read buffer and its write
/// buffer per connection). Before the express lane let its read buffer go while idle, an
/// express connection cost 10.8 KiB; the bounds sit between, with room for noise.
#[test]
fn an_idle_connection_costs_a_bounded_amount_of_memory() {
    // 2,000 of each kind, or as many as the limit on open files allows (each connection
    // is a file here and one in the distributor).
    let limit = raise_open_files_limit();
    let count = 2_000.min((limit.saturating_sub(200) / 2) as usize);
    assert!(count >= 400, "open files limited to {limit}");
    let dir = scratch("connections-memory");
    let (d, url) = distributor(&dir, &["--header-timeout", "120s"]);
    let packets = post_packets(Some("x"), "HTTP/1.1");
    let health = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    // Warm up each path once, so the allocator's and the runtime's first growth is not
    // counted against the connections.
    drop(open_idle(&url, 50, &packets));
    drop(open_idle(&url, 50, health));
    std::thread::sleep(Duration::from_millis(300));

    let before = settled_rss_kib(d.pid());
    let express = open_idle(&url, count, &packets);
    let with_express = settled_rss_kib(d.pid());
    let hyper = open_idle(&url, count, health);
    let with_both = settled_rss_kib(d.pid());
    let per = |from: u64, to: u64| (to.saturating_sub(from) * 1024) as f64 / count as f64;
    let express_each = per(before, with_express);
    let hyper_each = per(with_express, with_both);
    eprintln!(
        "{count} idle connections each: express lane {express_each:.0} B, hyper's path \
         {hyper_each:.0} B"
    );
    assert!(
        express_each < 6.0 * 1024.0,
        "an idle express connection costs {express_each:.0} B"
    );
    assert!(
        hyper_each < 24.0 * 1024.0,
        "an idle connection on hyper's path costs {hyper_each:.0} B"
    );
    // They were all kept open and are still served.
    for stream in [&express[0], &express[count - 1], &hyper[count - 1]] {
        let mut stream = stream.try_clone().unwrap();
        stream.write_all(health).unwrap();
        assert!(read_answer(&mut stream).0.starts_with("HTTP/1.1 200"));
    }
}
