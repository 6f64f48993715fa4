//! The pipeline's stages as the supervisor keeps them: spawned linked, and
//! spawned again, with the same bounds, when one fails.

use std::sync::Arc;
use std::time::Instant;

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, ActorStatus};

use super::{SupervisorMsg, SupervisorState, MAX_RESTARTS, RESTART_WINDOW};
use crate::actors::chunker::{Chunker, ChunkerArgs, ChunkerMsg};
use crate::actors::coordinator::SnapshotError;
use crate::actors::exporter::{Exporter, ExporterArgs, ExporterMsg};
use crate::actors::uploader::{Uploader, UploaderArgs, UploaderMsg};
use crate::config::PipelineConfig;
use crate::flow::{BoundedMailbox, BufferPool, MemoryBudget, PipelineStats};
use crate::metrics as m;
use crate::partition::PartitionStore;
use crate::repository::Repository;
use crate::staging::default_staging_dir;

/// The stages the supervisor restarts.
#[derive(Debug, Clone, Copy)]
pub(super) enum Stage {
    Exporter,
    Chunker,
    Uploader,
}

impl Stage {
    pub(super) fn name(self) -> &'static str {
        match self {
            Stage::Exporter => "exporter",
            Stage::Chunker => "chunker",
            Stage::Uploader => "uploader",
        }
    }
}

impl SupervisorState {
    /// A child failed: a coordinator fails its snapshot; a stage is
    /// spawned again and the stages handed to later snapshots rewired.
    pub(super) async fn failed(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        who: ActorCell,
        error: String,
    ) -> Result<(), ActorProcessingErr> {
        let id = who.get_id();
        if let Some(&partition) = self
            .running
            .iter()
            .find_map(|(p, r)| (r.coordinator == id).then_some(p))
        {
            tracing::error!(%partition, %error, "snapshot coordinator failed");
            let result = Err(SnapshotError::Stopped(format!(
                "the snapshot's coordinator failed: {error}"
            )));
            self.finished(partition, result);
            return Ok(());
        }
        if self.publishers.values().any(|p| p.get_id() == id) {
            tracing::error!(%error, "publisher failed; a new one starts with the next snapshot");
            self.publishers.retain(|_, p| p.get_id() != id);
            m::stage_restarts("publisher").increment(1);
            self.stats.restarted();
            return Ok(());
        }
        let stage = if self.stages.exporter.get_id() == id {
            Stage::Exporter
        } else if self.stages.chunker.actor().get_id() == id {
            Stage::Chunker
        } else if self.stages.uploader.actor().get_id() == id {
            Stage::Uploader
        } else {
            // A stage already replaced, or a coordinator already answered for.
            tracing::debug!(%error, "a replaced actor failed");
            return Ok(());
        };
        tracing::error!(stage = stage.name(), %error, "pipeline stage failed; restarting it");
        self.replace(myself, stage, &error).await
    }

    /// Replaces stages that have stopped, before a snapshot is handed them:
    /// a stage's failure can reach a snapshot before its supervision event
    /// reaches the supervisor.
    pub(super) async fn ensure_stages(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
    ) -> Result<(), ActorProcessingErr> {
        for stage in [Stage::Exporter, Stage::Chunker, Stage::Uploader] {
            let cell = match stage {
                Stage::Exporter => self.stages.exporter.get_cell(),
                Stage::Chunker => self.stages.chunker.actor().get_cell(),
                Stage::Uploader => self.stages.uploader.actor().get_cell(),
            };
            if has_stopped(&cell) {
                tracing::error!(
                    stage = stage.name(),
                    "pipeline stage has stopped; restarting it"
                );
                self.replace(myself, stage, "stopped").await?;
            }
        }
        Ok(())
    }

    /// Spawns a stage again with the same bounds; later snapshots get the
    /// new one. Too many restarts in a short time stop the supervisor.
    pub(super) async fn replace(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        stage: Stage,
        error: &str,
    ) -> Result<(), ActorProcessingErr> {
        let now = Instant::now();
        self.restarts
            .retain(|t| now.duration_since(*t) < RESTART_WINDOW);
        self.restarts.push(now);
        if self.restarts.len() > MAX_RESTARTS {
            return Err(format!(
                "the {} stage failed {} times within {RESTART_WINDOW:?}; last: {error}",
                stage.name(),
                self.restarts.len()
            )
            .into());
        }
        match stage {
            Stage::Exporter => {
                self.stages.exporter.stop(None);
                self.stages.exporter =
                    spawn_exporter(myself, &self.config, &self.partitions).await?;
            }
            Stage::Chunker => {
                self.stages.chunker.actor().stop(None);
                self.stages.chunker = BoundedMailbox::new(
                    spawn_chunker(myself, &self.stats, &self.pool).await?,
                    self.chunker_credits.clone(),
                );
            }
            Stage::Uploader => {
                self.stages.uploader.actor().stop(None);
                self.stages.uploader = BoundedMailbox::new(
                    spawn_uploader(
                        myself,
                        &self.config,
                        &self.repository,
                        &self.stats,
                        &self.budget,
                    )
                    .await?,
                    self.uploader_credits.clone(),
                );
            }
        }
        m::stage_restarts(stage.name()).increment(1);
        self.stats.restarted();
        Ok(())
    }
}

/// Whether an actor is stopping or gone (one that is still starting is not).
pub(super) fn has_stopped(cell: &ActorCell) -> bool {
    matches!(
        cell.get_status(),
        ActorStatus::Stopping | ActorStatus::Stopped
    )
}

pub(super) async fn spawn_exporter(
    myself: &ActorRef<SupervisorMsg>,
    config: &PipelineConfig,
    partitions: &PartitionStore,
) -> Result<ActorRef<ExporterMsg>, ActorProcessingErr> {
    let staging_root = config
        .staging_dir
        .clone()
        .unwrap_or_else(|| default_staging_dir(partitions.path()));
    let args = ExporterArgs {
        partitions: partitions.clone(),
        staging_root,
        max_concurrent: config.max_concurrent_exports,
    };
    Ok(Actor::spawn_linked(None, Exporter, args, myself.get_cell())
        .await?
        .0)
}

pub(super) async fn spawn_chunker(
    myself: &ActorRef<SupervisorMsg>,
    stats: &Arc<PipelineStats>,
    pool: &BufferPool,
) -> Result<ActorRef<ChunkerMsg>, ActorProcessingErr> {
    let args = ChunkerArgs {
        stats: stats.clone(),
        pool: pool.clone(),
    };
    Ok(Actor::spawn_linked(None, Chunker, args, myself.get_cell())
        .await?
        .0)
}

pub(super) async fn spawn_uploader(
    myself: &ActorRef<SupervisorMsg>,
    config: &PipelineConfig,
    repository: &Repository,
    stats: &Arc<PipelineStats>,
    budget: &MemoryBudget,
) -> Result<ActorRef<UploaderMsg>, ActorProcessingErr> {
    let args = UploaderArgs {
        store: repository.store().clone(),
        stats: stats.clone(),
        requests: budget.requests().clone(),
        rate_limit: config.rate_limit.clone(),
        retry: repository.retry(),
    };
    Ok(Actor::spawn_linked(None, Uploader, args, myself.get_cell())
        .await?
        .0)
}
