//! The conformance suite: what every backend must do the same way.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{AsArray, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Float64Type, Schema, TimeUnit};
use storage::{
    AliasAction, ColumnDef, CommitOutcome, CommitRequest, DatasetKind, Error, Lineage, ModelStatus,
    Name, NameKind, NewModelVersion, Operation, Published, Sealed, Store, TableDefinition,
    TableWriter, VacuumOptions, VersionSpec,
};

use crate::backend::TestStore;

const DAY_US: i64 = 86_400_000_000;

crate::conformance_suite!(
    layout_file_is_written_once_and_checked,
    commit_then_read_back,
    append_overwrite_and_time_travel,
    replace_range_is_idempotent,
    idempotency_key_commits_once,
    concurrent_commits_are_dense_and_lossless,
    registry_versions_and_alias_moves,
    concurrent_alias_moves_have_one_winner,
    rejected_model_never_gets_an_alias,
    snapshots_publish_and_roll_back,
    vacuum_removes_only_uncommitted_files,
    run_records_round_trip,
    string_columns_accept_every_string_encoding,
);

pub fn name(kind: NameKind, s: &str) -> Name {
    Name::new(kind, s).unwrap()
}

pub fn definition(table: &str) -> TableDefinition {
    let col = |name: &str, t: &str, nullable| ColumnDef {
        name: name.into(),
        data_type: t.into(),
        nullable,
        description: String::new(),
    };
    TableDefinition {
        name: name(NameKind::FeatureGroup, table),
        entity_keys: vec!["key".into()],
        event_time: "ts".into(),
        columns: vec![
            col("key", "string", false),
            col("ts", "timestamp[us]", false),
            col("value", "double", true),
        ],
        description: "test table".into(),
        owner: "tests".into(),
        tags: BTreeMap::new(),
    }
}

/// Rows `(key, day, value)`; `day` is days since the epoch.
pub fn batch(rows: &[(&str, i64, f64)]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("value", DataType::Float64, true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(TimestampMicrosecondArray::from_iter_values(
                rows.iter().map(|r| r.1 * DAY_US),
            )),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
        ],
    )
    .unwrap()
}

pub async fn write(
    store: &Store,
    table: &str,
    rows: &[(&str, i64, f64)],
    op: Operation,
) -> CommitOutcome {
    let def = definition(table);
    let mut writer = TableWriter::new(store, &def).unwrap();
    writer.write(&batch(rows)).await.unwrap();
    let files = writer.finish().await.unwrap();
    store
        .commit_table(&CommitRequest::new(def, op), files)
        .await
        .unwrap()
}

/// The table's rows as sorted `(key, day, value)` tuples.
pub async fn rows(store: &Store, table: &str, at: VersionSpec) -> Vec<(String, i64, f64)> {
    let snapshot = store
        .table(&name(NameKind::FeatureGroup, table), at)
        .await
        .unwrap();
    let batches = snapshot.read_all(store, None).await.unwrap();
    let mut out = Vec::new();
    for b in batches {
        let keys = b.column(0).as_string::<i32>();
        let ts = b
            .column(1)
            .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
        let values = b.column(2).as_primitive::<Float64Type>();
        for i in 0..b.num_rows() {
            out.push((
                keys.value(i).to_string(),
                ts.value(i) / DAY_US,
                values.value(i),
            ));
        }
    }
    out.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(
        out.len() as u64,
        snapshot.num_rows(),
        "num_rows in the commit matches the data"
    );
    out
}

fn owned(rows: &[(&str, i64, f64)]) -> Vec<(String, i64, f64)> {
    let mut v: Vec<_> = rows.iter().map(|r| (r.0.to_string(), r.1, r.2)).collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v
}

async fn layout_file_is_written_once_and_checked(t: TestStore) {
    let store = t.handle().await;
    assert_eq!(
        store.check_layout().await.unwrap(),
        None,
        "a new store has no layout.json"
    );
    let first = store.init().await.unwrap();
    let again = t.handle().await.init().await.unwrap();
    assert_eq!(first, again, "init never rewrites layout.json");
    assert_eq!(first.format, "fti-layout");
    assert!(first.version.starts_with("1."));
}

