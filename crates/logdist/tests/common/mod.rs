//! Test harness: real `logdist` processes on free loopback ports, servers run in the
//! test's own process ([`inproc`]), and a plain HTTP client. Every process is killed (by
//! its own PID), and every in-process server stopped, when its handle drops, so a failing
//! test leaves nothing behind.

#![allow(dead_code)]

pub mod clients;
pub mod inproc;
pub mod ledger;
pub mod original;
pub mod syslog_ng;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use logdist::api::AnalyzerStats;

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A scratch directory for logs and journals, kept after a failure for inspection.
pub fn scratch(test: &str) -> PathBuf {
    let prefix = format!("logdist-test-{test}-");
    // A run's directory is kept after it for its logs, until a later run of the same test
    // finds its process gone: test runs do not pile up in the temporary directory (the
    // overload test's journals are a gigabyte).
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let pid = name.to_str().and_then(|n| n.strip_prefix(&prefix));
            if let Some(pid) = pid.filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
                && !Path::new("/proc").join(pid).exists()
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = std::env::temp_dir().join(format!("{prefix}{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A child process that is killed when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
    pub log: PathBuf,
}

impl Proc {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends a signal to this process (and only this one).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {} failed", self.name);
        if signal == "STOP" {
            self.wait_stopped();
        }
    }

    /// Waits until every thread of the process is stopped. `kill` returns once the signal
    /// is queued; on a busy machine the thread that takes it may wait for a CPU while
    /// another thread, already running, still answers a request.
    fn wait_stopped(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let tasks = format!("/proc/{}/task", self.pid());
        loop {
            let stopped = std::fs::read_dir(&tasks).unwrap().all(|task| {
                let stat = std::fs::read_to_string(task.unwrap().path().join("stat"));
                // The state follows the command name, which is in parentheses.
                stat.is_ok_and(|s| {
                    s.rsplit_once(") ")
                        .is_some_and(|(_, rest)| rest.starts_with(['T', 't']))
                })
            });
            if stopped {
                return;
            }
            assert!(Instant::now() < deadline, "{} did not stop", self.name);
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for the process to exit, at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {timeout:?}; log:\n{}",
                self.name,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts `logdist ARGS...`, logging to `dir/name.log`.
pub fn spawn(dir: &Path, name: &str, args: &[&str]) -> Proc {
    spawn_program(env!("CARGO_BIN_EXE_logdist"), dir, name, args)
}

/// A `redis-server` of the test's own on `port` (a free one if `None`), keeping nothing
/// on disk. Returns it with its URL.
pub fn redis_server(dir: &Path, port: Option<u16>) -> (Proc, String) {
    for _ in 0..10 {
        let port = port.unwrap_or_else(free_port).to_string();
        let mut proc = spawn_program(
            "redis-server",
            dir,
            &format!("redis-{port}"),
            &[
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if proc.log_text().contains("Ready to accept connections") {
                return (proc, format!("redis://127.0.0.1:{port}/"));
            }
            if proc.child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            proc.log_text().contains("Address already in use"),
            "redis-server failed: {}",
            proc.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("redis-server did not start");
}

fn spawn_program(program: &str, dir: &Path, name: &str, args: &[&str]) -> Proc {
    let log = dir.join(format!("{name}.log"));
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new(program)
        .args(args)
        .env("RUST_LOG", "logdist=debug")
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    Proc {
        child,
        name: name.to_owned(),
        log,
    }
}

/// Starts a server on a free port and waits until it logs that it is listening. A port
/// picked by `free_port` can be taken by someone else before the child binds it; then
/// the child exits and we try another port.
pub fn spawn_server(dir: &Path, name: &str, args: impl Fn(&str) -> Vec<String>) -> (Proc, String) {
    for _ in 0..10 {
        let listen = format!("127.0.0.1:{}", free_port());
        let args = args(&listen);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut proc = spawn(dir, name, &args);
        if wait_listening(&mut proc, Instant::now() + Duration::from_secs(15)) {
            return (proc, listen);
        }
    }
    panic!("{name}: no free port after 10 tries");
}

/// Waits until `proc` says it is listening (true) or exits because its address is taken
/// (false); any other exit, or the deadline, fails the test.
fn wait_listening(proc: &mut Proc, deadline: Instant) -> bool {
    loop {
        if proc.log_text().contains(" listening.") {
            return true;
        }
        if proc.child.try_wait().unwrap().is_some() {
            assert!(
                proc.log_text().contains("Address already in use"),
                "{} failed: {}",
                proc.name,
                proc.log_text()
            );
            return false;
        }
        assert!(
            Instant::now() < deadline,
            "{} did not start; log:\n{}",
            proc.name,
            proc.log_text()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts a server that must listen on `listen` (a restart on the address it had), and
/// waits until it says it is listening; retries while the old socket is still in the way.
pub fn spawn_at(dir: &Path, name: &str, args: &[&str]) -> Proc {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut proc = spawn(dir, name, args);
        if wait_listening(&mut proc, deadline) {
            return proc;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: its address stayed taken"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The resident set size of a process, in KiB, from /proc.
pub fn rss_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// A distributor on a free port; returns it with its base URL.
pub fn distributor(dir: &Path, extra: &[&str]) -> (Proc, String) {
    let (proc, listen) = spawn_server(dir, "distributor", |listen| {
        let mut args = vec!["distributor", "--listen", listen];
        if !extra.contains(&"--probe-interval") {
            args.extend(["--probe-interval", "200ms"]);
        }
        args.extend_from_slice(extra);
        args.into_iter().map(String::from).collect()
    });
    (proc, format!("http://{listen}"))
}

/// An analyzer on a free port registering with `distributor`.
pub fn analyzer(
    dir: &Path,
    id: u32,
    weight: f64,
    distributor: &str,
    extra: &[&str],
) -> (Proc, String) {
    let (id_s, weight_s) = (id.to_string(), weight.to_string());
    let (proc, listen) = spawn_server(dir, &format!("analyzer_{id}"), |listen| {
        let mut args = vec![
            "analyzer",
            "--id",
            &id_s,
            "--weight",
            &weight_s,
            "--distributor",
            distributor,
            "--listen",
            listen,
            "--heartbeat",
            "500ms",
        ];
        args.extend_from_slice(extra);
        args.into_iter().map(String::from).collect()
    });
    (proc, format!("http://{listen}"))
}

/// Plain HTTP for tests.
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Default for Http {
    fn default() -> Self {
        Self::new()
    }
}

impl Http {
    pub fn new() -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub async fn request(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let request = request.body(Full::new(body.into())).unwrap();
        let response = tokio::time::timeout(Duration::from_secs(30), self.client.request(request))
            .await
            .unwrap_or_else(|_| panic!("{url} did not answer within 30 s"))
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body,
        }
    }

    /// A client whose connections leave from `local` (on loopback, any 127.x.y.z), so a
    /// server sees them come from another source address than the other clients'.
    pub fn from_address(local: std::net::IpAddr) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_local_address(Some(local));
        connector.set_nodelay(true);
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// Like [`request`](Self::request), but a failure or no answer within `timeout` is
    /// returned as its reason instead of failing the test.
    pub async fn try_request(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<Answer, String> {
        let mut request = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let request = request
            .body(Full::new(body.into()))
            .map_err(|e| format!("request: {e}"))?;
        let answer = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("{e}"))?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("body: {e}"))?
                .to_bytes();
            Ok(Answer {
                status,
                headers,
                body,
            })
        };
        tokio::time::timeout(timeout, answer)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")))
    }

    pub async fn try_get(&self, url: &str) -> Option<Answer> {
        let request = Request::get(url).body(Full::new(Bytes::new())).unwrap();
        let response = tokio::time::timeout(Duration::from_secs(5), self.client.request(request))
            .await
            .ok()?
            .ok()?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.ok()?.to_bytes();
        Some(Answer {
            status,
            headers,
            body,
        })
    }

    pub async fn get(&self, url: &str) -> Answer {
        self.request(Method::GET, url, &[], Bytes::new()).await
    }

    pub async fn post(&self, url: &str, content_type: &str, body: impl Into<Bytes>) -> Answer {
        self.request(Method::POST, url, &[("content-type", content_type)], body)
            .await
    }

    /// Posts messages `first..first+count` as one NDJSON packet to `{distributor}/packets`.
    pub async fn send_packet(&self, distributor: &str, first: u64, count: u64) -> Answer {
        self.post(
            &format!("{distributor}/packets"),
            "application/x-ndjson",
            packet(first, count),
        )
        .await
    }

    pub async fn stats(&self, distributor: &str) -> Vec<AnalyzerStats> {
        let answer = self.get(&format!("{distributor}/analyzer/stats")).await;
        assert_eq!(answer.status, StatusCode::OK);
        serde_json::from_slice(&answer.body).unwrap()
    }

    /// Waits until `url` answers 200.
    pub async fn wait_up(&self, url: &str) {
        self.wait_for(url, |_| true).await;
    }

    /// Waits until the distributor's stats satisfy `ready` (at most 15 s).
    pub async fn wait_stats(
        &self,
        distributor: &str,
        what: &str,
        ready: impl Fn(&[AnalyzerStats]) -> bool,
    ) -> Vec<AnalyzerStats> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(answer) = self.try_get(&format!("{distributor}/analyzer/stats")).await
                && let Ok(stats) = serde_json::from_slice::<Vec<AnalyzerStats>>(&answer.body)
            {
                if ready(&stats) {
                    return stats;
                }
                assert!(
                    Instant::now() < deadline,
                    "timed out waiting for {what}; stats: {stats:#?}"
                );
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_for(&self, url: &str, ok: impl Fn(&Answer) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(answer) = self.try_get(url).await
                && answer.status == StatusCode::OK
                && ok(&answer)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{url} did not come up within 15 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Online analyzers by id, for `wait_stats`.
pub fn online(stats: &[AnalyzerStats], ids: &[&str]) -> bool {
    ids.iter()
        .all(|id| stats.iter().any(|a| a.id == *id && a.state == "online"))
        && stats.iter().filter(|a| a.state == "online").count() == ids.len()
}

/// The sum of the samples of every series whose line starts with `prefix` in a
/// `/metrics` text (0 if there is none).
pub fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// One message as NDJSON, with a unique `seq` so tests can find it at the analyzers.
pub fn message(seq: u64) -> String {
    format!(
        "{{\"timestamp\":{},\"severity\":\"INFO\",\"source\":\"test\",\"message\":\"message number {seq}\",\"seq\":{seq}}}\n",
        1_700_000_000_000u64 + seq
    )
}

/// A packet of messages `first..first+count` as NDJSON.
pub fn packet(first: u64, count: u64) -> String {
    (first..first + count).map(message).collect()
}

/// The contract's bound: with nothing in flight, every online analyzer is within the
/// largest packet of its target share of the window's messages.
pub fn assert_shares_within(stats: &[AnalyzerStats], largest_packet: u64) {
    let total: u64 = stats
        .iter()
        .filter(|a| a.state == "online")
        .map(|a| a.messages_sent)
        .sum();
    for a in stats.iter().filter(|a| a.state == "online") {
        let deviation = (a.messages_sent as f64 - a.target_share * total as f64).abs();
        assert!(
            deviation <= largest_packet as f64 + 1e-6,
            "{} got {} of {total} messages, target {:.3}: off by {deviation:.1} > {largest_packet}",
            a.id,
            a.messages_sent,
            a.target_share
        );
    }
}
