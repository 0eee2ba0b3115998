//! Point-in-time lookups: hand-made cases and a leakage property test against brute force.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::Float64Type;
use fti_learn::pit::{AsOf, FeatureIndex, Latest, RowFilter, key_partition, key_set};
use fti_learn::spill::Partitions;
use storage::{
    ColumnDef, CommitRequest, Name, NameKind, Operation, Store, TableDefinition, TableSnapshot,
    TableWriter, VersionSpec,
};

const H: i64 = 3_600_000_000;

fn definition() -> TableDefinition {
    let col = |name: &str, t: &str, nullable| ColumnDef {
        name: name.into(),
        data_type: t.into(),
        nullable,
        description: String::new(),
    };
    TableDefinition {
        name: Name::new(NameKind::FeatureGroup, "f").unwrap(),
        entity_keys: vec!["key".into()],
        event_time: "ts".into(),
        columns: vec![
            col("key", "string", false),
            col("ts", "timestamp[us]", false),
            col("x", "double", true),
        ],
        description: String::new(),
        owner: String::new(),
        tags: BTreeMap::new(),
    }
}

/// Feature rows `(key, hour, x)`.
async fn index(rows: &[(&str, i64, f64)]) -> FeatureIndex {
    let (store, snapshot) = table(rows, 3).await;
    FeatureIndex::load(&store, &snapshot, &["x".into()])
        .await
        .unwrap()
}

/// A committed table of feature rows `(key, hour, x)`, `rows_per_file` rows per file.
async fn table(rows: &[(&str, i64, f64)], rows_per_file: u64) -> (Store, TableSnapshot) {
    let store = Store::memory();
    let def = definition();
    let schema = storage::table::arrow_schema(&def).unwrap();
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(TimestampMicrosecondArray::from_iter_values(
                rows.iter().map(|r| r.1 * H),
            )),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
        ],
    )
    .unwrap();
    let mut writer = TableWriter::new(&store, &def)
        .unwrap()
        .with_rows_per_file(rows_per_file);
    writer.write(&batch).await.unwrap();
    let files = writer.finish().await.unwrap();
    store
        .commit_table(&CommitRequest::new(def, Operation::Overwrite), files)
        .await
        .unwrap();
    let snapshot = store
        .table(
            &Name::new(NameKind::FeatureGroup, "f").unwrap(),
            VersionSpec::Latest,
        )
        .await
        .unwrap();
    (store, snapshot)
}

/// The x values seen by labels `(key, hour)`.
fn lookup(index: &FeatureIndex, labels: &[(&str, i64)], as_of: AsOf) -> Vec<Option<f64>> {
    let keys: ArrayRef = Arc::new(StringArray::from_iter_values(labels.iter().map(|l| l.0)));
    let times = Int64Array::from_iter_values(labels.iter().map(|l| l.1 * H));
    let rows = index.lookup(&[keys], &times, as_of).unwrap();
    let x = index.take("x", &rows).unwrap();
    let x = x.as_primitive::<Float64Type>();
    (0..x.len())
        .map(|i| x.is_valid(i).then(|| x.value(i)))
        .collect()
}

const INCLUSIVE: AsOf = AsOf {
    inclusive: true,
    max_age_us: None,
};
const STRICT: AsOf = AsOf {
    inclusive: false,
    max_age_us: None,
};

/// A seeded xorshift generator: `next(n)` is a pseudo-random number below `n`.
fn xorshift(mut state: u64) -> impl FnMut(u64) -> u64 {
    move |n| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    }
}

