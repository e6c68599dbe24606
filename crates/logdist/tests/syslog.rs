//! Syslog ingest (`--syslog-listen`) with real clients, to an in-process distributor and
//! its analyzers; what the analyzers received is read from their journals.
//!
//! - util-linux `logger`: RFC 5424 octet-counted over TCP, RFC 3164 over UDP.
//! - Debian's syslog-ng forwarding the lines `logger` gives it (from a file, on its
//!   standard input) with its `syslog()` destination (RFC 5424, octet-counted) and its
//!   `network()` destination (RFC 3164, a line each).
//! - Hostile frames over raw TCP: each closes its connection, is logged and counted, and
//!   the listener keeps serving.
//! - Shutdown: what a connection sent before the distributor was stopped is delivered.
//!
//! `logger` and syslog-ng are installed by `.ci/run`.
//!
//! Rerun: `cargo nextest run -p logdist --test syslog`.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::clients::*;
use common::syslog_ng::SyslogNg;
use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How many lines each client test sends.
const LINES: usize = 200;

/// How long a client's lines may take to arrive.
const WAIT: Duration = Duration::from_secs(30);

/// The machine's host name, as `logger` writes it.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .split('.')
        .next()
        .unwrap()
        .to_owned()
}

/// `line 0`, `line 1`...
fn lines(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("line {i}")).collect()
}

/// Checks that `messages` are `line 0..count`, each once, and runs `check` on each.
fn each_line_once(messages: &[Value], count: usize, check: impl Fn(&Value)) {
    assert_eq!(messages.len(), count);
    let mut seen = vec![false; count];
    for message in messages {
        let i: usize = message["message"]
            .as_str()
            .and_then(|text| text.strip_prefix("line "))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not a line sent: {message}"));
        assert!(!seen[i], "line {i} arrived twice");
        seen[i] = true;
        check(message);
    }
}

/// A distributor listening for syslog on `transport://127.0.0.1:PORT` (a free port),
/// with two analyzers; the port.
async fn syslog_distributor(
    dir: &std::path::Path,
    transport: &str,
    extra: &[&str],
) -> (
    inproc::Running,
    Vec<inproc::Running>,
    Vec<std::path::PathBuf>,
    u16,
) {
    let port = match transport {
        "udp" => std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port(),
        _ => free_port(),
    };
    let listen = format!("{transport}://127.0.0.1:{port}");
    let mut flags = vec!["--syslog-listen", listen.as_str()];
    flags.extend_from_slice(extra);
    let (distributor, analyzers, journals) = distributor_and_analyzers(dir, &flags).await;
    (distributor, analyzers, journals, port)
}

