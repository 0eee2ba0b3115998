//! The model registry: immutable numbered model versions and aliases moved by
//! compare-and-swap, with the full history of every move kept.
//!
//! A version is registered by uploading its files under `files/<upload_id>/` and then
//! creating `versions/<n>.json`; a version number is taken by exactly one writer, the others
//! take the next. An alias is a create-only log of moves (`aliases/<a>/<seq>.json`); moving it
//! means creating entry `seq + 1` where `seq` is the entry the mover read, so two concurrent
//! moves cannot both succeed, on any backend, including the local filesystem.

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::Utc;
use serde_json::Value;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::format::{
    AliasAction, AliasMove, ColumnDef, DOCUMENT_VERSION, Lineage, ModelStatus, ModelVersion,
};
use crate::layout;
use crate::log::{self, Appended};
use crate::names::{Name, NameKind};
use crate::store::{Store, encode_json};

/// A model version about to be registered.
#[derive(Debug, Clone)]
pub struct NewModelVersion {
    pub status: ModelStatus,
    pub gate: Value,
    pub task: String,
    pub algorithm: String,
    pub features: Vec<ColumnDef>,
    pub metrics: Value,
    pub params: Value,
    pub lineage: Lineage,
    pub metadata: BTreeMap<String, Value>,
    /// Files by logical name (each a valid file name), e.g. `model.json`, `preprocessing.json`.
    pub files: Vec<(String, Bytes)>,
}

/// How to pick a model version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelRef {
    Version(u64),
    Alias(Name),
    /// The highest version number, whatever its status.
    Latest,
}

impl ModelRef {
    /// Parses `champion`, `v3`, `3` or `latest`.
    pub fn parse(s: &str) -> Result<ModelRef> {
        if s == "latest" {
            return Ok(ModelRef::Latest);
        }
        let digits = s.strip_prefix('v').unwrap_or(s);
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            let v = digits.parse().map_err(|_| Error::InvalidArgument {
                what: format!("model version {s:?}"),
                reason: "too large".into(),
            })?;
            return Ok(ModelRef::Version(v));
        }
        Ok(ModelRef::Alias(Name::new(NameKind::Alias, s)?))
    }
}

