//! Synthetic label and feature tables in a memory store, and specs over them.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use storage::{
    ColumnDef, CommitRequest, Name, NameKind, Operation, Store, TableDefinition, TableWriter,
};
use training_pipeline::{LoadedSpec, TrainJob};

pub const DAY: i64 = 86_400_000_000;
/// 2024-01-01 in microseconds.
pub const START: i64 = 1_704_067_200_000_000;

fn col(name: &str, t: &str, nullable: bool) -> ColumnDef {
    ColumnDef {
        name: name.into(),
        data_type: t.into(),
        nullable,
        description: String::new(),
    }
}

fn def(name: &str, keys: &[&str], time: &str, columns: Vec<ColumnDef>) -> TableDefinition {
    TableDefinition {
        name: Name::new(NameKind::FeatureGroup, name).unwrap(),
        entity_keys: keys.iter().map(|k| k.to_string()).collect(),
        event_time: time.into(),
        columns,
        description: String::new(),
        owner: "tests".into(),
        tags: BTreeMap::new(),
    }
}

async fn commit(store: &Store, def: TableDefinition, columns: Vec<arrow::array::ArrayRef>) {
    let schema = storage::table::arrow_schema(&def).unwrap();
    let batch = RecordBatch::try_new(schema, columns).unwrap();
    let mut writer = TableWriter::new(store, &def).unwrap();
    writer.write(&batch).await.unwrap();
    let files = writer.finish().await.unwrap();
    store
        .commit_table(&CommitRequest::new(def, Operation::Overwrite), files)
        .await
        .unwrap();
}

/// Options for the synthetic data.
#[derive(Clone, Copy, Default)]
pub struct Data {
    /// Put a NaN into the feature table.
    pub nan_feature: bool,
    /// Every label the same.
    pub single_class: bool,
}

/// 60 days, 8 entities. The feature `signal` of (entity, day) decides the label of that day's
/// events (mostly); `noise` in the label table is useless.
pub async fn store_with(data: Data) -> Store {
    let store = Store::memory();
    let entities = ["e0", "e1", "e2", "e3", "e4", "e5", "e6", "e7"];
    let signal = |e: usize, d: i64| (((e as i64 * 37 + d * 11) % 17) as f64) / 16.0;
    let (mut fk, mut ft, mut fx) = (vec![], vec![], vec![]);
    for d in 0..60 {
        for (e, name) in entities.iter().enumerate() {
            fk.push(name.to_string());
            ft.push(START + d * DAY);
            fx.push(signal(e, d));
        }
    }
    if data.nan_feature {
        fx[10] = f64::NAN;
    }
    commit(
        &store,
        def(
            "f",
            &["entity"],
            "ts",
            vec![
                col("entity", "string", false),
                col("ts", "timestamp[us]", false),
                col("signal", "double", true),
            ],
        ),
        vec![
            Arc::new(StringArray::from(fk)),
            Arc::new(TimestampMicrosecondArray::from(ft)),
            Arc::new(Float64Array::from(fx)),
        ],
    )
    .await;
    let (mut id, mut ent, mut ts, mut label, mut noise) = (vec![], vec![], vec![], vec![], vec![]);
    let (mut tier, mut amount) = (vec![], vec![]);
    let mut n = 0i64;
    for d in 0..60 {
        for (e, name) in entities.iter().enumerate() {
            for k in 0..6 {
                let flip = (n * 7919) % 13 == 0;
                id.push(n);
                ent.push(name.to_string());
                ts.push(START + d * DAY + (k + 1) * 3_600_000_000);
                label.push(if data.single_class {
                    true
                } else {
                    (signal(e, d) > 0.5) != flip
                });
                noise.push(((n * 31) % 101) as f64);
                let sig = signal(e, d);
                tier.push(
                    if sig < 0.34 {
                        "low"
                    } else if sig < 0.67 {
                        "mid"
                    } else {
                        "high"
                    }
                    .to_string(),
                );
                amount.push(10.0 * sig + ((n * 13) % 7) as f64 / 10.0);
                n += 1;
            }
        }
    }
    commit(
        &store,
        def(
            "l",
            &["id"],
            "ts",
            vec![
                col("id", "int64", false),
                col("entity", "string", true),
                col("ts", "timestamp[us]", false),
                col("label", "bool", true),
                col("noise", "double", true),
                col("tier", "string", true),
                col("amount", "double", true),
            ],
        ),
        vec![
            Arc::new(Int64Array::from(id)),
            Arc::new(StringArray::from(ent)),
            Arc::new(TimestampMicrosecondArray::from(ts)),
            Arc::new(BooleanArray::from(label)),
            Arc::new(Float64Array::from(noise)),
            Arc::new(StringArray::from(tier)),
            Arc::new(Float64Array::from(amount)),
        ],
    )
    .await;
    store
}

pub async fn store() -> Store {
    store_with(Data::default()).await
}

/// A spec over the synthetic tables; `features` is TOML for the `[[features]]` entries.
pub fn spec(algorithm: &str, params: &str, features: &str) -> String {
    format!(
        r#"
[model]
name = "m"
task = "binary"

[label]
group = "l"
column = "label"

{features}

[split]
method = "time"
train_before = "2024-02-10"
test_from = "2024-02-10"

[algorithm]
name = "{algorithm}"
seed = 3
[algorithm.params]
{params}

[gate]
[[gate.thresholds]]
metric = "roc_auc"
min = 0.5
[gate.champion]
metric = "roc_auc"
min_improvement = 0.0
"#
    )
}

pub const GOOD: &str = "[[features]]\ngroup = \"f\"\ncolumns = [\"signal\"]\n";
pub const NOISE: &str = "[[features]]\ngroup = \"l\"\ncolumns = [\"noise\"]\n";

pub fn job(text: &str) -> TrainJob {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.toml");
    std::fs::write(&path, text).unwrap();
    TrainJob {
        spec: LoadedSpec::load(&path).unwrap(),
        promote: true,
        run_id: None,
        dry_run: false,
        actor: "tests".into(),
    }
}
