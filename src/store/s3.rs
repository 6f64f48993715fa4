//! S3 and S3-compatible stores: settings, the client, and the checks that
//! can be made before the first request.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, Checksum, S3ConditionalPut};
use object_store::client::{HttpConnector, ReqwestConnector};
use object_store::{ClientConfigKey, ClientOptions, ObjectStore, RetryConfig};

/// Every client setting the S3 builder may hold.
const CLIENT_KEYS: [ClientConfigKey; 20] = [
    ClientConfigKey::AllowHttp,
    ClientConfigKey::AllowInvalidCertificates,
    ClientConfigKey::NoSystemCertificates,
    ClientConfigKey::ConnectTimeout,
    ClientConfigKey::DefaultContentType,
    ClientConfigKey::Http1Only,
    ClientConfigKey::Http2KeepAliveInterval,
    ClientConfigKey::Http2KeepAliveTimeout,
    ClientConfigKey::Http2KeepAliveWhileIdle,
    ClientConfigKey::Http2MaxFrameSize,
    ClientConfigKey::Http2Only,
    ClientConfigKey::PoolIdleTimeout,
    ClientConfigKey::PoolMaxIdlePerHost,
    ClientConfigKey::ProxyUrl,
    ClientConfigKey::ProxyCaCertificate,
    ClientConfigKey::ProxyExcludes,
    ClientConfigKey::RandomizeAddresses,
    ClientConfigKey::ReadTimeout,
    ClientConfigKey::Timeout,
    ClientConfigKey::UserAgent,
];
use url::Url;

use super::StoreError;
use crate::uploads::S3Uploads;

/// Settings for S3 and S3-compatible stores beyond the URL. Each one that is
/// not set falls back to the usual `AWS_*` environment variable.
#[derive(Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Options {
    /// S3 endpoint, for S3-compatible servers (MinIO, R2, moto, …) [env: AWS_ENDPOINT].
    pub endpoint: Option<String>,
    /// S3 region [env: AWS_REGION].
    pub region: Option<String>,
    /// Access key id [env: AWS_ACCESS_KEY_ID].
    pub access_key_id: Option<String>,
    /// Secret access key; prefer the environment variable [env: AWS_SECRET_ACCESS_KEY].
    pub secret_access_key: Option<String>,
    /// Session token of temporary credentials [env: AWS_SESSION_TOKEN].
    pub session_token: Option<String>,
    /// Allow a plain-HTTP endpoint [env: AWS_ALLOW_HTTP=true].
    #[serde(default)]
    pub allow_http: bool,
    /// Use the credentials of the machine's instance role (EC2, ECS) when no
    /// keys are given; off by default so that missing keys are an error at start.
    #[serde(default)]
    pub instance_credentials: bool,
    /// Server-side encryption of every object written: `aes256` (SSE-S3) or
    /// `kms` (SSE-KMS) [env: AWS_SERVER_SIDE_ENCRYPTION, S3's own names].
    pub server_side_encryption: Option<ServerSideEncryption>,
    /// With `kms`: the KMS key (id, ARN or alias) [default: the bucket's;
    /// env: AWS_SSE_KMS_KEY_ID].
    pub sse_kms_key_id: Option<String>,
    /// A checksum S3 computes on every upload, refuses the upload on a
    /// mismatch, and keeps with the object: `sha256` [env: AWS_CHECKSUM_ALGORITHM].
    /// rocksnap's own CRC32C in `metadata.json` is written either way.
    pub checksum: Option<UploadChecksum>,
}

/// Server-side encryption S3 applies to what rocksnap writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerSideEncryption {
    /// SSE-S3: keys S3 manages (`AES256`).
    Aes256,
    /// SSE-KMS: a key in AWS KMS (`aws:kms`).
    Kms,
}

impl std::str::FromStr for ServerSideEncryption {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "aes256" | "sse-s3" => Ok(Self::Aes256),
            "kms" | "aws:kms" | "sse-kms" => Ok(Self::Kms),
            _ => Err(format!(
                "{s:?} is not a server-side encryption (aes256 or kms)"
            )),
        }
    }
}

/// The checksum S3 checks on upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UploadChecksum {
    /// SHA-256 of every object (and part), checked by S3 as it arrives.
    Sha256,
}

impl std::str::FromStr for UploadChecksum {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "sha256" => Ok(Self::Sha256),
            _ => Err(format!("{s:?} is not an upload checksum (sha256)")),
        }
    }
}

/// Secrets never reach a log line.
impl std::fmt::Debug for S3Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |o: &Option<String>| o.as_ref().map(|_| "***");
        f.debug_struct("S3Options")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &hidden(&self.secret_access_key))
            .field("session_token", &hidden(&self.session_token))
            .field("allow_http", &self.allow_http)
            .field("instance_credentials", &self.instance_credentials)
            .field("server_side_encryption", &self.server_side_encryption)
            .field("sse_kms_key_id", &self.sse_kms_key_id)
            .field("checksum", &self.checksum)
            .finish()
    }
}

