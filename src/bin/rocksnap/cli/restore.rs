//! `rocksnap restore` and `rocksnap verify`.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use super::progress::Progress;
use super::{parse_lsn, parse_partition, parse_snapshot_id, CliResult};
use rocksnap::format::{Lsn, PartitionId, SnapshotId};
use rocksnap::restore::{self, RestoreOptions, RestoreTarget};
use rocksnap::TransferProgress;

/// Download settings shared by `restore` and `verify`.
#[derive(Debug, Clone, Args)]
pub struct DownloadArgs {
    /// Ranged GETs in flight at once, across all files.
    #[arg(long, default_value_t = rocksnap::DEFAULT_PARTS_IN_FLIGHT)]
    pub concurrency: usize,
    /// Bytes per ranged GET, e.g. 8MiB.
    #[arg(long, default_value = "8MiB", value_parser = super::parse_size)]
    pub part_size: u64,
    /// Download bandwidth limit in bytes per second, e.g. 50MiB [default: none].
    #[arg(long, value_parser = super::parse_size)]
    pub rate_limit: Option<u64>,
    /// Where files are staged [restore: <db>.rocksnap-staging beside the
    /// database, so files move by hard link (staged on another disk, they
    /// are copied beside the database before the swap, and need room there
    /// too); verify: the system's temp dir].
    #[arg(long)]
    pub staging_dir: Option<PathBuf>,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub keys: super::KeyringArgs,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub repo: super::FromArgs,
    #[arg(long, value_parser = parse_partition)]
    pub partition: PartitionId,
    /// RocksDB database to restore into; created if missing, and not open elsewhere.
    #[arg(long)]
    pub db: PathBuf,
    /// Restore exactly this snapshot (snap_<ULID>).
    #[arg(long, value_parser = parse_snapshot_id, conflicts_with_all = ["min_lsn", "no_fallback"])]
    pub snapshot: Option<SnapshotId>,
    /// Restore the newest usable snapshot at this LSN or above.
    #[arg(long, value_parser = parse_lsn, conflicts_with = "no_fallback")]
    pub min_lsn: Option<Lsn>,
    /// Restore the latest snapshot or fail; by default an unusable latest
    /// snapshot falls back to the next older one.
    #[arg(long)]
    pub no_fallback: bool,
    /// Column family to restore into [default: data-<PARTITION>]; replaced if it exists.
    #[arg(long)]
    pub cf: Option<String>,
    #[command(flatten)]
    pub download: DownloadArgs,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub repo: super::FromArgs,
    #[arg(long, value_parser = parse_partition)]
    pub partition: PartitionId,
    /// Snapshot to verify [default: the latest].
    #[arg(long, value_parser = parse_snapshot_id)]
    pub snapshot: Option<SnapshotId>,
    /// Also read every entry of every SST and check its keys and sequence
    /// numbers against metadata.json.
    #[arg(long)]
    pub deep: bool,
    #[command(flatten)]
    pub download: DownloadArgs,
}

impl DownloadArgs {
    fn options(&self, cf: Option<String>) -> Result<RestoreOptions, rocksnap::crypto::CryptoError> {
        Ok(RestoreOptions {
            cf,
            concurrency: self.concurrency,
            part_size: self.part_size as usize,
            staging_dir: self.staging_dir.clone(),
            progress: Arc::new(TransferProgress::default()),
            rate_limit: self.rate_limit.map(rocksnap::RateLimit::new),
            budget: None,
            keyring: self.keys.load()?,
        })
    }
}

pub async fn run_restore(args: RestoreArgs) -> CliResult {
    if args.download.concurrency == 0 {
        return Err("--concurrency must be above zero".into());
    }
    let repo = args.repo.open().await?;
    let target = match (args.snapshot, args.min_lsn, args.no_fallback) {
        (Some(id), _, _) => RestoreTarget::Snapshot(id),
        (None, Some(lsn), _) => RestoreTarget::MinLsn(lsn),
        (None, None, true) => RestoreTarget::Latest,
        (None, None, false) => RestoreTarget::LatestOrOlder,
    };
    let opts = args.download.options(args.cf.clone())?;
    let progress = Progress::download(
        opts.progress.clone(),
        format!("partition {}", args.partition),
    );
    let result = restore::restore(&repo, &args.db, args.partition, target, &opts).await;
    progress.finish();
    let outcome = result?;
    if args.download.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
        return Ok(());
    }
    for s in &outcome.skipped {
        println!("skipped {}: {}", s.snapshot_id, s.reason);
    }
    println!(
        "restored partition {} from {} into {}: {} files, {} in {:.2?}; resume the log after LSN {}",
        outcome.partition_id,
        outcome.snapshot_id,
        args.db.display(),
        outcome.files,
        indicatif::HumanBytes(outcome.bytes),
        outcome.duration,
        outcome.restored_lsn.unwrap_or(outcome.min_applied_lsn),
    );
    Ok(())
}

pub async fn run_verify(args: VerifyArgs) -> CliResult {
    if args.download.concurrency == 0 {
        return Err("--concurrency must be above zero".into());
    }
    let repo = args.repo.open().await?;
    let opts = args.download.options(None)?;
    let progress = Progress::download(
        opts.progress.clone(),
        format!("partition {}", args.partition),
    );
    let result = restore::verify(&repo, args.partition, args.snapshot, args.deep, &opts).await;
    progress.finish();
    let report = result?;
    if args.download.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let how = match (report.encrypted, report.authenticated, report.deep) {
            (true, false, _) => ", encrypted: the stored bytes' sizes and crc32c checked; give the keyring to authenticate every segment",
            (true, true, true) => ", every segment authenticated and every entry read",
            (true, true, false) => ", every segment authenticated",
            (false, _, true) => ", sizes and crc32c checked, every entry read",
            (false, _, false) => ", sizes and crc32c checked",
        };
        println!(
            "snapshot {} of partition {} is intact: {} files, {}{how}",
            report.snapshot_id,
            report.partition_id,
            report.files,
            indicatif::HumanBytes(report.bytes),
        );
    }
    Ok(())
}
