//! `rocksnap node`: a node process built from the library's parts, the way a
//! host would embed them. It opens the partition database, starts the
//! supervisor, serves an admin endpoint and `/metrics`, snapshots by policy,
//! optionally applies a synthetic workload, and shuts down cleanly on SIGINT
//! or SIGTERM.

pub mod admin;
pub mod config;
pub mod policy;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use ractor::ActorRef;
use tokio::sync::watch;

use config::NodeConfig;
use rocksnap::format::{Lsn, PartitionId};
use rocksnap::metrics as m;
use rocksnap::RateLimit;
use rocksnap::{
    Destination, OpenMode, PartitionStore, PipelineConfig, Repository, Supervisor, SupervisorArgs,
    SupervisorMsg,
};

/// What the admin endpoint and the policy share.
pub struct NodeState {
    pub cluster: String,
    pub supervisor: ActorRef<SupervisorMsg>,
    pub repository: Repository,
    pub partitions: PartitionStore,
    pub ids: Vec<PartitionId>,
    /// Safe log-trim point per partition, refreshed after every snapshot.
    pub trim_points: Mutex<HashMap<PartitionId, Option<Lsn>>>,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// Where each partition's data came from at start.
    pub origins: HashMap<PartitionId, rocksnap::bootstrap::Origin>,
    /// What state-changing admin requests must carry, if anything.
    pub admin_token: Option<config::AdminToken>,
    /// How restores, fast-forwards and scrubs download: the memory budget
    /// and bandwidth uploads share, the part size, the keys of encrypted
    /// snapshots.
    download: rocksnap::restore::RestoreOptions,
    /// The last scrub of each partition.
    pub scrubs: Mutex<HashMap<PartitionId, ScrubStatus>>,
}

/// How a partition's last scrub ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScrubStatus {
    /// When it ended.
    pub at: chrono::DateTime<chrono::Utc>,
    /// `ok`, `no_snapshot`, or the reason it failed.
    pub outcome: &'static str,
    /// The snapshot read.
    pub snapshot_id: Option<String>,
    /// What failed, naming the file.
    pub error: Option<String>,
}

impl NodeState {
    /// Download options that share the node's memory budget and bandwidth,
    /// with progress counters of their own.
    pub fn download_options(&self) -> rocksnap::restore::RestoreOptions {
        rocksnap::restore::RestoreOptions {
            progress: Arc::default(),
            ..self.download.clone()
        }
    }
}

impl NodeState {
    /// Reads the partition's pointer and oldest kept snapshot again, and
    /// updates the gauges that describe them.
    pub async fn refresh(&self, partition: PartitionId) {
        let pointer = match self.repository.read_pointer(partition).await {
            Ok(p) => p.map(|p| p.pointer),
            Err(e) => {
                tracing::warn!(%partition, error = %e, "cannot read latest.json");
                return;
            }
        };
        if let Some(p) = &pointer {
            let age = chrono::Utc::now() - p.created_at;
            m::latest_lsn(partition.0).set(p.min_applied_lsn.0 as f64);
            m::latest_timestamp(partition.0).set(p.created_at.timestamp() as f64);
            m::latest_age(partition.0).set(age.num_milliseconds() as f64 / 1000.0);
        }
        match self
            .repository
            .safe_trim_point_with(partition, pointer.as_ref())
            .await
        {
            Ok(trim) => {
                if let Some(lsn) = trim {
                    m::safe_trim_lsn(partition.0).set(lsn.0 as f64);
                }
                self.trim_points
                    .lock()
                    .expect("not poisoned")
                    .insert(partition, trim);
            }
            Err(e) => tracing::warn!(%partition, error = %e, "cannot read the safe trim point"),
        }
    }

    pub fn trim_point(&self, partition: PartitionId) -> Option<Lsn> {
        self.trim_points
            .lock()
            .expect("not poisoned")
            .get(&partition)
            .copied()
            .flatten()
    }
}

