//! Run records: one JSON document per attempt of a pipeline run, so lineage can be followed
//! from a prediction back to raw input and an operator can see every retry.

use object_store::path::Path;

use crate::error::Result;
use crate::format::RunRecord;
use crate::layout;
use crate::names::{Name, NameKind};
use crate::store::{Store, encode_json};

/// A fresh attempt id: start time in milliseconds (13 digits) and 8 random hex digits, so
/// attempts list in start order.
pub fn new_attempt_id(started_at: chrono::DateTime<chrono::Utc>) -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "{:013}-{}",
        started_at.timestamp_millis().max(0),
        &random[..8]
    )
}

impl Store {
    /// Writes the record of one run attempt.
    pub async fn write_run_record(&self, record: &RunRecord) -> Result<Path> {
        self.init().await?;
        let path = layout::run_record(&record.pipeline, &record.run_id, &record.attempt);
        self.put_overwrite(&path, encode_json("run record", record)?)
            .await?;
        Ok(path)
    }

    /// Every attempt recorded for a run, oldest first.
    pub async fn run_records(&self, pipeline: &Name, run_id: &Name) -> Result<Vec<RunRecord>> {
        let dir = layout::run_dir(pipeline, run_id);
        let mut metas = self.list(&dir).await?;
        metas.sort_by(|a, b| a.location.cmp(&b.location));
        let mut records = Vec::new();
        for meta in metas {
            if meta.location.extension() == Some("json") {
                records.push(self.get_json(&meta.location).await?);
            }
        }
        Ok(records)
    }

    /// Run ids recorded for a pipeline.
    pub async fn run_ids(&self, pipeline: &Name) -> Result<Vec<Name>> {
        let dir = layout::pipeline_runs_dir(pipeline);
        let mut ids: Vec<Name> = self
            .list_dirs(&dir)
            .await?
            .into_iter()
            .filter_map(|n| Name::new(NameKind::RunId, n).ok())
            .collect();
        ids.sort();
        Ok(ids)
    }
}
