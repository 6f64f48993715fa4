//! `rocksnap snapshot`: one snapshot of one column family.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use super::progress::Progress;
use super::{parse_lsn, parse_partition, CliResult, PipelineArgs};
use rocksnap::format::{Dialect, Lsn, PartitionId};
use rocksnap::partition::{cf_name, PartitionStore};
use rocksnap::PipelineStats;
use rocksnap::{LsnSource, OpenMode, PartitionSpec, SnapshotRequest, Supervisor, SupervisorArgs};

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// Path of the RocksDB database (it must not be open in another process).
    #[arg(long)]
    pub db: PathBuf,
    /// Partition id the snapshot is published under.
    #[arg(long, value_parser = parse_partition)]
    pub partition: PartitionId,
    /// Repository URL or directory to publish to.
    #[arg(long)]
    pub to: String,
    #[command(flatten)]
    pub s3: super::S3Args,
    /// Column family to export [default: data-<PARTITION>].
    #[arg(long)]
    pub cf: Option<String>,
    /// LSN to record [default: the LSN stored in the partition, else the
    /// database's latest sequence number; required with --format restate,
    /// as the partition's applied LSN in the host's log].
    #[arg(long, value_parser = parse_lsn)]
    pub lsn: Option<Lsn>,
    /// With --format restate: the log the partition's records come from
    /// [default: the partition id, Restate's default log for it].
    #[arg(long)]
    pub log_id: Option<u64>,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub pipeline: PipelineArgs,
}

pub async fn run(args: SnapshotArgs) -> CliResult {
    let restate = args.pipeline.format.dialect == Dialect::Restate;
    if restate && args.lsn.is_none() {
        return Err("--format restate needs --lsn: the partition's applied LSN in the host's log (Restate resumes its log after it)".into());
    }
    if !restate && args.log_id.is_some() {
        return Err("--log-id is written only with --format restate".into());
    }
    let repository =
        super::open_repository(&args.to, OpenMode::CreateMissing, &args.s3.options()).await?;
    repository.check_conditional_writes().await?;
    let partitions = PartitionStore::open_existing(&args.db)?;
    let cf = args.cf.clone().unwrap_or_else(|| cf_name(args.partition));
    if !partitions.has_column_family(&cf) {
        let mut names = rocksdb::DB::list_cf(&rocksdb::Options::default(), &args.db)?;
        names.sort();
        return Err(format!(
            "{} has no column family {cf:?} (it has: {})",
            args.db.display(),
            names.join(", ")
        )
        .into());
    }
    let stats = Arc::new(PipelineStats::default());
    let mut sup_args = SupervisorArgs::new(args.pipeline.config()?, partitions, repository);
    sup_args.stats = stats.clone();
    sup_args.overrides.insert(
        args.partition,
        PartitionSpec {
            cf,
            lsn: args.lsn.map(LsnSource::Fixed).unwrap_or_default(),
            log_id: args.log_id,
            ..PartitionSpec::for_partition(args.partition)
        },
    );
    let (supervisor, handle) = Supervisor::start(sup_args).await?;
    let progress = Progress::upload(stats, format!("partition {}", args.partition));
    let result = Supervisor::snapshot(
        &supervisor,
        SnapshotRequest {
            partition: args.partition,
            min_lsn: None,
        },
    )
    .await;
    progress.finish();
    supervisor.stop(None);
    let _ = handle.await;
    let outcome = result?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else {
        println!(
            "published {} of partition {} at LSN {}: {} files, {} in {:.2?}\n  {}",
            outcome.snapshot_id,
            outcome.partition_id,
            outcome.min_applied_lsn,
            outcome.files,
            indicatif::HumanBytes(outcome.bytes),
            outcome.duration,
            outcome.key
        );
    }
    Ok(())
}
