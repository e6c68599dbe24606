//! Cluster mode end to end: real `redis-server` processes started by the tests on free
//! ports, two distributors sharing them, real analyzers.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use rand::{Rng, SeedableRng};

/// Agents that post random packets (1..=max messages) to `urls` in turn until `stop`.
/// Returns (messages acknowledged, largest packet, failures).
fn load(
    http: &Http,
    urls: &[String],
    agents: u64,
    max: u64,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(u64, u64, Vec<String>)> {
    let (http, urls) = (http.clone(), urls.to_vec());
    tokio::spawn(async move {
        let seq = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for agent in 0..agents {
            let (http, urls, stop, seq) = (http.clone(), urls.clone(), stop.clone(), seq.clone());
            tasks.push(tokio::spawn(async move {
                let mut rng = rand::rngs::SmallRng::seed_from_u64(agent);
                let (mut acked, mut largest, mut failures) = (0, 0, Vec::new());
                let mut n = agent as usize;
                while !stop.load(Ordering::Relaxed) {
                    let size = rng.random_range(1..=max);
                    let first = seq.fetch_add(size, Ordering::Relaxed);
                    let url = &urls[n % urls.len()];
                    n += 1;
                    let answer = http.send_packet(url, first, size).await;
                    if answer.status == 200 {
                        acked += size;
                        largest = largest.max(size);
                    } else {
                        failures.push(format!("{} {}", answer.status, answer.text()));
                    }
                }
                (acked, largest, failures)
            }));
        }
        let mut total = (0, 0, Vec::new());
        for task in tasks {
            let (a, l, f) = task.await.unwrap();
            total.0 += a;
            total.1 = total.1.max(l);
            total.2.extend(f);
        }
        total
    })
}

fn cluster_args<'a>(redis: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--redis", redis, "--lease-ttl", "3s"];
    args.extend_from_slice(extra);
    args
}

