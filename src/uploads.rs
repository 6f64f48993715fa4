//! Multipart uploads that were started and never completed nor aborted, as a
//! killed process leaves them: listed and aborted by garbage collection.
//!
//! `object_store` has no call that lists open multipart uploads, so this
//! module asks each kind of store itself: S3 with a signed
//! `ListMultipartUploads` request (and `AbortMultipartUpload` through
//! `object_store`), a local directory by its staging files (`<key>#<n>`).

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use object_store::aws::{AmazonS3, AwsAuthorizer};
use object_store::client::{HttpClient, HttpRequest, HttpRequestBody};
use object_store::multipart::MultipartStore;
use object_store::path::Path;

/// An upload started at `initiated` under `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OpenUpload {
    pub key: String,
    pub id: String,
    pub initiated: DateTime<Utc>,
}

/// Where to find a store's open uploads.
#[derive(Debug, Clone, Default)]
pub(crate) enum UploadLister {
    S3(S3Uploads),
    /// The directory behind a local store.
    Local(PathBuf),
    /// A store rocksnap cannot list uploads of (GCS and Azure drop uncommitted
    /// blocks by themselves after a week).
    #[default]
    Unsupported,
}

#[derive(Debug, Clone)]
pub(crate) struct S3Uploads {
    pub store: Arc<AmazonS3>,
    /// `https://bucket.s3.region.amazonaws.com` or `endpoint/bucket`.
    pub base_url: String,
    pub region: String,
    /// A client with the store's own client settings.
    pub http: HttpClient,
}

impl UploadLister {
    /// Open uploads whose key starts with `prefix`.
    pub async fn list(&self, prefix: &Path) -> Result<Vec<OpenUpload>, String> {
        match self {
            UploadLister::Unsupported => Ok(Vec::new()),
            UploadLister::Local(root) => {
                let dir = root.join(prefix.as_ref());
                let root = root.clone();
                tokio::task::spawn_blocking(move || local_uploads(&root, &dir))
                    .await
                    .expect("list task")
                    .map_err(|e| e.to_string())
            }
            UploadLister::S3(s3) => s3.list(prefix).await,
        }
    }

    pub async fn abort(&self, upload: &OpenUpload) -> Result<(), String> {
        match self {
            UploadLister::Unsupported => Ok(()),
            UploadLister::Local(root) => {
                let path = root.join(format!("{}#{}", upload.key, upload.id));
                match std::fs::remove_file(&path) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(format!("{}: {e}", path.display())),
                }
            }
            UploadLister::S3(s3) => s3
                .store
                .abort_multipart(&listed_key(&upload.key)?, &upload.id)
                .await
                .map_err(|e| e.to_string()),
        }
    }
}

impl S3Uploads {
    /// The HTTP status of a signed HeadBucket: 200 if the bucket exists and
    /// the credentials may use it, 404 if it does not exist, 403 if they may
    /// not. `object_store` reports a listing's status only inside its error
    /// text, so the start-up check asks the bucket itself.
    pub(crate) async fn head_bucket(&self) -> Result<http::StatusCode, String> {
        let request = self.signed(http::Method::HEAD, &self.base_url).await?;
        let response = self
            .http
            .execute(request)
            .await
            .map_err(|e| format!("HeadBucket: {e}"))?;
        Ok(response.status())
    }

    /// A request signed with the store's own credentials, ready to send.
    async fn signed(&self, method: http::Method, url: &str) -> Result<HttpRequest, String> {
        let credential = self
            .store
            .credentials()
            .get_credential()
            .await
            .map_err(|e| e.to_string())?;
        let mut request: HttpRequest = http::Request::builder()
            .method(method.clone())
            .uri(url)
            .body(HttpRequestBody::empty())
            .map_err(|e| e.to_string())?;
        AwsAuthorizer::new(&credential, "s3", &self.region)
            .try_authorize(&mut request, None)
            .map_err(|e| e.to_string())?;
        Ok(request)
    }

    async fn list(&self, prefix: &Path) -> Result<Vec<OpenUpload>, String> {
        let mut prefix = prefix.to_string();
        if !prefix.is_empty() {
            prefix.push('/');
        }
        let encode =
            |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let mut uploads = Vec::new();
        let mut marker: Option<(String, String)> = None;
        // A listing answers at most 1000 uploads; the rest follow the markers.
        loop {
            let mut url = format!("{}?uploads&prefix={}", self.base_url, encode(&prefix));
            if let Some((key, id)) = &marker {
                url.push_str(&format!(
                    "&key-marker={}&upload-id-marker={}",
                    encode(key),
                    encode(id)
                ));
            }
            let request = self.signed(http::Method::GET, &url).await?;
            let response = self
                .http
                .execute(request)
                .await
                .map_err(|e| format!("listing open uploads: {e}"))?;
            let status = response.status();
            let body = response
                .into_body()
                .bytes()
                .await
                .map_err(|e| e.to_string())?;
            let body = String::from_utf8_lossy(&body).into_owned();
            if !status.is_success() {
                return Err(format!("listing open uploads: {status}: {body}"));
            }
            let page = parse_uploads(&body);
            uploads.extend(page.uploads);
            match page.next {
                Some(next) if marker.as_ref() != Some(&next) => marker = Some(next),
                _ => return Ok(uploads),
            }
        }
    }
}

