//! Every object key of the FTI layout is built here and nowhere else.
//!
//! Changing a key is a data migration, not a refactor: each function pins its exact key in a
//! doc test. Numbered entries are zero-padded to 20 digits so that lexicographic listing order
//! (what every object store returns) is numeric order.

use object_store::path::Path;

use crate::names::Name;

/// The file at the root that names the layout format and its version.
///
/// ```
/// assert_eq!(storage::layout::layout_file().as_ref(), "layout.json");
/// ```
pub fn layout_file() -> Path {
    Path::from("layout.json")
}

/// A numbered log entry, e.g. `00000000000000000042.json`.
///
/// ```
/// assert_eq!(storage::layout::entry_file_name(42), "00000000000000000042.json");
/// ```
pub fn entry_file_name(number: u64) -> String {
    format!("{number:020}.json")
}

/// Parses a name produced by [`entry_file_name`]; anything else (temporary files, strays) is
/// `None` and ignored by readers.
pub fn parse_entry_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".json")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Prefix holding every feature table.
pub fn tables_root() -> Path {
    Path::from("tables")
}

/// The directory of one feature table.
pub fn table_dir(table: &Name) -> Path {
    Path::from_iter(["tables", table.as_str()])
}

/// The commit log of a feature table.
///
/// ```
/// use storage::{layout, Name, NameKind};
/// let t = Name::new(NameKind::FeatureGroup, "origin_7d").unwrap();
/// assert_eq!(layout::table_log_dir(&t).as_ref(), "tables/origin_7d/_log");
/// assert_eq!(
///     layout::table_commit(&t, 3).as_ref(),
///     "tables/origin_7d/_log/00000000000000000003.json"
/// );
/// ```
pub fn table_log_dir(table: &Name) -> Path {
    table_dir(table).join("_log")
}

/// The commit entry that makes version `version` of a table visible.
pub fn table_commit(table: &Name, version: u64) -> Path {
    table_log_dir(table).join(entry_file_name(version))
}

/// Where a table's data files live.
///
/// ```
/// use storage::{layout, Name, NameKind};
/// let t = Name::new(NameKind::FeatureGroup, "origin_7d").unwrap();
/// assert_eq!(layout::table_data_dir(&t).as_ref(), "tables/origin_7d/data");
/// ```
pub fn table_data_dir(table: &Name) -> Path {
    table_dir(table).join("data")
}

/// The path, relative to the table directory, of data file `part` of an upload.
///
/// ```
/// assert_eq!(storage::layout::data_file_relative("ab12", 3), "data/ab12/part-00003.parquet");
/// ```
pub fn data_file_relative(upload_id: &str, part: usize) -> String {
    format!("data/{upload_id}/part-{part:05}.parquet")
}

/// Resolves a data file path recorded in a commit (relative to the table directory).
///
/// ```
/// use storage::{layout, Name, NameKind};
/// let t = Name::new(NameKind::FeatureGroup, "g").unwrap();
/// assert_eq!(
///     layout::table_file(&t, "data/5f0c/part-00000.parquet").unwrap().as_ref(),
///     "tables/g/data/5f0c/part-00000.parquet"
/// );
/// assert!(layout::table_file(&t, "../x.parquet").is_err());
/// ```
pub fn table_file(table: &Name, relative: &str) -> crate::Result<Path> {
    join_relative(table_dir(table), relative)
}

/// Prefix holding every registered model.
pub fn models_root() -> Path {
    Path::from("models")
}

/// The directory of one model.
pub fn model_dir(model: &Name) -> Path {
    Path::from_iter(["models", model.as_str()])
}

/// The manifest of an immutable model version.
///
/// ```
/// use storage::{layout, Name, NameKind};
/// let m = Name::new(NameKind::Model, "flight_delay").unwrap();
/// assert_eq!(
///     layout::model_version(&m, 7).as_ref(),
///     "models/flight_delay/versions/00000000000000000007.json"
/// );
/// ```
pub fn model_version(model: &Name, version: u64) -> Path {
    model_versions_dir(model).join(entry_file_name(version))
}

/// The directory of version manifests of a model.
pub fn model_versions_dir(model: &Name) -> Path {
    model_dir(model).join("versions")
}

/// The directory holding every registration attempt's files.
pub fn model_files_root(model: &Name) -> Path {
    model_dir(model).join("files")
}

/// The path, relative to the model directory, of one file of a registration attempt.
///
/// ```
/// assert_eq!(storage::layout::model_file_relative("0a1b", "model.json"), "files/0a1b/model.json");
/// ```
pub fn model_file_relative(upload_id: &str, file: &str) -> String {
    format!("files/{upload_id}/{file}")
}

/// Resolves a file path recorded in a model version (relative to the model directory).
pub fn model_file(model: &Name, relative: &str) -> crate::Result<Path> {
    join_relative(model_dir(model), relative)
}

/// Where the files (artifact, preprocessing, report) of one registration attempt live.
///
/// ```
/// use storage::{layout, Name, NameKind};
/// let m = Name::new(NameKind::Model, "m").unwrap();
/// assert_eq!(layout::model_files_dir(&m, "0a1b").as_ref(), "models/m/files/0a1b");
/// ```
pub fn model_files_dir(model: &Name, upload_id: &str) -> Path {
    model_files_root(model).join(upload_id)
}

/// The directory holding every alias of a model.
pub fn aliases_dir(model: &Name) -> Path {
    model_dir(model).join("aliases")
}