async fn commit_then_read_back(t: TestStore) {
    let store = t.handle().await;
    let data = [("a", 1, 1.0), ("b", 1, 2.0), ("a", 2, 3.5)];
    let outcome = write(&store, "t", &data, Operation::Overwrite).await;
    assert_eq!(outcome, CommitOutcome::Committed { version: 1 });
    // Another handle (another client) sees the same rows.
    let reader = t.handle().await;
    assert_eq!(rows(&reader, "t", VersionSpec::Latest).await, owned(&data));
    let tables = reader.list_tables().await.unwrap();
    assert_eq!(tables, vec![name(NameKind::FeatureGroup, "t")]);
    let snapshot = reader.table(&tables[0], VersionSpec::Latest).await.unwrap();
    assert_eq!(snapshot.definition(), &definition("t"));
    assert_eq!(snapshot.files[0].min_event_time_us, Some(DAY_US));
    assert_eq!(snapshot.files[0].max_event_time_us, Some(2 * DAY_US));
}

async fn append_overwrite_and_time_travel(t: TestStore) {
    let store = t.handle().await;
    let v1 = [("a", 1, 1.0)];
    let v2 = [("b", 2, 2.0)];
    let v3 = [("c", 3, 3.0)];
    write(&store, "t", &v1, Operation::Overwrite).await;
    let after_v1 = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    write(&store, "t", &v2, Operation::Append).await;
    write(&store, "t", &v3, Operation::Overwrite).await;

    assert_eq!(rows(&store, "t", VersionSpec::Version(1)).await, owned(&v1));
    assert_eq!(
        rows(&store, "t", VersionSpec::Version(2)).await,
        owned(&[v1[0], v2[0]])
    );
    assert_eq!(rows(&store, "t", VersionSpec::Latest).await, owned(&v3));
    assert_eq!(
        rows(&store, "t", VersionSpec::AsOf(after_v1)).await,
        owned(&v1)
    );

    let table = name(NameKind::FeatureGroup, "t");
    let before_any = after_v1 - chrono::Duration::days(1);
    assert!(matches!(
        store.table(&table, VersionSpec::AsOf(before_any)).await,
        Err(Error::NoVersionAt { .. })
    ));
    assert!(matches!(
        store.table(&table, VersionSpec::Version(4)).await,
        Err(Error::VersionNotFound { version: 4, .. })
    ));
    let missing = name(NameKind::FeatureGroup, "missing");
    assert!(matches!(
        store.table(&missing, VersionSpec::Latest).await,
        Err(Error::TableNotFound { .. })
    ));
}

async fn replace_range_is_idempotent(t: TestStore) {
    let store = t.handle().await;
    // A full refresh of days 1..=3, then day 2 recomputed twice and day 4 added.
    write(
        &store,
        "t",
        &[("a", 1, 1.0), ("a", 2, 2.0), ("b", 2, 2.5), ("a", 3, 3.0)],
        Operation::Overwrite,
    )
    .await;
    let day2 = Operation::ReplaceRange {
        from_us: 2 * DAY_US,
        to_us: 3 * DAY_US,
    };
    write(&store, "t", &[("a", 2, 20.0), ("b", 2, 25.0)], day2.clone()).await;
    write(&store, "t", &[("a", 2, 20.0), ("b", 2, 25.0)], day2).await;
    let day4 = Operation::ReplaceRange {
        from_us: 4 * DAY_US,
        to_us: 5 * DAY_US,
    };
    write(&store, "t", &[("a", 4, 4.0)], day4).await;
    let expected = [
        ("a", 1, 1.0),
        ("a", 2, 20.0),
        ("b", 2, 25.0),
        ("a", 3, 3.0),
        ("a", 4, 4.0),
    ];
    assert_eq!(
        rows(&store, "t", VersionSpec::Latest).await,
        owned(&expected)
    );
    // The original version is untouched.
    assert_eq!(rows(&store, "t", VersionSpec::Version(1)).await.len(), 4);
}

async fn idempotency_key_commits_once(t: TestStore) {
    let store = t.handle().await;
    let def = definition("t");
    for expected in [
        CommitOutcome::Committed { version: 1 },
        CommitOutcome::AlreadyCommitted { version: 1 },
    ] {
        let mut writer = TableWriter::new(&store, &def).unwrap();
        writer.write(&batch(&[("a", 1, 1.0)])).await.unwrap();
        let files = writer.finish().await.unwrap();
        let mut request = CommitRequest::new(def.clone(), Operation::Append);
        request.idempotency_key = Some("run-1".into());
        assert_eq!(store.commit_table(&request, files).await.unwrap(), expected);
    }
    assert_eq!(rows(&store, "t", VersionSpec::Latest).await.len(), 1);
}

