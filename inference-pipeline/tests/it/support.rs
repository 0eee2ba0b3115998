//! A tiny world: a spine group `ctx` (entities with a row-level input `a` and a category
//! `cat`), a feature group `g` (trailing feature `x`), and a model trained on them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use fti_learn::Matrix;
use fti_learn::model::{Model, Target, Task};
use fti_learn::preprocess::{PreprocessSpec, Preprocessing, Unseen};
use inference_pipeline::{LoadedConfig, ScoreJob};
use serde_json::json;
use storage::{
    ColumnDef, CommitRequest, ModelStatus, Name, NameKind, NewModelVersion, Operation, Store,
    TableDefinition, TableWriter,
};

pub const DAY: i64 = 86_400_000_000;
pub const T0: i64 = 1_700_000_000_000_000;

fn col(name: &str, t: &str, nullable: bool) -> ColumnDef {
    ColumnDef {
        name: name.into(),
        data_type: t.into(),
        nullable,
        description: String::new(),
    }
}

pub async fn write_table(
    store: &Store,
    name: &str,
    columns: Vec<ColumnDef>,
    arrays: Vec<ArrayRef>,
) {
    let def = TableDefinition {
        name: Name::new(NameKind::FeatureGroup, name).unwrap(),
        entity_keys: vec!["k".into()],
        event_time: "ts".into(),
        columns,
        description: String::new(),
        owner: "tests".into(),
        tags: BTreeMap::new(),
    };
    let batch = RecordBatch::try_new(storage::table::arrow_schema(&def).unwrap(), arrays).unwrap();
    let mut writer = TableWriter::new(store, &def).unwrap();
    writer.write(&batch).await.unwrap();
    let files = writer.finish().await.unwrap();
    store
        .commit_table(&CommitRequest::new(def, Operation::Overwrite), files)
        .await
        .unwrap();
}

/// How to build the world.
#[derive(Clone, Copy, Default)]
pub struct World {
    pub entities: usize,
    /// Put a NaN in `x`.
    pub nan: bool,
    /// The spine's category of the first entity is unseen in training.
    pub unseen_category: bool,
    /// Unseen categories are an error for the model.
    pub strict_categories: bool,
    /// `x` stored as a string column (a type the model was not trained on).
    pub x_as_string: bool,
    /// Leave the feature group out.
    pub no_feature_group: bool,
}

pub async fn world(store: &Store, w: World) {
    let n = if w.entities == 0 { 20 } else { w.entities };
    let keys: Vec<String> = (0..n).map(|i| format!("e{i:04}")).collect();
    let cats: Vec<String> = (0..n)
        .map(|i| {
            if w.unseen_category && i == 0 {
                "never-seen".into()
            } else {
                ["red", "blue"][i % 2].to_string()
            }
        })
        .collect();
    write_table(
        store,
        "ctx",
        vec![
            col("k", "string", false),
            col("ts", "timestamp[us]", false),
            col("a", "double", true),
            col("cat", "string", true),
        ],
        vec![
            Arc::new(StringArray::from(keys.clone())),
            Arc::new(TimestampMicrosecondArray::from(vec![T0; n])),
            Arc::new(Float64Array::from(
                (0..n).map(|i| i as f64 / n as f64).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(cats)),
        ],
    )
    .await;
    if !w.no_feature_group {
        // Two rows per entity: yesterday's and one from the future (must never be used).
        let mut k = Vec::new();
        let mut ts = Vec::new();
        let mut x = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            k.push(key.clone());
            ts.push(T0 - DAY);
            x.push(if w.nan && i == 3 {
                f64::NAN
            } else {
                (i % 5) as f64
            });
            k.push(key.clone());
            ts.push(T0 + DAY);
            x.push(1e6);
        }
        let x_col: (ColumnDef, ArrayRef) = if w.x_as_string {
            (
                col("x", "string", true),
                Arc::new(StringArray::from(
                    x.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
                )),
            )
        } else {
            (col("x", "double", true), Arc::new(Float64Array::from(x)))
        };
        write_table(
            store,
            "g",
            vec![
                col("k", "string", false),
                col("ts", "timestamp[us]", false),
                x_col.0,
            ],
            vec![
                Arc::new(StringArray::from(k)),
                Arc::new(TimestampMicrosecondArray::from(ts)),
                x_col.1,
            ],
        )
        .await;
    }
}

