//! The supervisor: the entry point a host node starts.
//!
//! It owns the pipeline's stages (exporter, chunker, uploader) and one
//! publisher per partition, all linked children, and it starts one
//! coordinator per snapshot request. It answers each request once, with a
//! [`SnapshotOutcome`] or a typed [`SnapshotError`]. Snapshots of different
//! partitions run at once, sharing the stages' bounds; a second request for
//! a partition that is already being snapshotted is refused, not queued.
//!
//! ractor has no restart strategy of its own, so the supervisor is one: a
//! stage that fails (a panic in its handler or in a task it owns) fails the
//! snapshots it was serving, and is spawned again with the same bounds; the
//! next snapshot gets the new stage. A publisher is spawned again at the
//! next request for its partition. Stages that keep failing (more than
//! [`MAX_RESTARTS`] times within [`RESTART_WINDOW`]) stop the supervisor,
//! for the host to see.
//!
//! Longer than most files here on purpose: the actor with its messages, its
//! state and the bookkeeping of requests in flight and of shutdown; its
//! stages and their restarts are in `stages.rs`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::rpc::CallResult;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

mod stages;

use stages::{has_stopped, spawn_chunker, spawn_exporter, spawn_uploader};

use crate::actors::coordinator::{
    Coordinator, CoordinatorArgs, SnapshotError, SnapshotOutcome, SnapshotRequest, Stages,
};
use crate::actors::publisher::{Publisher, PublisherArgs, PublisherMsg};
use crate::config::{PartitionSpec, PipelineConfig};
use crate::flow::{BoundedMailbox, BufferPool, Credits, MemoryBudget, PipelineStats};
use crate::format::PartitionId;
use crate::metrics as m;
use crate::partition::PartitionStore;
use crate::repository::Repository;

/// Restarts allowed within [`RESTART_WINDOW`] before the supervisor gives up.
pub const MAX_RESTARTS: usize = 5;
/// The window [`MAX_RESTARTS`] is counted in.
pub const RESTART_WINDOW: Duration = Duration::from_secs(10);

/// The messages a host sends to the supervisor.
pub enum SupervisorMsg {
    /// Take a snapshot and answer with its outcome.
    Snapshot(
        SnapshotRequest,
        RpcReplyPort<Result<SnapshotOutcome, SnapshotError>>,
    ),
    /// Take no more requests; let the snapshots in flight finish within the
    /// deadline, then cancel the rest (their uploads are aborted, nothing is
    /// published). Answered once none is left.
    Shutdown(Duration, RpcReplyPort<ShutdownReport>),
    /// The supervisor's own bookkeeping; a host never sends it.
    Internal(Internal),
}

/// Messages the supervisor sends itself.
pub struct Internal(InternalMsg);

enum InternalMsg {
    /// A snapshot's coordinator is done, either way.
    Finished(PartitionId, Box<Result<SnapshotOutcome, SnapshotError>>),
    /// The shutdown deadline has passed.
    Deadline,
}

/// How a shutdown went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ShutdownReport {
    /// Snapshots that were running when the shutdown began.
    pub in_flight: usize,
    /// Of those, the ones cancelled at the deadline.
    pub cancelled: usize,
}

/// Why the supervisor did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The pipeline's configuration cannot work with the repository.
    #[error("{0}")]
    Config(String),
    /// The supervisor or one of its stages failed to start.
    #[error("cannot start the snapshot pipeline: {0}")]
    Spawn(#[from] ractor::SpawnErr),
}

/// The supervisor actor; see the module documentation.
pub struct Supervisor;

/// What the supervisor is started with.
pub struct SupervisorArgs {
    /// How the pipeline runs.
    pub config: PipelineConfig,
    /// The database the partitions live in.
    pub partitions: PartitionStore,
    /// Where snapshots go.
    pub repository: Repository,
    /// Partitions that are not found the default way.
    pub overrides: HashMap<PartitionId, PartitionSpec>,
    /// Counters of the pipeline's memory and progress, shared with the host.
    pub stats: Arc<PipelineStats>,
    /// A memory budget shared with the host's other transfers (downloads,
    /// scrubs): parts and requests in flight are drawn from it instead of
    /// from `config.max_parts_in_flight`.
    pub budget: Option<MemoryBudget>,
}

impl SupervisorArgs {
    /// Arguments with no overrides and fresh counters.
    pub fn new(config: PipelineConfig, partitions: PartitionStore, repository: Repository) -> Self {
        SupervisorArgs {
            config,
            partitions,
            repository,
            overrides: HashMap::new(),
            stats: Arc::new(PipelineStats::default()),
            budget: None,
        }
    }
}

/// A snapshot in flight.
struct Running {
    coordinator: ActorId,
    reply: RpcReplyPort<Result<SnapshotOutcome, SnapshotError>>,
    cancel: CancellationToken,
}

/// A shutdown waiting for the snapshots in flight.
struct Closing {
    reply: RpcReplyPort<ShutdownReport>,
    in_flight: usize,
    cancelled: usize,
}