async fn concurrent_commits_are_dense_and_lossless(t: TestStore) {
    const WRITERS: usize = 8;
    let t = Arc::new(t);
    let mut tasks = Vec::new();
    for i in 0..WRITERS {
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            let store = t.handle().await;
            let key = format!("w{i}");
            write(
                &store,
                "t",
                &[(&key, i as i64, i as f64)],
                Operation::Append,
            )
            .await
        }));
    }
    let mut versions = Vec::new();
    for task in tasks {
        versions.push(task.await.unwrap().version());
    }
    versions.sort();
    assert_eq!(
        versions,
        (1..=WRITERS as u64).collect::<Vec<_>>(),
        "each writer got its own version"
    );
    let store = t.handle().await;
    let all = rows(&store, "t", VersionSpec::Latest).await;
    assert_eq!(all.len(), WRITERS, "no commit lost: {all:?}");
    let history = store
        .table_history(&name(NameKind::FeatureGroup, "t"))
        .await
        .unwrap();
    assert_eq!(
        history.iter().map(|c| c.version).collect::<Vec<_>>(),
        versions
    );
}

fn new_version(status: ModelStatus, payload: &str) -> NewModelVersion {
    NewModelVersion {
        status,
        gate: serde_json::json!({"passed": status == ModelStatus::Accepted, "reason": "test"}),
        task: "binary".into(),
        algorithm: "test".into(),
        features: vec![],
        metrics: serde_json::json!({"auc": 0.7}),
        params: serde_json::json!({}),
        lineage: Lineage::default(),
        metadata: BTreeMap::new(),
        files: vec![("model.json".into(), bytes::Bytes::from(payload.to_string()))],
    }
}

async fn registry_versions_and_alias_moves(t: TestStore) {
    let store = t.handle().await;
    let model = name(NameKind::Model, "m");
    let champion = name(NameKind::Alias, "champion");
    for i in 1..=3 {
        let v = store
            .register_model(
                &model,
                new_version(ModelStatus::Accepted, &format!("model {i}")),
            )
            .await
            .unwrap();
        assert_eq!(v.version, i);
    }
    assert_eq!(store.model_versions(&model).await.unwrap(), [1, 2, 3]);
    let v2 = store.model_version(&model, 2).await.unwrap();
    assert_eq!(
        store.model_file(&v2, "model.json").await.unwrap(),
        "model 2"
    );

    assert_eq!(store.alias(&model, &champion).await.unwrap(), None);
    store
        .promote(&model, &champion, 1, "ci", "first")
        .await
        .unwrap();
    store
        .promote(&model, &champion, 3, "ci", "better")
        .await
        .unwrap();
    let back = store
        .rollback(&model, &champion, "oncall", "bad")
        .await
        .unwrap();
    assert_eq!((back.version, back.action), (1, AliasAction::Rollback));
    let resolved = store
        .resolve_model(&model, &storage::ModelRef::parse("champion").unwrap())
        .await
        .unwrap();
    assert_eq!(resolved.version, 1);
    let history = store.alias_history(&model, &champion).await.unwrap();
    let moves: Vec<_> = history
        .iter()
        .map(|m| (m.seq, m.version, m.previous_version))
        .collect();
    assert_eq!(moves, [(1, 1, None), (2, 3, Some(1)), (3, 1, Some(3))]);
    assert_eq!(history[2].actor, "oncall");
    assert_eq!(store.list_models().await.unwrap(), vec![model.clone()]);
    assert_eq!(store.alias_names(&model).await.unwrap(), vec![champion]);
}

