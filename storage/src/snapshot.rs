//! Published datasets (prediction tables and key-value exports): immutable snapshots plus a
//! `current` pointer moved atomically, with every move kept so a rollback is one operation.
//!
//! A snapshot's files are written first; the snapshot exists for readers only once its
//! `_snapshot.json` seal is created (create-only). Publishing appends a pointer entry.

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::Utc;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::format::{DOCUMENT_VERSION, ObjectRef, PointerMove, SnapshotManifest, StoredFile};
use crate::layout::{self, DatasetKind};
use crate::log::{self, Appended};
use crate::names::{Name, NameKind};
use crate::store::{Created, Store, encode_json};
use crate::upload::FileUpload;

/// What [`Store::publish`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Published {
    /// The pointer now names the snapshot.
    Moved(PointerMove),
    /// The pointer already named it; nothing was written.
    AlreadyCurrent(PointerMove),
}

/// What [`Store::seal_snapshot`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealed {
    Created,
    /// The same snapshot (same files) was sealed before.
    AlreadySealed,
}

impl Store {
    /// Writes one file into a snapshot that is not sealed yet.
    pub async fn put_snapshot_file(
        &self,
        kind: DatasetKind,
        dataset: &Name,
        snapshot: &Name,
        relative: &str,
        bytes: Bytes,
    ) -> Result<StoredFile> {
        self.refuse_sealed(kind, dataset, snapshot).await?;
        let path = layout::snapshot_file(kind, dataset, snapshot, relative)?;
        self.put_file(&path, relative.to_string(), bytes).await
    }

    /// Starts writing a large file into a snapshot that is not sealed yet, in pieces: nothing
    /// appears at its path until [`FileUpload::finish`].
    pub async fn snapshot_file_upload(
        &self,
        kind: DatasetKind,
        dataset: &Name,
        snapshot: &Name,
        relative: &str,
    ) -> Result<FileUpload> {
        self.refuse_sealed(kind, dataset, snapshot).await?;
        let path = layout::snapshot_file(kind, dataset, snapshot, relative)?;
        Ok(FileUpload::new(self, path, relative.to_string()))
    }

    /// A sealed snapshot is immutable: refuse to write into it.
    async fn refuse_sealed(
        &self,
        kind: DatasetKind,
        dataset: &Name,
        snapshot: &Name,
    ) -> Result<()> {
        match self.snapshot(kind, dataset, snapshot).await {
            Err(Error::SnapshotNotFound { .. }) => Ok(()),
            Ok(_) => Err(Error::SnapshotExists {
                dataset: dataset.to_string(),
                snapshot: snapshot.to_string(),
            }),
            Err(e) => Err(e),
        }
    }

