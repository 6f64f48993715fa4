//! `rocksnap list` and `rocksnap show`: read-only views of a repository.

use chrono::{DateTime, Utc};
use clap::Args;
use serde::Serialize;

use super::{parse_partition, parse_snapshot_id, CliResult};
use rocksnap::format::{LatestPointer, Lsn, PartitionId, SnapshotId};
use rocksnap::repository::{DescribedSnapshot, RepoError, Repository};

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub repo: super::FromArgs,
    /// Only this partition.
    #[arg(long, value_parser = parse_partition)]
    pub partition: Option<PartitionId>,
    /// Show the newest N snapshots of each partition (0: all of them).
    /// Each shown costs one read of its metadata.json; the older ones are
    /// counted from the listing alone.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub limit: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub repo: super::FromArgs,
    #[arg(long, value_parser = parse_partition)]
    pub partition: PartitionId,
    /// Snapshot id (snap_<ULID>) [default: the one latest.json points at].
    #[arg(long, value_parser = parse_snapshot_id)]
    pub snapshot: Option<SnapshotId>,
    /// Print metadata.json as stored (checked) instead of a summary.
    #[arg(long)]
    pub json: bool,
}

/// One partition as `list` shows it.
#[derive(Debug, Serialize)]
pub struct PartitionListing {
    pub partition_id: PartitionId,
    pub latest: Option<LatestPointer>,
    /// Why `latest.json` could not be read, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_error: Option<String>,
    /// The newest ones (`--limit`), oldest first.
    pub snapshots: Vec<SnapshotListing>,
    /// Older snapshot folders left out by `--limit`.
    pub older_not_shown: usize,
}

#[derive(Debug, Serialize)]
pub struct SnapshotListing {
    pub path: String,
    pub snapshot_id: SnapshotId,
    pub min_applied_lsn: Lsn,
    pub latest: bool,
    /// Whether its `metadata.json` exists and is valid: a snapshot without
    /// one is an upload in progress or one that failed.
    pub complete: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// The encryption scheme, if the snapshot is encrypted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub async fn list(args: ListArgs) -> CliResult {
    let repo = args.repo.open().await?;
    let partitions = super::partitions_of(&repo, args.partition).await?;
    let mut listings = Vec::with_capacity(partitions.len());
    let limit = (args.limit > 0).then_some(args.limit);
    for partition in partitions {
        listings.push(list_partition(&repo, partition, limit).await?);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&listings)?);
        return Ok(());
    }
    if listings.is_empty() {
        println!("no partitions in {}", repo.display());
    }
    for l in &listings {
        match (&l.latest, &l.latest_error) {
            (Some(p), _) => println!(
                "partition {}: latest {} at LSN {}",
                l.partition_id, p.snapshot_id, p.min_applied_lsn
            ),
            (None, Some(e)) => {
                println!("partition {}: latest.json unreadable: {e}", l.partition_id)
            }
            (None, None) => println!("partition {}: no latest.json", l.partition_id),
        }
        if l.older_not_shown > 0 {
            println!(
                "    ({} older snapshots not shown; --limit 0 shows all)",
                l.older_not_shown
            );
        }
        for s in &l.snapshots {
            let mark = if s.latest { "*" } else { " " };
            match (s.complete, &s.error) {
                (true, _) => println!(
                    "  {mark} {:>20}  {}  {}  {:>4} files  {:>10}  {}{}",
                    s.min_applied_lsn.0,
                    s.snapshot_id,
                    s.created_at
                        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                        .unwrap_or_default(),
                    s.files.unwrap_or(0),
                    indicatif::HumanBytes(s.bytes.unwrap_or(0)).to_string(),
                    s.node_name.as_deref().unwrap_or(""),
                    if s.encryption.is_some() {
                        "  encrypted"
                    } else {
                        ""
                    },
                ),
                (false, Some(e)) => println!(
                    "  {mark} {:>20}  {}  unusable: {e}",
                    s.min_applied_lsn.0, s.snapshot_id
                ),
                (false, None) => println!(
                    "  {mark} {:>20}  {}  incomplete (no metadata.json)",
                    s.min_applied_lsn.0, s.snapshot_id
                ),
            }
        }
    }
    Ok(())
}