impl Store {
    /// Every model with at least one directory in the store.
    pub async fn list_models(&self) -> Result<Vec<Name>> {
        let mut names: Vec<Name> = self
            .list_dirs(&layout::models_root())
            .await?
            .into_iter()
            .filter_map(|n| Name::new(NameKind::Model, n).ok())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Registers a new immutable version; returns its manifest.
    pub async fn register_model(&self, model: &Name, new: NewModelVersion) -> Result<ModelVersion> {
        self.init().await?;
        let upload_id = Uuid::new_v4().simple().to_string();
        let mut files = BTreeMap::new();
        for (logical, bytes) in new.files {
            let logical = Name::new(NameKind::File, logical)?;
            let relative = layout::model_file_relative(&upload_id, logical.as_str());
            let path = layout::model_files_dir(model, &upload_id).join(logical.as_str());
            let stored = self.put_file(&path, relative, bytes).await?;
            files.insert(logical.to_string(), stored);
        }
        let dir = layout::model_versions_dir(model);
        for attempt in 1..=50u32 {
            let version = log::latest(self, &dir).await?.unwrap_or(0) + 1;
            let manifest = ModelVersion {
                format_version: DOCUMENT_VERSION,
                model: model.clone(),
                version,
                upload_id: upload_id.clone(),
                created_at: Utc::now(),
                status: new.status,
                gate: new.gate.clone(),
                task: new.task.clone(),
                algorithm: new.algorithm.clone(),
                features: new.features.clone(),
                files: files.clone(),
                metrics: new.metrics.clone(),
                params: new.params.clone(),
                lineage: new.lineage.clone(),
                metadata: new.metadata.clone(),
            };
            let bytes = encode_json("model version", &manifest)?;
            match log::try_append(self, &dir, version, bytes).await? {
                Appended::Yes => {
                    tracing::info!(model = %model, version, status = ?new.status, "registered model version");
                    return Ok(manifest);
                }
                Appended::Taken => {
                    tracing::debug!(model = %model, version, attempt, "version number taken; trying the next");
                }
            }
        }
        Err(Error::CommitConflict {
            log: dir.to_string(),
            version: 0,
            attempts: 50,
        })
    }

    /// Version numbers of a model, ascending.
    pub async fn model_versions(&self, model: &Name) -> Result<Vec<u64>> {
        log::entry_numbers(self, &layout::model_versions_dir(model)).await
    }

    /// Reads one version's manifest.
    pub async fn model_version(&self, model: &Name, version: u64) -> Result<ModelVersion> {
        let dir = layout::model_versions_dir(model);
        match log::read_entry::<ModelVersion>(self, &dir, version).await {
            Ok(manifest) => {
                log::check_number(&dir, version, manifest.version)?;
                Ok(manifest)
            }
            Err(Error::NotFound { .. }) => Err(Error::ModelVersionNotFound {
                model: model.to_string(),
                version,
            }),
            Err(e) => Err(e),
        }
    }

    /// Resolves a version, alias or `latest` to a manifest.
    pub async fn resolve_model(&self, model: &Name, reference: &ModelRef) -> Result<ModelVersion> {
        let version =
            match reference {
                ModelRef::Version(v) => *v,
                ModelRef::Latest => *self.model_versions(model).await?.last().ok_or_else(|| {
                    Error::ModelNotFound {
                        model: model.to_string(),
                    }
                })?,
                ModelRef::Alias(alias) => {
                    self.alias(model, alias)
                        .await?
                        .ok_or_else(|| Error::AliasNotFound {
                            model: model.to_string(),
                            alias: alias.to_string(),
                        })?
                        .version
                }
            };
        self.model_version(model, version).await
    }

    /// Reads one file of a model version, verifying its checksum.
    pub async fn model_file(&self, manifest: &ModelVersion, logical: &str) -> Result<Bytes> {
        let stored = manifest
            .files
            .get(logical)
            .ok_or_else(|| Error::FileNotFound {
                what: format!(
                    "model {:?} version {}",
                    manifest.model.as_str(),
                    manifest.version
                ),
                file: logical.to_string(),
            })?;
        let path = crate::layout::model_dir(&manifest.model);
        let path = stored.path.split('/').try_fold(path, |p, seg| {
            Name::new(NameKind::File, seg).map(|s| p.join(s.as_str()))
        })?;
        self.get_verified(&path, stored).await
    }

    /// The current target of an alias (its newest move), if it was ever set.
    pub async fn alias(&self, model: &Name, alias: &Name) -> Result<Option<AliasMove>> {
        let dir = layout::alias_dir(model, alias);
        match log::latest(self, &dir).await? {
            None => Ok(None),
            Some(seq) => {
                let entry: AliasMove = log::read_entry(self, &dir, seq).await?;
                log::check_number(&dir, seq, entry.seq)?;
                Ok(Some(entry))
            }
        }
    }

    /// Every move of an alias, oldest first.
    pub async fn alias_history(&self, model: &Name, alias: &Name) -> Result<Vec<AliasMove>> {
        let dir = layout::alias_dir(model, alias);
        log::read_all::<AliasMove>(self, &dir)
            .await?
            .into_iter()
            .map(|(n, e)| log::check_number(&dir, n, e.seq).map(|()| e))
            .collect()
    }

    /// The names of a model's aliases.
    pub async fn alias_names(&self, model: &Name) -> Result<Vec<Name>> {
        let mut names: Vec<Name> = self
            .list_dirs(&layout::aliases_dir(model))
            .await?
            .into_iter()
            .filter_map(|n| Name::new(NameKind::Alias, n).ok())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Points `alias` at `version` if the alias is still at move `expected_seq` (0 = never set).
    ///
    /// Fails with [`Error::AliasConflict`] if another move happened in between, and with
    /// [`Error::RejectedModel`] if the version failed its gate.
    #[allow(clippy::too_many_arguments)]
    pub async fn move_alias(
        &self,
        model: &Name,
        alias: &Name,
        version: u64,
        expected_seq: u64,
        action: AliasAction,
        actor: &str,
        reason: &str,
    ) -> Result<AliasMove> {
        let target = self.model_version(model, version).await?;
        if target.status == ModelStatus::Rejected {
            return Err(Error::RejectedModel {
                model: model.to_string(),
                version,
                reason: gate_reason(&target.gate),
            });
        }
        let dir = layout::alias_dir(model, alias);
        let current = match expected_seq {
            0 => None,
            seq => Some(log::read_entry::<AliasMove>(self, &dir, seq).await?),
        };
        let entry = AliasMove {
            format_version: DOCUMENT_VERSION,
            model: model.clone(),
            alias: alias.clone(),
            seq: expected_seq + 1,
            version,
            previous_version: current.map(|c| c.version),
            action,
            actor: actor.to_string(),
            reason: reason.to_string(),
            timestamp: Utc::now(),
            move_id: Uuid::new_v4(),
        };
        let bytes = encode_json("alias move", &entry)?;
        match log::try_append(self, &dir, entry.seq, bytes).await? {
            Appended::Yes => {
                tracing::info!(model = %model, alias = %alias, version, ?action, "moved alias");
                Ok(entry)
            }
            Appended::Taken => Err(Error::AliasConflict {
                model: model.to_string(),
                alias: alias.to_string(),
                expected: expected_seq,
                found: log::latest(self, &dir).await?.unwrap_or(0),
            }),
        }
    }

    /// Points `alias` at `version`, from whatever it points to now.
    pub async fn promote(
        &self,
        model: &Name,
        alias: &Name,
        version: u64,
        actor: &str,
        reason: &str,
    ) -> Result<AliasMove> {
        let seq = self.alias(model, alias).await?.map_or(0, |a| a.seq);
        self.move_alias(
            model,
            alias,
            version,
            seq,
            AliasAction::Promote,
            actor,
            reason,
        )
        .await
    }

    /// Points `alias` back at the version it pointed to before its current one.
    pub async fn rollback(
        &self,
        model: &Name,
        alias: &Name,
        actor: &str,
        reason: &str,
    ) -> Result<AliasMove> {
        let current = self
            .alias(model, alias)
            .await?
            .ok_or_else(|| Error::AliasNotFound {
                model: model.to_string(),
                alias: alias.to_string(),
            })?;
        let previous = current
            .previous_version
            .ok_or_else(|| Error::NothingToRollBack {
                model: model.to_string(),
                alias: alias.to_string(),
            })?;
        self.move_alias(
            model,
            alias,
            previous,
            current.seq,
            AliasAction::Rollback,
            actor,
            reason,
        )
        .await
    }
}

fn gate_reason(gate: &Value) -> String {
    gate.get("reason")
        .and_then(Value::as_str)
        .unwrap_or("failed its gate")
        .to_string()
}
