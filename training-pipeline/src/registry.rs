//! `models`, `show`, `promote`, `rollback`, `history`: the registry as an operator sees it.

use serde_json::{Value, json};
use storage::{ModelRef, Name, NameKind, Store};

use crate::error::Result;

/// Every model with its versions and aliases.
pub async fn models(store: &Store) -> Result<Value> {
    let mut out = Vec::new();
    for model in store.list_models().await? {
        let versions = store.model_versions(&model).await?;
        let mut aliases = serde_json::Map::new();
        for alias in store.alias_names(&model).await? {
            if let Some(current) = store.alias(&model, &alias).await? {
                aliases.insert(alias.to_string(), json!(current.version));
            }
        }
        out.push(json!({"model": model, "versions": versions, "aliases": aliases}));
    }
    Ok(json!({ "models": out }))
}

/// One version's manifest (by version, alias or `latest`).
pub async fn show(store: &Store, model: &str, reference: &str) -> Result<Value> {
    let model = Name::new(NameKind::Model, model)?;
    let manifest = store
        .resolve_model(&model, &ModelRef::parse(reference)?)
        .await?;
    let mut value = serde_json::to_value(&manifest).unwrap_or_default();
    // The embedded spec is long; `metadata.spec` stays in the manifest for those who need it.
    if let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("spec");
    }
    Ok(value)
}

/// Points the alias at a version.
pub async fn promote(
    store: &Store,
    model: &str,
    alias: &str,
    version: &str,
    actor: &str,
    reason: &str,
) -> Result<Value> {
    let model = Name::new(NameKind::Model, model)?;
    let alias = Name::new(NameKind::Alias, alias)?;
    let target = store
        .resolve_model(&model, &ModelRef::parse(version)?)
        .await?;
    let moved = store
        .promote(&model, &alias, target.version, actor, reason)
        .await?;
    Ok(serde_json::to_value(moved).unwrap_or_default())
}

/// Points the alias back at the version before its current one.
pub async fn rollback(
    store: &Store,
    model: &str,
    alias: &str,
    actor: &str,
    reason: &str,
) -> Result<Value> {
    let model = Name::new(NameKind::Model, model)?;
    let alias = Name::new(NameKind::Alias, alias)?;
    let moved = store.rollback(&model, &alias, actor, reason).await?;
    Ok(serde_json::to_value(moved).unwrap_or_default())
}

/// Every move of an alias, oldest first.
pub async fn history(store: &Store, model: &str, alias: &str) -> Result<Value> {
    let model = Name::new(NameKind::Model, model)?;
    let alias = Name::new(NameKind::Alias, alias)?;
    let moves = store.alias_history(&model, &alias).await?;
    Ok(json!({ "model": model, "alias": alias, "moves": moves }))
}