async fn concurrent_alias_moves_have_one_winner(t: TestStore) {
    const MOVERS: u64 = 8;
    let store = t.handle().await;
    let model = name(NameKind::Model, "m");
    let alias = name(NameKind::Alias, "champion");
    for i in 0..MOVERS {
        store
            .register_model(&model, new_version(ModelStatus::Accepted, &i.to_string()))
            .await
            .unwrap();
    }
    let t = Arc::new(t);
    let mut tasks = Vec::new();
    for version in 1..=MOVERS {
        let (t, model, alias) = (t.clone(), model.clone(), alias.clone());
        tasks.push(tokio::spawn(async move {
            let store = t.handle().await;
            // Everyone read "never set" (move #0) and tries to make move #1.
            store
                .move_alias(
                    &model,
                    &alias,
                    version,
                    0,
                    AliasAction::Promote,
                    "racer",
                    "race",
                )
                .await
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(entry) => winners.push(entry.version),
            Err(Error::AliasConflict { expected: 0, .. }) => {}
            Err(other) => panic!("a loser must get a clear conflict error, got {other}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one mover wins");
    let current = store.alias(&model, &alias).await.unwrap().unwrap();
    assert_eq!((current.seq, current.version), (1, winners[0]));
}

async fn rejected_model_never_gets_an_alias(t: TestStore) {
    let store = t.handle().await;
    let model = name(NameKind::Model, "m");
    let alias = name(NameKind::Alias, "champion");
    let v = store
        .register_model(&model, new_version(ModelStatus::Rejected, "bad"))
        .await
        .unwrap();
    let err = store
        .promote(&model, &alias, v.version, "ci", "try")
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::RejectedModel { version: 1, .. }),
        "{err}"
    );
    assert_eq!(store.alias(&model, &alias).await.unwrap(), None);
}

async fn snapshots_publish_and_roll_back(t: TestStore) {
    let store = t.handle().await;
    let kind = DatasetKind::Exports;
    let dataset = name(NameKind::Dataset, "route_delay");
    let mut published = Vec::new();
    for i in 1..=3 {
        let snapshot = name(NameKind::Snapshot, &format!("s{i}"));
        let file = store
            .put_snapshot_file(
                kind,
                &dataset,
                &snapshot,
                "kv.jsonl",
                format!("line {i}\n").into(),
            )
            .await
            .unwrap();
        let files = BTreeMap::from([("kv.jsonl".to_string(), file)]);
        let (sealed, _) = store
            .seal_snapshot(
                kind,
                &dataset,
                &snapshot,
                files.clone(),
                1,
                None,
                vec![],
                BTreeMap::new(),
            )
            .await
            .unwrap();
        assert_eq!(sealed, Sealed::Created);
        let (again, _) = store
            .seal_snapshot(
                kind,
                &dataset,
                &snapshot,
                files,
                1,
                None,
                vec![],
                BTreeMap::new(),
            )
            .await
            .unwrap();
        assert_eq!(again, Sealed::AlreadySealed);
        let moved = store
            .publish(kind, &dataset, &snapshot, "ci", "daily")
            .await
            .unwrap();
        assert!(matches!(moved, Published::Moved(_)));
        published.push(snapshot);
    }
    let again = store
        .publish(kind, &dataset, &published[2], "ci", "retry")
        .await
        .unwrap();
    assert!(
        matches!(again, Published::AlreadyCurrent(_)),
        "re-publishing is a no-op"
    );

    let current = store.current(kind, &dataset).await.unwrap().unwrap();
    let manifest = store
        .snapshot(kind, &dataset, &current.snapshot)
        .await
        .unwrap();
    assert_eq!(
        store.snapshot_file(&manifest, "kv.jsonl").await.unwrap(),
        "line 3\n"
    );

    store
        .rollback_pointer(kind, &dataset, "oncall", "bad export")
        .await
        .unwrap();
    let current = store.current(kind, &dataset).await.unwrap().unwrap();
    assert_eq!(current.snapshot, published[1]);
    assert_eq!(
        store.pointer_history(kind, &dataset).await.unwrap().len(),
        4
    );

    // Pruning keeps the newest, never the current one nor the rollback target.
    let deleted = store.prune_snapshots(kind, &dataset, 1).await.unwrap();
    assert_eq!(deleted, vec![published[0].clone()]);
    assert_eq!(
        store.list_snapshots(kind, &dataset).await.unwrap(),
        vec![published[1].clone(), published[2].clone()]
    );
}

async fn vacuum_removes_only_uncommitted_files(t: TestStore) {
    let store = t.handle().await;
    write(&store, "t", &[("a", 1, 1.0)], Operation::Overwrite).await;
    write(&store, "t", &[("b", 2, 2.0)], Operation::Overwrite).await;
    // A writer that staged files and died before committing.
    let mut orphan = TableWriter::new(&store, &definition("t")).unwrap();
    orphan.write(&batch(&[("zombie", 9, 9.0)])).await.unwrap();
    let orphan_files = orphan.finish().await.unwrap();
    assert_eq!(orphan_files.len(), 1);

    let young = store.vacuum(VacuumOptions::default()).await.unwrap();
    assert!(
        young.deleted.is_empty(),
        "files younger than the grace period stay"
    );
    assert_eq!(young.too_young, 1);

    let report = store
        .vacuum(VacuumOptions {
            min_age: Duration::ZERO,
            dry_run: false,
        })
        .await
        .unwrap();
    assert_eq!(report.deleted.len(), 1, "{report:?}");
    assert!(report.deleted[0].ends_with(&orphan_files[0].file.path));
    // Every committed version, including the overwritten one, still reads.
    assert_eq!(rows(&store, "t", VersionSpec::Version(1)).await.len(), 1);
    assert_eq!(rows(&store, "t", VersionSpec::Version(2)).await.len(), 1);
}

async fn run_records_round_trip(t: TestStore) {
    let store = t.handle().await;
    let pipeline = name(NameKind::Pipeline, "feature-pipeline");
    let run_id = name(NameKind::RunId, "run-1");
    for status in [storage::RunStatus::Failed, storage::RunStatus::Succeeded] {
        let started = chrono::Utc::now();
        let record = storage::RunRecord {
            format_version: 1,
            pipeline: pipeline.clone(),
            run_id: run_id.clone(),
            attempt: storage::runs::new_attempt_id(started),
            status,
            started_at: started,
            finished_at: chrono::Utc::now(),
            inputs: vec![storage::ObjectRef::Source {
                url: "file:///raw.parquet".into(),
            }],
            outputs: vec![storage::ObjectRef::Table {
                name: "t".into(),
                version: 1,
            }],
            config_hash: "abc".into(),
            code_version: "test".into(),
            summary: serde_json::json!({"rows": 1}),
            error: None,
        };
        store.write_run_record(&record).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let records = store.run_records(&pipeline, &run_id).await.unwrap();
    let statuses: Vec<_> = records.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [storage::RunStatus::Failed, storage::RunStatus::Succeeded]
    );
    assert_eq!(store.run_ids(&pipeline).await.unwrap(), vec![run_id]);
}

/// A `string` column may arrive as `Utf8`, `LargeUtf8` or `Utf8View` (query engines hand out
/// views): each writes the same file, byte for byte; a column of another type is refused.
async fn string_columns_accept_every_string_encoding(t: TestStore) {
    let store = t.handle().await;
    let def = definition("t");
    let data = batch(&[
        ("a", 1, 1.0),
        ("a much longer key than twelve bytes", 2, 2.0),
    ]);
    let with_key = |key: arrow::array::ArrayRef| {
        let mut fields: Vec<Field> = data
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields[0] = Field::new("key", key.data_type().clone(), false);
        let mut columns = data.columns().to_vec();
        columns[0] = key;
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
    };
    let mut sha256 = Vec::new();
    for to in [DataType::Utf8, DataType::LargeUtf8, DataType::Utf8View] {
        let key = arrow::compute::cast(data.column(0), &to).unwrap();
        let mut writer = TableWriter::new(&store, &def).unwrap();
        writer.write(&with_key(key)).await.unwrap();
        let files = writer.finish().await.unwrap();
        sha256.push(files[0].file.sha256.clone());
    }
    assert_eq!(sha256[0], sha256[1], "LargeUtf8 writes the Utf8 file");
    assert_eq!(sha256[0], sha256[2], "Utf8View writes the Utf8 file");

    // Encodings may change from one batch to the next within a file.
    let mut writer = TableWriter::new(&store, &def).unwrap();
    writer.write(&data).await.unwrap();
    let views = arrow::compute::cast(data.column(0), &DataType::Utf8View).unwrap();
    writer.write(&with_key(views)).await.unwrap();
    let files = writer.finish().await.unwrap();
    store
        .commit_table(
            &CommitRequest::new(def.clone(), Operation::Overwrite),
            files,
        )
        .await
        .unwrap();
    let key = "a much longer key than twelve bytes";
    let twice = [("a", 1, 1.0), ("a", 1, 1.0), (key, 2, 2.0), (key, 2, 2.0)];
    assert_eq!(rows(&store, "t", VersionSpec::Latest).await, owned(&twice));

    let numbers = Arc::new(arrow::array::Int64Array::from(vec![1, 2])) as arrow::array::ArrayRef;
    let mut writer = TableWriter::new(&store, &def).unwrap();
    let err = writer.write(&with_key(numbers)).await.unwrap_err();
    assert!(
        matches!(&err, Error::SchemaMismatch { reason, .. } if reason.contains("\"key\"")),
        "{err}"
    );
}
