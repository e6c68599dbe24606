//! `--ack accepted --spool`: what was answered 202 survives the distributor. SIGKILL under
//! load, ten times over, loses nothing; damaged segments give back every record that
//! checks out; a full spool, and a full disk, refuse with 503 and then catch up with
//! nothing lost.
//!
//! Rerun: `cargo test -p logdist --test spool -- --nocapture` (prints the books).

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::ledger::{Books, balance, read_journals, read_trace};
use common::*;
use logdist_core::spool::{Item, RECORD_HEADER, Records};

/// An analyzer with a journal and `PUT /faults`, serving only (the distributor knows it
/// by `--analyzer`): its process, its `--analyzer` spec and its journal.
fn analyzer_at(dir: &Path, id: u32, weight: f64) -> (Proc, String, PathBuf, String) {
    let journal = dir.join(format!("analyzer_{id}.journal"));
    let (proc, listen) = spawn_server(dir, &format!("analyzer_{id}"), |listen| {
        [
            "analyzer",
            "--id",
            &id.to_string(),
            "--listen",
            listen,
            "--no-register",
            "--faults",
            "--journal",
            journal.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec()
    });
    let spec = format!("analyzer_{id}=http://{listen}@{weight}");
    (proc, spec, journal, format!("http://{listen}"))
}

/// The arguments of a distributor on `listen` with `--ack accepted --spool spool`, in
/// front of `specs`, and `extra`.
fn spooled(listen: &str, spool: &Path, specs: &[&str], extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "distributor",
        "--listen",
        listen,
        "--probe-interval",
        "200ms",
        "--ack",
        "accepted",
        "--spool",
        spool.to_str().unwrap(),
    ];
    for spec in specs {
        args.extend(["--analyzer", spec]);
    }
    args.extend_from_slice(extra);
    args.into_iter().map(String::from).collect()
}

fn loadgen(dir: &Path, name: &str, url: &str, trace: &Path, extra: &[&str]) -> Proc {
    let mut args = vec![
        "loadgen",
        "--target",
        url,
        "--trace",
        trace.to_str().unwrap(),
        "--quiet",
    ];
    args.extend_from_slice(extra);
    spawn(dir, name, &args)
}

/// Makes the analyzer at `url` wait `delay_ms` before taking each packet.
async fn slow_down(http: &Http, url: &str, delay_ms: u64) {
    let body = format!("{{\"delay_ms\":{delay_ms}}}");
    let answer = http
        .request(
            hyper::Method::PUT,
            &format!("{url}/faults"),
            &[("content-type", "application/json")],
            body,
        )
        .await;
    assert!(answer.status.is_success(), "{}", answer.text());
}

/// The distributor's `/metrics`.
async fn metrics(http: &Http, url: &str) -> String {
    http.get(&format!("{url}/metrics")).await.text()
}

