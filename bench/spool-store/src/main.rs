//! The storage comparison of issue 31: logdist's spool (its own segment log) against a
//! spool on redb, on one workload. `run` measures one store and prints one tab-separated
//! line; `table` reads such lines and prints the medians as a markdown table. `run.sh`
//! drives both.

mod disk;
mod redb_store;
mod workload;

use std::io::BufRead;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use workload::{Config, Durability, StoreKind};

const USAGE: &str = "usage:
  spool-store run --store segment-log|redb --fsync 10ms|always|always-grouped
                  [--packets N] [--tasks N] [--lag N] [--dir-base DIR]
  spool-store table   (reads the lines of `run` on stdin)";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("run") => {
            let config = parse_run(&args[1..])?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let outcome = runtime.block_on(workload::run(&config))?;
            println!("{}", outcome.line());
            Ok(())
        }
        Some("table") => {
            let lines = std::io::stdin()
                .lock()
                .lines()
                .collect::<Result<Vec<_>, _>>()?;
            print!("{}", workload::table(&lines)?);
            Ok(())
        }
        _ => anyhow::bail!("{USAGE}"),
    }
}

fn parse_run(args: &[String]) -> anyhow::Result<Config> {
    let mut config = Config {
        store: StoreKind::SegmentLog,
        durability: Durability::Every(Duration::from_millis(10)),
        packets: 100_000,
        tasks: 8,
        lag: 1_000,
        dir_base: PathBuf::from("/tmp"),
    };
    let mut store = None;
    let mut durability = None;
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--store" => store = Some(value.parse()?),
            "--fsync" => durability = Some(value.parse()?),
            "--packets" => config.packets = value.parse()?,
            "--tasks" => config.tasks = value.parse()?,
            "--lag" => config.lag = value.parse()?,
            "--dir-base" => config.dir_base = PathBuf::from(value),
            _ => anyhow::bail!("unknown flag {flag}\n{USAGE}"),
        }
    }
    config.store = store.with_context(|| format!("--store is required\n{USAGE}"))?;
    config.durability = durability.with_context(|| format!("--fsync is required\n{USAGE}"))?;
    if config.store == StoreKind::SegmentLog && config.durability == Durability::AlwaysGrouped {
        anyhow::bail!(
            "the segment log's `always` shares one fdatasync between concurrent packets already: use --fsync always"
        );
    }
    anyhow::ensure!(
        config.tasks > 0 && config.packets > 0,
        "--tasks and --packets must be > 0"
    );
    Ok(config)
}