/// Runs a node until SIGINT or SIGTERM.
pub async fn run(config_path: &Path) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let config = NodeConfig::load(config_path)?;
    let metrics = install_prometheus()?;
    let ids: Vec<PartitionId> = config
        .node
        .partitions
        .iter()
        .copied()
        .map(PartitionId)
        .collect();
    let dest = Destination::open_with(
        &config.repository.url,
        OpenMode::CreateMissing,
        &config.repository.s3,
    )?;
    dest.check().await?;
    let repository = Repository::new(dest);
    repository.check_conditional_writes().await?;
    let rate_limit = config
        .pipeline
        .rate_limit
        .map(|r| RateLimit::new(r.as_u64()));
    // Encrypted: the keyring from the file named, else from the environment.
    let keyring = match &config.encryption {
        None => None,
        Some(e) => {
            let keyring = rocksnap::crypto::Keyring::from_file_or_env(e.keyring.as_deref())?
                .ok_or_else(|| {
                    format!(
                        "[encryption] names no keyring file and {} is not set",
                        rocksnap::crypto::KEYRING_ENV
                    )
                })?;
            Some(std::sync::Arc::new(keyring))
        }
    };
    // One memory bound for every transfer of the node: the pipeline's parts
    // in flight, and the ranges restores and scrubs fetch.
    let budget = rocksnap::MemoryBudget::for_requests(config.pipeline.parts_in_flight);
    let part_size = config.pipeline.part_size.as_u64() as usize;
    // Partitions with no data are restored before the store is opened for writes.
    let restore_opts = rocksnap::restore::RestoreOptions {
        rate_limit: rate_limit.clone(),
        budget: Some(budget.clone()),
        part_size,
        keyring: keyring.clone(),
        ..Default::default()
    };
    let origins: HashMap<PartitionId, rocksnap::bootstrap::Origin> =
        rocksnap::bootstrap::bootstrap(
            &repository,
            &config.node.db,
            &ids,
            config.bootstrap.mode,
            &restore_opts,
        )
        .await?
        .into_iter()
        .map(|b| (b.partition_id, b.origin))
        .collect();
    let partitions = PartitionStore::open(&config.node.db, &ids)?;
    let pipeline = PipelineConfig {
        cluster_name: config.node.cluster.clone(),
        node_name: config.node.name.clone(),
        part_size,
        max_parts_in_flight: config.pipeline.parts_in_flight,
        max_concurrent_exports: config.policy.max_concurrent_exports,
        staging_dir: config.pipeline.staging_dir.clone(),
        rate_limit: rate_limit.clone(),
        format: config.pipeline.format.version,
        dialect: config.pipeline.format.dialect,
        encryption: keyring.clone(),
        retention: rocksnap::Retention {
            keep_last: config.retention.keep_last,
            max_age: config.retention.max_age,
        },
        ..PipelineConfig::default()
    };
    let mut supervisor_args = SupervisorArgs::new(pipeline, partitions.clone(), repository.clone());
    supervisor_args.budget = Some(budget.clone());
    let (supervisor, supervisor_done) = Supervisor::start(supervisor_args).await?;
    let state = Arc::new(NodeState {
        cluster: config.node.cluster.clone(),
        supervisor: supervisor.clone(),
        repository,
        partitions,
        ids: ids.clone(),
        trim_points: Mutex::default(),
        metrics,
        admin_token: config.node.admin_token.clone(),
        origins,
        download: restore_opts,
        scrubs: Mutex::default(),
    });
    if let Some(every) = config.policy.every {
        for &id in &ids {
            m::snapshot_interval(id.0).set(every.as_secs_f64());
        }
    }
    for &id in &ids {
        state.refresh(id).await;
    }

    let listener = tokio::net::TcpListener::bind(config.node.admin_addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.node.admin_addr))?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    // The node's own tasks: each stops when `stop` is set and is awaited
    // below, in order, before the supervisor is shut down.
    let server = tokio::spawn(admin::serve(listener, state.clone(), stop_rx.clone()));
    let policy = tokio::spawn(policy::run(state.clone(), config.policy, stop_rx.clone()));
    let workload = config
        .workload
        .map(|w| tokio::spawn(policy::workload(state.clone(), w, stop_rx.clone())));
    let gc = config
        .gc
        .map(|g| tokio::spawn(policy::gc(state.clone(), g, stop_rx.clone())));
    let scrub = config
        .scrub
        .map(|s| tokio::spawn(policy::scrub(state.clone(), s, stop_rx.clone())));
    // The one line a supervisor script or a test waits for.
    println!(
        "rocksnap node {} listening on http://{addr}",
        config.node.name
    );
    tracing::info!(node = %config.node.name, %addr, partitions = ids.len(), "node started");

    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    if let Some(w) = workload {
        let _ = w.await;
    }
    let _ = policy.await;
    if let Some(gc) = gc {
        let _ = gc.await;
    }
    if let Some(scrub) = scrub {
        let _ = scrub.await;
    }
    let report = Supervisor::shutdown(&supervisor, config.node.shutdown_deadline).await;
    tracing::info!(?report, "snapshots in flight settled");
    let _ = server.await;
    supervisor.stop(None);
    let _ = supervisor_done.await;
    Ok(())
}

/// Installs the Prometheus recorder for this process; the handle renders
/// the text exposition format for a `/metrics` endpoint.
fn install_prometheus() -> Result<PrometheusHandle, String> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&[
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
        ])
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
    m::describe();
    Ok(handle)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// How long to wait between two policy checks.
pub(crate) const TICK: Duration = Duration::from_millis(100);