/// Waits until the spool of the distributor at `url` holds no packet (every one
/// delivered), for at most `within`.
async fn wait_drained(http: &Http, url: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let text = metrics(http, url).await;
        if text.contains("logdist_spool_packets ") && metric(&text, "logdist_spool_packets ") == 0.0
        {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "the spool did not drain within {within:?}:\n{}",
            text.lines()
                .filter(|l| l.starts_with("logdist_spool"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn assert_nothing_lost(books: &Books) {
    assert!(
        books.lost.is_empty(),
        "{books}; lost: {:?}",
        &books.lost[..5.min(books.lost.len())]
    );
}

#[test]
fn sigkill_under_load_ten_times_loses_nothing_answered_202() {
    let dir = scratch("spool-sigkill");
    let rt = runtime();
    let http = Http::new();
    let (_a1, spec1, journal1, url1) = analyzer_at(&dir, 1, 0.6);
    let (_a2, spec2, journal2, url2) = analyzer_at(&dir, 2, 0.4);
    // Slow analyzers: queues and the backlog hold packets when the kill comes.
    rt.block_on(slow_down(&http, &url1, 5));
    rt.block_on(slow_down(&http, &url2, 5));
    let spool = dir.join("spool");
    let listen = format!("127.0.0.1:{}", free_port());
    let url = format!("http://{listen}");
    let args = spooled(&listen, &spool, &[&spec1, &spec2], &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut traces = Vec::new();
    let mut replayed = Vec::new();
    for round in 0..10 {
        let distributor = spawn_at(&dir, &format!("distributor.{round}"), &args);
        replayed.push(recovered_packets(&distributor.log_text()));
        let trace = dir.join(format!("trace.{round}.ndjson"));
        let mut load = loadgen(
            &dir,
            &format!("loadgen.{round}"),
            &url,
            &trace,
            &[
                "--agents",
                "16",
                "--packet-size",
                "1..50",
                "--duration",
                "3s",
                "--rate",
                "5000",
                "--timeout",
                "5s",
            ],
        );
        std::thread::sleep(Duration::from_millis(1500 + 100 * round));
        distributor.signal("KILL");
        let status = load.wait_exit(Duration::from_secs(30));
        assert!(status.success(), "{}", load.log_text());
        traces.push(trace);
    }
    // A last start, without load: it sends what the last kill left. (A new client: the
    // analyzers closed the idle connections of the first.)
    let _distributor = spawn_at(&dir, "distributor.last", &args);
    let http = Http::new();
    rt.block_on(slow_down(&http, &url1, 0));
    rt.block_on(slow_down(&http, &url2, 0));
    let text = rt.block_on(wait_drained(&http, &url, Duration::from_secs(60)));
    replayed.push(metric(&text, "logdist_spool_replayed_packets_total") as u64);

    let traced: Vec<_> = traces.iter().flat_map(|t| read_trace(t)).collect();
    let books = balance(&traced, &read_journals(&[&journal1, &journal2]));
    eprintln!(
        "spool sigkill x10: {books}; packets sent again at each start after a kill: {:?}",
        &replayed[1..]
    );
    assert_nothing_lost(&books);
    // The kills found packets answered 202 and not yet delivered: the spool had work.
    assert!(
        replayed[1..].iter().filter(|n| **n > 0).count() >= 5,
        "{replayed:?}"
    );
    assert!(books.packets_acked > 1000, "{books}");
    // Duplicates come only from packets in flight at a kill (delivered, not yet
    // released): a small part of what was delivered.
    assert!(books.duplicates * 20 < books.messages_delivered, "{books}");
}

/// The packets a distributor's log says it recovered from its spool at start.
fn recovered_packets(log: &str) -> u64 {
    log.lines()
        .filter(|l| l.contains("Spool recovered"))
        .filter_map(|l| {
            l.split(" packets=")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// The ids of the messages in a record's payload (NDJSON from the load generator).
fn msg_ids(payload: &[u8]) -> Vec<String> {
    payload
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_slice(l).unwrap();
            v["msg_id"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// The spool's segment files, in order.
fn segments(spool: &Path) -> Vec<PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir(spool)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    found.sort();
    found
}

#[test]
fn a_torn_tail_and_a_flipped_byte_lose_only_their_own_packets() {
    let dir = scratch("spool-damage");
    let rt = runtime();
    let http = Http::new();
    // The first analyzer never answers in time: every packet stays in the spool.
    let (hung, spec, _, hung_url) = analyzer_at(&dir, 1, 1.0);
    rt.block_on(slow_down(&http, &hung_url, 600_000));
    let spool = dir.join("spool");
    let (distributor, url) = {
        let listen = format!("127.0.0.1:{}", free_port());
        let args = spooled(&listen, &spool, &[&spec], &[]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        (
            spawn_at(&dir, "distributor", &args),
            format!("http://{listen}"),
        )
    };
    let trace = dir.join("trace.ndjson");
    let mut load = loadgen(
        &dir,
        "loadgen",
        &url,
        &trace,
        &["--agents", "4", "--packets", "40", "--packet-size", "10"],
    );
    assert!(load.wait_exit(Duration::from_secs(30)).success());
    let traced = read_trace(&trace);
    assert!(
        traced.iter().all(|p| p.status == Some(202)),
        "all answered 202"
    );
    distributor.signal("KILL");
    hung.signal("KILL");

    // Damage the segment: a byte flipped in the middle of the 11th record's payload, and
    // the last record torn.
    let files = segments(&spool);
    let segment = files
        .iter()
        .find(|p| std::fs::metadata(p).unwrap().len() > 8)
        .expect("a segment with records");
    let mut bytes = std::fs::read(segment).unwrap();
    let records: Vec<(u64, usize, Vec<String>)> = Records::new(&bytes)
        .filter_map(|item| match item {
            Item::Record(r) => Some((r.offset, r.len(), msg_ids(r.payload))),
            Item::Corrupt { .. } => None,
        })
        .collect();
    assert_eq!(records.len(), 40, "every packet is in one segment");
    let (flipped_at, _, flipped_ids) = &records[10];
    bytes[*flipped_at as usize + RECORD_HEADER + 7] ^= 0x20;
    let (_, _, torn_ids) = &records[39];
    bytes.truncate(bytes.len() - 5);
    std::fs::write(segment, &bytes).unwrap();
    let lost: HashSet<&String> = flipped_ids.iter().chain(torn_ids).collect();

    // Restarted in front of a healthy analyzer: every other packet arrives.
    let (_healthy, spec, journal, _) = analyzer_at(&dir, 2, 1.0);
    let listen = format!("127.0.0.1:{}", free_port());
    let args = spooled(&listen, &spool, &[&spec], &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let restarted = spawn_at(&dir, "distributor.2", &args);
    let url = format!("http://{listen}");
    let text = rt.block_on(wait_drained(&http, &url, Duration::from_secs(30)));
    assert_eq!(metric(&text, "logdist_spool_replayed_packets_total"), 38.0);
    assert!(metric(&text, "logdist_spool_corrupt_bytes_total") > 0.0);
    let journals = read_journals(&[&journal]);
    let books = balance(&traced, &journals);
    eprintln!("spool damage: {books}");
    let missing: HashSet<&String> = books.lost.iter().collect();
    assert_eq!(
        missing, lost,
        "exactly the damaged packets' messages are missing"
    );
    assert_eq!(books.duplicates, 0, "{books}");
    // The dashboard's snapshot says the same.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let snapshot = rt
            .block_on(http.get(&format!("{url}/dashboard/snapshot")))
            .json();
        let spool = &snapshot["distributor"]["spool"];
        if spool["replayed_total"] == 38 && spool["packets"] == 0 {
            assert!(
                spool["corrupt_bytes_total"].as_u64().unwrap() > 0,
                "{spool}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{spool}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = restarted.log_text();
    assert!(log.contains("Damaged bytes in the spool"), "{log}");
    assert!(log.contains("Spool recovered"), "{log}");
}

/// What one overflow run gave: the books, the distributor's metrics once drained, its
/// log, and its RSS idle and at its peak (KiB).
struct Overflow {
    books: Books,
    metrics: String,
    log: String,
    idle_rss: u64,
    peak_rss: u64,
}

/// More than a slow analyzer takes: a distributor with `--ack accepted --spool` (in
/// `spool`, with `extra` flags and queues of 64 packets) in front of one analyzer that
/// waits 50 ms a delivery, and 16 agents sending `packets` packets of 20 messages, each
/// retried until it is answered 202. Returns once the spool has drained.
fn overflow(dir: &Path, spool: &Path, extra: &[&str], packets: u64) -> Overflow {
    let rt = runtime();
    let http = Http::new();
    let (_analyzer, spec, journal, analyzer_url) = analyzer_at(dir, 1, 1.0);
    rt.block_on(slow_down(&http, &analyzer_url, 50));
    let listen = format!("127.0.0.1:{}", free_port());
    let mut flags = vec!["--queue-packets", "64"];
    flags.extend_from_slice(extra);
    let args = spooled(&listen, spool, &[&spec], &flags);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let distributor = spawn_at(dir, "distributor", &args);
    let url = format!("http://{listen}");
    let idle_rss = rss_kib(distributor.pid()).unwrap();
    let trace = dir.join("trace.ndjson");
    let packets = packets.to_string();
    let mut load = loadgen(
        dir,
        "loadgen",
        &url,
        &trace,
        &[
            "--agents",
            "16",
            "--packets",
            &packets,
            "--packet-size",
            "20",
            "--retries",
            "1000",
            "--timeout",
            "10s",
        ],
    );
    // The RSS every 100 ms while the load runs (at most two minutes).
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut peak_rss = idle_rss;
    while load.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "{}", load.log_text());
        peak_rss = peak_rss.max(rss_kib(distributor.pid()).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        load.wait_exit(Duration::ZERO).success(),
        "{}",
        load.log_text()
    );
    let metrics = rt.block_on(wait_drained(&http, &url, Duration::from_secs(60)));
    Overflow {
        books: balance(&read_trace(&trace), &read_journals(&[&journal])),
        metrics,
        log: distributor.log_text(),
        idle_rss,
        peak_rss,
    }
}

#[test]
fn a_full_spool_refuses_with_503_keeps_memory_flat_and_catches_up() {
    let dir = scratch("spool-full");
    let run = overflow(
        &dir,
        &dir.join("spool"),
        &["--spool-max-bytes", "1MiB"],
        3000,
    );
    let (books, idle, peak) = (&run.books, run.idle_rss, run.peak_rss);
    let full = metric(&run.metrics, "logdist_spool_full_total");
    eprintln!(
        "spool full: {books}; refused full {full} times; RSS idle {idle} KiB, peak {peak} KiB"
    );
    assert!(full > 0.0, "the spool must have filled");
    assert_eq!(books.packets_acked, 3000, "{books}");
    assert!(books.retries > 0, "{books}");
    assert_nothing_lost(books);
    // Flat memory: a spool of 1 MiB and queues of 64 packets, whatever was sent.
    assert!(
        peak < idle + 64 * 1024,
        "RSS grew from {idle} KiB to {peak} KiB"
    );
}

/// A tmpfs of `size` mounted at `at` for the test's life: a disk that fills.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Self {
        std::fs::create_dir_all(at).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("running mount");
        assert!(
            status.success(),
            "mounting a tmpfs needs root (CI runs as root)"
        );
        Self(at.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_full_disk_refuses_with_503_acknowledges_nothing_unwritten_and_recovers() {
    let dir = scratch("spool-disk-full");
    let spool = dir.join("spool");
    let _disk = Tmpfs::mount(&spool, "512k");
    let run = overflow(&dir, &spool, &[], 2000);
    let books = &run.books;
    let errors = metric(&run.metrics, "logdist_spool_write_errors_total");
    eprintln!("spool disk full: {books}; {errors} failed writes");
    assert!(errors > 0.0, "the disk must have filled");
    assert!(
        run.log.contains("Could not write to the spool"),
        "{}",
        run.log
    );
    assert_eq!(books.packets_acked, 2000, "{books}");
    assert_nothing_lost(books);
}

#[test]
fn sigterm_with_a_backlog_exits_in_its_grace_and_the_next_start_delivers_the_rest() {
    let dir = scratch("spool-sigterm");
    let rt = runtime();
    let http = Http::new();
    let (_analyzer, spec, journal, analyzer_url) = analyzer_at(&dir, 1, 1.0);
    rt.block_on(slow_down(&http, &analyzer_url, 50));
    let spool = dir.join("spool");
    let listen = format!("127.0.0.1:{}", free_port());
    let args = spooled(
        &listen,
        &spool,
        &[&spec],
        &["--queue-packets", "64", "--shutdown-grace", "2s"],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut distributor = spawn_at(&dir, "distributor", &args);
    let url = format!("http://{listen}");
    let trace = dir.join("trace.ndjson");
    let mut load = loadgen(
        &dir,
        "loadgen",
        &url,
        &trace,
        &["--agents", "16", "--packets", "4000", "--packet-size", "20"],
    );
    // Until the backlog holds packets on disk: the slow analyzer's queue is full.
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(
        &rt.block_on(metrics(&http, &url)),
        "logdist_spool_deferred_packets_total",
    ) < 100.0
    {
        assert!(Instant::now() < deadline, "no backlog formed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let stopping = Instant::now();
    distributor.signal("TERM");
    let status = distributor.wait_exit(Duration::from_secs(10));
    let took = stopping.elapsed();
    assert!(status.success(), "{}", distributor.log_text());
    assert!(took < Duration::from_secs(4), "took {took:?}, grace is 2 s");
    assert!(distributor.log_text().contains("Spool closed"));
    load.wait_exit(Duration::from_secs(60));

    rt.block_on(slow_down(&http, &analyzer_url, 0));
    let restarted = spawn_at(&dir, "distributor.2", &args);
    let text = rt.block_on(wait_drained(&Http::new(), &url, Duration::from_secs(60)));
    let books = balance(&read_trace(&trace), &read_journals(&[&journal]));
    let replayed = metric(&text, "logdist_spool_replayed_packets_total");
    eprintln!(
        "spool sigterm: exited in {took:?}; the next start sent {replayed} packets again; {books}"
    );
    assert!(replayed > 0.0, "{}", restarted.log_text());
    assert!(books.packets_acked > 100, "{books}");
    assert_nothing_lost(&books);
    assert_eq!(
        books.duplicates, 0,
        "a graceful stop writes its release entries: {books}"
    );
}
