//! Thread-per-core: a fixed set of worker threads, each running its own single-threaded
//! tokio runtime, as nginx and HAProxy run one event loop per core.
//!
//! A connection is handed to one worker and stays there, with everything its requests
//! start: the distributor gives every analyzer one lane per worker, with its own keep-alive
//! pool, so a packet is read, routed, batched, delivered and answered on one thread. The
//! work-stealing runtime moved tasks between cores and woke idle workers to steal them; on
//! this path those context switches and wake-ups cost more than the stealing saved
//! (`bench/compare.sh`, see the README's Performance section).
//!
//! [`Workers::current`] is the degenerate case: one "worker" that is whatever runtime the
//! caller runs on. The analyzer serves that way.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

thread_local! {
    /// On a worker thread: which [`Workers`] it belongs to, and its index there.
    static HERE: Cell<Option<(u64, usize)>> = const { Cell::new(None) };
}

/// Tells every set of workers apart, so that a thread knows whose worker it is.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A fixed set of workers (see the module documentation).
#[derive(Debug)]
pub struct Workers {
    id: u64,
    handles: Vec<Handle>,
    /// Connections each worker is serving, to hand a new one to the least busy.
    connections: Vec<AtomicUsize>,
    /// Ends the worker threads.
    stop: CancellationToken,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Workers {
    /// Starts `count` worker threads (one per core when `count` is 0), named
    /// `{name}-{index}`.
    pub fn start(count: usize, name: &str) -> std::io::Result<Arc<Self>> {
        let count = match count {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let stop = CancellationToken::new();
        let mut handles = Vec::with_capacity(count);
        let mut threads = Vec::with_capacity(count);
        for index in 0..count {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(runtime.handle().clone());
            let stop = stop.clone();
            let thread = std::thread::Builder::new()
                .name(format!("{name}-{index}"))
                .spawn(move || {
                    HERE.set(Some((id, index)));
                    runtime.spawn(pacemaker());
                    runtime.block_on(stop.cancelled());
                })?;
            threads.push(thread);
        }
        Ok(Arc::new(Self {
            id,
            connections: handles.iter().map(|_| AtomicUsize::new(0)).collect(),
            handles,
            stop,
            threads: Mutex::new(threads),
        }))
    }

    /// One worker: the runtime the caller is on (which may have threads of its own).
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn current() -> Arc<Self> {
        Arc::new(Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            handles: vec![Handle::current()],
            connections: vec![AtomicUsize::new(0)],
            stop: CancellationToken::new(),
            threads: Mutex::new(Vec::new()),
        })
    }

    /// How many workers there are.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Always false: there is at least one worker.
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// The index of the worker the calling thread is, or 0 on any other thread.
    pub fn here(&self) -> usize {
        match HERE.get() {
            Some((id, index)) if id == self.id => index,
            _ => 0,
        }
    }

    /// Runs `task` on worker `index`.
    pub fn spawn_on<F>(&self, index: usize, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handles[index % self.handles.len()].spawn(task)
    }

    /// Runs a connection's `task` on the worker serving the fewest connections.
    pub fn spawn_connection<F>(self: &Arc<Self>, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let index = (0..self.connections.len())
            .min_by_key(|&i| self.connections[i].load(Ordering::Relaxed))
            .unwrap_or(0);
        self.connections[index].fetch_add(1, Ordering::Relaxed);
        let workers = self.clone();
        self.spawn_on(index, async move {
            task.await;
            workers.connections[index].fetch_sub(1, Ordering::Relaxed);
        });
    }

    /// Ends the worker threads (dropping whatever still runs on them) and waits for them.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        if threads.is_empty() {
            return;
        }
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
    }
}

/// How soon every worker always has a timer due (see [`pacemaker`]).
const PACEMAKER_PERIOD: Duration = Duration::from_secs(1);

/// Keeps a timer due within [`PACEMAKER_PERIOD`] on its worker, for as long as the worker
/// runs.
///
/// tokio's timer wheel wakes its own driver (an `eventfd` write, then an `epoll_wait` that
/// returns at once) whenever a timer is set to fire before every timer already set. A
/// delivery's timeout (5 s by default) usually is the earliest: the deliveries before it
/// have finished and dropped theirs. With this timer always due sooner, timers set further
/// out never wake the driver. At a paced 6,000 requests/s on the mix: `eventfd` writes
/// from 0.50 to 0.01 per request, `epoll_wait` calls from 1.47 to 1.10 (`perf stat -e
/// 'syscalls:sys_enter_*'`). It costs each worker one wakeup a second.
async fn pacemaker() {
    let mut tick = tokio::time::interval(PACEMAKER_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tasks_run_on_the_worker_they_were_given_to() {
        let workers = Workers::start(3, "test-worker").unwrap();
        assert_eq!(workers.len(), 3);
        assert_eq!(workers.here(), 0, "not a worker thread");
        for index in 0..3 {
            let w = workers.clone();
            let (here, name) = workers
                .spawn_on(index, async move {
                    (w.here(), std::thread::current().name().map(str::to_owned))
                })
                .await
                .unwrap();
            assert_eq!(here, index);
            assert_eq!(
                name.as_deref(),
                Some(format!("test-worker-{index}").as_str())
            );
        }
        workers.shutdown().await;
    }

    #[tokio::test]
    async fn connections_go_to_the_least_busy_worker() {
        let workers = Workers::start(2, "test-conn").unwrap();
        let (hold, held) = tokio::sync::watch::channel(false);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for _ in 0..4 {
            let (w, tx, mut held) = (workers.clone(), tx.clone(), held.clone());
            workers.spawn_connection(async move {
                let _ = tx.send(w.here());
                let _ = held.wait_for(|h| *h).await;
            });
        }
        let mut seen = [0; 2];
        for _ in 0..4 {
            seen[rx.recv().await.unwrap()] += 1;
        }
        assert_eq!(seen, [2, 2]);
        hold.send(true).unwrap();
        workers.shutdown().await;
    }

    #[tokio::test]
    async fn the_current_runtime_is_one_worker() {
        let workers = Workers::current();
        assert_eq!(workers.len(), 1);
        assert_eq!(workers.spawn_on(5, async { 7 }).await.unwrap(), 7);
        workers.shutdown().await;
    }
}