/// Runs `logger` with `args`, the lines on its standard input (one message each).
fn logger(dir: &std::path::Path, args: &[&str], lines: &[String]) {
    let input = dir.join("logger.input");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let output = Command::new("logger")
        .args(args)
        .stdin(std::fs::File::open(&input).unwrap())
        .output()
        .unwrap_or_else(|e| panic!("could not run logger ({e}): install util-linux"));
    assert!(
        output.status.success(),
        "logger failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The sum of the series of `/metrics` whose line starts with `prefix`.
async fn metric_of(http: &Http, distributor: &str, prefix: &str) -> f64 {
    let text = http.get(&format!("{distributor}/metrics")).await.text();
    metric(&text, prefix)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logger_rfc5424_octet_counted_over_tcp_arrives_mapped() {
    let _sending = SENDING.lock().await;
    let dir = scratch("syslog-logger-tcp");
    let http = Http::new();
    let (distributor, _analyzers, journals, port) = syslog_distributor(&dir, "tcp", &[]).await;
    let packets_before = metric_of(
        &http,
        &distributor.url,
        "logdist_packets_received_total{format=\"syslog\"}",
    )
    .await;
    let port = port.to_string();
    tokio::task::block_in_place(|| {
        logger(
            &dir,
            &[
                "--tcp",
                "--octet-count",
                "--rfc5424",
                "--server",
                "127.0.0.1",
                "--port",
                &port,
                "--tag",
                "checkout",
                "--id=4711",
                "--msgid",
                "ORD",
                "--sd-id",
                "order@32473",
                "--sd-param",
                "total=\"12.5\"",
                "--priority",
                "local3.warning",
            ],
            &lines(LINES),
        )
    });
    let messages = wait_received(&journals, LINES, WAIT, String::new).await;
    let host = hostname();
    each_line_once(&messages, LINES, |m| {
        assert_eq!(m["source"], "checkout", "APP-NAME: {m}");
        assert_eq!(m["severity"], "WARN", "{m}");
        assert_eq!(m["severity_original"], "warning", "{m}");
        assert_eq!(m["facility"], "local3", "{m}");
        assert_eq!(m["hostname"], host.as_str(), "{m}");
        assert_eq!(m["procid"], "4711", "{m}");
        assert_eq!(m["msgid"], "ORD", "{m}");
        assert_eq!(m["sd"]["order@32473"]["total"], "12.5", "{m}");
        assert!(
            m["timestamp"].as_i64().unwrap() > 1_700_000_000_000,
            "milliseconds: {m}"
        );
    });
    // Batched: fewer packets than messages, counted as syslog.
    let packets = metric_of(
        &http,
        &distributor.url,
        "logdist_packets_received_total{format=\"syslog\"}",
    )
    .await
        - packets_before;
    assert!((1.0..=LINES as f64).contains(&packets), "{packets} packets");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logger_rfc3164_over_udp_arrives_mapped() {
    let _sending = SENDING.lock().await;
    let dir = scratch("syslog-logger-udp");
    let (_distributor, _analyzers, journals, port) = syslog_distributor(&dir, "udp", &[]).await;
    let port = port.to_string();
    // 200 datagrams on loopback into a socket read as they come: none is dropped.
    tokio::task::block_in_place(|| {
        logger(
            &dir,
            &[
                "--udp",
                "--rfc3164",
                "--server",
                "127.0.0.1",
                "--port",
                &port,
                "--tag",
                "billing",
                "--priority",
                "auth.crit",
            ],
            &lines(LINES),
        )
    });
    let messages = wait_received(&journals, LINES, WAIT, String::new).await;
    let host = hostname();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    each_line_once(&messages, LINES, |m| {
        assert_eq!(m["source"], "billing", "TAG: {m}");
        assert_eq!(m["severity"], "FATAL", "crit: {m}");
        assert_eq!(m["facility"], "auth", "{m}");
        assert_eq!(m["hostname"], host.as_str(), "{m}");
        // `Mmm dd hh:mm:ss`: this year's, whole seconds, within a minute of now.
        let t = m["timestamp"].as_i64().unwrap();
        assert!(
            t % 1000 == 0 && (now - t).abs() < 60_000,
            "{t} vs {now}: {m}"
        );
    });
}

/// syslog-ng's destinations to logdist's listener, each with the lines `logger` gives
/// syslog-ng: `syslog()` writes RFC 5424 octet-counted, `network()` RFC 3164 a line each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_ng_forwards_every_line_over_tcp() {
    let _sending = SENDING.lock().await;
    for (name, driver, severity) in [
        ("syslog", "syslog", "ERROR"),
        ("network", "network", "ERROR"),
    ] {
        let dir = scratch(&format!("syslog-ng-{name}"));
        let (_distributor, _analyzers, journals, port) = syslog_distributor(&dir, "tcp", &[]).await;
        let destination = format!(r#"{driver}("127.0.0.1" port({port}) transport("tcp"));"#);
        let syslog_ng = SyslogNg::start(&dir, &destination);
        tokio::task::block_in_place(|| syslog_ng.log("inventory", "daemon.err", &lines(LINES)));
        let messages = wait_received(&journals, LINES, WAIT, || syslog_ng.said()).await;
        each_line_once(&messages, LINES, |m| {
            assert_eq!(m["source"], "inventory", "{name}: {m}");
            assert_eq!(m["severity"], severity, "{name}: {m}");
            assert_eq!(m["facility"], "daemon", "{name}: {m}");
            assert!(
                m["hostname"].as_str().is_some_and(|h| !h.is_empty()),
                "{name}: {m}"
            );
        });
    }
}

/// Sends `bytes` on a new connection, ends it, and waits until the distributor closes it.
async fn closed_after(port: u16, bytes: &[u8]) -> Result<(), String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    // The peer may close while this still writes: that is the closing looked for. The
    // end of what is sent is the end of the stream (a truncated frame is one at the end).
    let _ = stream.write_all(bytes).await;
    let _ = stream.shutdown().await;
    let mut rest = Vec::new();
    match tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await {
        Ok(_) => Ok(()),
        Err(_) => Err("the connection was not closed within 10 s".to_owned()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frames_close_their_connection_and_the_listener_keeps_serving() {
    let _sending = SENDING.lock().await;
    let dir = scratch("syslog-hostile");
    let http = Http::new();
    let (distributor, _analyzers, journals, port) = syslog_distributor(
        &dir,
        "tcp",
        &["--syslog-max-message", "1KiB", "--stream-linger", "10ms"],
    )
    .await;
    let good = |i: usize| {
        let m = format!("<14>1 - host app - - - good {i}");
        format!("{} {m}", m.len()).into_bytes()
    };
    let mut oversize_line = b"<14>".to_vec();
    oversize_line.extend(std::iter::repeat_n(b'x', 2048));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated count",
            b"100 <14>1 - h a - - - short".to_vec(),
            "truncated",
        ),
        (
            "oversize count",
            b"5000 <14>1 - h a - - - x".to_vec(),
            "oversize",
        ),
        ("oversize line", oversize_line, "oversize"),
        // The count cuts the PRI: the frame is no message.
        ("lying count", b"3 <14>hello world\n".to_vec(), "invalid"),
        ("count not digits", b"12a <14>x".to_vec(), "framing"),
        (
            "not UTF-8",
            b"<14>1 - h a - - - caf\xe9\n".to_vec(),
            "invalid",
        ),
        (
            "binary",
            vec![0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0xff],
            "framing",
        ),
        ("bad PRI", b"<999>hello\n".to_vec(), "invalid"),
        (
            "bad RFC 5424 header",
            b"<14>1 yesterday h a - - - x\n".to_vec(),
            "invalid",
        ),
    ];
    let mut sent = 0;
    for (what, bytes, reason) in cases {
        let series = format!("logdist_rejected_total{{reason=\"{reason}\",format=\"syslog\"}}");
        let before = metric_of(&http, &distributor.url, &series).await;
        // A good frame first: what came before the bad one is delivered.
        let mut stream = good(sent);
        stream.extend_from_slice(&bytes);
        sent += 1;
        closed_after(port, &stream)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while metric_of(&http, &distributor.url, &series).await < before + 1.0 {
            assert!(
                Instant::now() < deadline,
                "{what}: {series} did not count it"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The listener serves the next connection.
        let mut next = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        next.write_all(&good(sent)).await.unwrap();
        sent += 1;
        drop(next);
        let messages = wait_received(&journals, sent, WAIT, || what.to_owned()).await;
        assert!(
            messages
                .iter()
                .all(|m| m["message"].as_str().unwrap().starts_with("good ")),
            "{what}: only the good frames arrive"
        );
    }
}

/// What a connection sent is routed when the distributor stops, even while its packet
/// still waits for more (a linger of an hour).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_was_read_is_delivered_on_shutdown() {
    let _sending = SENDING.lock().await;
    let dir = scratch("syslog-drain");
    let (distributor, _analyzers, journals, port) =
        syslog_distributor(&dir, "tcp", &["--stream-linger", "1h"]).await;
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut bytes = Vec::new();
    for i in 0..50 {
        bytes.extend_from_slice(format!("<14>Dec  6 10:00:00 host app: line {i}\n").as_bytes());
    }
    stream.write_all(&bytes).await.unwrap();
    // Nothing is routed while the packet lingers.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(received(&journals).is_empty());
    distributor.stop().await.unwrap();
    let messages = wait_received(&journals, 50, WAIT, String::new).await;
    each_line_once(&messages, 50, |m| assert_eq!(m["source"], "app"));
    // The connection was closed by the distributor.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the connection is closed on shutdown");
}

/// While no analyzer is online, a TCP sender is held back (its connection is not read
/// past what routing refuses); once one registers, everything it sent arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_waits_while_no_analyzer_is_online() {
    let _sending = SENDING.lock().await;
    let dir = scratch("syslog-backpressure");
    let port = free_port();
    let listen = format!("tcp://127.0.0.1:{port}");
    let distributor =
        inproc::InProc::distributor(&["--syslog-listen", &listen, "--stream-linger", "5ms"]).await;
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    for i in 0..100 {
        let m = format!("<14>1 - host app - - - line {i}");
        stream
            .write_all(format!("{} {m}", m.len()).as_bytes())
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let journal = dir.join("journal_1.ndjson");
    let path = journal.to_str().unwrap().to_owned();
    let _analyzer = inproc::InProc::analyzer(1, 1.0, &distributor.url, &["--journal", &path]).await;
    let messages = wait_received(&[journal], 100, WAIT, String::new).await;
    each_line_once(&messages, 100, |m| assert_eq!(m["source"], "app"));
}

/// `logdist loadgen --protocol syslog-tcp|syslog-udp`: every record it sends arrives, with
/// its service as the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_speaks_syslog_over_tcp_and_udp() {
    use logdist::loadgen::{LoadgenArgs, PacketSize, Protocol};
    let _sending = SENDING.lock().await;
    for (transport, protocol) in [("tcp", Protocol::SyslogTcp), ("udp", Protocol::SyslogUdp)] {
        let dir = scratch(&format!("syslog-loadgen-{transport}"));
        let (distributor, _analyzers, journals, port) =
            syslog_distributor(&dir, transport, &[]).await;
        let args = LoadgenArgs {
            target: distributor.url.clone(),
            protocol,
            syslog_target: Some(format!("127.0.0.1:{port}")),
            agents: 2,
            packets: Some(20),
            packet_size: PacketSize::fixed(10),
            quiet: true,
            ..LoadgenArgs::default()
        };
        let report = logdist::loadgen::run(args, tokio_util::sync::CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(
            (report.packets_acked, report.messages_acked),
            (20, 200),
            "{transport}"
        );
        let messages = wait_received(&journals, 200, WAIT, String::new).await;
        for m in &messages {
            let source = m["source"].as_str().unwrap();
            assert!(
                ["api", "auth", "db", "cache", "worker", "nginx", "payments"].contains(&source),
                "{transport}: {m}"
            );
            assert!(
                m["hostname"].as_str().unwrap().starts_with(source),
                "{transport}: {m}"
            );
        }
    }
}
