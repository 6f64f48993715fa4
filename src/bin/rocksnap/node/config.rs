//! The node's configuration file (TOML), checked as a whole at start.
//!
//! Every option is documented in `node.example.toml` at the root of the
//! repository. Unknown keys are errors, and every problem found is reported,
//! not just the first.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

use rocksnap::store::S3Options;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub node: NodeSection,
    pub repository: RepositorySection,
    #[serde(default)]
    pub pipeline: PipelineSection,
    #[serde(default)]
    pub policy: PolicySection,
    pub workload: Option<WorkloadSection>,
    #[serde(default)]
    pub retention: RetentionSection,
    pub gc: Option<GcSection>,
    #[serde(default)]
    pub bootstrap: BootstrapSection,
    pub scrub: Option<ScrubSection>,
    pub encryption: Option<EncryptionSection>,
}

/// Client-side encryption of every snapshot the node takes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionSection {
    /// The keyring file; its first key seals new snapshots [or the keys'
    /// text in ROCKSNAP_KEYRING, when this is left out].
    pub keyring: Option<PathBuf>,
}

/// Reading each partition's latest snapshot back in the background.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrubSection {
    /// Time between two scrubs of every partition.
    #[serde(with = "humantime_serde")]
    pub every: Duration,
    /// Bytes per second the scrub reads at most [default: the pipeline's
    /// rate limit, shared with uploads and restores].
    pub rate_limit: Option<ByteSize>,
    /// Also read every entry of every SST, not only sizes and checksums.
    #[serde(default)]
    pub deep: bool,
}

/// Restoring partitions that have no data at start.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapSection {
    /// `if-missing` (default): a partition whose column family is missing
    /// or empty is restored from the newest usable snapshot; `never`.
    #[serde(default)]
    pub mode: rocksnap::bootstrap::BootstrapMode,
}

/// Which snapshots `latest.json` keeps (format V2).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSection {
    #[serde(default = "default_keep")]
    pub keep_last: usize,
    #[serde(default, with = "humantime_serde::option")]
    pub max_age: Option<Duration>,
}

impl Default for RetentionSection {
    fn default() -> Self {
        RetentionSection {
            keep_last: default_keep(),
            max_age: None,
        }
    }
}

/// Garbage collection on a schedule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcSection {
    #[serde(with = "humantime_serde")]
    pub every: Duration,
    /// Objects of no live snapshot younger than this are never deleted; it
    /// bounds clock skew and how long a crashed writer's objects stay.
    #[serde(default = "default_grace", with = "humantime_serde")]
    pub grace: Duration,
}

/// A secret: never printed.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct AdminToken(pub String);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(***)")
    }
}

/// The environment variable a node and `rocksnap request` read the admin
/// token from.
pub const ADMIN_TOKEN_ENV: &str = "ROCKSNAP_ADMIN_TOKEN";

