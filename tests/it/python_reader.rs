//! A reader written from docs/STORAGE.md alone (Python + pyarrow, tests/python/fti_reader.py)
//! sees the same rows and model metadata as the Rust reader.

use std::process::Command;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int32Type, Int64Type};
use storage::{
    ColumnDef, CommitRequest, ModelStatus, Name, NameKind, NewModelVersion, Operation, Store,
    TableDefinition, TableWriter, VersionSpec,
};

/// The canonical encoding of `fti_reader.py`: rows as compact JSON arrays, sorted, hashed.
fn rows_sha256(batches: &[RecordBatch]) -> String {
    let mut rows: Vec<String> = Vec::new();
    for batch in batches {
        for i in 0..batch.num_rows() {
            let values: Vec<serde_json::Value> = batch
                .columns()
                .iter()
                .map(|c| cell(c.as_ref(), i))
                .collect();
            rows.push(serde_json::to_string(&values).unwrap());
        }
    }
    rows.sort();
    storage::sha256_hex(format!("[{}]", rows.join(",")).as_bytes())
}

fn cell(array: &dyn Array, i: usize) -> serde_json::Value {
    use serde_json::json;
    if array.is_null(i) {
        return serde_json::Value::Null;
    }
    match array.data_type() {
        DataType::Boolean => json!(array.as_boolean().value(i)),
        DataType::Int32 => json!(array.as_primitive::<Int32Type>().value(i)),
        DataType::Int64 => json!(array.as_primitive::<Int64Type>().value(i)),
        DataType::Float64 => json!(format!(
            "{:016x}",
            array.as_primitive::<Float64Type>().value(i).to_bits()
        )),
        DataType::Utf8 => json!(array.as_string::<i32>().value(i)),
        DataType::Date32 => json!(
            array
                .as_primitive::<arrow::datatypes::Date32Type>()
                .value(i)
        ),
        DataType::Timestamp(..) => {
            let raw = arrow::compute::cast(array, &DataType::Int64).unwrap();
            json!(raw.as_primitive::<Int64Type>().value(i))
        }
        other => panic!("no canonical encoding for {other}"),
    }
}

