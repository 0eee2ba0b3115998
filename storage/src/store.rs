//! `Store`: one object store opened from a URL, plus the few I/O primitives the layout uses
//! (checksummed files, create-only puts, listing).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{
    ClientConfigKey, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    RetryConfig,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::format::{LAYOUT_FORMAT, LAYOUT_MAJOR, LAYOUT_MINOR, LayoutFile, StoredFile};
use crate::layout;

/// A handle on the root of an FTI store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    /// The URL as given, minus any credentials; safe to log.
    url: String,
}

/// Outcome of a create-only put.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Created {
    Yes,
    AlreadyExists,
}

impl Store {
    /// Opens the store at `url` and checks its `layout.json` if it has one.
    ///
    /// Accepted: a plain local path (created if missing), `file:///abs/path`, `memory:///`
    /// (private to this process), `s3://bucket[/prefix]` configured by the standard `AWS_*`
    /// environment (`AWS_ENDPOINT`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_ALLOW_HTTP`, ...), `gs://bucket[/prefix]` (`GOOGLE_*`) and
    /// `az://container[/prefix]` (`AZURE_*`).
    pub async fn open(url: &str) -> Result<Store> {
        let store = Store::connect(url)?;
        store.check_layout().await?;
        Ok(store)
    }

    /// Opens a store that must exist already, for the commands that only read it: a local
    /// path that is not a directory, or a store without `layout.json`, is an error (a mistyped
    /// `--store`) instead of an empty store made on the spot.
    pub async fn open_existing(url: &str) -> Result<Store> {
        let missing = |reason: &str| Error::InvalidUrl {
            url: redact(url),
            reason: reason.to_string(),
        };
        if !url.contains("://") && !std::path::Path::new(url).is_dir() {
            return Err(missing("no such directory"));
        }
        let store = Store::connect(url)?;
        match store.check_layout().await? {
            Some(_) => Ok(store),
            None => Err(missing("no FTI store there (no layout.json)")),
        }
    }

    /// A fresh in-memory store, for tests and dry runs.
    pub fn memory() -> Store {
        Store {
            inner: Arc::new(InMemory::new()),
            url: "memory:///".into(),
        }
    }

    /// Wraps an existing object store (e.g. one with custom middleware). `url` is for display.
    pub fn from_object_store(inner: Arc<dyn ObjectStore>, url: impl Into<String>) -> Store {
        Store {
            inner,
            url: url.into(),
        }
    }

    fn connect(url: &str) -> Result<Store> {
        let invalid = |reason: &str| Error::InvalidUrl {
            url: redact(url),
            reason: reason.to_string(),
        };
        if url.trim().is_empty() {
            return Err(invalid("empty"));
        }
        if !url.contains("://") {
            return Store::local(std::path::Path::new(url), url);
        }
        let parsed = url::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
        let prefix = Path::parse(parsed.path().trim_start_matches('/'))
            .map_err(|e| invalid(&e.to_string()))?;
        let inner: Arc<dyn ObjectStore> = match parsed.scheme() {
            "file" => {
                let path = parsed
                    .to_file_path()
                    .map_err(|()| invalid("not an absolute local path"))?;
                return Store::local(&path, url);
            }
            "memory" => return Ok(Store::memory()),
            "s3" | "s3a" | "gs" | "az" | "azure" | "abfs" | "abfss" => {
                with_prefix(remote_bucket(&parsed, url)?, prefix)
            }
            other => {
                return Err(invalid(&format!(
                    "unsupported scheme {other:?} (use a path, file://, memory://, s3://, gs:// or az://)"
                )));
            }
        };
        Ok(Store {
            inner,
            url: redact(url),
        })
    }

    fn local(path: &std::path::Path, url: &str) -> Result<Store> {
        let invalid = |reason: String| Error::InvalidUrl {
            url: url.to_string(),
            reason,
        };
        std::fs::create_dir_all(path)
            .map_err(|e| invalid(format!("cannot create directory: {e}")))?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(path)
            .map_err(|e| invalid(e.to_string()))?
            .with_automatic_cleanup(true);
        Ok(Store {
            inner: Arc::new(fs),
            url: url.to_string(),
        })
    }