/// The supervisor's state; opaque to hosts.
pub struct SupervisorState {
    config: Arc<PipelineConfig>,
    partitions: PartitionStore,
    repository: Repository,
    overrides: HashMap<PartitionId, PartitionSpec>,
    stats: Arc<PipelineStats>,
    chunker_credits: Credits,
    uploader_credits: Credits,
    /// The uploads' memory and requests: the host's budget, or one of
    /// `config.max_parts_in_flight` requests; every uploader the supervisor
    /// starts shares it.
    budget: MemoryBudget,
    /// The chunker's part buffers, one per credit of `budget`, made when
    /// the supervisor starts and kept across chunker restarts.
    pool: BufferPool,
    stages: Stages,
    publishers: HashMap<PartitionId, ActorRef<PublisherMsg>>,
    running: HashMap<PartitionId, Running>,
    /// Cancels every snapshot when the supervisor stops.
    cancel: CancellationToken,
    closing: Option<Closing>,
    accepting: bool,
    restarts: Vec<Instant>,
}

impl Supervisor {
    /// Starts the supervisor and its pipeline, once the configuration is
    /// checked against the repository.
    pub async fn start(
        args: SupervisorArgs,
    ) -> Result<(ActorRef<SupervisorMsg>, tokio::task::JoinHandle<()>), StartError> {
        args.config
            .check(&args.repository)
            .map_err(StartError::Config)?;
        Ok(Actor::spawn(None, Supervisor, args).await?)
    }

    /// Stops taking requests and waits for the snapshots in flight, cancelling
    /// those still running after `deadline`.
    pub async fn shutdown(
        supervisor: &ActorRef<SupervisorMsg>,
        deadline: Duration,
    ) -> Option<ShutdownReport> {
        match supervisor
            .call(|reply| SupervisorMsg::Shutdown(deadline, reply), None)
            .await
        {
            Ok(CallResult::Success(report)) => Some(report),
            _ => None,
        }
    }