async fn analyzer_counts(http: &Http, urls: &[String]) -> Vec<u64> {
    let mut counts = Vec::new();
    for url in urls {
        counts.push(
            http.get(&format!("{url}/stats")).await.json()["messages"]
                .as_u64()
                .unwrap(),
        );
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_distributors_route_as_one_fleet() {
    let dir = scratch("cluster-fleet");
    let http = Http::new();
    let (_redis, redis) = redis_server(&dir, None);
    let (_a, a) = distributor(&dir, &cluster_args(&redis, &[]));
    let (_b, b) = spawn_distributor_named(&dir, "distributor_b", &cluster_args(&redis, &[]));

    // Analyzers register at A only; B must route to them within a second.
    let mut analyzers = Vec::new();
    for (id, weight) in [(1, 0.5), (2, 0.3), (3, 0.2)] {
        analyzers.push(analyzer(&dir, id, weight, &a, &[]));
    }
    let all = ["analyzer_1", "analyzer_2", "analyzer_3"];
    http.wait_stats(&a, "three analyzers at A", |s| online(s, &all))
        .await;
    let seen_at_a = Instant::now();
    http.wait_stats(&b, "three analyzers at B", |s| online(s, &all))
        .await;
    let lag = seen_at_a.elapsed();
    assert!(
        lag < Duration::from_secs(1),
        "B saw the registrations {lag:?} after A"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let running = load(&http, &[a.clone(), b.clone()], 6, 200, stop.clone());
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let (acked, largest, failures) = running.await.unwrap();
    assert!(failures.is_empty(), "{failures:?}");
    assert!(acked > 0);

    // Once flushed, either distributor shows the fleet's counts: the shares are within
    // K = 2 times the single-distributor bound, and the totals are the analyzers' own.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let own: Vec<String> = analyzers.iter().map(|(_, url)| url.clone()).collect();
    let counted = analyzer_counts(&http, &own).await;
    for url in [&a, &b] {
        let stats = http.stats(url).await;
        let sent: u64 = stats.iter().map(|s| s.messages_sent).sum();
        assert_eq!(sent, acked, "fleet window at {url}");
        for s in &stats {
            let off = (s.messages_sent as f64 - s.target_share * sent as f64).abs();
            assert!(
                off <= 2.0 * largest as f64,
                "{} off by {off} > 2 x {largest}",
                s.id
            );
            let views = s
                .fleet_states
                .as_ref()
                .expect("fleet states in cluster mode");
            assert_eq!(views.len(), 2, "{views:?}");
        }
        let totals: Vec<u64> = stats.iter().map(|s| s.messages_total).collect();
        assert_eq!(
            totals, counted,
            "fleet totals at {url} vs the analyzers' own counts"
        );
    }
    // And in Redis itself, where the distributors flushed them.
    let client = redis::Client::open(redis.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for (id, own) in ["analyzer_1", "analyzer_2", "analyzer_3"]
        .iter()
        .zip(&counted)
    {
        let in_redis: Option<u64> = redis::cmd("HGET")
            .arg(format!("logdist:counts:{id}"))
            .arg("messages")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(in_redis, Some(*own), "logdist:counts:{id} in Redis");
    }
    eprintln!(
        "fleet: {acked} messages acknowledged, largest packet {largest}, per analyzer {counted:?}, B lagged A by {lag:?}"
    );

    // A registration, a weight change and a deregistration made at B each reach A within
    // a second (an extra id, so that no analyzer's keep-alive interferes).
    let target = &own[0];
    let extra = |weight: f64| format!(r#"{{"id":"extra","weight":{weight},"url":"{target}"}}"#);
    type Reached = Box<dyn Fn(&[logdist::api::AnalyzerStats]) -> bool>;
    let changes: [(&str, String, Reached); 3] = [
        (
            "register",
            extra(1.0),
            Box::new(|s| s.iter().any(|a| a.id == "extra" && a.weight == 1.0)),
        ),
        (
            "register",
            extra(2.0),
            Box::new(|s| s.iter().any(|a| a.id == "extra" && a.weight == 2.0)),
        ),
        (
            "deregister",
            r#"{"id":"extra"}"#.to_owned(),
            Box::new(|s| !s.iter().any(|a| a.id == "extra")),
        ),
    ];
    for (verb, body, reached) in changes {
        let answer = http
            .post(&format!("{b}/analyzer/{verb}"), "application/json", body)
            .await;
        assert_eq!(answer.status, 200, "{verb}: {}", answer.text());
        let made = Instant::now();
        http.wait_stats(&a, verb, |s| reached(s)).await;
        let took = made.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "{verb} at B reached A after {took:?}"
        );
        eprintln!("{verb} at B reached A after {took:?}");
    }
}

/// A second distributor, logging to its own file.
fn spawn_distributor_named(dir: &std::path::Path, name: &str, extra: &[&str]) -> (Proc, String) {
    let (proc, listen) = spawn_server(dir, name, |listen| {
        let mut args = vec![
            "distributor",
            "--listen",
            listen,
            "--probe-interval",
            "200ms",
        ];
        args.extend_from_slice(extra);
        args.into_iter().map(String::from).collect()
    });
    (proc, format!("http://{listen}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analyzer_that_vanishes_leaves_every_distributor_within_its_lease() {
    let dir = scratch("cluster-lease");
    let http = Http::new();
    let (_redis, redis) = redis_server(&dir, None);
    let (_a, a) = distributor(&dir, &cluster_args(&redis, &[]));
    let (_b, b) = spawn_distributor_named(&dir, "distributor_b", &cluster_args(&redis, &[]));
    let (_a1, _) = analyzer(&dir, 1, 1.0, &a, &[]);
    let (mut a2, _) = analyzer(&dir, 2, 1.0, &b, &[]);
    for url in [&a, &b] {
        http.wait_stats(url, "two analyzers", |s| {
            online(s, &["analyzer_1", "analyzer_2"])
        })
        .await;
    }

    a2.child.kill().unwrap(); // no deregistration: only the lease can tell
    let killed = Instant::now();
    for url in [&a, &b] {
        http.wait_stats(url, "analyzer_2 gone", |s| {
            s.len() == 1 && s[0].id == "analyzer_1"
        })
        .await;
    }
    let gone = killed.elapsed();
    assert!(
        gone <= Duration::from_millis(3300),
        "analyzer_2 left after {gone:?}, lease is 3 s"
    );
    eprintln!("vanished analyzer left both distributors {gone:?} after the kill (lease 3 s)");

    // Its keys in Redis are left to expire; the live analyzer's are kept renewed.
    let client = redis::Client::open(redis.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (kind, limit) in [("health", 60), ("counts", 24 * 3600)] {
        for id in ["analyzer_1", "analyzer_2"] {
            let ttl: i64 = redis::cmd("TTL")
                .arg(format!("logdist:{kind}:{id}"))
                .query_async(&mut conn)
                .await
                .unwrap();
            // -2: no such key (nothing counted yet); otherwise a TTL, never -1 (kept forever).
            assert!(
                ttl == -2 || (0..=limit).contains(&ttl),
                "logdist:{kind}:{id} TTL {ttl}"
            );
            if id == "analyzer_1" && kind == "health" {
                assert!(ttl > limit - 5, "renewed while it is a member: {ttl}");
            }
        }
    }
    let ttl: i64 = redis::cmd("TTL")
        .arg("logdist:health:analyzer_2")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        (0..=58).contains(&ttl),
        "no longer renewed once gone: {ttl}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_fails_no_packet_and_the_fleet_reconverges() {
    let dir = scratch("cluster-outage");
    let http = Http::new();
    let (mut redis_proc, redis) = redis_server(&dir, None);
    let port: u16 = redis
        .trim_start_matches("redis://127.0.0.1:")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let (_a, a) = distributor(&dir, &cluster_args(&redis, &[]));
    let (_b, b) = spawn_distributor_named(&dir, "distributor_b", &cluster_args(&redis, &[]));
    let mut analyzers = vec![
        analyzer(&dir, 1, 1.0, &a, &[]),
        analyzer(&dir, 2, 1.0, &a, &[]),
    ];
    for url in [&a, &b] {
        http.wait_stats(url, "two analyzers", |s| {
            online(s, &["analyzer_1", "analyzer_2"])
        })
        .await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let running = load(&http, &[a.clone(), b.clone()], 4, 50, stop.clone());
    tokio::time::sleep(Duration::from_millis(800)).await;
    redis_proc.child.kill().unwrap();
    redis_proc.child.wait().unwrap();
    for url in [&a, &b] {
        wait_health(&http, url, "down").await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Redis returns empty (nothing was persisted); the fleet heals by itself.
    let (_redis_again, _) = redis_server(&dir, Some(port));
    for url in [&a, &b] {
        wait_health(&http, url, "up").await;
    }
    analyzers.push(analyzer(&dir, 3, 1.0, &a, &[]));
    let all = ["analyzer_1", "analyzer_2", "analyzer_3"];
    let registered = Instant::now();
    for url in [&a, &b] {
        http.wait_stats(url, "analyzer_3 after the restart", |s| online(s, &all))
            .await;
    }
    let lag = registered.elapsed();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    let (acked, _, failures) = running.await.unwrap();
    assert!(
        failures.is_empty(),
        "packets failed during the outage: {failures:?}"
    );

    tokio::time::sleep(Duration::from_millis(2500)).await;
    let own: Vec<String> = analyzers.iter().map(|(_, url)| url.clone()).collect();
    let counted = analyzer_counts(&http, &own).await;
    assert_eq!(counted.iter().sum::<u64>(), acked);
    for url in [&a, &b] {
        let totals: Vec<u64> = http
            .stats(url)
            .await
            .iter()
            .map(|s| s.messages_total)
            .collect();
        assert_eq!(totals, counted, "counters did not catch up at {url}");
    }
    eprintln!(
        "outage: {acked} messages acknowledged, 0 failed; analyzer_3 reached both {lag:?} after registering"
    );
}

async fn wait_health(http: &Http, url: &str, redis: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let health = http.get(&format!("{url}/health")).await.json();
        if health["redis"] == redis {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url}/health never said redis {redis}: {health}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_fleets_with_different_prefixes_do_not_see_each_other() {
    let dir = scratch("cluster-prefix");
    let http = Http::new();
    let (_redis, redis) = redis_server(&dir, None);
    let (_x, x) = distributor(&dir, &cluster_args(&redis, &["--redis-prefix", "fleet-x:"]));
    let (_y, y) = spawn_distributor_named(
        &dir,
        "distributor_y",
        &cluster_args(&redis, &["--redis-prefix", "fleet-y:"]),
    );
    let (_a1, _) = analyzer(&dir, 1, 1.0, &x, &[]);
    let (_a2, _) = analyzer(&dir, 2, 1.0, &y, &[]);
    http.wait_stats(&x, "analyzer_1 at x", |s| online(s, &["analyzer_1"]))
        .await;
    http.wait_stats(&y, "analyzer_2 at y", |s| online(s, &["analyzer_2"]))
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (sx, sy) = (http.stats(&x).await, http.stats(&y).await);
    assert_eq!(
        sx.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["analyzer_1"]
    );
    assert_eq!(
        sy.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["analyzer_2"]
    );

    let client = redis::Client::open(redis.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!keys.is_empty());
    for key in &keys {
        assert!(
            key.starts_with("fleet-x:") || key.starts_with("fleet-y:"),
            "un-prefixed key {key}"
        );
    }
}

/// Polls `distributor`'s stats every 50 ms until `stop`; returns how many answers it read
/// and each one in which one of `ids` was not online (when, after `since`, and the states).
fn watch_online(
    http: &Http,
    distributor: &str,
    ids: &'static [&'static str],
    since: Instant,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(u64, Vec<String>)> {
    let (http, distributor) = (http.clone(), distributor.to_owned());
    tokio::spawn(async move {
        let (mut polls, mut missing) = (0, Vec::new());
        while !stop.load(Ordering::Relaxed) {
            let stats = http.stats(&distributor).await;
            polls += 1;
            let up = |id: &&str| stats.iter().any(|a| a.id == *id && a.state == "online");
            if !ids.iter().all(up) {
                let states: Vec<_> = stats.iter().map(|a| (&a.id, &a.state)).collect();
                missing.push(format!(
                    "{distributor} at {:?}: {states:?}",
                    since.elapsed()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (polls, missing)
    })
}

/// Stops the watchers and fails if any of them saw an analyzer missing; returns the
/// number of polls of each.
async fn no_analyzer_missed(
    stop: Arc<AtomicBool>,
    watchers: impl IntoIterator<Item = tokio::task::JoinHandle<(u64, Vec<String>)>>,
    what: &str,
) -> Vec<u64> {
    stop.store(true, Ordering::Relaxed);
    let mut polls = Vec::new();
    for watcher in watchers {
        let (n, missing) = watcher.await.unwrap();
        assert!(
            missing.is_empty(),
            "{what}: a live analyzer was dropped:\n{}",
            missing.join("\n")
        );
        polls.push(n);
    }
    polls
}

/// An analyzer on a free port registering with `distributor` every `heartbeat`.
fn analyzer_every(dir: &std::path::Path, id: u32, distributor: &str, heartbeat: &str) -> Proc {
    let id = id.to_string();
    let (proc, _) = spawn_server(dir, &format!("analyzer_{id}"), |listen| {
        let args = ["analyzer", "--id", &id, "--distributor", distributor];
        let mut args = args.map(String::from).to_vec();
        args.extend(["--listen", listen, "--heartbeat", heartbeat].map(String::from));
        args
    });
    proc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_analyzer_stays_online_when_redis_stops_for_longer_than_its_lease() {
    let dir = scratch("cluster-redis-stop");
    let http = Http::new();
    let (redis_proc, redis) = redis_server(&dir, None);
    let args = ["--redis", redis.as_str(), "--lease-ttl", "2s"];
    let (_a, a) = distributor(&dir, &args);
    let (_b, b) = spawn_distributor_named(&dir, "distributor_b", &args);
    let _a1 = analyzer_every(&dir, 1, &a, "600ms");
    for url in [&a, &b] {
        http.wait_stats(url, "analyzer_1", |s| online(s, &["analyzer_1"]))
            .await;
    }

    // Redis is frozen for longer than the lease: every lease has lapsed when it runs
    // again. The analyzer renews at A all along, so neither distributor may drop it.
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let watchers =
        [&a, &b].map(|url| watch_online(&http, url, &["analyzer_1"], start, stop.clone()));
    redis_proc.signal("STOP");
    for url in [&a, &b] {
        wait_health(&http, url, "down").await;
    }
    tokio::time::sleep(Duration::from_millis(3000).saturating_sub(start.elapsed())).await;
    let stopped_for = start.elapsed();
    redis_proc.signal("CONT");
    for url in [&a, &b] {
        wait_health(&http, url, "up").await;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let polls = no_analyzer_missed(stop, watchers, "after SIGSTOP").await;
    eprintln!(
        "Redis stopped for {stopped_for:?} (lease 2 s): analyzer_1 online in all {polls:?} polls of A and B"
    );
}

/// A `redis-server` on `port` that keeps its data in `dir` (an append-only file, synced
/// on every write), so that a restart finds the leases again, lapsed. With `user_a`, it
/// also lets user `a` (password `pw`) in.
fn persistent_redis(dir: &std::path::Path, port: u16, life: u32, user_a: bool) -> Proc {
    let name = format!("redis-aof.{life}");
    let log = dir.join(format!("{name}.log"));
    let file = std::fs::File::create(&log).unwrap();
    let mut command = std::process::Command::new("redis-server");
    command
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
        .arg(dir);
    if user_a {
        command.args(["--user", "a", "on", ">pw", "~*", "&*", "+@all"]);
    }
    let child = command
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let proc = Proc { child, name, log };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !proc.log_text().contains("Ready to accept connections") {
        assert!(
            Instant::now() < deadline,
            "redis-server did not start: {}",
            proc.log_text()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    proc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_redis_is_away_longer_than_the_lease_live_analyzers_stay_and_a_vanished_one_leaves() {
    let dir = scratch("cluster-redis-away");
    let http = Http::new();
    let port = free_port();
    // A logs in as user `a`, B as the default user: so that the test can let B back in
    // first, as it happens by chance when both reconnect.
    let (redis_a, redis_b) = (
        format!("redis://a:pw@127.0.0.1:{port}/"),
        format!("redis://127.0.0.1:{port}/"),
    );
    let mut redis_proc = persistent_redis(&dir, port, 0, true);
    let (_a, a) = distributor(&dir, &["--redis", &redis_a, "--lease-ttl", "2s"]);
    let (_b, b) = spawn_distributor_named(
        &dir,
        "distributor_b",
        &["--redis", &redis_b, "--lease-ttl", "2s"],
    );
    const LIVE: &[&str] = &["analyzer_1", "analyzer_2", "analyzer_3"];
    let _live: Vec<Proc> = (1..=3)
        .map(|id| analyzer_every(&dir, id, &a, "1500ms"))
        .collect();
    let mut doomed = analyzer_every(&dir, 4, &a, "1500ms");
    let all = ["analyzer_1", "analyzer_2", "analyzer_3", "analyzer_4"];
    for url in [&a, &b] {
        http.wait_stats(url, "four analyzers", |s| online(s, &all))
            .await;
    }

    // Redis goes away for longer than the lease (refusing connections, so no keep-alive
    // reaches it; A keeps them), and analyzer_4 vanishes meanwhile. Redis comes back with
    // every lease lapsed, B first: it must not drop the live analyzers before A is back
    // and renews them.
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let watchers = [&a, &b].map(|url| watch_online(&http, url, LIVE, start, stop.clone()));
    redis_proc.child.kill().unwrap();
    redis_proc.child.wait().unwrap();
    doomed.child.kill().unwrap();
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let _redis_again = persistent_redis(&dir, port, 1, false);
    let away = start.elapsed();
    wait_health(&http, &b, "up").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = redis::Client::open(redis_b.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let () = redis::cmd("ACL")
        .arg(&["SETUSER", "a", "on", ">pw", "~*", "&*", "+@all"][..])
        .query_async(&mut conn)
        .await
        .unwrap();
    let back = Instant::now();
    wait_health(&http, &a, "up").await;

    // analyzer_4 renews nothing: it leaves both within a lease of Redis being back.
    for url in [&a, &b] {
        http.wait_stats(url, "analyzer_4 gone", |s| {
            !s.iter().any(|a| a.id == "analyzer_4")
        })
        .await;
    }
    let gone = back.elapsed();
    tokio::time::sleep(Duration::from_secs(4).saturating_sub(gone)).await;
    let polls = no_analyzer_missed(stop, watchers, "after Redis was away").await;
    assert!(
        gone <= Duration::from_millis(2500),
        "analyzer_4 left {gone:?} after A had Redis back, lease is 2 s"
    );
    eprintln!(
        "Redis away {away:?} (lease 2 s), back at B then A: analyzers 1-3 online in all {polls:?} polls of A and B; vanished analyzer_4 left both {gone:?} after A had Redis back"
    );
}

/// A registration nothing answers at is forgotten by the distributor whose
/// `--forget-after` runs out first, through Redis: its lease is deleted, so the other
/// distributor (which would keep it) drops it too, long before the lease would lapse. An
/// analyzer registering with that id afterwards is new at both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_analyzer_leaves_every_distributor_and_registers_again_as_new() {
    let dir = scratch("cluster-forget");
    let http = Http::new();
    let (_redis, redis) = redis_server(&dir, None);
    let (_a, a) = distributor(
        &dir,
        &[
            "--redis",
            &redis,
            "--lease-ttl",
            "60s",
            "--forget-after",
            "1s",
        ],
    );
    let (_b, b) = spawn_distributor_named(
        &dir,
        "distributor_b",
        &[
            "--redis",
            &redis,
            "--lease-ttl",
            "60s",
            "--forget-after",
            "never",
        ],
    );
    let before = metric(
        &http.get(&format!("{a}/metrics")).await.text(),
        "logdist_analyzers_forgotten_total",
    );
    // Registered once at B (no keep-alive: its lease would live 60 s), where nothing
    // listens.
    let dead = format!(
        r#"{{"id":"analyzer_9","url":"http://127.0.0.1:{}","weight":1}}"#,
        free_port()
    );
    let answer = http
        .post(&format!("{b}/analyzer/register"), "application/json", dead)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["state"], "unhealthy");
    let registered = Instant::now();
    for url in [&a, &b] {
        http.wait_stats(url, "analyzer_9 gone", |s| s.is_empty())
            .await;
    }
    let gone = registered.elapsed();
    assert!(
        gone >= Duration::from_secs(1) && gone < Duration::from_secs(10),
        "gone after {gone:?}: --forget-after is 1 s at A, the lease 60 s"
    );
    let text = http.get(&format!("{a}/metrics")).await.text();
    assert_eq!(
        metric(&text, "logdist_analyzers_forgotten_total") - before,
        1.0
    );
    // The lease is gone from Redis.
    let client = redis::Client::open(redis.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let lease: Option<String> = redis::cmd("GET")
        .arg("logdist:analyzer:analyzer_9")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(lease, None);

    // A live analyzer with that id, registering at B: new, and online at both.
    let (_a9, _) = analyzer(&dir, 9, 1.0, &b, &[]);
    for url in [&a, &b] {
        http.wait_stats(url, "analyzer_9 back", |s| online(s, &["analyzer_9"]))
            .await;
    }
}