fn python_json(args: &[&str]) -> serde_json::Value {
    let python = tests::python().expect("python");
    let script = tests::workspace_root().join("tests/python/fti_reader.py");
    // The system allocator: pyarrow's jemalloc threads have aborted the interpreter at exit
    // when the machine was busy.
    let out = Command::new(python)
        .arg(script)
        .args(args)
        .env("ARROW_DEFAULT_MEMORY_POOL", "system")
        .output()
        .expect("run fti_reader.py");
    assert!(
        out.status.success(),
        "fti_reader.py {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn definition() -> TableDefinition {
    let col = |name: &str, t: &str, nullable| ColumnDef {
        name: name.into(),
        data_type: t.into(),
        nullable,
        description: format!("the {name}"),
    };
    TableDefinition {
        name: Name::new(NameKind::FeatureGroup, "airports").unwrap(),
        entity_keys: vec!["code".into()],
        event_time: "ts".into(),
        columns: vec![
            col("code", "string", false),
            col("ts", "timestamp[us]", false),
            col("day", "date32[day]", true),
            col("n", "int64", true),
            col("score", "double", true),
            col("busy", "bool", true),
        ],
        description: "test".into(),
        owner: "tests".into(),
        tags: Default::default(),
    }
}

fn batch(rows: &[(&str, i64, Option<i64>, Option<f64>)]) -> RecordBatch {
    use arrow::array::*;
    let def = definition();
    let schema = storage::table::arrow_schema(&def).unwrap();
    let day_us = 86_400_000_000i64;
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(TimestampMicrosecondArray::from_iter_values(
                rows.iter().map(|r| r.1 * day_us + 7),
            )),
            Arc::new(Date32Array::from_iter_values(
                rows.iter().map(|r| r.1 as i32),
            )),
            Arc::new(Int64Array::from(
                rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            )),
            Arc::new(Float64Array::from(
                rows.iter().map(|r| r.3).collect::<Vec<_>>(),
            )),
            Arc::new(BooleanArray::from(
                rows.iter().map(|r| Some(r.1 % 2 == 0)).collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap()
}

async fn commit(store: &Store, rows: &[(&str, i64, Option<i64>, Option<f64>)], op: Operation) {
    let def = definition();
    let mut writer = TableWriter::new(store, &def).unwrap().with_rows_per_file(2);
    writer.write(&batch(rows)).await.unwrap();
    let files = writer.finish().await.unwrap();
    store
        .commit_table(&CommitRequest::new(def, op), files)
        .await
        .unwrap();
}

#[tokio::test]
async fn python_reader_agrees_with_rust_reader() {
    if tests::python().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap().to_string();
    if let Ok(keep) = std::env::var("FTI_KEEP_STORE") {
        std::fs::create_dir_all(&keep).unwrap();
    }
    let root = std::env::var("FTI_KEEP_STORE").unwrap_or(root);
    let store = Store::open(&root).await.unwrap();
    commit(
        &store,
        &[
            ("LAX", 1, Some(3), Some(0.5)),
            ("SFO", 1, None, Some(f64::NAN)),
            ("JFK", 2, Some(1), None),
        ],
        Operation::Overwrite,
    )
    .await;
    commit(
        &store,
        &[
            ("ORD", 3, Some(9), Some(-1.25)),
            ("ATL", 4, Some(2), Some(1e300)),
        ],
        Operation::Append,
    )
    .await;
    let day_us = 86_400_000_000i64;
    commit(
        &store,
        &[("LAX", 2, Some(30), Some(5.5))],
        Operation::ReplaceRange {
            from_us: 2 * day_us,
            to_us: 4 * day_us,
        },
    )
    .await;

    let table = Name::new(NameKind::FeatureGroup, "airports").unwrap();
    for version in 1..=3u64 {
        let snapshot = store
            .table(&table, VersionSpec::Version(version))
            .await
            .unwrap();
        let batches = snapshot.read_all(&store, None).await.unwrap();
        let python = python_json(&[
            "table",
            &root,
            "airports",
            "--version",
            &version.to_string(),
        ]);
        assert_eq!(python["version"], version);
        assert_eq!(python["num_rows"], snapshot.num_rows(), "version {version}");
        assert_eq!(python["row_count_check"], true);
        assert_eq!(
            python["rows_sha256"],
            rows_sha256(&batches),
            "version {version}: same rows"
        );
    }

    let model = Name::new(NameKind::Model, "m").unwrap();
    for (status, body) in [
        (ModelStatus::Accepted, "one"),
        (ModelStatus::Rejected, "two"),
    ] {
        store
            .register_model(
                &model,
                NewModelVersion {
                    status,
                    gate: serde_json::json!({"passed": status == ModelStatus::Accepted}),
                    task: "binary".into(),
                    algorithm: "logistic_regression".into(),
                    features: definition().columns,
                    metrics: serde_json::json!({"roc_auc": 0.7}),
                    params: serde_json::json!({}),
                    lineage: Default::default(),
                    metadata: Default::default(),
                    files: vec![("model.json".into(), body.as_bytes().to_vec().into())],
                },
            )
            .await
            .unwrap();
    }
    let champion = Name::new(NameKind::Alias, "champion").unwrap();
    store
        .promote(&model, &champion, 1, "tests", "first")
        .await
        .unwrap();
    let python = python_json(&["model", &root, "m", "--alias", "champion"]);
    let rust = store
        .resolve_model(&model, &storage::ModelRef::Alias(champion))
        .await
        .unwrap();
    assert_eq!(python["version"], rust.version);
    assert_eq!(python["status"], "accepted");
    assert_eq!(python["algorithm"], rust.algorithm);
    assert_eq!(
        python["files"]["model.json"],
        rust.files["model.json"].sha256
    );
    let latest = python_json(&["model", &root, "m"]);
    assert_eq!(
        (latest["version"].as_u64(), latest["status"].as_str()),
        (Some(2), Some("rejected"))
    );
}
