//! The `rocksnap` command line: one module per command.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use rocksnap::format::{Lsn, PartitionId, SnapshotId};

pub mod demo;
pub mod inspect;
pub mod progress;
pub mod restore;
pub mod snapshot;

/// Consistent snapshots of RocksDB partitions, published to object storage.
///
/// A repository is a URL: file:///dir (or a plain directory path), s3://bucket/prefix,
/// gs://bucket/prefix, az://container/prefix. S3 settings come from the usual AWS_*
/// variables. Set RUST_LOG (e.g. RUST_LOG=rocksnap=debug) for logs on stderr.
#[derive(Debug, Parser)]
#[command(name = "rocksnap", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole pipeline on a local directory: build a database with 4
    /// partitions, write to it while snapshots are taken, and show what was published.
    Demo(demo::DemoArgs),
    /// Take one snapshot of one column family of a database that is not open elsewhere.
    Snapshot(snapshot::SnapshotArgs),
    /// List the partitions and snapshots of a repository.
    List(inspect::ListArgs),
    /// Show one snapshot's metadata (the latest by default).
    Show(inspect::ShowArgs),
    /// Rebuild a partition's column family from the repository, verified
    /// before the database is touched.
    Restore(restore::RestoreArgs),
    /// Download a snapshot and check every file without importing it.
    Verify(restore::VerifyArgs),
    /// Run a node from a configuration file: snapshots by policy and on
    /// request, admin endpoint and Prometheus metrics, clean shutdown on SIGTERM.
    Node(NodeArgs),
    /// Ask a running node for a snapshot of one partition.
    Request(RequestArgs),
    /// Apply retention and delete what no kept snapshot references.
    Prune(PruneArgs),
    /// Wrap the data keys of every retained encrypted snapshot under the
    /// keyring's first key, without sending data again; the old key can
    /// then leave the keyring once `prune` has removed the old copies.
    Rekey(RekeyArgs),
    /// Print a new random key-encryption key as a keyring line
    /// (`<id> <base64>`): put it first in a keyring to encrypt new snapshots with it.
    Keygen(KeygenArgs),
}

#[derive(Debug, Args)]
pub struct RekeyArgs {
    #[command(flatten)]
    pub repo: FromArgs,
    /// Only this partition [default: every partition].
    #[arg(long, value_parser = parse_partition)]
    pub partition: Option<PartitionId>,
    #[command(flatten)]
    pub keys: KeyringArgs,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// The key's id (1 to 64 of A-Z a-z 0-9 - _ .).
    #[arg(long)]
    pub id: String,
}

/// A repository to read (or prune), and how to reach it.
#[derive(Debug, Clone, Args)]
pub struct FromArgs {
    /// Repository URL or directory.
    #[arg(long)]
    pub from: String,
    #[command(flatten)]
    pub s3: S3Args,
}

impl FromArgs {
    /// Opens the repository, which must exist, and checks that it answers.
    pub async fn open(&self) -> Result<rocksnap::Repository, rocksnap::store::StoreError> {
        open_repository(
            &self.from,
            rocksnap::OpenMode::MustExist,
            &self.s3.options(),
        )
        .await
    }
}

/// Settings for S3 and S3-compatible stores beyond the URL. Each one that is
/// not given falls back to the usual `AWS_*` environment variable.
#[derive(Clone, Default, Args)]
pub struct S3Args {
    /// S3 endpoint, for S3-compatible servers (MinIO, R2, moto, …) [env: AWS_ENDPOINT].
    #[arg(long = "s3-endpoint")]
    pub endpoint: Option<String>,
    /// S3 region [env: AWS_REGION].
    #[arg(long = "s3-region")]
    pub region: Option<String>,
    /// Access key id [env: AWS_ACCESS_KEY_ID].
    #[arg(long = "s3-access-key-id")]
    pub access_key_id: Option<String>,
    /// Secret access key; prefer the environment variable [env: AWS_SECRET_ACCESS_KEY].
    #[arg(long = "s3-secret-access-key")]
    pub secret_access_key: Option<String>,
    /// Session token of temporary credentials [env: AWS_SESSION_TOKEN].
    #[arg(long = "s3-session-token")]
    pub session_token: Option<String>,
    /// Allow a plain-HTTP endpoint [env: AWS_ALLOW_HTTP=true].
    #[arg(long = "s3-allow-http")]
    pub allow_http: bool,
    /// Use the credentials of the machine's instance role (EC2, ECS) when no
    /// keys are given; off by default so that missing keys are an error at start.
    #[arg(long = "s3-instance-credentials")]
    pub instance_credentials: bool,
    /// Server-side encryption of every object written: aes256 (SSE-S3) or
    /// kms (SSE-KMS).
    #[arg(long = "s3-sse")]
    pub server_side_encryption: Option<rocksnap::store::ServerSideEncryption>,
    /// With --s3-sse kms: the KMS key id, ARN or alias [default: the bucket's].
    #[arg(long = "s3-sse-kms-key-id")]
    pub sse_kms_key_id: Option<String>,
    /// A checksum S3 checks on every upload and keeps with the object: sha256.
    #[arg(long = "s3-checksum")]
    pub checksum: Option<rocksnap::store::UploadChecksum>,
}