/// Builds an S3 client: settings from `s3`, else from `AWS_*`; ETag-based
/// conditional put, which `latest.json`'s compare-and-swap needs; and checks
/// that can be made without a request.
pub(super) fn open_s3(
    url: &Url,
    s3: &S3Options,
    display: &str,
) -> Result<(Arc<dyn ObjectStore>, S3Uploads), StoreError> {
    let bad = |reason: String| StoreError::BadUrl {
        url: display.to_string(),
        reason,
    };
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("no bucket name".into()));
    }
    let mut b = AmazonS3Builder::from_env()
        .with_url(url.as_str())
        .with_conditional_put(S3ConditionalPut::ETagMatch)
        // Fail fast at start on a wrong endpoint; transfers retry on their own.
        .with_retry(RetryConfig {
            max_retries: 3,
            retry_timeout: Duration::from_secs(30),
            ..RetryConfig::default()
        });
    if let Some(v) = &s3.endpoint {
        b = b.with_endpoint(v);
    }
    if let Some(v) = &s3.region {
        b = b.with_region(v);
    }
    if let Some(v) = &s3.access_key_id {
        b = b.with_access_key_id(v);
    }
    if let Some(v) = &s3.secret_access_key {
        b = b.with_secret_access_key(v);
    }
    if let Some(v) = &s3.session_token {
        b = b.with_token(v);
    }
    if s3.allow_http {
        b = b.with_allow_http(true);
    }
    // object_store names these settings only by their keys.
    let key = |name: &str| name.parse::<AmazonS3ConfigKey>().expect("a known key");
    match s3.server_side_encryption {
        Some(ServerSideEncryption::Aes256) => {
            b = b.with_config(key("aws_server_side_encryption"), "AES256")
        }
        Some(ServerSideEncryption::Kms) => {
            b = b.with_config(key("aws_server_side_encryption"), "aws:kms")
        }
        None => {}
    }
    if let Some(id) = &s3.sse_kms_key_id {
        if s3.server_side_encryption != Some(ServerSideEncryption::Kms) {
            return Err(bad("a KMS key id needs server-side encryption kms".into()));
        }
        b = b.with_config(key("aws_sse_kms_key_id"), id);
    }
    if let Some(UploadChecksum::Sha256) = s3.checksum {
        b = b.with_checksum_algorithm(Checksum::SHA256);
    }
    // The builder has merged the explicit settings and the `AWS_*`
    // variables: every check below reads the settings it will use.
    let config = |k: AmazonS3ConfigKey| b.get_config_value(&k).filter(|v| !v.is_empty());
    let is_true = |k: AmazonS3ConfigKey| config(k).is_some_and(|v| v == "true");
    let allow_http = is_true(AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp));
    if let Some(e) = config(AmazonS3ConfigKey::Endpoint) {
        if e.starts_with("http://") && !allow_http {
            return Err(bad(format!(
                "endpoint {e} is plain HTTP; pass --s3-allow-http (or set AWS_ALLOW_HTTP=true) to use it"
            )));
        }
    }
    let has_key = config(AmazonS3ConfigKey::AccessKeyId).is_some();
    let has_secret = config(AmazonS3ConfigKey::SecretAccessKey).is_some();
    let other_provider = config(AmazonS3ConfigKey::WebIdentityTokenFile).is_some()
        || config(AmazonS3ConfigKey::ContainerCredentialsRelativeUri).is_some()
        || config(AmazonS3ConfigKey::ContainerCredentialsFullUri).is_some()
        || is_true(AmazonS3ConfigKey::SkipSignature);
    if has_key != has_secret {
        return Err(StoreError::Credentials {
            url: display.to_string(),
            reason: "an access key id needs its secret access key, and the other way round".into(),
        });
    }
    if !has_key && !other_provider && !s3.instance_credentials {
        return Err(StoreError::Credentials {
            url: display.to_string(),
            reason: "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_WEB_IDENTITY_TOKEN_FILE, or pass --s3-instance-credentials to use the machine's role".into(),
        });
    }
    let bucket = url.host_str().unwrap_or_default().to_string();
    let region = config(AmazonS3ConfigKey::Region).unwrap_or_else(|| "us-east-1".into());
    let base_url = match config(AmazonS3ConfigKey::Endpoint) {
        Some(endpoint) => format!("{}/{bucket}", endpoint.trim_end_matches('/')),
        None => format!("https://{bucket}.s3.{region}.amazonaws.com"),
    };
    // The few requests object_store has no call for go through a client
    // built from the same client settings (proxy, certificates, timeouts).
    let mut options = ClientOptions::new();
    for key in CLIENT_KEYS {
        if let Some(value) = b.get_config_value(&AmazonS3ConfigKey::Client(key)) {
            options = options.with_config(key, value);
        }
    }
    let http = ReqwestConnector::default()
        .connect(&options)
        .map_err(|e| StoreError::Open {
            url: display.to_string(),
            source: e,
        })?;
    let store = Arc::new(b.build().map_err(|e| StoreError::Open {
        url: display.to_string(),
        source: e,
    })?);
    let uploads = S3Uploads {
        store: store.clone(),
        base_url,
        region,
        http,
    };
    Ok((store, uploads))
}
