//! Scoring: every entity once, the same values in every output, point-in-time inputs,
//! idempotent re-runs, shards, rollback.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Float64Array, StringArray};
use arrow::datatypes::Float64Type;
use fti_learn::model::{Model, Scores};
use fti_learn::preprocess::Preprocessing;
use inference_pipeline::score;
use storage::{DatasetKind, ModelRef, Name, NameKind, RunStatus, Store};

use crate::support::{CONFIG, World, job, published, register, world};

/// What the model says for entity i with the inputs known at T0 (x = i % 5, never the
/// future row's 1e6), computed here straight from the stored artifacts.
async fn expected(store: &Store, n: usize) -> BTreeMap<String, f64> {
    let m = Name::new(NameKind::Model, "m").unwrap();
    let manifest = store
        .resolve_model(&m, &ModelRef::parse("champion").unwrap())
        .await
        .unwrap();
    let pre: Preprocessing = serde_json::from_slice(
        &store
            .model_file(&manifest, "preprocessing.json")
            .await
            .unwrap(),
    )
    .unwrap();
    let model =
        Model::from_json(&store.model_file(&manifest, "model.json").await.unwrap()).unwrap();
    let columns: HashMap<String, ArrayRef> = HashMap::from([
        (
            "a".to_string(),
            Arc::new(Float64Array::from(
                (0..n).map(|i| i as f64 / n as f64).collect::<Vec<_>>(),
            )) as ArrayRef,
        ),
        (
            "cat".to_string(),
            Arc::new(StringArray::from(
                (0..n).map(|i| ["red", "blue"][i % 2]).collect::<Vec<_>>(),
            )) as ArrayRef,
        ),
        (
            "x".to_string(),
            Arc::new(Float64Array::from(
                (0..n).map(|i| (i % 5) as f64).collect::<Vec<_>>(),
            )) as ArrayRef,
        ),
    ]);
    let Scores::Probabilities { probs, .. } = model
        .predict(&pre.transform(&columns).unwrap().matrix)
        .unwrap()
    else {
        panic!()
    };
    (0..n)
        .map(|i| (format!("e{i:04}"), probs.row(i)[1]))
        .collect()
}

/// The manifest of the published `scores` snapshot.
async fn current_manifest(store: &Store) -> storage::SnapshotManifest {
    let dataset = Name::new(NameKind::Dataset, "scores").unwrap();
    let current = store
        .current(DatasetKind::Predictions, &dataset)
        .await
        .unwrap()
        .unwrap();
    store
        .snapshot(DatasetKind::Predictions, &dataset, &current.snapshot)
        .await
        .unwrap()
}