    /// Reads a file of a snapshot that may not be sealed yet (e.g. a shard's part manifest).
    /// Not checksummed: only the writer side of a snapshot uses this.
    pub async fn staged_snapshot_file(
        &self,
        kind: DatasetKind,
        dataset: &Name,
        snapshot: &Name,
        relative: &str,
    ) -> Result<Option<Bytes>> {
        let path = layout::snapshot_file(kind, dataset, snapshot, relative)?;
        match self.get_bytes(&path).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Seals a snapshot: after this, readers can see it and nothing in it changes.
    #[allow(clippy::too_many_arguments)]
    pub async fn seal_snapshot(
        &self,
        kind: DatasetKind,
        dataset: &Name,
        snapshot: &Name,
        files: BTreeMap<String, StoredFile>,
        num_rows: u64,
        run_id: Option<String>,
        inputs: Vec<ObjectRef>,
        metadata: BTreeMap<String, serde_json::Value>,
    ) -> Result<(Sealed, SnapshotManifest)> {
        self.init().await?;
        let manifest = SnapshotManifest {
            format_version: DOCUMENT_VERSION,
            dataset_kind: kind,
            dataset: dataset.clone(),
            snapshot: snapshot.clone(),
            created_at: Utc::now(),
            files,
            num_rows,
            run_id,
            inputs,
            metadata,
        };
        let path = layout::snapshot_manifest(kind, dataset, snapshot);
        match self
            .put_create(&path, encode_json("snapshot manifest", &manifest)?)
            .await?
        {
            Created::Yes => Ok((Sealed::Created, manifest)),
            Created::AlreadyExists => {
                let existing = self.snapshot(kind, dataset, snapshot).await?;
                let same = existing
                    .files
                    .values()
                    .map(|f| &f.sha256)
                    .collect::<Vec<_>>()
                    == manifest
                        .files
                        .values()
                        .map(|f| &f.sha256)
                        .collect::<Vec<_>>();
                if same {
                    Ok((Sealed::AlreadySealed, existing))
                } else {
                    Err(Error::SnapshotExists {
                        dataset: dataset.to_string(),
                        snapshot: snapshot.to_string(),
                    })
                }
            }
        }
    }

    /// Reads a sealed snapshot's manifest.
    pub async fn snapshot(
        &self,
        kind: DatasetKind,
        dataset: &Name,
        snapshot: &Name,
    ) -> Result<SnapshotManifest> {
        let path = layout::snapshot_manifest(kind, dataset, snapshot);
        match self.get_json(&path).await {
            Err(Error::NotFound { .. }) => Err(Error::SnapshotNotFound {
                dataset: dataset.to_string(),
                snapshot: snapshot.to_string(),
            }),
            other => other,
        }
    }

    /// Reads one file of a sealed snapshot, verifying its checksum.
    pub async fn snapshot_file(&self, manifest: &SnapshotManifest, logical: &str) -> Result<Bytes> {
        let stored = manifest
            .files
            .get(logical)
            .ok_or_else(|| Error::FileNotFound {
                what: format!("snapshot {:?}", manifest.snapshot.as_str()),
                file: logical.to_string(),
            })?;
        let path = layout::snapshot_file(
            manifest.dataset_kind,
            &manifest.dataset,
            &manifest.snapshot,
            &stored.path,
        )?;
        self.get_verified(&path, stored).await
    }

    /// Sealed snapshots of a dataset, by name.
    pub async fn list_snapshots(&self, kind: DatasetKind, dataset: &Name) -> Result<Vec<Name>> {
        let dir = layout::snapshots_dir(kind, dataset);
        let mut sealed = Vec::new();
        for name in self.list_dirs(&dir).await? {
            let Ok(name) = Name::new(NameKind::Snapshot, name) else {
                continue;
            };
            if self.snapshot(kind, dataset, &name).await.is_ok() {
                sealed.push(name);
            }
        }
        sealed.sort();
        Ok(sealed)
    }

    /// The published snapshot of a dataset (newest pointer move), if any.
    pub async fn current(&self, kind: DatasetKind, dataset: &Name) -> Result<Option<PointerMove>> {
        let dir = layout::pointer_dir(kind, dataset);
        match log::latest(self, &dir).await? {
            None => Ok(None),
            Some(seq) => {
                let entry: PointerMove = log::read_entry(self, &dir, seq).await?;
                log::check_number(&dir, seq, entry.seq)?;
                Ok(Some(entry))
            }
        }
    }

    /// Every pointer move of a dataset, oldest first.
    pub async fn pointer_history(
        &self,
        kind: DatasetKind,
        dataset: &Name,
    ) -> Result<Vec<PointerMove>> {
        let dir = layout::pointer_dir(kind, dataset);
        log::read_all::<PointerMove>(self, &dir)
            .await?
            .into_iter()
            .map(|(n, e)| log::check_number(&dir, n, e.seq).map(|()| e))
            .collect()
    }

    /// Makes a sealed snapshot the current one. Concurrent publishers are serialised: each
    /// move is recorded, the last one wins.
    pub async fn publish(
        &self,
        kind: DatasetKind,
        dataset: &Name,
        snapshot: &Name,
        actor: &str,
        reason: &str,
    ) -> Result<Published> {
        self.snapshot(kind, dataset, snapshot).await?;
        let dir = layout::pointer_dir(kind, dataset);
        for attempt in 1..=20u32 {
            let current = self.current(kind, dataset).await?;
            if let Some(current) = &current
                && &current.snapshot == snapshot
            {
                return Ok(Published::AlreadyCurrent(current.clone()));
            }
            let entry = PointerMove {
                format_version: DOCUMENT_VERSION,
                dataset_kind: kind,
                dataset: dataset.clone(),
                seq: current.as_ref().map_or(0, |c| c.seq) + 1,
                snapshot: snapshot.clone(),
                previous_snapshot: current.map(|c| c.snapshot),
                actor: actor.to_string(),
                reason: reason.to_string(),
                timestamp: Utc::now(),
                move_id: Uuid::new_v4(),
            };
            let bytes = encode_json("pointer move", &entry)?;
            if log::try_append(self, &dir, entry.seq, bytes).await? == Appended::Yes {
                tracing::info!(dataset = %dataset, snapshot = %snapshot, "published snapshot");
                return Ok(Published::Moved(entry));
            }
            tracing::debug!(dataset = %dataset, attempt, "pointer moved concurrently; retrying");
        }
        Err(Error::CommitConflict {
            log: dir.to_string(),
            version: 0,
            attempts: 20,
        })
    }

    /// Points a dataset back at the snapshot that was current before the current one.
    pub async fn rollback_pointer(
        &self,
        kind: DatasetKind,
        dataset: &Name,
        actor: &str,
        reason: &str,
    ) -> Result<Published> {
        let current =
            self.current(kind, dataset)
                .await?
                .ok_or_else(|| Error::NothingPublished {
                    dataset: dataset.to_string(),
                })?;
        let previous =
            current
                .previous_snapshot
                .clone()
                .ok_or_else(|| Error::NothingPublished {
                    dataset: format!("{dataset} (before snapshot {})", current.snapshot),
                })?;
        self.publish(kind, dataset, &previous, actor, reason).await
    }

    /// Deletes sealed snapshots beyond the newest `keep` (by seal time), never the current one
    /// nor the one a rollback would restore. Returns the names deleted.
    pub async fn prune_snapshots(
        &self,
        kind: DatasetKind,
        dataset: &Name,
        keep: usize,
    ) -> Result<Vec<Name>> {
        // The current snapshot and the one a rollback would restore always stay.
        let pointer = self.current(kind, dataset).await?;
        let protected: Vec<Name> = pointer
            .iter()
            .flat_map(|c| std::iter::once(c.snapshot.clone()).chain(c.previous_snapshot.clone()))
            .collect();
        let mut sealed = Vec::new();
        for name in self.list_snapshots(kind, dataset).await? {
            match self.snapshot(kind, dataset, &name).await {
                Ok(manifest) => sealed.push((manifest.created_at, name)),
                // Pruned meanwhile by another process.
                Err(Error::SnapshotNotFound { .. } | Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        sealed.sort();
        let excess = sealed.len().saturating_sub(keep);
        let mut deleted = Vec::new();
        for (_, name) in sealed.into_iter().take(excess) {
            if protected.contains(&name) {
                continue;
            }
            let dir = layout::snapshot_dir(kind, dataset, &name);
            // The seal goes first, so a half-deleted snapshot is invisible, never partial.
            self.delete(&layout::snapshot_manifest(kind, dataset, &name))
                .await?;
            for meta in self.list(&dir).await? {
                self.delete(&meta.location).await?;
            }
            deleted.push(name);
        }
        Ok(deleted)
    }
}