fn default_keep() -> usize {
    10
}
fn default_grace() -> Duration {
    Duration::from_secs(300)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    pub name: String,
    #[serde(default = "default_cluster")]
    pub cluster: String,
    /// The partition database; created if missing.
    pub db: PathBuf,
    pub partitions: Vec<u64>,
    /// Admin HTTP endpoint: `POST /snapshots/<partition>`, `GET /partitions`, `GET /metrics`.
    #[serde(default = "default_admin")]
    pub admin_addr: SocketAddr,
    /// Bearer token every state-changing admin request must carry; required
    /// when `admin_addr` is not a loopback address. Prefer the
    /// `ROCKSNAP_ADMIN_TOKEN` environment variable to the file.
    #[serde(default)]
    pub admin_token: Option<AdminToken>,
    /// How long snapshots in flight may take to finish after SIGTERM.
    #[serde(default = "default_deadline", with = "humantime_serde")]
    pub shutdown_deadline: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositorySection {
    pub url: String,
    /// S3 settings; each falls back to its `AWS_*` environment variable, so
    /// secrets need not be in the file.
    #[serde(default)]
    pub s3: S3Options,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSection {
    #[serde(default = "default_part_size")]
    pub part_size: ByteSize,
    #[serde(default = "default_parts_in_flight")]
    pub parts_in_flight: usize,
    /// Bytes per second for uploads and downloads of this process.
    pub rate_limit: Option<ByteSize>,
    pub staging_dir: Option<PathBuf>,
    /// "V1", "V2" (shared SST files, incremental snapshots) or "restate"
    /// (documents a Restate node restores from).
    #[serde(default)]
    pub format: rocksnap::format::OutputFormat,
}

impl Default for PipelineSection {
    fn default() -> Self {
        PipelineSection {
            part_size: default_part_size(),
            parts_in_flight: default_parts_in_flight(),
            rate_limit: None,
            staging_dir: None,
            format: Default::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    /// Snapshot a partition after this many applied records.
    pub every_records: Option<u64>,
    /// Snapshot a partition at least this often.
    #[serde(default, with = "humantime_serde::option")]
    pub every: Option<Duration>,
    /// Exports that may run at once.
    #[serde(default = "default_concurrent")]
    pub max_concurrent_exports: usize,
    /// Up to this much random delay per partition, so that partitions do not
    /// all snapshot at the same instant.
    #[serde(default, with = "humantime_serde")]
    pub jitter: Duration,
}

impl Default for PolicySection {
    fn default() -> Self {
        PolicySection {
            every_records: None,
            every: None,
            max_concurrent_exports: default_concurrent(),
            jitter: Duration::ZERO,
        }
    }
}

/// A synthetic workload, for demonstrations and tests.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSection {
    pub records_per_second: u64,
    #[serde(default = "default_value_size")]
    pub value_size: ByteSize,
}

fn default_cluster() -> String {
    "localcluster".into()
}
fn default_admin() -> SocketAddr {
    "127.0.0.1:9180".parse().expect("valid")
}
fn default_deadline() -> Duration {
    Duration::from_secs(30)
}
fn default_part_size() -> ByteSize {
    ByteSize::mib(8)
}
fn default_parts_in_flight() -> usize {
    8
}
fn default_concurrent() -> usize {
    2
}
fn default_value_size() -> ByteSize {
    ByteSize::kib(1)
}

impl NodeConfig {
    /// Reads, parses and checks a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.to_path_buf(),
            problems: vec![e.to_string()],
        })?;
        let mut config: NodeConfig = toml::from_str(&text).map_err(|e| ConfigError {
            path: path.to_path_buf(),
            problems: vec![e.message().to_string() + &location(&text, e.span())],
        })?;
        if config.node.admin_token.is_none() {
            config.node.admin_token = std::env::var(ADMIN_TOKEN_ENV)
                .ok()
                .filter(|t| !t.is_empty())
                .map(AdminToken);
        }
        let problems = config.problems();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError {
                path: path.to_path_buf(),
                problems,
            })
        }
    }

    /// Everything wrong with a parsed configuration.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.node.name.trim().is_empty() {
            p.push("node.name is empty".into());
        }
        if !self.node.admin_addr.ip().is_loopback() && self.node.admin_token.is_none() {
            p.push(format!(
                "node.admin_addr {} is not a loopback address: anyone who reaches it could take snapshots; set node.admin_token or {ADMIN_TOKEN_ENV}",
                self.node.admin_addr
            ));
        }
        if self
            .node
            .admin_token
            .as_ref()
            .is_some_and(|t| t.0.len() < 16)
        {
            p.push("node.admin_token must be at least 16 characters".into());
        }
        if self.node.partitions.is_empty() {
            p.push("node.partitions is empty".into());
        }
        let mut ids = self.node.partitions.clone();
        ids.sort();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            p.push("node.partitions lists a partition twice".into());
        }
        // Remote URLs are checked here (no request is made); a local
        // directory is created at start, not while checking.
        let url = &self.repository.url;
        if url.contains("://") && !url.starts_with("file://") {
            if let Err(e) = rocksnap::Destination::open_with(
                url,
                rocksnap::OpenMode::MustExist,
                &self.repository.s3,
            ) {
                p.push(format!("repository.url: {e}"));
            }
        }
        let part = self.pipeline.part_size.as_u64();
        let remote =
            !self.repository.url.starts_with("file:") && self.repository.url.contains("://");
        if part == 0 {
            p.push("pipeline.part_size must be above zero".into());
        } else if remote && part < rocksnap::store::S3_MIN_PART_SIZE as u64 {
            p.push(format!(
                "pipeline.part_size {} is under the 5 MiB that S3 needs for every part but the last",
                self.pipeline.part_size
            ));
        }
        if self.pipeline.parts_in_flight == 0 {
            p.push("pipeline.parts_in_flight must be above zero".into());
        }
        if self.pipeline.rate_limit.is_some_and(|r| r.as_u64() < 1024) {
            p.push("pipeline.rate_limit must be at least 1 KiB".into());
        }
        if self.policy.max_concurrent_exports == 0 {
            p.push("policy.max_concurrent_exports must be above zero".into());
        }
        if self.policy.every_records == Some(0) {
            p.push("policy.every_records must be above zero".into());
        }
        if self.policy.every.is_some_and(|d| d.is_zero()) {
            p.push("policy.every must be above zero".into());
        }
        if self.retention.keep_last == 0 {
            p.push("retention.keep_last must be above zero".into());
        }
        if self.scrub.as_ref().is_some_and(|s| s.every.is_zero()) {
            p.push("scrub.every must be above zero".into());
        }
        if self
            .scrub
            .as_ref()
            .and_then(|s| s.rate_limit)
            .is_some_and(|r| r.as_u64() == 0)
        {
            p.push("scrub.rate_limit must be above zero".into());
        }
        if self.gc.as_ref().is_some_and(|g| g.every.is_zero()) {
            p.push("gc.every must be above zero".into());
        }
        if let Some(w) = &self.workload {
            if w.records_per_second == 0 {
                p.push("workload.records_per_second must be above zero".into());
            }
            if w.value_size.as_u64() == 0 {
                p.push("workload.value_size must be above zero".into());
            }
        }
        p
    }
}

