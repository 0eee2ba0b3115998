//! The outputs of a scoring run, written batch by batch while it scores: the predictions
//! Parquet file and the export files upload in pieces into the snapshot that is not sealed
//! yet, and Redis entries load into the snapshot's keyspace. None of it is visible to readers
//! before the seal and the pointer switches, and all of it is abandoned on failure.

use std::collections::BTreeMap;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use serde_json::{Value, json};
use storage::StoredFile;
use storage::parquet_io::ParquetEncoder;
use storage::upload::FileUpload;
use tracing::warn;

use crate::error::Result;
use crate::exports::{ExportWriter, RedisTarget};

/// Where a run's outputs go; empty (nothing written) on a dry run.
#[derive(Default)]
pub struct Sinks {
    /// The predictions file: its encoder (made with the first batch) and upload.
    pub parquet: Option<(Option<ParquetEncoder>, FileUpload)>,
    pub exports: Vec<(ExportWriter, FileUpload)>,
    pub redis: Option<RedisTarget>,
    /// The snapshot id, which names the Redis keyspace.
    pub snapshot: String,
    /// Whether an abandoned run deletes the keyspace: not when other shards write into it.
    pub delete_redis_on_abort: bool,
    redis_keys: usize,
}

impl Sinks {
    /// Writes one scored batch to every output.
    pub async fn write(
        &mut self,
        schema: &SchemaRef,
        batch: &RecordBatch,
        keys: &[String],
        values: &[Value],
        model_version: u64,
    ) -> Result<()> {
        if let Some((encoder, upload)) = &mut self.parquet {
            let encoder = match encoder {
                Some(e) => e,
                None => encoder.insert(ParquetEncoder::new(
                    schema.clone(),
                    format!("predictions/{}", self.snapshot),
                )),
            };
            encoder.write(batch)?;
            upload.write(encoder.take_encoded()).await?;
        }
        for (writer, upload) in &mut self.exports {
            for (key, value) in keys.iter().zip(values) {
                writer.push(key, value, model_version);
            }
            upload.write(writer.take().into()).await?;
        }
        if let Some(target) = &mut self.redis {
            let entries: Vec<(String, String)> = keys
                .iter()
                .zip(values)
                .map(|(key, value)| {
                    let doc = json!({"value": value, "model_version": model_version, "snapshot": self.snapshot});
                    (key.clone(), doc.to_string())
                })
                .collect();
            target.load(&self.snapshot, &entries).await?;
            self.redis_keys += entries.len();
        }
        Ok(())
    }

    /// Completes every file (an empty predictions file with `schema` if nothing was scored)
    /// and returns them with the number of Redis keys loaded. On failure the rest is
    /// abandoned as by [`Sinks::abort`].
    pub async fn finish(
        mut self,
        schema: &SchemaRef,
    ) -> Result<(BTreeMap<String, StoredFile>, usize)> {
        let parquet = self.parquet.take();
        let exports = std::mem::take(&mut self.exports);
        let snapshot = self.snapshot.clone();
        let completed: Result<BTreeMap<String, StoredFile>> = async {
            let mut files = BTreeMap::new();
            if let Some((encoder, mut upload)) = parquet {
                let encoder = match encoder {
                    Some(e) => e,
                    None => ParquetEncoder::new(schema.clone(), format!("predictions/{snapshot}")),
                };
                upload.write(encoder.finish()?).await?;
                let stored = upload.finish().await?;
                files.insert(stored.path.clone(), stored);
            }
            for (mut writer, mut upload) in exports {
                upload.write(writer.take().into()).await?;
                let stored = upload.finish().await?;
                files.insert(stored.path.clone(), stored);
            }
            Ok(files)
        }
        .await;
        match completed {
            Ok(files) => Ok((files, self.redis_keys)),
            Err(e) => {
                self.abort().await;
                Err(e)
            }
        }
    }

    /// Abandons every output: uploads aborted, and this run's Redis keyspace deleted (only
    /// when no other shard writes into it). Best effort: failures are logged.
    pub async fn abort(self) {
        if let Some((_, upload)) = self.parquet {
            upload.abort().await;
        }
        for (_, upload) in self.exports {
            upload.abort().await;
        }
        if let Some(mut target) = self.redis {
            if self.delete_redis_on_abort {
                // Snapshot ids are deterministic: an earlier run of the same job may have
                // published this keyspace, and readers may be on it.
                match target.is_referenced(&self.snapshot).await {
                    Ok(false) => {
                        if let Err(e) = target.delete_keyspace(&self.snapshot).await {
                            warn!(error = %e, "could not delete the abandoned redis keyspace");
                        }
                    }
                    Ok(true) => {}
                    Err(e) => warn!(error = %e, "could not check the abandoned redis keyspace"),
                }
            } else if self.redis_keys > 0 {
                warn!(
                    snapshot = %self.snapshot,
                    keys = self.redis_keys,
                    "this shard's redis keys stay in the unpublished keyspace until the shard is re-run"
                );
            }
        }
    }
}
