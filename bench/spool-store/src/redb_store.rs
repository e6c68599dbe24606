//! A spool on redb, as logdist would build one: one table `u64 -> &[u8]` (a sequence number
//! to the packet's NDJSON), written by one thread that owns the database. Async callers
//! send it commands and wait for their commit; a release is a delete, and deletes are
//! batched into the next transaction.

use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use redb::{Database, Durability, TableDefinition};
use tokio::sync::oneshot;

/// The spool's one table: sequence number to NDJSON.
const PACKETS: TableDefinition<u64, &[u8]> = TableDefinition::new("packets");

/// How the redb spool makes its writes durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A transaction per packet committed with `Durability::None`, and a commit with
    /// `Durability::Immediate` at least every `interval` (the match of `--spool-fsync 10ms`).
    Every(Duration),
    /// A transaction per packet committed with `Durability::Immediate` (the match of
    /// `--spool-fsync always`, without sharing an fsync between packets).
    Always,
    /// The packets waiting when the writer is free go in one transaction, committed with
    /// `Durability::Immediate`: `always` with group commit, as logdist's keeper shares one
    /// `fdatasync` between concurrent packets.
    AlwaysGrouped,
}

/// The most packets one grouped transaction takes.
const MAX_GROUP: usize = 256;

enum Command {
    Append {
        ndjson: Bytes,
        done: oneshot::Sender<anyhow::Result<u64>>,
    },
    Release(u64),
}

/// The redb spool: the writer thread and the way to it.
pub struct RedbStore {
    commands: Option<mpsc::Sender<Command>>,
    writer: Option<JoinHandle<anyhow::Result<()>>>,
}

impl RedbStore {
    /// Creates the database `dir/spool.redb` and starts its writer.
    pub fn open(dir: &Path, mode: Mode) -> anyhow::Result<Self> {
        let db = Database::create(dir.join("spool.redb")).context("creating the redb file")?;
        let txn = db.begin_write()?;
        txn.open_table(PACKETS)?;
        txn.commit()?;
        let (commands, received) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("redb-writer".to_owned())
            .spawn(move || write_loop(&db, mode, &received))?;
        Ok(Self {
            commands: Some(commands),
            writer: Some(writer),
        })
    }

    /// Writes `ndjson`, and returns its key once the commit of its transaction returned.
    pub async fn append(&self, ndjson: Bytes) -> anyhow::Result<u64> {
        let (done, committed) = oneshot::channel();
        self.sender()?.send(Command::Append { ndjson, done })?;
        committed.await.context("the redb writer ended")?
    }

    /// Deletes the packet of `key` (in the writer's next transaction).
    pub fn release(&self, key: u64) -> anyhow::Result<()> {
        self.sender()?.send(Command::Release(key))?;
        Ok(())
    }

    /// Makes the last writes durable and stops the writer.
    pub fn close(mut self) -> anyhow::Result<()> {
        self.commands.take();
        match self.writer.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => anyhow::bail!("the redb writer panicked"),
            None => Ok(()),
        }
    }

    fn sender(&self) -> anyhow::Result<&mpsc::Sender<Command>> {
        self.commands.as_ref().context("the redb store is closed")
    }
}

/// The writer: takes commands until every sender is gone, then commits what is left with
/// `Durability::Immediate`.
fn write_loop(db: &Database, mode: Mode, received: &mpsc::Receiver<Command>) -> anyhow::Result<()> {
    let interval = match mode {
        Mode::Every(every) => every,
        Mode::Always | Mode::AlwaysGrouped => Duration::from_millis(10),
    };
    let mut next_key = 0_u64;
    let mut released: Vec<u64> = Vec::new();
    let mut last_durable = Instant::now();
    // Whether a commit since the last durable one was not durable.
    let mut volatile = false;
    loop {
        let first = match received.recv_timeout(interval) {
            Ok(command) => Some(command),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut appends = Vec::new();
        let mut take = |command: Command, appends: &mut Vec<_>| match command {
            Command::Append { ndjson, done } => appends.push((ndjson, done)),
            Command::Release(key) => released.push(key),
        };
        if let Some(command) = first {
            take(command, &mut appends);
        }
        if mode == Mode::AlwaysGrouped {
            while appends.len() < MAX_GROUP {
                let Ok(command) = received.try_recv() else {
                    break;
                };
                take(command, &mut appends);
            }
        }
        let due = last_durable.elapsed() >= interval;
        if appends.is_empty() && !(due && (volatile || !released.is_empty())) {
            // A release alone waits for the next transaction.
            continue;
        }
        let durable = match mode {
            Mode::Every(_) => due,
            Mode::Always | Mode::AlwaysGrouped => true,
        };
        let first_key = next_key;
        let result = commit(db, &released, &appends, first_key, durable);
        match result {
            Ok(()) => {
                released.clear();
                next_key += appends.len() as u64;
                for (i, (_, done)) in appends.into_iter().enumerate() {
                    let _ = done.send(Ok(first_key + i as u64));
                }
                if durable {
                    last_durable = Instant::now();
                    volatile = false;
                } else {
                    volatile = true;
                }
            }
            Err(e) => {
                let message = format!("{e:#}");
                for (_, done) in appends {
                    let _ = done.send(Err(anyhow::anyhow!("{message}")));
                }
                return Err(e);
            }
        }
    }
    if volatile || !released.is_empty() {
        commit(db, &released, &[], next_key, true)?;
    }
    Ok(())
}

/// One write transaction: deletes `released`, inserts `appends` from `first_key` on.
fn commit(
    db: &Database,
    released: &[u64],
    appends: &[(Bytes, oneshot::Sender<anyhow::Result<u64>>)],
    first_key: u64,
    durable: bool,
) -> anyhow::Result<()> {
    let mut txn = db.begin_write()?;
    txn.set_durability(if durable {
        Durability::Immediate
    } else {
        Durability::None
    })?;
    {
        let mut table = txn.open_table(PACKETS)?;
        for key in released {
            table.remove(key)?;
        }
        for (i, (ndjson, _)) in appends.iter().enumerate() {
            table.insert(first_key + i as u64, &ndjson[..])?;
        }
    }
    txn.commit()?;
    Ok(())
}
