//! `list`, `describe` and `history`: what the store holds, as JSON for machines and people.

use serde_json::{Value, json};
use storage::{Name, NameKind, Store, VersionSpec};

use crate::error::Result;

/// Every feature table with its latest version.
pub async fn list(store: &Store) -> Result<Value> {
    let mut tables = Vec::new();
    for table in store.list_tables().await? {
        match store.table(&table, VersionSpec::Latest).await {
            Ok(s) => tables.push(json!({
                "table": table,
                "version": s.version,
                "rows": s.num_rows(),
                "committed_at": s.commit.timestamp,
                "owner": s.definition().owner,
                "description": s.definition().description,
            })),
            Err(storage::Error::TableNotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(json!({ "tables": tables }))
}

/// One version's definition, statistics and validation report.
pub async fn describe(store: &Store, table: &str, version: Option<u64>) -> Result<Value> {
    let table = Name::new(NameKind::FeatureGroup, table)?;
    let at = version.map_or(VersionSpec::Latest, VersionSpec::Version);
    let s = store.table(&table, at).await?;
    Ok(json!({
        "table": table,
        "version": s.version,
        "rows": s.num_rows(),
        "files": s.files.len(),
        "committed_at": s.commit.timestamp,
        "operation": s.commit.operation,
        "run_id": s.commit.run_id,
        "definition": s.definition(),
        "statistics": s.commit.statistics,
        "validation": s.commit.validation,
    }))
}

/// Every commit of a table, oldest first.
pub async fn history(store: &Store, table: &str) -> Result<Value> {
    let table = Name::new(NameKind::FeatureGroup, table)?;
    let commits = store.table_history(&table).await?;
    if commits.is_empty() {
        return Err(storage::Error::TableNotFound {
            table: table.to_string(),
        }
        .into());
    }
    let versions: Vec<Value> = commits
        .iter()
        .map(|c| {
            let warnings = c.validation.as_ref().map_or(0, |v| v.warnings().count());
            json!({
                "version": c.version,
                "committed_at": c.timestamp,
                "operation": c.operation,
                "rows": c.num_rows,
                "files_added": c.add.len(),
                "files_removed": c.remove.len(),
                "run_id": c.run_id,
                "validation_warnings": warnings,
            })
        })
        .collect();
    Ok(json!({ "table": table, "versions": versions }))
}
