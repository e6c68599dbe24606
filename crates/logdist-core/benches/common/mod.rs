//! Inputs for the micro-benchmarks: realistic log messages drawn from a tiny linear
//! congruential generator, so that every run measures the very same bytes.
//!
//! Shared by the benches of both crates (`crates/logdist/benches/delivery.rs` includes this
//! file by path); each uses only part of it.
#![allow(dead_code)]

/// A 64-bit linear congruential generator (Knuth's MMIX constants): deterministic, and
/// plenty for picking templates and packet sizes.
pub struct Lcg(u64);

impl Lcg {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A number in `0..n`, from the high bits (the low bits of an LCG are poor).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    fn hex(&mut self, digits: usize) -> String {
        (0..digits)
            .map(|_| char::from_digit(self.below(16) as u32, 16).unwrap_or('0'))
            .collect()
    }
}

/// Severities, most of them INFO as in real traffic (weights out of 100).
const SEVERITIES: [(&str, u64); 5] = [
    ("DEBUG", 10),
    ("INFO", 70),
    ("WARN", 12),
    ("ERROR", 7),
    ("FATAL", 1),
];

const SOURCES: [&str; 6] = ["api", "auth", "billing", "orders", "search", "scheduler"];

/// Message texts; `#` is a number below 10,000, `~` a digit from 1 to 9, `@` a hex id.
/// Filled in, they run 55 to 80 characters, and one has quotes (JSON escapes: the
/// decoder's slower path for strings).
const TEMPLATES: [&str; 8] = [
    "GET /api/v1/orders/# completed with status 200 in # ms (user #)",
    "user # signed in from 10.~.~.~, the session expires in # seconds",
    "cache miss for session:@, loaded from the primary in # ms",
    "retrying request to \"payments\" after a timeout (attempt ~ of 5)",
    "connection pool at ~0 percent: # active, # idle, ~ waiting",
    "scheduled job nightly-report-# finished in # ms, wrote # rows",
    "rejected an upload of # bytes from client @: over the size limit",
    "order @ moved from PENDING to SHIPPED by worker-~ after # ms",
];

/// `count` messages, each one JSON object on one line (without the newline), with
/// timestamps rising in Unix milliseconds. About a third carry a `host`, some a nested
/// `trace` or a `tags` array: extra fields the distributor must forward untouched.
pub fn messages(seed: u64, count: usize) -> Vec<String> {
    let mut rng = Lcg::new(seed);
    let mut timestamp: u64 = 1_760_000_000_000;
    (0..count)
        .map(|_| {
            timestamp += rng.below(20);
            let mut pick = rng.below(100);
            let severity = SEVERITIES
                .iter()
                .find(|(_, weight)| {
                    let hit = pick < *weight;
                    pick = pick.saturating_sub(*weight);
                    hit
                })
                .map_or("INFO", |(name, _)| name);
            let source = rng.pick(&SOURCES);
            let template = rng.pick(&TEMPLATES);
            let text = fill(&mut rng, template);
            let mut extra = String::new();
            if rng.below(3) == 0 {
                extra += &format!(r#","host":"{source}-{}""#, rng.below(8) + 1);
            }
            if rng.below(10) == 0 {
                extra += &format!(
                    r#","trace":{{"id":"{}","span":{}}}"#,
                    rng.hex(16),
                    rng.below(1000)
                );
            }
            if rng.below(20) == 0 {
                extra += r#","tags":["retry","slow"]"#;
            }
            let text = serde_json::to_string(&text).expect("a string serializes");
            format!(
                r#"{{"timestamp":{timestamp},"severity":"{severity}","source":"{source}","message":{text}{extra}}}"#
            )
        })
        .collect()
}

fn fill(rng: &mut Lcg, template: &str) -> String {
    let mut text = String::with_capacity(template.len() + 24);
    for c in template.chars() {
        match c {
            '#' => text += &rng.below(10_000).to_string(),
            '~' => text += &(rng.below(9) + 1).to_string(),
            '@' => text += &rng.hex(12),
            c => text.push(c),
        }
    }
    text
}

/// The messages as a canonical NDJSON packet: one a line, each line ending in `\n`.
pub fn ndjson(messages: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for message in messages {
        out.extend_from_slice(message.as_bytes());
        out.push(b'\n');
    }
    out
}

/// The messages as a JSON array.
pub fn json_array(messages: &[String]) -> Vec<u8> {
    format!("[{}]", messages.join(",")).into_bytes()
}