    /// The store's URL, safe to log (credentials removed).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The underlying object store, rooted at the store's prefix.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    /// Reads `layout.json`, if present, and refuses an unknown major version.
    pub async fn check_layout(&self) -> Result<Option<LayoutFile>> {
        let path = layout::layout_file();
        let layout: LayoutFile = match self.get_json(&path).await {
            Ok(layout) => layout,
            Err(Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let major = layout
            .version
            .split('.')
            .next()
            .and_then(|m| m.parse::<u32>().ok());
        if layout.format != LAYOUT_FORMAT || major != Some(LAYOUT_MAJOR) {
            return Err(Error::UnsupportedLayout {
                url: self.url.clone(),
                format: layout.format,
                found: layout.version,
                supported: LAYOUT_MAJOR,
            });
        }
        Ok(Some(layout))
    }

    /// Writes `layout.json` unless it exists (then checks it). Every writer calls this first.
    pub async fn init(&self) -> Result<LayoutFile> {
        if let Some(layout) = self.check_layout().await? {
            return Ok(layout);
        }
        let layout = LayoutFile {
            format: LAYOUT_FORMAT.into(),
            version: format!("{LAYOUT_MAJOR}.{LAYOUT_MINOR}"),
            created_at: chrono::Utc::now(),
        };
        match self
            .put_create(&layout::layout_file(), encode_json("layout.json", &layout)?)
            .await?
        {
            Created::Yes => Ok(layout),
            // Another writer initialised it first: theirs is the one to check.
            Created::AlreadyExists => self.check_layout().await?.ok_or_else(|| Error::NotFound {
                path: "layout.json".into(),
            }),
        }
    }

    pub(crate) async fn get_bytes(&self, path: &Path) -> Result<Bytes> {
        let result = self
            .inner
            .get(path)
            .await
            .map_err(|e| Error::store(path, e))?;
        result.bytes().await.map_err(|e| Error::store(path, e))
    }

    pub(crate) async fn get_json<T: DeserializeOwned>(&self, path: &Path) -> Result<T> {
        let bytes = self.get_bytes(path).await?;
        serde_json::from_slice(&bytes).map_err(|source| Error::Decode {
            path: path.to_string(),
            source,
        })
    }

    /// Puts `bytes` only if nothing exists at `path` (the commit primitive).
    pub(crate) async fn put_create(&self, path: &Path, bytes: Bytes) -> Result<Created> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .inner
            .put_opts(path, PutPayload::from_bytes(bytes), opts)
            .await
        {
            Ok(_) => Ok(Created::Yes),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(Created::AlreadyExists),
            // Some S3 servers report a lost `If-None-Match: *` race as a failed precondition.
            Err(object_store::Error::Precondition { .. }) => Ok(Created::AlreadyExists),
            Err(e) => Err(Error::store(path, e)),
        }
    }

    pub(crate) async fn put_overwrite(&self, path: &Path, bytes: Bytes) -> Result<()> {
        self.inner
            .put(path, PutPayload::from_bytes(bytes))
            .await
            .map_err(|e| Error::store(path, e))?;
        Ok(())
    }

    /// Writes an immutable file and returns its size and checksum for the manifest that will
    /// reference it. `relative` is the path recorded in that manifest.
    pub(crate) async fn put_file(
        &self,
        path: &Path,
        relative: String,
        bytes: Bytes,
    ) -> Result<StoredFile> {
        let stored = StoredFile {
            path: relative,
            size: bytes.len() as u64,
            sha256: sha256_hex(&bytes),
        };
        self.put_overwrite(path, bytes).await?;
        Ok(stored)
    }

    /// Reads a file referenced by a manifest and checks its size and checksum.
    pub(crate) async fn get_verified(&self, path: &Path, expected: &StoredFile) -> Result<Bytes> {
        let bytes = self.get_bytes(path).await?;
        if bytes.len() as u64 != expected.size {
            return Err(Error::SizeMismatch {
                path: path.to_string(),
                expected: expected.size,
                actual: bytes.len() as u64,
            });
        }
        let actual = sha256_hex(&bytes);
        if actual != expected.sha256 {
            return Err(Error::ChecksumMismatch {
                path: path.to_string(),
                expected: expected.sha256.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Every object under `prefix`, in no particular order.
    pub(crate) async fn list(&self, prefix: &Path) -> Result<Vec<ObjectMeta>> {
        self.inner
            .list(Some(prefix))
            .try_collect()
            .await
            .map_err(|e| Error::store(prefix, e))
    }

    /// The immediate child "directories" of `prefix`.
    pub(crate) async fn list_dirs(&self, prefix: &Path) -> Result<Vec<String>> {
        let listing = self
            .inner
            .list_with_delimiter(Some(prefix))
            .await
            .map_err(|e| Error::store(prefix, e))?;
        Ok(listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect())
    }

    pub(crate) async fn delete(&self, path: &Path) -> Result<()> {
        match self.inner.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Error::store(path, e)),
        }
    }
}

/// The object store for the bucket (or container) of a cloud URL, configured from the
/// standard environment (`AWS_*`, `GOOGLE_*`, `AZURE_*`) with this crate's retries and
/// timeouts. Used for the store itself and for raw sources read by a query engine.
pub fn remote_bucket(parsed: &url::Url, url: &str) -> Result<Arc<dyn ObjectStore>> {
    let invalid = |reason: &str| Error::InvalidUrl {
        url: redact(url),
        reason: reason.to_string(),
    };
    let open_err = |source| Error::Open {
        url: redact(url),
        source,
    };
    let bucket = parsed
        .host_str()
        .ok_or_else(|| invalid("no bucket or container"))?;
    Ok(match parsed.scheme() {
        "s3" | "s3a" => {
            use object_store::aws::AmazonS3ConfigKey as K;
            let builder =
                with_timeouts(object_store::aws::AmazonS3Builder::from_env(), |b, k, v| {
                    b.with_config(K::Client(k), v)
                });
            Arc::new(
                builder
                    .with_bucket_name(bucket)
                    .with_retry(retry_config())
                    .build()
                    .map_err(open_err)?,
            )
        }
        "gs" => {
            use object_store::gcp::GoogleConfigKey as K;
            let builder = with_timeouts(
                object_store::gcp::GoogleCloudStorageBuilder::from_env(),
                |b, k, v| b.with_config(K::Client(k), v),
            );
            Arc::new(
                builder
                    .with_bucket_name(bucket)
                    .with_retry(retry_config())
                    .build()
                    .map_err(open_err)?,
            )
        }
        "az" | "azure" | "abfs" | "abfss" => {
            use object_store::azure::AzureConfigKey as K;
            let builder = with_timeouts(
                object_store::azure::MicrosoftAzureBuilder::from_env(),
                |b, k, v| b.with_config(K::Client(k), v),
            );
            Arc::new(
                builder
                    .with_container_name(bucket)
                    .with_retry(retry_config())
                    .build()
                    .map_err(open_err)?,
            )
        }
        other => return Err(invalid(&format!("{other:?} is not a cloud scheme"))),
    })
}

fn with_prefix(inner: Arc<dyn ObjectStore>, prefix: Path) -> Arc<dyn ObjectStore> {
    if prefix.as_ref().is_empty() {
        inner
    } else {
        Arc::new(PrefixStore::new(inner, prefix))
    }
}

fn retry_config() -> RetryConfig {
    RetryConfig {
        max_retries: 8,
        retry_timeout: Duration::from_secs(120),
        ..Default::default()
    }
}

/// Sets connect and request timeouts through config keys: replacing the whole
/// `ClientOptions` would drop the client settings `from_env` read (e.g. `AWS_ALLOW_HTTP`).
fn with_timeouts<B>(builder: B, set: impl Fn(B, ClientConfigKey, &str) -> B) -> B {
    let builder = set(builder, ClientConfigKey::ConnectTimeout, "10s");
    set(builder, ClientConfigKey::Timeout, "120s")
}

/// Removes `user:password@` from a URL so it can be logged.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub(crate) fn encode_json<T: Serialize>(what: &str, value: &T) -> Result<Bytes> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|source| Error::Encode {
        what: what.to_string(),
        source,
    })?;
    bytes.push(b'\n');
    Ok(Bytes::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_credentials() {
        assert_eq!(redact("s3://key:secret@bucket/p"), "s3://bucket/p");
        assert_eq!(redact("s3://bucket/p"), "s3://bucket/p");
    }

    #[tokio::test]
    async fn rejects_unknown_schemes_and_empty_urls() {
        for url in ["", "ftp://x/y", "s3:///nobucket"] {
            let err = Store::open(url).await.unwrap_err();
            assert!(matches!(err, Error::InvalidUrl { .. }), "{url}: {err}");
        }
    }
}