#[tokio::test]
async fn ties_missing_history_and_stale_values() {
    let index = index(&[
        ("a", 1, 10.0),
        ("a", 5, 50.0),
        ("b", 3, 30.0),
        ("a", 9, 90.0),
    ])
    .await;
    let labels = [
        ("a", 0),
        ("a", 1),
        ("a", 4),
        ("a", 5),
        ("a", 100),
        ("b", 2),
        ("b", 3),
        ("c", 5),
    ];
    // A feature stamped exactly at the label time counts when inclusive...
    assert_eq!(
        lookup(&index, &labels, INCLUSIVE),
        [
            None,
            Some(10.0),
            Some(10.0),
            Some(50.0),
            Some(90.0),
            None,
            Some(30.0),
            None
        ]
    );
    // ...and not when strictly before is asked for.
    assert_eq!(
        lookup(&index, &labels, STRICT),
        [
            None,
            None,
            Some(10.0),
            Some(10.0),
            Some(90.0),
            None,
            None,
            None
        ]
    );
    // Stale values (older than the maximum age) are missing, not carried forward forever.
    let fresh = AsOf {
        inclusive: true,
        max_age_us: Some(2 * H),
    };
    assert_eq!(
        lookup(&index, &labels, fresh),
        [
            None,
            Some(10.0),
            None,
            Some(50.0),
            None,
            None,
            Some(30.0),
            None
        ]
    );
}

#[tokio::test]
async fn never_a_value_from_the_future_property() {
    // Pseudo-random tables and labels; the index must agree with a brute-force scan.
    let mut next = xorshift(0x2545F4914F6CDD1Du64);
    let keys = ["a", "b", "c", "d"];
    let mut rows = Vec::new();
    let mut used = std::collections::HashSet::new();
    for _ in 0..300 {
        let key = keys[next(4) as usize];
        let hour = next(200) as i64;
        if used.insert((key, hour)) {
            rows.push((key, hour, next(1000) as f64));
        }
    }
    let index = index(&rows).await;
    let labels: Vec<(&str, i64)> = (0..500)
        .map(|_| (keys[next(4) as usize], next(220) as i64))
        .collect();
    for as_of in [
        INCLUSIVE,
        STRICT,
        AsOf {
            inclusive: true,
            max_age_us: Some(10 * H),
        },
    ] {
        let got = lookup(&index, &labels, as_of);
        for (label, value) in labels.iter().zip(got) {
            let expected = rows
                .iter()
                .filter(|r| r.0 == label.0)
                .filter(|r| {
                    if as_of.inclusive {
                        r.1 <= label.1
                    } else {
                        r.1 < label.1
                    }
                })
                .max_by_key(|r| r.1)
                .filter(|r| as_of.max_age_us.is_none_or(|m| (label.1 - r.1) * H <= m))
                .map(|r| r.2);
            // The reference only ever looks at rows at or before the label time.
            assert_eq!(value, expected, "label {label:?} with {as_of:?}");
        }
    }
}

