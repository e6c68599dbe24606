//! syslog-ng, as Debian ships it (`syslog-ng-core`, and `syslog-ng-mod-http` for its
//! `http()` destination), run by a test as a process of its own: in the foreground, with
//! no capabilities, its pid file, persist file and control socket in the test's scratch
//! directory, and a configuration the test writes. It reads syslog lines from a `network()`
//! source on a free loopback port, where `logger` (util-linux) sends them, and sends every
//! message to the test's destination. Killed (by its own PID) when dropped.

use std::io::ErrorKind;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{Proc, free_port};

/// What to install when syslog-ng is missing.
const INSTALL: &str =
    "apt-get install syslog-ng-core syslog-ng-mod-http (as .ci/run does; the tests need them)";

/// A syslog-ng of the test's own.
pub struct SyslogNg {
    /// The process.
    pub proc: Proc,
    /// The port of its TCP source.
    pub port: u16,
}

impl SyslogNg {
    /// Starts syslog-ng in `dir` with `destination` (a destination driver, e.g.
    /// `http(url(...) ...)`) as the only destination of its TCP source, and waits until the
    /// source accepts connections. Fails the test, saying what to install, when syslog-ng
    /// or its http module is missing.
    pub fn start(dir: &Path, destination: &str) -> SyslogNg {
        for attempt in 0..10 {
            let port = free_port();
            let config = dir.join("syslog-ng.conf");
            std::fs::write(&config, config_text(port, destination)).unwrap();
            let name = format!("syslog-ng-{attempt}");
            let log = dir.join(format!("{name}.log"));
            let file = std::fs::File::create(&log).unwrap();
            let path = |file: &str| dir.join(file).to_str().unwrap().to_owned();
            let child = Command::new("syslog-ng")
                .args(["-F", "-e", "--no-caps", "-f"])
                .arg(&config)
                .args(["-p", &path("syslog-ng.pid")])
                .args(["-R", &path("syslog-ng.persist")])
                .args(["--control", &path("syslog-ng.ctl")])
                .stdin(Stdio::null())
                .stdout(file.try_clone().unwrap())
                .stderr(file)
                .spawn()
                .unwrap_or_else(|e| match e.kind() {
                    ErrorKind::NotFound => panic!("syslog-ng is not installed: {INSTALL}"),
                    _ => panic!("could not start syslog-ng: {e}"),
                });
            let mut proc = Proc { child, name, log };
            if wait_accepting(&mut proc, port) {
                return SyslogNg { proc, port };
            }
        }
        panic!("syslog-ng: no free port after 10 tries");
    }

    /// Logs `lines`, one message each, through `logger` as `program` with `priority`
    /// (`facility.level`), RFC 3164 over TCP to the source, and waits for `logger` to end.
    pub fn log(&self, program: &str, priority: &str, lines: &[String]) {
        let mut text = lines.join("\n");
        text.push('\n');
        let input = self.proc.log.with_extension("input");
        std::fs::write(&input, text).unwrap();
        let status = Command::new("logger")
            .args(["--rfc3164", "--tcp", "--server", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .args(["--tag", program, "--priority", priority])
            .stdin(std::fs::File::open(&input).unwrap())
            .status()
            .unwrap_or_else(|e| panic!("could not run logger ({e}): install util-linux"));
        assert!(status.success(), "logger failed: {status}");
    }

    /// What it has said, to explain a failure.
    pub fn said(&self) -> String {
        format!("syslog-ng's log:\n{}", self.proc.log_text())
    }
}

/// The configuration: nothing but the test's source, its destination, and the path
/// between them. `keep-hostname` keeps the host the line names; `time-reopen` has a
/// destination whose request failed try again after 1 s instead of 60.
fn config_text(port: u16, destination: &str) -> String {
    format!(
        r#"@version: 3.38
options {{ stats-freq(0); keep-hostname(yes); time-reopen(1); }};
source s_test {{ network(ip("127.0.0.1") transport("tcp") port({port})); }};
destination d_test {{ {destination} }};
log {{ source(s_test); destination(d_test); }};
"#
    )
}

/// Waits until syslog-ng accepts connections on `port` (true), or exits because the port
/// is taken (false); any other exit, or 15 s, fails the test with its log.
fn wait_accepting(proc: &mut Proc, port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if proc.child.try_wait().unwrap().is_some() {
            let log = proc.log_text();
            assert!(
                log.contains("Address already in use"),
                "syslog-ng exited: {log}\n(is its http module there? {INSTALL})"
            );
            return false;
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        assert!(
            Instant::now() < deadline,
            "syslog-ng did not accept connections within 15 s; log:\n{}",
            proc.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
