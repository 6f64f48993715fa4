//! `rocksnap demo`: the whole pipeline on the embedded default, a local directory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use futures::future::join_all;

use super::progress::Progress;
use super::{CliResult, PipelineArgs};
use rocksnap::format::{Lsn, PartitionId};
use rocksnap::restore::{self, RestoreOptions, RestoreTarget};
use rocksnap::PipelineStats;
use rocksnap::{
    Destination, OpenMode, PartitionStore, Repository, SnapshotRequest, Supervisor, SupervisorArgs,
};

/// Marks a directory as the demo's own, so a rerun may clear it.
const MARKER: &str = ".rocksnap-demo";

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Directory for the demo's database and repository.
    #[arg(long, default_value = "rocksnap-demo")]
    pub dir: PathBuf,
    /// Number of partitions.
    #[arg(long, default_value_t = 4)]
    pub partitions: u64,
    /// Records written to each partition per round (values of 1 KiB).
    #[arg(long, default_value_t = 5_000)]
    pub records: u64,
    /// Rounds of writes, each with a snapshot of every partition taken while writing.
    #[arg(long, default_value_t = 3)]
    pub rounds: u64,
    #[command(flatten)]
    pub pipeline: PipelineArgs,
}

pub async fn run(args: DemoArgs) -> CliResult {
    let started = Instant::now();
    prepare_dir(&args.dir)?;
    let db_path = args.dir.join("db");
    let repo_path = args.dir.join("repository");
    let ids: Vec<PartitionId> = (0..args.partitions).map(PartitionId).collect();
    let partitions = PartitionStore::open(&db_path, &ids)?;
    let repository = Repository::new(Destination::open(
        repo_path.to_str().ok_or("demo directory is not UTF-8")?,
        OpenMode::CreateMissing,
    )?);
    let stats = Arc::new(PipelineStats::default());
    let config = args.pipeline.config()?;
    // The keyring the pipeline loaded, for the restores below.
    let keyring = config.encryption.clone();
    let mut sup_args = SupervisorArgs::new(config, partitions.clone(), repository);
    sup_args.stats = stats.clone();
    let (supervisor, handle) = Supervisor::start(sup_args).await?;

    println!(
        "database   {}\nrepository {}\n",
        db_path.display(),
        repo_path.display()
    );
    let mut lsn = 0u64;
    let mut published = 0u64;
    // The demo's log: how many records each LSN wrote (their contents are
    // derived from partition, LSN and index, so they can be written again).
    let mut log: Vec<(u64, u64)> = Vec::new();
    for round in 1..=args.rounds {
        let written = Arc::new(AtomicU64::new(0));
        let writer = {
            let partitions = partitions.clone();
            let ids = ids.clone();
            let written = written.clone();
            let (records, first_lsn) = (args.records, lsn);
            tokio::task::spawn_blocking(move || {
                write_round(&partitions, &ids, records, first_lsn, &written)
            })
        };
        // Snapshot in the middle of the round, while the writer goes on.
        while written.load(Ordering::Relaxed) < args.records / 2 && !writer.is_finished() {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let progress = Progress::upload(stats.clone(), format!("round {round}"));
        let snapshots = join_all(ids.iter().map(|&partition| {
            Supervisor::snapshot(
                &supervisor,
                SnapshotRequest {
                    partition,
                    min_lsn: None,
                },
            )
        }))
        .await;
        let (last, batches) = writer.await??;
        lsn = last;
        log.extend(batches);
        progress.finish();
        for outcome in snapshots {
            let o = outcome?;
            published += o.bytes;
            println!(
                "round {round}: partition {} snapshot {} at LSN {:>6}: {:>2} files, {:>9} in {:.2?}",
                o.partition_id,
                o.snapshot_id,
                o.min_applied_lsn,
                o.files,
                indicatif::HumanBytes(o.bytes).to_string(),
                o.duration
            );
        }
    }
    // With the writers done, one more snapshot of the first partition, so the
    // restore below can be checked key by key against the source.
    let last = Supervisor::snapshot(
        &supervisor,
        SnapshotRequest {
            partition: ids[0],
            min_lsn: Some(Lsn(lsn)),
        },
    )
    .await?;
    supervisor.stop(None);
    let _ = handle.await;

    println!("\nrepository tree:");
    print_tree(&repo_path, 1)?;
    for id in &ids {
        let latest = repo_path
            .join(id.to_string())
            .join(rocksnap::format::LATEST);
        println!(
            "\npartition {id} latest.json:\n{}",
            std::fs::read_to_string(latest)?
        );
    }
    let restored = args.dir.join("restored-db");
    let repository = Repository::new(Destination::open(
        repo_path.to_str().ok_or("demo directory is not UTF-8")?,
        OpenMode::MustExist,
    )?);
    let outcome = restore::restore(
        &repository,
        &restored,
        ids[0],
        RestoreTarget::Latest,
        &RestoreOptions {
            keyring: keyring.clone(),
            ..RestoreOptions::default()
        },
    )
    .await?;
    let keys = compare_partition(&partitions, &restored, ids[0])?;
    println!(
        "\nrestored partition {} from {} into {} in {:.2?}: {keys} keys, every one equal to the source; resume the log after LSN {}",
        ids[0],
        outcome.snapshot_id,
        restored.display(),
        outcome.duration,
        outcome.restored_lsn.unwrap_or(outcome.min_applied_lsn),
    );
    if outcome.snapshot_id != last.snapshot_id {
        return Err("the restore did not pick the newest snapshot".into());
    }
    second_node(&args, &repository, &partitions, &ids, &log, keyring).await?;
    println!(
        "\npublished {} in {} snapshots; {} written to the database; {:.2?} in all",
        indicatif::HumanBytes(published + last.bytes),
        args.rounds * args.partitions + 1,
        indicatif::HumanBytes(args.rounds * args.partitions * args.records * 1024),
        started.elapsed()
    );
    Ok(())
}

/// A second node starts with an empty database: it bootstraps every
/// partition from the first node's repository, replays the log after each
/// snapshot's LSN, and must then hold exactly what the first node holds.
async fn second_node(
    args: &DemoArgs,
    repository: &Repository,
    first: &PartitionStore,
    ids: &[PartitionId],
    log: &[(u64, u64)],
    keyring: Option<Arc<rocksnap::crypto::Keyring>>,
) -> CliResult {
    let db = args.dir.join("node-2-db");
    println!(
        "\nnode 2 starts with an empty database at {}:",
        db.display()
    );
    let report = rocksnap::bootstrap::bootstrap(
        repository,
        &db,
        ids,
        rocksnap::bootstrap::BootstrapMode::IfMissing,
        &RestoreOptions {
            keyring,
            ..RestoreOptions::default()
        },
    )
    .await?;
    let store = PartitionStore::open(&db, ids)?;
    for b in report {
        let after = b.origin.resume_after().map_or(0, |l| l.0);
        let mut replayed = 0;
        for &(lsn, count) in log.iter().filter(|(lsn, _)| *lsn > after) {
            store.apply(b.partition_id, Lsn(lsn), batch(b.partition_id, lsn, count))?;
            replayed += count;
        }
        let cf = rocksnap::partition::cf_name(b.partition_id);
        let (mine, theirs) = (store.entries(&cf)?, first.entries(&cf)?);
        if mine != theirs {
            return Err(format!(
                "node 2's partition {} differs from node 1's ({} keys against {})",
                b.partition_id,
                mine.len(),
                theirs.len()
            )
            .into());
        }
        println!(
            "partition {}: bootstrapped at LSN {after}, replayed {replayed} records, equal ({} keys, digest {:08x})",
            b.partition_id,
            mine.len(),
            digest(&mine)
        );
    }
    Ok(())
}

/// A CRC32C over every key and value, with their lengths.
fn digest(entries: &[rocksnap::partition::Entry]) -> u32 {
    entries.iter().fold(0, |crc, (k, v)| {
        let crc = crc32c::crc32c_append(crc, &(k.len() as u64).to_be_bytes());
        let crc = crc32c::crc32c_append(crc, k);
        let crc = crc32c::crc32c_append(crc, &(v.len() as u64).to_be_bytes());
        crc32c::crc32c_append(crc, v)
    })
}

/// The records LSN `lsn` writes to a partition: `count` values of 1 KiB
/// that look random but are derived from the partition, the LSN and the index.
fn batch(partition: PartitionId, lsn: u64, count: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
    (0..count)
        .map(|i| {
            let mut x = (partition.0 << 48) ^ (lsn << 16) ^ i ^ 0x9e37_79b9_7f4a_7c15;
            let value = (0..1024)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            (format!("key-{lsn:010}-{i:08}").into_bytes(), value)
        })
        .collect()
}

/// Compares a partition in the source database and a restored one, key by
/// key; returns the number of keys.
fn compare_partition(
    source: &PartitionStore,
    restored: &Path,
    id: PartitionId,
) -> Result<usize, String> {
    let restored = PartitionStore::open_existing(restored).map_err(|e| e.to_string())?;
    let cf = rocksnap::partition::cf_name(id);
    let entries = |store: &PartitionStore| store.entries(&cf).map_err(|e| e.to_string());
    let (a, b) = (entries(source)?, entries(&restored)?);
    if a != b {
        return Err(format!(
            "restored partition {id} differs from the source ({} keys against {})",
            b.len(),
            a.len()
        ));
    }
    Ok(a.len())
}

/// Writes `records` values of 1 KiB to every partition, 100 per write batch,
/// each batch one LSN, counting records in `written`. Returns the last LSN
/// written and, per LSN, how many records it wrote.
fn write_round(
    partitions: &PartitionStore,
    ids: &[PartitionId],
    records: u64,
    mut lsn: u64,
    written: &AtomicU64,
) -> Result<(u64, Vec<(u64, u64)>), rocksnap::partition::PartitionError> {
    let mut next = 0u64;
    let mut log = Vec::new();
    while next < records {
        let count = (records - next).min(100);
        lsn += 1;
        for &p in ids {
            partitions.apply(p, Lsn(lsn), batch(p, lsn, count))?;
        }
        log.push((lsn, count));
        next += count;
        written.store(next, Ordering::Relaxed);
    }
    Ok((lsn, log))
}

fn prepare_dir(dir: &Path) -> CliResult {
    if dir.exists() {
        let empty = std::fs::read_dir(dir)?.next().is_none();
        if !empty && !dir.join(MARKER).exists() {
            return Err(format!(
                "{} exists and is not a demo directory; choose another with --dir",
                dir.display()
            )
            .into());
        }
        for sub in [
            "db",
            "repository",
            "db.rocksnap-staging",
            "restored-db",
            "restored-db.rocksnap-staging",
            "node-2-db",
            "node-2-db.rocksnap-staging",
        ] {
            let p = dir.join(sub);
            if p.exists() {
                std::fs::remove_dir_all(&p)?;
            }
        }
    }
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join(MARKER),
        b"created by rocksnap demo; safe to delete\n",
    )?;
    Ok(())
}

fn print_tree(dir: &Path, depth: usize) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let indent = "  ".repeat(depth);
        if e.file_type()?.is_dir() {
            println!("{indent}{name}/");
            print_tree(&e.path(), depth + 1)?;
        } else {
            let size = e.metadata()?.len();
            println!("{indent}{name}  {}", indicatif::HumanBytes(size));
        }
    }
    Ok(())
}
