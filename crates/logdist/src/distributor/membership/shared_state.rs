//! The state several distributors share: membership leases and the fleet's counts. In
//! memory (the default) there is nothing to share, and every call is a no-op; on Redis
//! (`--redis`) it is the [`cluster`](super::cluster). Handlers call the same methods
//! either way.

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::cluster::{Cluster, Local};
use crate::api::AnalyzerStats;

/// Where membership and counts live.
pub enum SharedState {
    /// In this process only.
    Memory,
    /// On Redis, shared with every distributor on the same prefix.
    Redis(Arc<Cluster>),
}

impl SharedState {
    /// Publishes a registration made here (before it takes effect locally, so that a
    /// sync running meanwhile cannot put back what was there before).
    pub async fn announce(
        &self,
        id: &str,
        base: &str,
        weight: f64,
        protocol: Option<crate::distributor::delivery::protocol::Kind>,
    ) {
        if let Self::Redis(cluster) = self {
            cluster.announce(id, base, weight, protocol).await;
        }
    }

    /// Publishes a deregistration made here.
    pub async fn withdraw(&self, id: &str) {
        if let Self::Redis(cluster) = self {
            cluster.withdraw(id).await;
        }
    }

    /// Notes that an analyzer is about to be forgotten here, before it is removed: no
    /// read of the membership brings it back meanwhile.
    pub fn forgetting(&self, id: &str) {
        if let Self::Redis(cluster) = self {
            cluster.forgetting(id);
        }
    }

    /// Undoes [`forgetting`](Self::forgetting) for an analyzer that was not forgotten.
    pub fn not_forgotten(&self, id: &str) {
        if let Self::Redis(cluster) = self {
            cluster.not_forgotten(id);
        }
    }

    /// Publishes that this distributor forgot an analyzer (`--forget-after`): its lease
    /// goes, so that every distributor drops it, and a read of the membership made before
    /// that cannot bring it back here.
    pub async fn forget(&self, id: &str) {
        if let Self::Redis(cluster) = self {
            cluster.forget(id).await;
        }
    }

    /// The analyzers' stats: this distributor's (`local`), with the fleet's counts on Redis.
    pub async fn stats(&self, local: Vec<AnalyzerStats>) -> Vec<AnalyzerStats> {
        match self {
            Self::Memory => local,
            Self::Redis(cluster) => cluster.fleet_stats(local).await,
        }
    }

    /// Whether Redis answered the last exchange; `None` in memory.
    pub fn redis_up(&self) -> Option<bool> {
        match self {
            Self::Memory => None,
            Self::Redis(cluster) => Some(cluster.is_up()),
        }
    }

    /// Starts keeping `local` in step with the fleet until `stop`, if there is a fleet.
    pub fn start(&self, local: Local, stop: CancellationToken) -> Option<JoinHandle<()>> {
        match self {
            Self::Memory => None,
            Self::Redis(cluster) => {
                info!("Cluster mode: sharing membership and counts on Redis.");
                Some(tokio::spawn(cluster.clone().run(local, stop)))
            }
        }
    }
}