    /// Sends a snapshot request and waits for its outcome.
    pub async fn snapshot(
        supervisor: &ActorRef<SupervisorMsg>,
        request: SnapshotRequest,
    ) -> Result<SnapshotOutcome, SnapshotError> {
        match supervisor
            .call(|reply| SupervisorMsg::Snapshot(request, reply), None)
            .await
        {
            Ok(CallResult::Success(result)) => result,
            Ok(_) | Err(_) => Err(SnapshotError::Stopped("supervisor".into())),
        }
    }
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: SupervisorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        for stage in ["exporter", "chunker", "uploader", "publisher"] {
            m::stage_restarts(stage).increment(0);
        }
        args.config.check(&args.repository)?;
        let config = Arc::new(args.config);
        let chunker_credits = Credits::new("chunk", config.chunker_queue);
        let budget = args
            .budget
            .clone()
            .unwrap_or_else(|| MemoryBudget::for_requests(config.max_parts_in_flight));
        let uploader_credits = Credits::from_budget("upload", &budget);
        // One buffer per credit a part can hold.
        let pool = BufferPool::default();
        let capacity =
            crate::actors::chunker::buffer_capacity(config.part_size, config.encryption.is_some());
        pool.prepare(budget.parts(), capacity).await;
        Ok(SupervisorState {
            stages: Stages {
                exporter: spawn_exporter(&myself, &config, &args.partitions).await?,
                chunker: BoundedMailbox::new(
                    spawn_chunker(&myself, &args.stats, &pool).await?,
                    chunker_credits.clone(),
                ),
                uploader: BoundedMailbox::new(
                    spawn_uploader(&myself, &config, &args.repository, &args.stats, &budget)
                        .await?,
                    uploader_credits.clone(),
                ),
            },
            config,
            partitions: args.partitions,
            repository: args.repository,
            overrides: args.overrides,
            stats: args.stats,
            chunker_credits,
            uploader_credits,
            budget,
            pool,
            publishers: HashMap::new(),
            running: HashMap::new(),
            cancel: CancellationToken::new(),
            closing: None,
            accepting: true,
            restarts: Vec::new(),
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.cancel.cancel();
        for (_, running) in state.running.drain() {
            let _ = running
                .reply
                .send(Err(SnapshotError::Stopped("supervisor".into())));
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Snapshot(request, reply) => state.start(&myself, request, reply).await?,
            SupervisorMsg::Internal(Internal(InternalMsg::Finished(partition, result))) => {
                state.finished(partition, *result);
            }
            SupervisorMsg::Shutdown(deadline, reply) => {
                state.accepting = false;
                let in_flight = state.running.len();
                state.closing = Some(Closing {
                    reply,
                    in_flight,
                    cancelled: 0,
                });
                if in_flight > 0 {
                    // ractor's timer: a message to ourselves, nothing to own.
                    myself.send_after(deadline, || {
                        SupervisorMsg::Internal(Internal(InternalMsg::Deadline))
                    });
                }
                state.answer_shutdown_if_done();
            }
            SupervisorMsg::Internal(Internal(InternalMsg::Deadline)) => {
                let Some(closing) = &mut state.closing else {
                    return Ok(());
                };
                for running in state.running.values() {
                    if !running.cancel.is_cancelled() {
                        running.cancel.cancel();
                        closing.cancelled += 1;
                    }
                }
                if closing.cancelled > 0 {
                    tracing::warn!(
                        cancelled = closing.cancelled,
                        "shutdown deadline reached; cancelling snapshots in flight"
                    );
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(who, error) => {
                state.failed(&myself, who, error.to_string()).await?;
            }
            SupervisionEvent::ActorTerminated(who, _, _) => {
                state.publishers.retain(|_, p| p.get_id() != who.get_id());
            }
            _ => {}
        }
        Ok(())
    }
}

/// However the supervisor ends (ractor skips `post_stop` when it fails),
/// every snapshot it started is cancelled.
impl Drop for SupervisorState {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl SupervisorState {
    async fn start(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        request: SnapshotRequest,
        reply: RpcReplyPort<Result<SnapshotOutcome, SnapshotError>>,
    ) -> Result<(), ActorProcessingErr> {
        let partition = request.partition;
        if !self.accepting {
            let _ = reply.send(Err(SnapshotError::Stopped("shutting down".into())));
            return Ok(());
        }
        if self.running.contains_key(&partition) {
            let _ = reply.send(Err(SnapshotError::InProgress(partition)));
            return Ok(());
        }
        m::snapshots_started(partition.0).increment(1);
        let spec = self
            .overrides
            .get(&partition)
            .cloned()
            .unwrap_or_else(|| PartitionSpec::for_partition(partition));
        // Refused before anything starts: a snapshot's lease is written
        // while its export runs, and a partition that is not here should
        // leave nothing in the repository.
        if !self.partitions.has_column_family(&spec.cf) {
            let error = SnapshotError::UnknownPartition {
                partition,
                cf: spec.cf,
            };
            m::snapshots_failed(partition.0, error.reason()).increment(1);
            let _ = reply.send(Err(error));
            return Ok(());
        }
        self.ensure_stages(myself).await?;
        let publisher = self.publisher(myself, partition).await?;
        let cancel = self.cancel.child_token();
        let report_to = myself.clone();
        let args = CoordinatorArgs {
            request,
            spec,
            config: self.config.clone(),
            repository: self.repository.clone(),
            stages: self.stages.clone(),
            publisher,
            cancel: cancel.clone(),
            report: Box::new(move |result| {
                let msg = InternalMsg::Finished(partition, Box::new(result));
                let _ = report_to.cast(SupervisorMsg::Internal(Internal(msg)));
            }),
            stats: self.stats.clone(),
        };
        match Actor::spawn_linked(None, Coordinator, args, myself.get_cell()).await {
            Ok((coordinator, _)) => {
                self.running.insert(
                    partition,
                    Running {
                        coordinator: coordinator.get_id(),
                        reply,
                        cancel,
                    },
                );
            }
            Err(e) => {
                let error = SnapshotError::Stopped(format!("cannot start the snapshot: {e}"));
                m::snapshots_failed(partition.0, error.reason()).increment(1);
                let _ = reply.send(Err(error));
            }
        }
        Ok(())
    }

    fn finished(&mut self, partition: PartitionId, result: Result<SnapshotOutcome, SnapshotError>) {
        let Some(running) = self.running.remove(&partition) else {
            return;
        };
        // Whatever of the snapshot is still queued or in flight (its
        // coordinator failed, say) stops now.
        running.cancel.cancel();
        match &result {
            Ok(o) => {
                m::snapshots_succeeded(partition.0).increment(1);
                tracing::info!(
                    partition = %partition, snapshot_id = %o.snapshot_id,
                    lsn = %o.min_applied_lsn, bytes = o.bytes, files = o.files,
                    duration_ms = o.duration.as_millis() as u64, "snapshot published"
                );
            }
            Err(e) => {
                m::snapshots_failed(partition.0, e.reason()).increment(1);
                tracing::warn!(partition = %partition, reason = e.reason(), error = %e, "snapshot failed");
            }
        }
        let _ = running.reply.send(result);
        self.answer_shutdown_if_done();
    }

    fn answer_shutdown_if_done(&mut self) {
        if !self.running.is_empty() {
            return;
        }
        if let Some(closing) = self.closing.take() {
            let _ = closing.reply.send(ShutdownReport {
                in_flight: closing.in_flight,
                cancelled: closing.cancelled,
            });
        }
    }

    /// The partition's publisher, spawned if it has none or if it stopped.
    async fn publisher(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        partition: PartitionId,
    ) -> Result<ActorRef<PublisherMsg>, ActorProcessingErr> {
        if let Some(p) = self.publishers.get(&partition) {
            if !has_stopped(&p.get_cell()) {
                return Ok(p.clone());
            }
            self.publishers.remove(&partition);
            m::stage_restarts("publisher").increment(1);
            self.stats.restarted();
        }
        let (publisher, _) = Actor::spawn_linked(
            None,
            Publisher,
            PublisherArgs {
                partition,
                repository: self.repository.clone(),
                retention: self.config.retention,
            },
            myself.get_cell(),
        )
        .await?;
        self.publishers.insert(partition, publisher.clone());
        Ok(publisher)
    }
}