/// ` (line L, column C: `the line`)` for a byte span of `text`.
fn location(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    let Some(span) = span else {
        return String::new();
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.len() - start + 1;
    let content = text[start..].lines().next().unwrap_or("").trim();
    format!(" (line {line}, column {column}: `{content}`)")
}

/// Every problem of a configuration file.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration {}: {}", path.display(), problems.join("; "))]
pub struct ConfigError {
    pub path: PathBuf,
    pub problems: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example file parses, and so does every option it shows: each
    /// commented `# key = value` line (but the exclusive ones) taken in.
    #[test]
    fn the_example_configuration_and_all_its_options_are_valid() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/node.example.toml"));
        NodeConfig::load(path).unwrap();
        let text = std::fs::read_to_string(path).unwrap();
        let mut all = String::new();
        for line in text.lines() {
            let t = line.trim_start();
            let option = t.strip_prefix("# ").filter(|rest| {
                rest.starts_with('[')
                    || rest
                        .split_once(" = ")
                        .is_some_and(|(k, _)| !k.contains(' '))
            });
            match option {
                // Secrets and credentials stay out: the environment has them.
                Some(o)
                    if o.starts_with("access_key_id")
                        || o.starts_with("secret_access_key")
                        || o.starts_with("session_token")
                        || o.starts_with("admin_token") => {}
                Some(o) => all.push_str(o.split("  #").next().unwrap()),
                None => all.push_str(line),
            }
            all.push('\n');
        }
        let config: NodeConfig = toml::from_str(&all).unwrap_or_else(|e| panic!("{e}\n{all}"));
        assert!(config.scrub.is_some() && config.gc.is_some(), "{all}");
        assert_eq!(
            config.repository.s3.server_side_encryption,
            Some(rocksnap::store::ServerSideEncryption::Kms)
        );
        assert!(config.problems().is_empty(), "{:?}", config.problems());
    }
}