/// Scoring keeps only each entity's latest row (and only some entities): its lookups at the
/// scoring time must be exactly those of the full index, whatever the filter, and entities
/// filtered out must find nothing. 200k rows over 12 keys, so the reader compacts overtaken
/// rows many times along the way.
#[tokio::test]
async fn latest_rows_load_agrees_with_the_full_index() {
    let mut next = xorshift(0x9E3779B97F4A7C15u64);
    let keys = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"];
    let mut used = std::collections::HashSet::new();
    let mut rows = Vec::new();
    while rows.len() < 200_000 {
        let key = keys[next(keys.len() as u64) as usize];
        let hour = next(1_000_000) as i64;
        if used.insert((key, hour)) {
            rows.push((key, hour, next(1000) as f64));
        }
    }
    // In time order, as event data usually is: every row overtakes the one before it.
    rows.sort_by_key(|r| r.1);
    let (store, snapshot) = table(&rows, 50_000).await;
    let full = FeatureIndex::load(&store, &snapshot, &["x".into()])
        .await
        .unwrap();
    let all_keys: ArrayRef = Arc::new(StringArray::from_iter_values(keys));
    let encoded: Vec<Box<[u8]>> = {
        // One key per call keeps the order of `keys`.
        keys.iter()
            .map(|k| {
                let one: ArrayRef = Arc::new(StringArray::from_iter_values([*k]));
                key_set(&snapshot, &[one])
                    .unwrap()
                    .into_iter()
                    .next()
                    .unwrap()
            })
            .collect()
    };
    let some_keys = key_set(&snapshot, &[all_keys.slice(0, 5)]).unwrap();
    for at_hour in [0, 1, 400_000, 999_999, 2_000_000] {
        for as_of in [
            INCLUSIVE,
            STRICT,
            AsOf {
                inclusive: true,
                max_age_us: Some(10 * H),
            },
        ] {
            let labels: Vec<(&str, i64)> = keys.iter().map(|k| (*k, at_hour)).collect();
            let expected = lookup(&full, &labels, as_of);
            let filters = [
                RowFilter::default(),
                RowFilter {
                    keys: Some(some_keys.clone()),
                    partition: None,
                },
                RowFilter {
                    keys: None,
                    partition: Some((1, 3)),
                },
            ];
            for filter in filters {
                let Latest::Loaded(latest) = FeatureIndex::load_latest(
                    &store,
                    &snapshot,
                    &["x".into()],
                    at_hour * H,
                    as_of,
                    &filter,
                    None,
                )
                .await
                .unwrap() else {
                    panic!("no cap was given")
                };
                let got = lookup(&latest, &labels, as_of);
                for (i, key) in encoded.iter().enumerate() {
                    let kept = filter.keys.as_ref().is_none_or(|k| k.contains(key))
                        && filter
                            .partition
                            .is_none_or(|(p, n)| key_partition(key, n) == p);
                    let want = if kept { expected[i] } else { None };
                    assert_eq!(
                        got[i], want,
                        "key {} at hour {at_hour} with {as_of:?}, {filter:?}",
                        keys[i]
                    );
                }
                assert!(
                    latest.num_rows() <= keys.len(),
                    "one row per entity at most"
                );
            }
        }
    }
    // Spilled once into 3 partition files, partition p holds what the partition filter keeps.
    let dir = tempfile::tempdir().unwrap();
    let spilled = Partitions::write(
        &store,
        "f",
        &snapshot,
        &["x".into()],
        999_999 * H,
        INCLUSIVE,
        3,
        dir.path(),
    )
    .await
    .unwrap();
    assert!(spilled.rows > 0 && spilled.rows <= 200_000);
    let labels: Vec<(&str, i64)> = keys.iter().map(|k| (*k, 999_999)).collect();
    let mut found = 0;
    for p in 0..3 {
        let filter = RowFilter {
            keys: None,
            partition: Some((p, 3)),
        };
        let Latest::Loaded(direct) = FeatureIndex::load_latest(
            &store,
            &snapshot,
            &["x".into()],
            999_999 * H,
            INCLUSIVE,
            &filter,
            None,
        )
        .await
        .unwrap() else {
            panic!("no cap was given")
        };
        let from_file = spilled
            .load_latest(&snapshot, p, 999_999 * H, INCLUSIVE, &RowFilter::default())
            .unwrap();
        let got = lookup(&from_file, &labels, INCLUSIVE);
        assert_eq!(got, lookup(&direct, &labels, INCLUSIVE), "partition {p}");
        found += got.iter().flatten().count();
    }
    assert_eq!(found, keys.len(), "every entity in exactly one partition");

    // With a cap below the number of entities, the read stops early and says how far it got.
    match FeatureIndex::load_latest(
        &store,
        &snapshot,
        &["x".into()],
        2_000_000 * H,
        INCLUSIVE,
        &RowFilter::default(),
        Some(5),
    )
    .await
    .unwrap()
    {
        Latest::TooMany { rows_read, keys } => {
            assert!(rows_read > 0 && rows_read <= 200_000);
            assert!(keys > 5 && keys <= 12);
        }
        Latest::Loaded(_) => panic!("12 entities exceed a cap of 5"),
    }
}