/// Secrets never reach a log line.
impl std::fmt::Debug for S3Args {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.options().fmt(f)
    }
}

impl S3Args {
    /// The library's settings.
    pub fn options(&self) -> rocksnap::store::S3Options {
        rocksnap::store::S3Options {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
            session_token: self.session_token.clone(),
            server_side_encryption: self.server_side_encryption,
            sse_kms_key_id: self.sse_kms_key_id.clone(),
            checksum: self.checksum,
            allow_http: self.allow_http,
            instance_credentials: self.instance_credentials,
        }
    }
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub repo: FromArgs,
    /// Only this partition [default: every partition].
    #[arg(long, value_parser = parse_partition)]
    pub partition: Option<PartitionId>,
    /// Keep the newest N snapshots.
    #[arg(long)]
    pub keep: Option<usize>,
    /// Drop kept snapshots older than this (e.g. 7d); the newest is always kept.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub older_than: Option<std::time::Duration>,
    /// Objects of no live snapshot younger than this are never deleted, and a
    /// snapshot's lease counts as live this long after it expires: it bounds
    /// clock skew and how long a crashed writer's objects stay, not uploads
    /// (a snapshot in progress holds a lease, however long it runs).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub grace: std::time::Duration,
    /// Print what would be deleted; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The cluster whose latest.json --keep/--older-than may rewrite.
    #[arg(long, default_value = "localcluster")]
    pub cluster: String,
    /// Print the reports as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// TOML configuration; every option is described in node.example.toml.
    #[arg(long)]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct RequestArgs {
    /// The node's admin address, e.g. 127.0.0.1:9180.
    #[arg(long)]
    pub node: String,
    #[arg(long, value_parser = parse_partition)]
    pub partition: PartitionId,
    /// Refuse a snapshot below this LSN.
    #[arg(long, value_parser = parse_lsn)]
    pub min_lsn: Option<Lsn>,
    /// The node's admin token, if it has one; prefer the environment variable.
    #[arg(long, env = "ROCKSNAP_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// The keys of encrypted snapshots: a keyring file, or its text in
/// `ROCKSNAP_KEYRING` (one key per line, `<id> <base64 of 32 bytes>`, the
/// first the current one; `rocksnap keygen` makes one).
#[derive(Debug, Clone, Args)]
pub struct KeyringArgs {
    /// Keyring file: encrypts new snapshots with its first key, opens
    /// snapshots encrypted with any of its keys [or its text in ROCKSNAP_KEYRING].
    #[arg(long)]
    pub keyring: Option<PathBuf>,
}

impl KeyringArgs {
    /// The keyring given, if any.
    pub fn load(
        &self,
    ) -> Result<Option<std::sync::Arc<rocksnap::crypto::Keyring>>, rocksnap::crypto::CryptoError>
    {
        Ok(
            rocksnap::crypto::Keyring::from_file_or_env(self.keyring.as_deref())?
                .map(std::sync::Arc::new),
        )
    }
}

/// Pipeline settings shared by the commands that upload.
#[derive(Debug, Clone, Args)]
pub struct PipelineArgs {
    /// Cluster name written into the snapshot; a repository's pointer from
    /// another cluster is never overwritten.
    #[arg(long, default_value = "localcluster")]
    pub cluster: String,
    /// Node name written into the snapshot.
    #[arg(long, default_value_t = default_node_name())]
    pub node: String,
    /// Part size for uploads, e.g. 8MiB (S3 needs at least 5 MiB).
    #[arg(long, default_value = "8MiB", value_parser = parse_size)]
    pub part_size: u64,
    /// Parts in flight at once; memory stays below part size × (this + 1).
    #[arg(long, default_value_t = rocksnap::DEFAULT_PARTS_IN_FLIGHT)]
    pub parts_in_flight: usize,
    /// Where exports are staged (default: beside the database, <db>.rocksnap-staging).
    #[arg(long)]
    pub staging_dir: Option<PathBuf>,
    /// Upload bandwidth limit in bytes per second, e.g. 50MiB [default: none].
    #[arg(long, value_parser = parse_size)]
    pub rate_limit: Option<u64>,
    /// Repository format: V1 (every snapshot holds all its files, readable by
    /// older tools), V2 (SST files shared between snapshots; only new ones
    /// are uploaded; latest.json lists the retained snapshots) or restate
    /// (documents a Restate v1.7 node restores from: Restate's ids,
    /// latest.json with log_id and retained_snapshots, every file in its
    /// snapshot's folder).
    #[arg(long, default_value = "V1")]
    pub format: rocksnap::format::OutputFormat,
    /// V2 and restate: snapshots latest.json keeps, newest first.
    #[arg(long, default_value_t = 10)]
    pub keep: usize,
    /// V2 and restate: also drop kept snapshots older than this (e.g. 7d); the newest is always kept.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub max_age: Option<std::time::Duration>,
    #[command(flatten)]
    pub keys: KeyringArgs,
}

impl PipelineArgs {
    pub fn config(&self) -> Result<rocksnap::PipelineConfig, rocksnap::crypto::CryptoError> {
        Ok(rocksnap::PipelineConfig {
            cluster_name: self.cluster.clone(),
            node_name: self.node.clone(),
            part_size: self.part_size as usize,
            max_parts_in_flight: self.parts_in_flight,
            staging_dir: self.staging_dir.clone(),
            rate_limit: self.rate_limit.map(rocksnap::RateLimit::new),
            format: self.format.version,
            dialect: self.format.dialect,
            retention: rocksnap::Retention {
                keep_last: self.keep,
                max_age: self.max_age,
            },
            encryption: self.keys.load()?,
            ..Default::default()
        })
    }
}

fn default_node_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into())
}

