//! Chaos: the load generator sends uniquely numbered messages through a distributor to
//! analyzers of every delivery protocol while, one after another, an analyzer is SIGKILLed
//! and restarted, one is hung (SIGSTOP) and resumed, one answers 500s and then slowly
//! (first within the delivery timeout, then beyond it), one is restarted gracefully
//! (SIGTERM), and one is deregistered. Four `logdist analyzer`s register as speaking
//! `logdist`, `otlp`, `elasticsearch` and `loki` (`--protocol`; the analyzer takes every
//! protocol and journals what each brings as NDJSON), a fifth takes Fluent forward
//! (`--forward-listen`, given to the distributor as `tcp://`) and is SIGKILLed and
//! restarted too; another speaks `message`: the Flask analyzer that
//! behaves as the original project's (`tests/python/original_analyzer.py`, with a small
//! weight: it takes a request per message). At the end every message the distributor
//! answered 200 for must be in an analyzer's journal or the Flask analyzer's
//! `RECEIVED_FILE`, and duplicates (allowed only where a delivery was in doubt) must be
//! under 0.1% of the messages delivered.
//!
//! Rerun: `cargo test -p logdist --test chaos -- --nocapture` (prints the books).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::ledger::{add_received, balance, read_journals, read_trace};
use common::original::start_original;
use common::*;
use hyper::Method;
use tokio::time::Instant;

/// One analyzer across its restarts: same id, weight and address, a journal per life (a
/// SIGKILL can leave a torn last line, which must not glue onto the next life's first).
struct Analyzer {
    id: u32,
    weight: f64,
    /// The delivery protocol it registers with (`logdist analyzer --protocol`), or, for
    /// `forward`, the one the distributor was given it with.
    protocol: &'static str,
    /// For `forward`: the port it takes Fluent forward on. Such an analyzer does not
    /// register (a registration names one URL, and this one's is `tcp://`): the
    /// distributor is given it with `--analyzer`.
    forward: Option<u16>,
    listen: String,
    distributor: String,
    proc: Option<Proc>,
    journals: Vec<PathBuf>,
}

impl Analyzer {
    fn new(id: u32, weight: f64, protocol: &'static str, distributor: &str) -> Self {
        Self {
            id,
            weight,
            protocol,
            forward: None,
            listen: format!("127.0.0.1:{}", free_port()),
            distributor: distributor.to_owned(),
            proc: None,
            journals: Vec::new(),
        }
    }

    fn start(&mut self, dir: &std::path::Path) {
        let life = self.journals.len() + 1;
        let journal = dir.join(format!("analyzer_{}.{life}.journal", self.id));
        let (id, weight) = (self.id.to_string(), self.weight.to_string());
        let journal_arg = journal.to_str().unwrap().to_owned();
        let forward_arg = self.forward.map(|port| format!("127.0.0.1:{port}"));
        let mut args = vec![
            "analyzer",
            "--id",
            &id,
            "--weight",
            &weight,
            "--distributor",
            &self.distributor,
            "--listen",
            &self.listen,
            "--heartbeat",
            "500ms",
            "--journal",
            &journal_arg,
            "--faults",
        ];
        match &forward_arg {
            Some(listen) => args.extend(["--no-register", "--forward-listen", listen]),
            None => args.extend(["--protocol", self.protocol]),
        }
        self.proc = Some(spawn_at(
            dir,
            &format!("analyzer_{}.{life}", self.id),
            &args,
        ));
        self.journals.push(journal);
    }

    fn proc(&mut self) -> &mut Proc {
        self.proc.as_mut().expect("running")
    }

    fn url(&self) -> String {
        format!("http://{}", self.listen)
    }

    /// SIGTERM: it deregisters, finishes what it accepted and exits 0.
    fn stop(&mut self) {
        let proc = self.proc();
        proc.signal("TERM");
        let status = proc.wait_exit(Duration::from_secs(20));
        assert!(status.success(), "analyzer_{} exited {status}", self.id);
        self.proc = None;
    }
}