async fn list_partition(
    repo: &Repository,
    partition: PartitionId,
    limit: Option<usize>,
) -> Result<PartitionListing, RepoError> {
    let (latest, latest_error) = match repo.read_pointer(partition).await {
        Ok(p) => (p.map(|p| p.pointer), None),
        Err(e @ (RepoError::Malformed { .. } | RepoError::Foreign { .. })) => {
            (None, Some(e.to_string()))
        }
        Err(e) => return Err(e),
    };
    let mut snapshots = Vec::new();
    let (described, older_not_shown) = repo.newest_snapshots(partition, limit).await?;
    for DescribedSnapshot { folder, metadata } in described {
        let is_latest = latest.as_ref().is_some_and(|l| l.path == folder.name);
        let mut s = SnapshotListing {
            path: folder.name.clone(),
            snapshot_id: folder.snapshot_id,
            min_applied_lsn: folder.lsn,
            latest: is_latest,
            complete: false,
            created_at: None,
            node_name: None,
            files: None,
            bytes: None,
            encryption: None,
            error: None,
        };
        match metadata {
            Ok(meta) => {
                s.complete = true;
                s.created_at = Some(meta.created_at);
                s.node_name = Some(meta.node_name.clone());
                s.files = Some(meta.files.len());
                s.bytes = Some(meta.total_bytes());
                s.encryption = meta.encryption.clone();
            }
            Err(RepoError::Missing { .. }) => {}
            Err(e @ (RepoError::Malformed { .. } | RepoError::Foreign { .. })) => {
                s.error = Some(e.to_string())
            }
            Err(e) => return Err(e),
        }
        snapshots.push(s);
    }
    Ok(PartitionListing {
        partition_id: partition,
        latest,
        latest_error,
        snapshots,
        older_not_shown,
    })
}

pub async fn show(args: ShowArgs) -> CliResult {
    let repo = args.repo.open().await?;
    let folder = match args.snapshot {
        None => match repo.read_pointer(args.partition).await? {
            Some(p) => p.pointer.path,
            None => {
                return Err(format!(
                    "partition {} has no latest.json in {}",
                    args.partition,
                    repo.display()
                )
                .into())
            }
        },
        Some(id) => repo
            .list_snapshots(args.partition)
            .await?
            .into_iter()
            .find(|f| f.snapshot_id == id)
            .map(|f| f.name)
            .ok_or_else(|| format!("partition {} has no snapshot {id}", args.partition))?,
    };
    let meta = repo.read_metadata(args.partition, &folder).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&meta)?);
        return Ok(());
    }
    println!("snapshot      {}", meta.snapshot_id);
    println!(
        "partition     {} (keys {}..{})",
        meta.partition_id, meta.key_range.start, meta.key_range.end
    );
    println!("cluster/node  {} / {}", meta.cluster_name, meta.node_name);
    println!("created       {}", meta.created_at);
    println!("min LSN       {}", meta.min_applied_lsn);
    println!("comparator    {}", meta.db_comparator_name);
    if let Some(scheme) = &meta.encryption {
        let mut keys: Vec<&str> = meta
            .files
            .iter()
            .filter_map(|f| Some(f.encryption.as_ref()?.kek_id.as_str()))
            .collect();
        keys.sort();
        keys.dedup();
        println!("encryption    {scheme}, key {}", keys.join(", "));
    }
    println!(
        "location      {}",
        repo.layout().snapshot_dir(meta.partition_id, &folder)
    );
    println!(
        "files         {} ({})",
        meta.files.len(),
        indicatif::HumanBytes(meta.total_bytes())
    );
    for f in &meta.files {
        println!(
            "  {:<12} L{} {:>10}  seq {}..{}  {} entries  crc32c {}",
            f.name.trim_start_matches('/'),
            f.level,
            indicatif::HumanBytes(f.size).to_string(),
            f.smallest_seqno,
            f.largest_seqno,
            f.num_entries,
            f.checksum.as_deref().unwrap_or("-"),
        );
    }
    Ok(())
}