pub fn parse_partition(s: &str) -> Result<PartitionId, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not a partition id (a non-negative integer)"))
}

/// A size: a number of bytes, or with a unit (`8MiB`, `5 MB`, `64KiB`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let size = s
        .parse::<bytesize::ByteSize>()
        .map_err(|e| format!("{s:?} is not a size ({e})"))?
        .as_u64();
    if size == 0 {
        return Err("must be above zero".into());
    }
    Ok(size)
}

pub fn parse_lsn(s: &str) -> Result<Lsn, String> {
    s.parse()
        .map(Lsn)
        .map_err(|_| format!("{s:?} is not an LSN (a non-negative integer)"))
}

pub fn parse_snapshot_id(s: &str) -> Result<SnapshotId, String> {
    s.parse()
        .map_err(|e: rocksnap::format::FormatError| e.to_string())
}

/// `rocksnap request`: POSTs to the node's admin endpoint and prints its answer.
async fn request(args: RequestArgs) -> CliResult {
    let base = if args.node.contains("://") {
        args.node.clone()
    } else {
        format!("http://{}", args.node)
    };
    let mut url = format!("{base}/snapshots/{}", args.partition);
    if let Some(lsn) = args.min_lsn {
        url.push_str(&format!("?min_lsn={lsn}"));
    }
    let mut post = reqwest::Client::new().post(&url);
    if let Some(token) = args.token.as_deref().filter(|t| !t.is_empty()) {
        post = post.bearer_auth(token);
    }
    let response = post
        .send()
        .await
        .map_err(|e| format!("cannot reach the node at {base}: {e}"))?;
    let status = response.status();
    let body = response.text().await?;
    if status.is_success() {
        println!("{body}");
        return Ok(());
    }
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or(body);
    Err(format!("the node answered {status}: {message}").into())
}

/// The partition asked for, or every partition of the repository.
pub(crate) async fn partitions_of(
    repo: &rocksnap::Repository,
    partition: Option<PartitionId>,
) -> Result<Vec<PartitionId>, rocksnap::repository::RepoError> {
    match partition {
        Some(p) => Ok(vec![p]),
        None => repo.list_partitions().await,
    }
}