async fn set_faults(http: &Http, analyzer: &Analyzer, spec: &str) {
    let answer = http
        .request(
            Method::PUT,
            &format!("{}/faults", analyzer.url()),
            &[("content-type", "application/json")],
            spec.to_owned(),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_message_is_lost_through_kills_hangs_errors_and_restarts() {
    let dir = scratch("chaos");
    let http = Http::new();
    // The forward analyzer is given to the distributor at start (see `Analyzer::forward`).
    let forward_port = free_port();
    let forward_spec = format!("analyzer_6=tcp://127.0.0.1:{forward_port}@0.15;protocol=forward");
    let (distributor, url) = distributor(
        &dir,
        &[
            "--analyzer",
            &forward_spec,
            "--delivery-timeout",
            "1s",
            "--probe-timeout",
            "300ms",
            "--unhealthy-after",
            "2",
            "--healthy-after",
            "2",
            "--shutdown-grace",
            "5s",
        ],
    );
    // One analyzer of each delivery protocol (`logdist analyzer` takes them all), and the
    // Flask one of `message`.
    let mut analyzers: Vec<Analyzer> = [
        (1, 0.5, "logdist"),
        (2, 0.3, "otlp"),
        (3, 0.2, "elasticsearch"),
        (5, 0.15, "loki"),
    ]
    .into_iter()
    .map(|(id, weight, protocol)| Analyzer::new(id, weight, protocol, &url))
    .collect();
    let mut forward = Analyzer::new(6, 0.15, "forward", &url);
    forward.forward = Some(forward_port);
    analyzers.push(forward);
    for a in &mut analyzers {
        a.start(&dir);
    }
    let received = dir.join("analyzer_4.received");
    let mut flask = start_original(
        &dir,
        "analyzer_4.flask",
        4,
        0.05,
        &url,
        free_port(),
        &received,
    );
    http.wait_stats(&url, "six analyzers", |s| {
        online(
            s,
            &[
                "analyzer_1",
                "analyzer_2",
                "analyzer_3",
                "analyzer_4",
                "analyzer_5",
                "analyzer_6",
            ],
        )
    })
    .await;
    let stats = http.stats(&url).await;
    let flask_stats = stats.iter().find(|a| a.id == "analyzer_4").unwrap();
    assert_eq!(flask_stats.protocol, "message", "{stats:#?}");
    for a in &analyzers {
        let member = stats
            .iter()
            .find(|s| s.id == format!("analyzer_{}", a.id))
            .unwrap();
        assert_eq!(member.protocol, a.protocol, "{stats:#?}");
    }

    let trace = dir.join("trace.ndjson");
    let report = dir.join("report.json");
    let mut loadgen = spawn(
        &dir,
        "loadgen",
        &[
            "loadgen",
            "--target",
            &url,
            "--agents",
            "8",
            "--packet-size",
            "1..50",
            "--rate",
            "300",
            "--duration",
            "36s",
            "--timeout",
            "10s",
            "--retries",
            "30",
            "--idempotency-keys",
            "--trace",
            trace.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
            "--quiet",
        ],
    );

    let start = Instant::now();
    let at = |secs: f64| tokio::time::sleep_until(start + Duration::from_secs_f64(secs));
    at(3.0).await;
    eprintln!("chaos: SIGKILL analyzer_1");
    analyzers[0].proc().signal("KILL");
    at(6.0).await;
    eprintln!("chaos: restart analyzer_1");
    analyzers[0].start(&dir);
    at(9.0).await;
    eprintln!("chaos: SIGSTOP analyzer_2 (hung)");
    analyzers[1].proc().signal("STOP");
    at(12.0).await;
    eprintln!("chaos: SIGKILL analyzer_5 (loki)");
    analyzers[3].proc().signal("KILL");
    at(14.0).await;
    eprintln!("chaos: SIGCONT analyzer_2");
    analyzers[1].proc().signal("CONT");
    at(15.0).await;
    eprintln!("chaos: restart analyzer_5");
    analyzers[3].start(&dir);
    at(17.0).await;
    eprintln!("chaos: analyzer_3 answers 500");
    set_faults(&http, &analyzers[2], r#"{"status":500}"#).await;
    at(18.5).await;
    eprintln!("chaos: SIGKILL analyzer_6 (forward)");
    analyzers[4].proc().signal("KILL");
    at(20.0).await;
    eprintln!("chaos: analyzer_3 answers after 600 ms (within the delivery timeout)");
    set_faults(&http, &analyzers[2], r#"{"delay_ms":600}"#).await;
    at(21.5).await;
    eprintln!("chaos: restart analyzer_6");
    analyzers[4].start(&dir);
    at(23.0).await;
    eprintln!("chaos: analyzer_3 answers after 1500 ms (beyond the delivery timeout)");
    set_faults(&http, &analyzers[2], r#"{"delay_ms":1500}"#).await;
    at(26.0).await;
    eprintln!("chaos: analyzer_3 healthy again");
    set_faults(&http, &analyzers[2], "{}").await;
    at(28.0).await;
    eprintln!("chaos: SIGTERM analyzer_1 (graceful restart)");
    analyzers[0].stop();
    at(30.0).await;
    analyzers[0].start(&dir);
    at(32.0).await;
    eprintln!("chaos: deregister analyzer_2");
    let answer = http
        .post(
            &format!("{url}/analyzer/deregister"),
            "application/json",
            r#"{"id":"analyzer_2"}"#,
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());

    let status = tokio::task::spawn_blocking(move || {
        let status = loadgen.wait_exit(Duration::from_secs(90));
        (status, loadgen.log_text())
    })
    .await
    .unwrap();
    assert!(status.0.success(), "loadgen failed: {}", status.1);
    let metrics = http.get(&format!("{url}/metrics")).await.text();
    for a in &mut analyzers {
        a.stop();
    }
    // Every message it acknowledged is in its file already: it writes before answering.
    flask.signal("KILL");
    flask.wait_exit(Duration::from_secs(10));
    drop(distributor);

    // Every protocol carried its share through the chaos, not a token of it.
    for a in &analyzers {
        let lines: usize = a
            .journals
            .iter()
            .map(|j| std::fs::read(j).map_or(0, |b| b.split(|c| *c == b'\n').count()))
            .sum();
        eprintln!(
            "chaos: analyzer_{} ({}) journaled {lines} messages",
            a.id, a.protocol
        );
        assert!(
            lines >= 5_000,
            "analyzer_{} ({}) got too little to mean anything: {lines}",
            a.id,
            a.protocol
        );
    }
    let journals: Vec<PathBuf> = analyzers.iter().flat_map(|a| a.journals.clone()).collect();
    let mut seen = read_journals(&journals);
    let before = seen.values().map(|n| u64::from(*n)).sum::<u64>();
    add_received(&mut seen, &[&received]);
    let by_flask = seen.values().map(|n| u64::from(*n)).sum::<u64>() - before;
    eprintln!("chaos: analyzer_4 (message protocol) received {by_flask} messages");
    assert!(
        by_flask >= 1_000,
        "the message analyzer got too little to mean anything: {by_flask}"
    );
    let books = balance(&read_trace(&trace), &seen);
    eprintln!("chaos: {books}");
    for line in metrics.lines().filter(|l| {
        l.starts_with("logdist_packets_rerouted_total")
            || l.starts_with("logdist_packets_replayed_total")
            || l.starts_with("logdist_deliveries_total")
            || l.starts_with("logdist_rejected_total")
    }) {
        eprintln!("chaos: {line}");
    }
    assert!(
        books.lost.is_empty(),
        "{} acknowledged messages are at no analyzer, e.g. {:?}",
        books.lost.len(),
        &books.lost[..books.lost.len().min(5)]
    );
    assert!(
        books.messages_acked >= 100_000,
        "too little traffic to mean anything: {books}"
    );
    assert!(
        books.packets_acked * 100 >= books.packets_sent * 99,
        "agents that retry should get nearly everything through: {books}"
    );
    assert!(
        books.duplicates * 1000 <= books.messages_delivered,
        "duplicates over 0.1%: {books}"
    );
}