/// The move history of one alias; the newest entry is the alias's current target.
///
/// ```
/// use storage::{layout, Name, NameKind};
/// let m = Name::new(NameKind::Model, "m").unwrap();
/// let a = Name::new(NameKind::Alias, "champion").unwrap();
/// assert_eq!(
///     layout::alias_entry(&m, &a, 2).as_ref(),
///     "models/m/aliases/champion/00000000000000000002.json"
/// );
/// ```
pub fn alias_dir(model: &Name, alias: &Name) -> Path {
    aliases_dir(model).join(alias.as_str())
}

/// One move of an alias.
pub fn alias_entry(model: &Name, alias: &Name, seq: u64) -> Path {
    alias_dir(model, alias).join(entry_file_name(seq))
}

/// The two kinds of published datasets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatasetKind {
    /// Prediction tables written by the inference pipeline.
    Predictions,
    /// Key-value exports (JSON lines, CSV, DynamoDB import) for serving systems.
    Exports,
}

impl DatasetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DatasetKind::Predictions => "predictions",
            DatasetKind::Exports => "exports",
        }
    }
}

/// The directory holding every dataset of a kind.
pub fn datasets_root(kind: DatasetKind) -> Path {
    Path::from(kind.as_str())
}

/// The directory of one published dataset.
///
/// ```
/// use storage::{layout, layout::DatasetKind, Name, NameKind};
/// let d = Name::new(NameKind::Dataset, "route_delay").unwrap();
/// assert_eq!(layout::dataset_dir(DatasetKind::Exports, &d).as_ref(), "exports/route_delay");
/// ```
pub fn dataset_dir(kind: DatasetKind, dataset: &Name) -> Path {
    Path::from_iter([kind.as_str(), dataset.as_str()])
}

/// The directory of one immutable snapshot.
///
/// ```
/// use storage::{layout, layout::DatasetKind, Name, NameKind};
/// let d = Name::new(NameKind::Dataset, "route_delay").unwrap();
/// let s = Name::new(NameKind::Snapshot, "s-1").unwrap();
/// assert_eq!(
///     layout::snapshot_manifest(DatasetKind::Predictions, &d, &s).as_ref(),
///     "predictions/route_delay/snapshots/s-1/_snapshot.json"
/// );
/// ```
pub fn snapshot_dir(kind: DatasetKind, dataset: &Name, snapshot: &Name) -> Path {
    snapshots_dir(kind, dataset).join(snapshot.as_str())
}

/// The directory holding every snapshot of a dataset.
pub fn snapshots_dir(kind: DatasetKind, dataset: &Name) -> Path {
    dataset_dir(kind, dataset).join("snapshots")
}

/// The manifest that seals a snapshot: a snapshot without it does not exist for readers.
pub fn snapshot_manifest(kind: DatasetKind, dataset: &Name, snapshot: &Name) -> Path {
    snapshot_dir(kind, dataset, snapshot).join("_snapshot.json")
}

/// Resolves a file path recorded in a snapshot manifest (relative to the snapshot directory).
pub fn snapshot_file(
    kind: DatasetKind,
    dataset: &Name,
    snapshot: &Name,
    relative: &str,
) -> crate::Result<Path> {
    join_relative(snapshot_dir(kind, dataset, snapshot), relative)
}

/// The `current` pointer history of a dataset; the newest entry names the published snapshot.
///
/// ```
/// use storage::{layout, layout::DatasetKind, Name, NameKind};
/// let d = Name::new(NameKind::Dataset, "route_delay").unwrap();
/// assert_eq!(
///     layout::pointer_entry(DatasetKind::Exports, &d, 1).as_ref(),
///     "exports/route_delay/current/00000000000000000001.json"
/// );
/// ```
pub fn pointer_dir(kind: DatasetKind, dataset: &Name) -> Path {
    dataset_dir(kind, dataset).join("current")
}

/// One move of a dataset's `current` pointer.
pub fn pointer_entry(kind: DatasetKind, dataset: &Name, seq: u64) -> Path {
    pointer_dir(kind, dataset).join(entry_file_name(seq))
}

/// The directory holding every run of a pipeline.
pub fn pipeline_runs_dir(pipeline: &Name) -> Path {
    Path::from_iter(["runs", pipeline.as_str()])
}

/// The records of every attempt of one pipeline run.
///
/// ```
/// use storage::{layout, Name, NameKind};
/// let p = Name::new(NameKind::Pipeline, "feature-pipeline").unwrap();
/// let r = Name::new(NameKind::RunId, "r-1").unwrap();
/// assert_eq!(
///     layout::run_record(&p, &r, "1700000000000-ab12cd34").as_ref(),
///     "runs/feature-pipeline/r-1/1700000000000-ab12cd34.json"
/// );
/// ```
pub fn run_dir(pipeline: &Name, run_id: &Name) -> Path {
    pipeline_runs_dir(pipeline).join(run_id.as_str())
}

/// One attempt's record of a run.
pub fn run_record(pipeline: &Name, run_id: &Name, attempt: &str) -> Path {
    run_dir(pipeline, run_id).join(format!("{attempt}.json"))
}

/// Joins a relative path read from a manifest under `base`, refusing anything that could
/// leave `base` (every segment must be a valid [`Name`]).
fn join_relative(base: Path, relative: &str) -> crate::Result<Path> {
    let mut path = base;
    for segment in relative.split('/') {
        let segment = Name::new(crate::NameKind::File, segment)?;
        path = path.join(segment.as_str());
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_round_trip_and_sort_numerically() {
        let mut names: Vec<String> = [10, 9, 100, 1].map(entry_file_name).to_vec();
        names.sort();
        let parsed: Vec<u64> = names
            .iter()
            .map(|n| parse_entry_file_name(n).unwrap())
            .collect();
        assert_eq!(parsed, [1, 9, 10, 100]);
        assert_eq!(parse_entry_file_name("1.json"), None);
        assert_eq!(parse_entry_file_name("00000000000000000001.json#1"), None);
    }
}