/// A key as a listing gave it, as a path to the same object: taken as it
/// is (`Path::from` would percent-encode it again, and name another key).
fn listed_key(key: &str) -> Result<Path, String> {
    Path::parse(key).map_err(|e| format!("{key:?}: {e}"))
}

/// One page of a `ListMultipartUploadsResult`.
struct UploadsPage {
    uploads: Vec<OpenUpload>,
    /// The key and upload id markers of the next page, if the listing is
    /// truncated.
    next: Option<(String, String)>,
}

/// The `<Upload>` entries of a `ListMultipartUploadsResult`, and where the
/// next page starts if it is truncated.
fn parse_uploads(xml: &str) -> UploadsPage {
    let field = |block: &str, name: &str| -> Option<String> {
        let open = format!("<{name}>");
        let start = block.find(&open)? + open.len();
        let end = block[start..].find(&format!("</{name}>"))? + start;
        Some(
            block[start..end]
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&"),
        )
    };
    let uploads = xml
        .split("<Upload>")
        .skip(1)
        .filter_map(|block| {
            let block = block.split("</Upload>").next()?;
            Some(OpenUpload {
                key: field(block, "Key")?,
                id: field(block, "UploadId")?,
                initiated: field(block, "Initiated")?.parse().ok()?,
            })
        })
        .collect();
    // The result's own fields come before its first upload.
    let head = xml.split("<Upload>").next().unwrap_or(xml);
    let truncated = field(head, "IsTruncated").is_some_and(|t| t == "true");
    let next = truncated
        .then(|| {
            Some((
                field(head, "NextKeyMarker")?,
                field(head, "NextUploadIdMarker")?,
            ))
        })
        .flatten();
    UploadsPage { uploads, next }
}

/// Staging files of unfinished local multipart uploads below `dir`.
fn local_uploads(
    root: &std::path::Path,
    dir: &std::path::Path,
) -> std::io::Result<Vec<OpenUpload>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            // Writers beside the walk remove what they are done with (a
            // staged part completed, a lease and its emptied folder): what
            // is gone by the time it is looked at is no open upload.
            let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
            let entry = match entry {
                Err(e) if gone(&e) => continue,
                entry => entry?,
            };
            let meta = match entry.metadata() {
                Err(e) if gone(&e) => continue,
                meta => meta?,
            };
            if meta.is_dir() {
                stack.push(entry.path());
                continue;
            }
            let rel = entry.path();
            let Ok(rel) = rel.strip_prefix(root) else {
                continue;
            };
            let rel = rel.to_string_lossy();
            if let Some((key, id)) = rel.rsplit_once('#') {
                out.push(OpenUpload {
                    key: key.to_string(),
                    id: id.to_string(),
                    initiated: meta.modified()?.into(),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_listing() {
        let xml = r#"<?xml version="1.0"?><ListMultipartUploadsResult><Bucket>b</Bucket>
            <Upload><Key>p/1/ssts/a&amp;b.sst</Key><UploadId>XyZ</UploadId><Initiated>2026-11-27T10:00:00.000Z</Initiated></Upload>
            <Upload><Key>p/1/x.sst</Key><UploadId>2</UploadId><Initiated>2026-11-27T11:00:00Z</Initiated></Upload>
            </ListMultipartUploadsResult>"#;
        let page = parse_uploads(xml);
        assert!(page.next.is_none(), "not truncated");
        let uploads = page.uploads;
        assert_eq!(uploads.len(), 2);
        assert_eq!(uploads[0].key, "p/1/ssts/a&b.sst");
        assert_eq!(uploads[0].id, "XyZ");
        assert_eq!(
            uploads[1].initiated.to_rfc3339(),
            "2026-11-27T11:00:00+00:00"
        );
    }

    #[test]
    fn a_truncated_listing_says_where_the_next_page_starts() {
        // As S3 answers with more than 1000 open uploads under the prefix.
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>b</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker>
  <NextKeyMarker>p/1/lsn_00000000000000000007-snap_01KB/000999.sst</NextKeyMarker>
  <NextUploadIdMarker>VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA</NextUploadIdMarker>
  <Prefix>p/1/</Prefix><MaxUploads>1000</MaxUploads><IsTruncated>true</IsTruncated>
  <Upload><Key>p/1/lsn_00000000000000000007-snap_01KB/000998.sst</Key><UploadId>a</UploadId>
    <Initiated>2026-11-27T10:00:00.000Z</Initiated></Upload>
</ListMultipartUploadsResult>"#;
        let page = parse_uploads(xml);
        assert_eq!(page.uploads.len(), 1);
        assert_eq!(
            page.next,
            Some((
                "p/1/lsn_00000000000000000007-snap_01KB/000999.sst".to_string(),
                "VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA".to_string()
            ))
        );
    }

    #[test]
    fn a_listed_key_is_not_encoded_again() {
        for key in [
            "p/1/ssts/12-AB-4096-snap_01KB.sst",
            "p/1/a%20b.sst",
            "p/1/x#y.sst",
        ] {
            assert_eq!(listed_key(key).unwrap().as_ref(), key);
        }
        assert_ne!(
            Path::from("p/1/a%20b.sst").as_ref(),
            "p/1/a%20b.sst",
            "Path::from re-encodes"
        );
    }
}