/// Registers a model on inputs (a, cat, x) as training would, optionally promoting it.
pub async fn register(store: &Store, w: World, promote: bool, seed_shift: f64) -> u64 {
    let n = 200;
    let a: Vec<f64> = (0..n).map(|i| (i % 10) as f64 / 10.0).collect();
    let x: Vec<f64> = (0..n).map(|i| (i % 5) as f64 + seed_shift).collect();
    let cat: Vec<&str> = (0..n).map(|i| ["red", "blue"][i % 2]).collect();
    let columns: Vec<(String, ArrayRef)> = vec![
        ("a".into(), Arc::new(Float64Array::from(a.clone()))),
        ("cat".into(), Arc::new(StringArray::from(cat))),
        ("x".into(), Arc::new(Float64Array::from(x.clone()))),
    ];
    let spec = PreprocessSpec {
        unseen: if w.strict_categories {
            Unseen::Error
        } else {
            Unseen::Ignore
        },
        ..Default::default()
    };
    let pre = Preprocessing::fit(&spec, &columns).unwrap();
    let map: HashMap<String, ArrayRef> = columns.iter().cloned().collect();
    let matrix: Matrix = pre.transform(&map).unwrap().matrix;
    let y = Target::Classes {
        index: (0..n).map(|i| usize::from(x[i] + a[i] > 2.5)).collect(),
        classes: vec!["false".into(), "true".into()],
    };
    let model = Model::fit(
        "logistic_regression",
        Task::Binary,
        &json!({}),
        0,
        &matrix,
        &y,
    )
    .unwrap();
    let mut training = fti_stats::TableProfiler::new(&arrow::datatypes::Schema::new(vec![
        arrow::datatypes::Field::new("a", arrow::datatypes::DataType::Float64, true),
        arrow::datatypes::Field::new("cat", arrow::datatypes::DataType::Utf8, true),
        arrow::datatypes::Field::new("x", arrow::datatypes::DataType::Float64, true),
    ]));
    training.update(
        &RecordBatch::try_new(
            Arc::new(arrow::datatypes::Schema::new(vec![
                arrow::datatypes::Field::new("a", arrow::datatypes::DataType::Float64, true),
                arrow::datatypes::Field::new("cat", arrow::datatypes::DataType::Utf8, true),
                arrow::datatypes::Field::new("x", arrow::datatypes::DataType::Float64, true),
            ])),
            columns.iter().map(|(_, a)| a.clone()).collect(),
        )
        .unwrap(),
    );
    let m = Name::new(NameKind::Model, "m").unwrap();
    let version = store
        .register_model(
            &m,
            NewModelVersion {
                status: ModelStatus::Accepted,
                gate: json!({"passed": true}),
                task: "binary".into(),
                algorithm: "logistic_regression".into(),
                features: vec![col("a", "double", true), col("cat", "string", true), col("x", "double", true)],
                metrics: json!({}),
                params: json!({}),
                lineage: Default::default(),
                metadata: BTreeMap::from([
                    ("label".to_string(), json!({"group": "lbl", "column": "y"})),
                    ("join".to_string(), json!({"inclusive": true, "max_age": "3d"})),
                    (
                        "feature_sources".to_string(),
                        json!([{"group": "lbl", "columns": ["a", "cat"], "join": {}}, {"group": "g", "columns": ["x"], "join": {}}]),
                    ),
                ]),
                files: vec![
                    ("model.json".into(), model.to_json().unwrap().into()),
                    ("preprocessing.json".into(), serde_json::to_vec(&pre).unwrap().into()),
                    ("training_statistics.json".into(), serde_json::to_vec(&training.finish().0).unwrap().into()),
                ],
            },
        )
        .await
        .unwrap()
        .version;
    if promote {
        store
            .promote(
                &m,
                &Name::new(NameKind::Alias, "champion").unwrap(),
                version,
                "tests",
                "test",
            )
            .await
            .unwrap();
    }
    version
}

pub const CONFIG: &str = r#"
[model]
name = "m"
ref = "champion"

[entities]
group = "ctx"
carry = ["cat"]

[output]
dataset = "scores"
key = "{k}"
batch_rows = 7

[[exports]]
format = "jsonl"
[[exports]]
format = "csv"
[[exports]]
format = "dynamodb"
"#;

pub fn job(config: &str) -> ScoreJob {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("score.toml");
    std::fs::write(&path, config).unwrap();
    ScoreJob {
        config: LoadedConfig::load(&path).unwrap(),
        model_ref: None,
        as_of: Some(T0),
        shard_index: 0,
        shard_count: 1,
        run_id: None,
        dry_run: false,
        redis_url: None,
    }
}

/// The published snapshot's kv.jsonl as key -> value.
pub async fn published(store: &Store) -> Option<BTreeMap<String, f64>> {
    let dataset = Name::new(NameKind::Dataset, "scores").unwrap();
    let current = store
        .current(storage::DatasetKind::Predictions, &dataset)
        .await
        .unwrap()?;
    let manifest = store
        .snapshot(
            storage::DatasetKind::Predictions,
            &dataset,
            &current.snapshot,
        )
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for (name, _) in manifest
        .files
        .iter()
        .filter(|(n, _)| n.ends_with("kv.jsonl"))
    {
        let bytes = store.snapshot_file(&manifest, name).await.unwrap();
        for line in String::from_utf8(bytes.to_vec()).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            out.insert(
                v["key"].as_str().unwrap().to_string(),
                v["value"].as_f64().unwrap(),
            );
        }
    }
    Some(out)
}
