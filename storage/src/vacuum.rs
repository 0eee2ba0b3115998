//! Garbage collection of files that no commit will ever make visible.
//!
//! A data file is *committed* once any commit entry names it, and then vacuum never deletes it
//! (older versions stay readable). Files named by no entry come from writers that crashed or
//! lost a race; vacuum deletes them once they are older than a grace period, so a writer that
//! is still between writing its files and committing them is not robbed.

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;

use crate::error::Result;
use crate::layout::{self, DatasetKind};
use crate::names::{Name, NameKind};
use crate::store::Store;

/// What to collect.
#[derive(Debug, Clone, Copy)]
pub struct VacuumOptions {
    /// Only unreferenced files older than this are deleted.
    pub min_age: Duration,
    /// List what would be deleted without deleting.
    pub dry_run: bool,
}

impl Default for VacuumOptions {
    fn default() -> Self {
        VacuumOptions {
            min_age: Duration::from_secs(3600),
            dry_run: false,
        }
    }
}

/// What vacuum found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct VacuumReport {
    /// Keys deleted (or, in a dry run, that would be).
    pub deleted: Vec<String>,
    pub deleted_bytes: u64,
    /// Unreferenced files kept because they are younger than the grace period.
    pub too_young: usize,
}

impl Store {
    /// Deletes uncommitted table data files, unregistered model files and unsealed snapshot
    /// files older than `options.min_age`.
    pub async fn vacuum(&self, options: VacuumOptions) -> Result<VacuumReport> {
        let mut report = VacuumReport::default();
        let cutoff = Utc::now() - chrono::Duration::from_std(options.min_age).unwrap_or_default();

        for table in self.list_tables().await? {
            let referenced: HashSet<String> = self
                .table_history(&table)
                .await?
                .iter()
                .flat_map(|c| c.add.iter().map(|f| f.file.path.clone()))
                .collect();
            let dir = layout::table_dir(&table);
            self.collect(
                &layout::table_data_dir(&table),
                &dir,
                &referenced,
                cutoff,
                options,
                &mut report,
            )
            .await?;
            // Staging files a killed writer left beside the log entries (never entries).
            let log_dir = layout::table_log_dir(&table);
            let entries: HashSet<String> = self
                .list(&log_dir)
                .await?
                .iter()
                .filter_map(|m| m.location.filename().map(str::to_string))
                .filter(|f| layout::parse_entry_file_name(f).is_some())
                .map(|f| format!("_log/{f}"))
                .collect();
            self.collect(&log_dir, &dir, &entries, cutoff, options, &mut report)
                .await?;
        }

        for model in self.list_models().await? {
            let mut referenced = HashSet::new();
            for version in self.model_versions(&model).await? {
                let manifest = self.model_version(&model, version).await?;
                referenced.extend(manifest.files.into_values().map(|f| f.path));
            }
            let dir = layout::model_dir(&model);
            self.collect(
                &layout::model_files_root(&model),
                &dir,
                &referenced,
                cutoff,
                options,
                &mut report,
            )
            .await?;
        }

        for kind in [DatasetKind::Predictions, DatasetKind::Exports] {
            let root = layout::datasets_root(kind);
            for dataset in self.list_dirs(&root).await? {
                let Ok(dataset) = Name::new(NameKind::Dataset, dataset) else {
                    continue;
                };
                let snapshots = layout::snapshots_dir(kind, &dataset);
                for snapshot in self.list_dirs(&snapshots).await? {
                    let Ok(snapshot) = Name::new(NameKind::Snapshot, snapshot) else {
                        continue;
                    };
                    // Only a snapshot whose seal is certainly absent is garbage; any other
                    // error (network, unreadable seal) keeps it.
                    match self.snapshot(kind, &dataset, &snapshot).await {
                        Err(crate::Error::SnapshotNotFound { .. }) => {}
                        _ => continue,
                    }
                    let dir = layout::snapshot_dir(kind, &dataset, &snapshot);
                    self.collect(&dir, &dir, &HashSet::new(), cutoff, options, &mut report)
                        .await?;
                }
            }
        }
        report.deleted.sort();
        Ok(report)
    }

    /// Deletes objects under `prefix` whose path relative to `base` is not in `referenced`.
    async fn collect(
        &self,
        prefix: &object_store::path::Path,
        base: &object_store::path::Path,
        referenced: &HashSet<String>,
        cutoff: chrono::DateTime<Utc>,
        options: VacuumOptions,
        report: &mut VacuumReport,
    ) -> Result<()> {
        for meta in self.list(prefix).await? {
            let relative = meta
                .location
                .prefix_match(base)
                .map(|parts| {
                    parts
                        .map(|p| p.as_ref().to_string())
                        .collect::<Vec<_>>()
                        .join("/")
                })
                .unwrap_or_default();
            if referenced.contains(&relative) {
                continue;
            }
            if meta.last_modified > cutoff {
                report.too_young += 1;
                continue;
            }
            if !options.dry_run {
                self.delete(&meta.location).await?;
            }
            report.deleted_bytes += meta.size;
            report.deleted.push(meta.location.to_string());
        }
        Ok(())
    }
}