/// `rocksnap rekey`.
async fn rekey(args: RekeyArgs) -> CliResult {
    let keyring = args.keys.load()?.ok_or(
        "rekey needs the keyring: --keyring FILE or ROCKSNAP_KEYRING, its first key the new one",
    )?;
    let repo = args.repo.open().await?;
    let partitions = partitions_of(&repo, args.partition).await?;
    let mut reports = Vec::new();
    for p in partitions {
        match rocksnap::rekey::rekey(&repo, p, &keyring).await {
            Ok(report) => reports.push(report),
            // Over every partition, one that has nothing to rekey (objects
            // but no pointer, as a failed first snapshot leaves; a pointer
            // Restate wrote) is said and passed over, not the end of the
            // others. One named with --partition is the operator's error.
            Err(
                e @ (rocksnap::rekey::RekeyError::NoSnapshot(_)
                | rocksnap::rekey::RekeyError::RestatePointer(_)),
            ) if args.partition.is_none() => {
                eprintln!("partition {p}: skipped: {e}");
            }
            Err(e) => return Err(e.into()),
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        for r in &reports {
            println!(
                "partition {}: {} snapshots rekeyed under {} ({} objects copied in the store), {} unchanged",
                r.partition_id,
                r.rekeyed.len(),
                keyring.current_id(),
                r.copied_objects,
                r.unchanged
            );
        }
    }
    Ok(())
}

/// `rocksnap prune`.
async fn prune(args: PruneArgs) -> CliResult {
    let repo = args.repo.open().await?;
    let retention =
        (args.keep.is_some() || args.older_than.is_some()).then(|| rocksnap::Retention {
            keep_last: args.keep.unwrap_or(usize::MAX),
            max_age: args.older_than,
        });
    let opts = rocksnap::gc::GcOptions {
        grace: args.grace,
        dry_run: args.dry_run,
        retention,
        cluster: Some(args.cluster.clone()),
        now: None,
    };
    let partitions = partitions_of(&repo, args.partition).await?;
    let mut reports = Vec::new();
    for p in partitions {
        reports.push(rocksnap::gc::collect(&repo, p, &opts).await?);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
        return Ok(());
    }
    let verb = if args.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    for r in &reports {
        for d in &r.deleted {
            println!("{verb} {} ({})", d.key, indicatif::HumanBytes(d.size));
        }
        println!(
            "partition {}: kept {} snapshots; {verb} {} objects, {}; spared {} younger than the grace period and {} of {} snapshots in progress",
            r.partition_id,
            r.kept.len(),
            r.deleted.len(),
            indicatif::HumanBytes(r.deleted_bytes),
            r.spared,
            r.leased,
            r.in_progress.len()
        );
        if let Some(fence) = r.fence {
            println!(
                "partition {}: snapshots started at or before {fence} can no longer be published (their lease expired)",
                r.partition_id
            );
        }
    }
    Ok(())
}

/// Opens a repository and checks at once that it answers.
pub async fn open_repository(
    spec: &str,
    mode: rocksnap::OpenMode,
    s3: &rocksnap::store::S3Options,
) -> Result<rocksnap::Repository, rocksnap::store::StoreError> {
    let dest = rocksnap::Destination::open_with(spec, mode, s3)?;
    dest.check().await?;
    Ok(rocksnap::Repository::new(dest))
}

/// An error for the user: one line on stderr, non-zero exit.
pub type CliResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> CliResult {
    match cli.command {
        Command::Demo(args) => demo::run(args).await,
        Command::Snapshot(args) => snapshot::run(args).await,
        Command::List(args) => inspect::list(args).await,
        Command::Show(args) => inspect::show(args).await,
        Command::Restore(args) => restore::run_restore(args).await,
        Command::Verify(args) => restore::run_verify(args).await,
        Command::Node(args) => crate::node::run(&args.config).await,
        Command::Request(args) => request(args).await,
        Command::Prune(args) => prune(args).await,
        Command::Rekey(args) => rekey(args).await,
        Command::Keygen(args) => {
            let line = rocksnap::crypto::Keyring::generate_line(&args.id);
            // Checked as any keyring is.
            rocksnap::crypto::Keyring::parse(&line)?;
            println!("{line}");
            Ok(())
        }
    }
}
