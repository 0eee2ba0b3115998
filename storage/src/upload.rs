//! Files too large to hold in memory: written in pieces (a multipart upload once past a few
//! MiB), hashed as they go, and visible at their path only when finished.

use bytes::Bytes;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::error::{Error, Result};
use crate::format::StoredFile;
use crate::store::Store;

/// Bytes buffered before the upload turns multipart (and the size of each part).
const PART_BYTES: usize = 8 * 1024 * 1024;

/// One file being uploaded. Drop it without [`FileUpload::finish`] and nothing appears at its
/// path; [`FileUpload::abort`] also cleans up the parts already sent.
pub struct FileUpload {
    writer: BufWriter,
    hasher: Sha256,
    size: u64,
    path: Path,
    relative: String,
}

impl FileUpload {
    pub(crate) fn new(store: &Store, path: Path, relative: String) -> Self {
        FileUpload {
            writer: BufWriter::with_capacity(
                store.object_store().clone(),
                path.clone(),
                PART_BYTES,
            ),
            hasher: Sha256::new(),
            size: 0,
            path,
            relative,
        }
    }

    /// Appends bytes to the file.
    pub async fn write(&mut self, bytes: Bytes) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.hasher.update(&bytes);
        self.size += bytes.len() as u64;
        self.writer
            .put(bytes)
            .await
            .map_err(|e| Error::store(&self.path, e))
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Completes the upload; the file then exists whole, with this size and checksum.
    pub async fn finish(mut self) -> Result<StoredFile> {
        self.writer
            .shutdown()
            .await
            .map_err(|e| Error::ObjectStore {
                path: self.path.to_string(),
                source: object_store::Error::Generic {
                    store: "upload",
                    source: Box::new(e),
                },
            })?;
        Ok(StoredFile {
            path: self.relative,
            size: self.size,
            sha256: hex::encode(self.hasher.finalize()),
        })
    }

    /// Abandons the upload and removes the parts already sent (best effort).
    pub async fn abort(mut self) {
        if let Err(e) = self.writer.abort().await {
            tracing::warn!(path = %self.path, error = %e, "could not abort an upload");
        }
    }
}