#[tokio::test]
async fn every_output_holds_the_same_point_in_time_scores() {
    let store = Store::memory();
    world(&store, World::default()).await;
    register(&store, World::default(), true, 0.0).await;
    let summary = score(&store, &job(CONFIG)).await.unwrap();
    assert_eq!(
        (summary.status, summary.outcome, summary.entities),
        (RunStatus::Succeeded, "published", 20)
    );

    let kv = published(&store).await.unwrap();
    let want = expected(&store, 20).await;
    assert_eq!(kv.len(), 20);
    for (k, v) in &want {
        assert!((kv[k] - v).abs() < 1e-12, "{k}: {} vs {v}", kv[k]);
    }
    // The Parquet predictions, CSV and DynamoDB files say the same.
    let manifest = current_manifest(&store).await;
    let parquet = store
        .snapshot_file(&manifest, "predictions.parquet")
        .await
        .unwrap();
    let mut from_parquet = BTreeMap::new();
    for batch in storage::parquet_io::decode_all(parquet, None, "predictions").unwrap() {
        let keys = batch.column_by_name("key").unwrap().as_string::<i32>();
        let scores = batch
            .column_by_name("score")
            .unwrap()
            .as_primitive::<Float64Type>();
        let versions = batch
            .column_by_name("model_version")
            .unwrap()
            .as_primitive::<arrow::datatypes::Int64Type>();
        for i in 0..batch.num_rows() {
            from_parquet.insert(keys.value(i).to_string(), scores.value(i));
            assert_eq!(versions.value(i), 1);
        }
        assert!(
            batch.column_by_name("feature_versions").is_some()
                && batch.column_by_name("as_of").is_some()
        );
    }
    assert_eq!(from_parquet, kv);
    let csv = String::from_utf8(
        store
            .snapshot_file(&manifest, "kv.csv")
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    for line in csv.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields[1].parse::<f64>().unwrap(), kv[fields[0]]);
    }
    let dynamo = String::from_utf8(
        store
            .snapshot_file(&manifest, "dynamodb.json")
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    for line in dynamo.lines() {
        let item: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = item["Item"]["pk"]["S"].as_str().unwrap();
        assert_eq!(
            item["Item"]["value"]["N"]
                .as_str()
                .unwrap()
                .parse::<f64>()
                .unwrap(),
            kv[key]
        );
    }
    // Lineage: snapshot -> model version -> feature tables.
    assert!(
        manifest
            .inputs
            .iter()
            .any(|i| matches!(i, storage::ObjectRef::Model { version: 1, .. }))
    );
    assert!(
        manifest
            .inputs
            .iter()
            .any(|i| matches!(i, storage::ObjectRef::Table { name, .. } if name == "g"))
    );
    let monitoring: serde_json::Value = serde_json::from_slice(
        &store
            .snapshot_file(&manifest, "monitoring.json")
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(monitoring["rows"], 20);
    assert!(
        monitoring["features"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["feature"] == "x" && f["psi"].is_number())
    );
}

#[tokio::test]
async fn the_same_job_publishes_once() {
    let store = Store::memory();
    world(&store, World::default()).await;
    register(&store, World::default(), true, 0.0).await;
    let first = score(&store, &job(CONFIG)).await.unwrap();
    let again = score(&store, &job(CONFIG)).await.unwrap();
    assert_eq!(
        (again.status, again.outcome),
        (RunStatus::AlreadyDone, "already_published")
    );
    assert_eq!(again.snapshot, first.snapshot);
    let dataset = Name::new(NameKind::Dataset, "scores").unwrap();
    assert_eq!(
        store
            .pointer_history(DatasetKind::Predictions, &dataset)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn shards_publish_together_and_a_rerun_replaces_its_part() {
    let store = Store::memory();
    world(
        &store,
        World {
            entities: 50,
            ..Default::default()
        },
    )
    .await;
    register(&store, World::default(), true, 0.0).await;
    let mut shard0 = job(CONFIG);
    shard0.shard_count = 2;
    let mut shard1 = shard0.clone();
    shard1.shard_index = 1;

    let a = score(&store, &shard0).await.unwrap();
    assert_eq!(a.outcome, "part_written");
    assert!(
        published(&store).await.is_none(),
        "nothing is visible before every part exists"
    );
    let again = score(&store, &shard0).await.unwrap();
    assert_eq!(
        (again.outcome, again.entities),
        ("part_written", a.entities)
    );
    let b = score(&store, &shard1).await.unwrap();
    assert_eq!(b.outcome, "published");
    assert_eq!(a.entities + b.entities, 50);
    assert!(a.entities > 0 && b.entities > 0);
    let kv = published(&store).await.unwrap();
    assert_eq!(kv.len(), 50, "each entity exactly once");
    for (k, v) in expected(&store, 50).await {
        assert!((kv[&k] - v).abs() < 1e-12, "{k}");
    }
}

#[tokio::test]
async fn a_new_model_version_publishes_a_new_snapshot_and_rollback_restores() {
    let store = Store::memory();
    world(&store, World::default()).await;
    register(&store, World::default(), true, 0.0).await;
    let first = score(&store, &job(CONFIG)).await.unwrap();
    let before = published(&store).await.unwrap();
    register(&store, World::default(), true, 0.7).await;
    let second = score(&store, &job(CONFIG)).await.unwrap();
    assert_ne!(first.snapshot, second.snapshot);
    assert_eq!(second.model_version, 2);
    assert_ne!(published(&store).await.unwrap(), before);
    let dataset = Name::new(NameKind::Dataset, "scores").unwrap();
    store
        .rollback_pointer(DatasetKind::Predictions, &dataset, "oncall", "bad scores")
        .await
        .unwrap();
    assert_eq!(
        published(&store).await.unwrap(),
        before,
        "the previous snapshot is back"
    );
}

/// More entities than `entities_per_pass`: the spine is scored in hash partitions, one pass
/// each, and every entity still comes out exactly once with the score it gets in one pass.
#[tokio::test]
async fn scoring_in_passes_scores_every_entity_once() {
    let n = 300;
    let store = Store::memory();
    let w = World {
        entities: n,
        ..World::default()
    };
    world(&store, w).await;
    register(&store, w, true, 0.0).await;
    let config = CONFIG.replace("batch_rows = 7", "batch_rows = 7\nentities_per_pass = 40");
    let summary = score(&store, &job(&config)).await.unwrap();
    assert_eq!((summary.outcome, summary.entities), ("published", n));
    assert!(
        summary.passes >= 8,
        "{} passes for {n} entities",
        summary.passes
    );

    let kv = published(&store).await.unwrap();
    let want = expected(&store, n).await;
    assert_eq!(kv.len(), n);
    for (k, v) in &want {
        assert!((kv[k] - v).abs() < 1e-12, "{k}: {} vs {v}", kv[k]);
    }
    // No entity twice in any output file.
    let manifest = current_manifest(&store).await;
    assert_eq!(manifest.num_rows, n as u64);
    for file in ["kv.jsonl", "dynamodb.json"] {
        let text = store.snapshot_file(&manifest, file).await.unwrap();
        assert_eq!(text.iter().filter(|b| **b == b'\n').count(), n, "{file}");
    }
    let parquet = store
        .snapshot_file(&manifest, "predictions.parquet")
        .await
        .unwrap();
    let rows: usize = storage::parquet_io::decode_all(parquet, None, "predictions")
        .unwrap()
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(rows, n);
}

/// Retention: after each publish only the newest `keep_snapshots` snapshots remain, the
/// current one among them, and the one before it can still be restored.
#[tokio::test]
async fn old_snapshots_are_pruned_beyond_keep_snapshots() {
    let store = Store::memory();
    world(&store, World::default()).await;
    register(&store, World::default(), true, 0.0).await;
    let config = CONFIG.replace("batch_rows = 7", "batch_rows = 7\nkeep_snapshots = 2");
    let mut snapshots = Vec::new();
    for hours in 0..3 {
        let mut j = job(&config);
        j.as_of = Some(crate::support::T0 + hours * 3_600_000_000);
        let summary = score(&store, &j).await.unwrap();
        assert_eq!(summary.outcome, "published");
        snapshots.push(Name::new(NameKind::Snapshot, summary.snapshot.as_str()).unwrap());
    }
    let dataset = Name::new(NameKind::Dataset, "scores").unwrap();
    let kind = DatasetKind::Predictions;
    assert!(matches!(
        store.snapshot(kind, &dataset, &snapshots[0]).await,
        Err(storage::Error::SnapshotNotFound { .. })
    ));
    for kept in &snapshots[1..] {
        store.snapshot(kind, &dataset, kept).await.unwrap();
    }
    let current = store.current(kind, &dataset).await.unwrap().unwrap();
    assert_eq!(current.snapshot, snapshots[2]);
    // A retry of the first job, whose snapshot is gone, still does not move readers back.
    let mut j = job(&config);
    j.as_of = Some(crate::support::T0);
    let retry = score(&store, &j).await.unwrap();
    assert_eq!(
        (retry.status, retry.outcome),
        (RunStatus::AlreadyDone, "superseded")
    );
    let current = store.current(kind, &dataset).await.unwrap().unwrap();
    assert_eq!(current.snapshot, snapshots[2]);
    store
        .rollback_pointer(kind, &dataset, "test", "retention keeps the previous one")
        .await
        .unwrap();
    let current = store.current(kind, &dataset).await.unwrap().unwrap();
    assert_eq!(current.snapshot, snapshots[1]);
}

/// A retry or backfill of an older job whose snapshot was published and then replaced does not
/// move readers back: it reports "already done" and the newer snapshot stays current. Likewise
/// after a rollback, a retry of the rolled-back job leaves the rollback in place.
#[tokio::test]
async fn an_old_job_rerun_never_moves_readers_back() {
    let store = Store::memory();
    world(&store, World::default()).await;
    register(&store, World::default(), true, 0.0).await;
    let at = |hours: i64| {
        let mut j = job(CONFIG);
        j.as_of = Some(crate::support::T0 + hours * 3_600_000_000);
        j
    };
    let old = score(&store, &at(0)).await.unwrap();
    let new = score(&store, &at(1)).await.unwrap();
    assert_ne!(old.snapshot, new.snapshot);
    let dataset = Name::new(NameKind::Dataset, "scores").unwrap();
    let kind = DatasetKind::Predictions;
    let current = || async {
        store
            .current(kind, &dataset)
            .await
            .unwrap()
            .unwrap()
            .snapshot
    };

    let again = score(&store, &at(0)).await.unwrap();
    assert_eq!(
        (again.status, again.outcome),
        (RunStatus::AlreadyDone, "superseded")
    );
    assert_eq!(current().await.as_str(), new.snapshot);

    store
        .rollback_pointer(kind, &dataset, "test", "bad scores")
        .await
        .unwrap();
    assert_eq!(current().await.as_str(), old.snapshot);
    let retry = score(&store, &at(1)).await.unwrap();
    assert_eq!(retry.outcome, "superseded");
    assert_eq!(
        current().await.as_str(),
        old.snapshot,
        "the rollback stands"
    );
}
