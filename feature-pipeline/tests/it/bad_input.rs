//! Bad input: each case gives an error naming what is wrong, the right exit code, and
//! commits nothing.

use feature_pipeline::{Error, LoadedRepo, build_features, engine};
use fti_runtime::Exit;
use storage::{Name, NameKind, ObjectRef, RunStatus};

use crate::support::{Fixture, WINDOW_CONFIG, events_csv};

async fn fails(f: &Fixture, exit: Exit, needles: &[&str]) -> Error {
    let err = build_features(&f.store, &f.job()).await.unwrap_err();
    let text = err.to_string();
    for needle in needles {
        assert!(text.contains(needle), "{needle:?} missing from: {text}");
    }
    assert_eq!(err.exit(), exit, "{text}");
    assert!(
        f.tables().await.is_empty(),
        "nothing committed after: {text}"
    );
    err
}

fn good_events() -> String {
    events_csv(&[("a", 0, 1.0), ("a", 1, 2.0), ("b", 1, 3.0)])
}

#[tokio::test]
async fn missing_source_file() {
    let f = Fixture::new(WINDOW_CONFIG, &[]);
    fails(
        &f,
        Exit::BadInput,
        &["events", "events.csv", "no such file"],
    )
    .await;
}

/// A `--source` override naming no source of the repository (a typo) is a flag error, not a
/// run on the configured data.
#[tokio::test]
async fn an_override_of_an_unknown_source_is_a_flag_error() {
    let f = Fixture::new(WINDOW_CONFIG, &[("events.csv", &good_events())]);
    let mut job = f.job();
    job.overrides = vec![("event".into(), f.path("events.csv").display().to_string())];
    let err = build_features(&f.store, &job).await.unwrap_err();
    let text = err.to_string();
    assert_eq!(err.exit(), Exit::Config, "{text}");
    for needle in ["\"event\"", "sources: events"] {
        assert!(text.contains(needle), "{needle:?} missing from: {text}");
    }
    assert!(f.tables().await.is_empty());
    // Named right, it runs.
    job.overrides[0].0 = "events".into();
    build_features(&f.store, &job).await.unwrap();
}

/// A value that does not parse, or a record with a field too many, is named by file, line
/// (the header is line 1) and column.
#[tokio::test]
async fn malformed_csv_row() {
    let csv = format!("{}a,2024-01-03T12:00:00,not-a-number\n", good_events());
    let f = Fixture::new(WINDOW_CONFIG, &[("events.csv", &csv)]);
    let located = [
        "source \"events\"",
        "events.csv",
        "line 5:",
        "column \"value\" (double): \"not-a-number\" is not a valid double",
    ];
    fails(&f, Exit::BadInput, &located).await;
    let csv = good_events().replacen("\nb,", ",9\nb,", 1);
    let f = Fixture::new(WINDOW_CONFIG, &[("events.csv", &csv)]);
    let located = [
        "events.csv",
        "line 3:",
        "wrong number of fields: expected 3",
    ];
    fails(&f, Exit::BadInput, &located).await;
}

/// Only what the query reads is blamed: a bad value in a column it does not read (the engine
/// does not parse it) or in a source it does not read is not the error; the one it failed on
/// is.
#[tokio::test]
async fn the_bad_record_named_is_the_one_the_query_read() {
    let config = r#"
[sources.events]
format = "csv"
path = "events.csv"
columns = [
  { name = "key", type = "string" },
  { name = "ts", type = "timestamp[us]" },
  { name = "value", type = "double" },
]

[sources.more]
format = "csv"
path = "more.csv"
columns = [
  { name = "key", type = "string" },
  { name = "ts", type = "timestamp[us]" },
  { name = "n", type = "int64" },
]

[groups.counts]
entity_keys = ["key"]
event_time = "day"
sql = "SELECT key, CAST(ts AS DATE) AS day, COUNT(*) AS n FROM events GROUP BY key, CAST(ts AS DATE)"

[groups.sums]
entity_keys = ["key"]
event_time = "day"
sql = "SELECT key, CAST(ts AS DATE) AS day, SUM(n) AS n FROM more GROUP BY key, CAST(ts AS DATE)"
"#;
    // Line 3: a value `counts` does not read; line 5: a time stamp it does.
    let events = "key,ts,value\na,2024-01-01T12:00:00,1.0\na,2024-01-02T12:00:00,notanumber\n\
                  b,2024-01-02T12:00:00,2.0\nb,2024-99-01T00:00:00,3.0\n";
    let more = "key,ts,n\na,2024-01-01T12:00:00,1\na,2024-01-02T12:00:00,x2\n";
    let f = Fixture::new(config, &[("events.csv", events), ("more.csv", more)]);
    let mut job = f.job();
    job.groups = vec!["counts".into()];
    let err = build_features(&f.store, &job).await.unwrap_err();
    let text = err.to_string();
    assert_eq!(err.exit(), Exit::BadInput, "{text}");
    for needle in ["source \"events\"", "line 5:", "column \"ts\""] {
        assert!(text.contains(needle), "{needle:?} missing from: {text}");
    }
    job.groups = vec!["sums".into()];
    let text = build_features(&f.store, &job)
        .await
        .unwrap_err()
        .to_string();
    for needle in [
        "source \"more\"",
        "more.csv",
        "line 3:",
        "\"x2\" is not a valid int64",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from: {text}");
    }
    assert!(f.tables().await.is_empty());

    // The same bad text in the same column of both sources: the one the plan scans is named.
    let events = "key,ts,value\na,2024-01-01T12:00:00,1.0\na,2024-01-02T12:00:00,x2\n";
    let f = Fixture::new(config, &[("events.csv", events), ("more.csv", more)]);
    let text = build_features(&f.store, &job)
        .await
        .unwrap_err()
        .to_string();
    assert!(text.contains("source \"more\""), "{text}");
}

/// Without declared columns the types come from the first rows; a later value that does not
/// fit says so, and how to read it as another type.
#[tokio::test]
async fn a_value_that_does_not_fit_an_inferred_type_says_it_was_inferred() {
    let config = WINDOW_CONFIG.replace(
        "columns = [\n  { name = \"key\", type = \"string\" },\n  { name = \"ts\", type = \"timestamp[us]\" },\n  { name = \"value\", type = \"double\" },\n]\n",
        "",
    );
    assert!(!config.contains("type = \"timestamp[us]\""), "{config}");
    let rows: Vec<(&str, i64, f64)> = (0..2000).map(|i| ("a", i % 30, i as f64 + 0.5)).collect();
    let csv = format!("{}a,2024-01-03T12:00:00,n/a\n", events_csv(&rows));
    let f = Fixture::new(&config, &[("events.csv", &csv)]);
    let expected = [
        "line 2002:",
        "column \"value\" (double): \"n/a\" is not a valid double",
        "inferred from its first rows",
    ];
    fails(&f, Exit::BadInput, &expected).await;
}

/// The engine reads a large file in byte ranges on several cores; the line is still counted
/// from the start of the file.
#[tokio::test]
async fn a_malformed_row_deep_in_a_large_csv_is_named_by_its_line() {
    let rows: Vec<(&str, i64, f64)> = (0..400_000)
        .map(|i| (["a", "b", "c"][i % 3], (i / 20_000) as i64, i as f64))
        .collect();
    let mut csv = events_csv(&rows);
    let at = csv.match_indices('\n').nth(300_000).unwrap().0;
    let line_end = at + csv[at + 1..].find('\n').unwrap() + 1;
    let comma = csv[..line_end].rfind(',').unwrap();
    csv.replace_range(comma + 1..line_end, "1.2.3");
    assert!(
        csv.len() > 10 << 20,
        "larger than one range of a parallel scan"
    );
    let f = Fixture::new(WINDOW_CONFIG, &[("events.csv", &csv)]);
    // Newline 300,000 (0-based) ends line 300,001: the bad record is line 300,002.
    let located = [
        "events.csv",
        "line 300002:",
        "\"1.2.3\" is not a valid double",
    ];
    fails(&f, Exit::BadInput, &located).await;
}

/// A JSON-lines record that does not read is named by file and line.
#[tokio::test]
async fn malformed_json_line() {
    let config = WINDOW_CONFIG
        .replace("format = \"csv\"", "format = \"jsonl\"")
        .replace("path = \"events.csv\"", "path = \"events.jsonl\"");
    let line = |day: u32, value: &str| {
        format!("{{\"key\": \"a\", \"ts\": \"2024-01-0{day}T12:00:00\", \"value\": {value}}}\n")
    };
    let good = format!("{}{}\n{}", line(1, "1.0"), line(2, "2.0"), line(3, "3.0"));
    for (bad, needles) in [
        (
            line(4, "\"high\""),
            ["line 5:", "failed to parse \"high\" as Float64"],
        ),
        (line(4, "high"), ["line 5:", "unexpected 'h'"]),
    ] {
        let f = Fixture::new(&config, &[("events.jsonl", &format!("{good}{bad}"))]);
        let mut all = vec!["source \"events\"", "events.jsonl"];
        all.extend(needles);
        fails(&f, Exit::BadInput, &all).await;
    }
}

/// A CSV whose header names other columns than the declared ones, or the same in another
/// order, fails naming both lists: declared columns are read by position, so it would
/// otherwise be read mislabelled (here the value as the time stamp and the other way round).
#[tokio::test]
async fn a_csv_header_that_does_not_match_the_declared_columns() {
    let mut reordered = String::from("key,value,ts\n");
    for line in good_events().lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        reordered.push_str(&format!("{},{},{}\n", fields[0], fields[2], fields[1]));
    }
    let f = Fixture::new(WINDOW_CONFIG, &[("events.csv", &reordered)]);
    fails(
        &f,
        Exit::BadInput,
        &[
            "events",
            "events.csv",
            "[key, value, ts]",
            "[key, ts, value]",
            "by position",
        ],
    )
    .await;

    // In a directory every file's header is checked, and the one that differs is named.
    let config = WINDOW_CONFIG.replace("path = \"events.csv\"", "path = \"events/\"");
    let f = Fixture::new(&config, &[]);
    std::fs::create_dir(f.path("events")).unwrap();
    f.write("events/1.csv", good_events());
    f.write("events/2.csv", &reordered);
    f.write("events/3.csv", good_events());
    let err = fails(&f, Exit::BadInput, &["[key, value, ts]", "by position"]).await;
    assert!(
        err.to_string().contains("events/2.csv)"),
        "the second file is named: {err}"
    );
    f.write("events/2.csv", good_events());
    f.write("events/4.csv", "");
    build_features(&f.store, &f.job()).await.unwrap();

    // Without declared columns the files are still read by position: each header must name
    // the first file's columns in order (values used to land in each other's columns).
    let undeclared = config.replace(
        "columns = [\n  { name = \"key\", type = \"string\" },\n  { name = \"ts\", type = \"timestamp[us]\" },\n  { name = \"value\", type = \"double\" },\n]\n",
        "",
    );
    assert!(!undeclared.contains("type = \"timestamp[us]\""));
    let f = Fixture::new(&undeclared, &[]);
    std::fs::create_dir(f.path("events")).unwrap();
    f.write("events/1.csv", good_events());
    f.write("events/2.csv", &reordered);
    let err = fails(
        &f,
        Exit::BadInput,
        &["[key, value, ts]", "the first file ("],
    )
    .await;
    assert!(err.to_string().contains("events/2.csv)"), "{err}");
}

/// A null in a source's declared order column is reported by the order check, naming the
/// file and the row, even when the group's rows show it first as a null key.
#[tokio::test]
async fn a_null_in_the_order_column_names_its_row() {
    let ordered = WINDOW_CONFIG.replace(
        "path = \"events.csv\"",
        "path = \"events.csv\"\nordered_by = \"ts\"",
    );
    let csv = format!("{}b,,5.0\n", good_events());
    let f = Fixture::new(&ordered, &[("events.csv", &csv)]);
    fails(
        &f,
        Exit::BadInput,
        &["events.csv", "row 3", "\"ts\"", "is null"],
    )
    .await;
}

#[tokio::test]
async fn unparsable_timestamp() {
    let csv = format!("{}a,yesterday-ish,1.0\n", good_events());
    let f = Fixture::new(WINDOW_CONFIG, &[("events.csv", &csv)]);
    fails(&f, Exit::BadInput, &["yesterday-ish"]).await;
}

/// A source declared in event-time order (`ordered_by`) whose rows go back in time: the run
/// names the file, the row and the column, and commits nothing. In order, it runs.
#[tokio::test]
async fn timestamps_out_of_order() {
    let ordered = WINDOW_CONFIG.replace(
        "path = \"events.csv\"",
        "path = \"events.csv\"\nordered_by = \"ts\"",
    );
    assert_ne!(ordered, WINDOW_CONFIG);
    // Row 2 (0-based) is a day earlier than row 1.
    let csv = events_csv(&[("a", 0, 1.0), ("a", 2, 2.0), ("b", 1, 3.0), ("b", 3, 4.0)]);
    let f = Fixture::new(&ordered, &[("events.csv", &csv)]);
    fails(
        &f,
        Exit::BadInput,
        &[
            "events.csv",
            "row 2",
            "\"ts\"",
            "2024-01-02T12:00:00",
            "earlier than 2024-01-03T12:00:00",
            "ordered_by",
        ],
    )
    .await;

    let in_order = events_csv(&[("a", 0, 1.0), ("b", 1, 3.0), ("a", 2, 2.0), ("b", 3, 4.0)]);
    let f = Fixture::new(&ordered, &[("events.csv", &in_order)]);
    build_features(&f.store, &f.job()).await.unwrap();
    assert!(!f.tables().await.is_empty());
}

/// Scans do not wait for the order check: it runs beside them and every group waits for it
/// before its output can be committed. A group that reads the source only through a cached
/// view (whose rows are computed, and the source scanned, outside the group's own plan) still
/// fails, and commits nothing, on an out-of-order source.
#[tokio::test]
async fn out_of_order_rows_read_through_a_cached_view_fail_the_run() {
    let ordered = WINDOW_CONFIG
        .replace(
            "path = \"events.csv\"",
            "path = \"events.csv\"\nordered_by = \"ts\"",
        )
        .replace("[views.daily]\n", "[views.daily]\ncache = true\n");
    assert!(ordered.contains("cache = true") && ordered.contains("ordered_by"));
    let backwards = events_csv(&[("a", 0, 1.0), ("a", 2, 2.0), ("b", 1, 3.0)]);
    let f = Fixture::new(&ordered, &[("events.csv", &backwards)]);
    fails(&f, Exit::BadInput, &["events.csv", "row 2", "ordered_by"]).await;

    let f = Fixture::new(&ordered, &[("events.csv", &good_events())]);
    build_features(&f.store, &f.job()).await.unwrap();
    assert_eq!(f.tables().await, vec!["trailing".to_string()]);
}

/// 140,000 events of key `a`, 5,000 a day in day order, except that the row at `broken` (if
/// any) is a day earlier than the row before it.
fn long_events(broken: Option<usize>) -> String {
    let day = |i: usize| (i / 5_000) as i64;
    let events: Vec<(&str, i64, f64)> = (0..140_000)
        .map(|i| match broken {
            Some(at) if i == at => ("a", day(i - 1) - 1, 1.0),
            _ => ("a", day(i), 1.0),
        })
        .collect();
    events_csv(&events)
}

/// The order check reads the source in batches (64 Ki rows): a row going back in time is
/// found where a batch starts, inside a later batch, and not at all in a long source whose
/// rows only repeat or go forward.
#[tokio::test]
async fn timestamps_out_of_order_across_batches() {
    let ordered = WINDOW_CONFIG.replace(
        "path = \"events.csv\"",
        "path = \"events.csv\"\nordered_by = \"ts\"",
    );
    for broken in [Some(65_536), Some(100_003), None] {
        let f = Fixture::new(&ordered, &[("events.csv", &long_events(broken))]);
        match broken {
            Some(at) => {
                let row = format!("row {at} ");
                fails(&f, Exit::BadInput, &["events.csv", &row, "ordered_by"]).await;
            }
            None => {
                build_features(&f.store, &f.job()).await.unwrap();
            }
        }
    }
}

/// The order check reads the whole column whatever the query reads: a query that stops
/// reading the source after its first rows (here `LIMIT 1`, long before the row going back in
/// time) still fails the run.
#[tokio::test]
async fn out_of_order_rows_a_query_never_reads_still_fail_the_run() {
    let config = r#"
[sources.events]
format = "csv"
path = "events.csv"
ordered_by = "ts"
columns = [
  { name = "key", type = "string" },
  { name = "ts", type = "timestamp[us]" },
  { name = "value", type = "double" },
]

[groups.first]
entity_keys = ["key"]
event_time = "ts"
sql = "SELECT key, ts, value FROM events LIMIT 1"

[groups.first.columns]
key = { type = "string" }
ts = { type = "timestamp[us]" }
value = { type = "double" }
"#;
    let at = 100_003usize;
    for broken in [true, false] {
        let f = Fixture::new(
            config,
            &[("events.csv", &long_events(broken.then_some(at)))],
        );
        if broken {
            let row = format!("row {at} ");
            fails(&f, Exit::BadInput, &["events.csv", &row, "ordered_by"]).await;
        } else {
            build_features(&f.store, &f.job()).await.unwrap();
            assert_eq!(f.tables().await, vec!["first".to_string()]);
        }
    }
}

#[tokio::test]
async fn unreadable_parquet() {
    let config = WINDOW_CONFIG
        .replace("format = \"csv\"", "format = \"parquet\"")
        .replace("path = \"events.csv\"", "path = \"events.parquet\"")
        .replace(
            "columns = [\n  { name = \"key\", type = \"string\" },\n  { name = \"ts\", type = \"timestamp[us]\" },\n  { name = \"value\", type = \"double\" },\n]\n",
            "",
        );
    let f = Fixture::new(&config, &[("events.parquet", "PAR1 this is not parquet")]);
    fails(&f, Exit::BadInput, &["events.parquet"]).await;
}

/// Events as Parquet with `value` as given (two rows, days 0 and 1).
fn events_parquet(value: arrow::array::ArrayRef) -> Vec<u8> {
    use arrow::array::{ArrayRef, StringArray, TimestampMicrosecondArray};
    let batch = arrow::array::RecordBatch::try_from_iter([
        (
            "key",
            std::sync::Arc::new(StringArray::from(vec!["a", "b"])) as ArrayRef,
        ),
        (
            "ts",
            std::sync::Arc::new(TimestampMicrosecondArray::from(vec![
                1_704_110_400_000_000,
                1_704_196_800_000_000,
            ])),
        ),
        ("value", value),
    ])
    .unwrap();
    let mut out = Vec::new();
    let mut writer =
        datafusion::parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    out
}

/// A Parquet source may declare the columns it must have: a file whose column changed type
/// is bad input naming the file and column (without the declaration the query fails to plan,
/// an SQL error, exit 2); a directory whose files disagree names the file that differs.
#[tokio::test]
async fn a_parquet_column_of_another_type_names_the_file() {
    use arrow::array::{Float64Array, StringArray};
    use std::sync::Arc;
    let declared = WINDOW_CONFIG
        .replace("format = \"csv\"", "format = \"parquet\"")
        .replace("path = \"events.csv\"", "path = \"events.parquet\"");
    let f = Fixture::new(&declared, &[]);
    f.write(
        "events.parquet",
        events_parquet(Arc::new(StringArray::from(vec!["1.0", "x"]))),
    );
    let expected = [
        "source \"events\"",
        "events.parquet",
        "column \"value\" is string, expected double (rule: the source's declared columns)",
    ];
    fails(&f, Exit::BadInput, &expected).await;
    f.write(
        "events.parquet",
        events_parquet(Arc::new(Float64Array::from(vec![1.0, 2.0]))),
    );
    build_features(&f.store, &f.job()).await.unwrap();

    let inferred = declared.replace(
        "columns = [\n  { name = \"key\", type = \"string\" },\n  { name = \"ts\", type = \"timestamp[us]\" },\n  { name = \"value\", type = \"double\" },\n]\n",
        "",
    ).replace("path = \"events.parquet\"", "path = \"events/\"");
    assert!(!inferred.contains("columns = ["), "{inferred}");
    let f = Fixture::new(&inferred, &[]);
    std::fs::create_dir(f.path("events")).unwrap();
    f.write(
        "events/a.parquet",
        events_parquet(Arc::new(Float64Array::from(vec![1.0, 2.0]))),
    );
    f.write(
        "events/b.parquet",
        events_parquet(Arc::new(StringArray::from(vec!["1.0", "x"]))),
    );
    let expected = [
        "b.parquet): column \"value\" is string, but double in ",
        "a.parquet (rule: the files of a source agree on column types",
    ];
    fails(&f, Exit::BadInput, &expected).await;

    // Files whose strings differ in layout, with a column only some have in two types: the
    // engine cannot merge them. Undeclared, the file that differs is named; declared, the
    // declared columns are read from every file.
    use arrow::array::{ArrayRef, LargeStringArray};
    let two = |value: ArrayRef| {
        let batch = arrow::array::RecordBatch::try_from_iter([
            (
                "key",
                Arc::new(LargeStringArray::from(vec!["a", "b"])) as ArrayRef,
            ),
            (
                "ts",
                Arc::new(arrow::array::TimestampMicrosecondArray::from(vec![
                    1_704_196_800_000_000,
                    1_704_283_200_000_000,
                ])),
            ),
            ("value", Arc::new(Float64Array::from(vec![3.0, 4.0]))),
            ("extra", value),
        ])
        .unwrap();
        let mut out = Vec::new();
        let mut writer =
            datafusion::parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), None)
                .unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        out
    };
    f.write(
        "events/b.parquet",
        two(Arc::new(arrow::array::Int64Array::from(vec![1, 2]))),
    );
    f.write(
        "events/c.parquet",
        two(Arc::new(StringArray::from(vec!["x", "y"]))),
    );
    let expected = ["b.parquet): column \"key\" is large_string, but string in "];
    fails(&f, Exit::BadInput, &expected).await;
    let f2 = Fixture::new(
        &declared.replace("path = \"events.parquet\"", "path = \"events/\""),
        &[],
    );
    std::fs::create_dir(f2.path("events")).unwrap();
    for name in ["a", "b", "c"] {
        std::fs::copy(
            f.path(&format!("events/{name}.parquet")),
            f2.path(&format!("events/{name}.parquet")),
        )
        .unwrap();
    }
    let summary = build_features(&f2.store, &f2.job()).await.unwrap();
    assert_eq!(summary.groups[0].rows, 4, "{summary:?}");

    // Dictionary-encoded strings are strings, declared or not.
    let dictionary: arrow::array::DictionaryArray<arrow::datatypes::Int32Type> =
        vec!["a", "b"].into_iter().collect();
    let batch = arrow::array::RecordBatch::try_from_iter([
        ("key", Arc::new(dictionary) as ArrayRef),
        (
            "ts",
            Arc::new(arrow::array::TimestampMicrosecondArray::from(vec![
                1_704_196_800_000_000,
                1_704_283_200_000_000,
            ])),
        ),
        ("value", Arc::new(Float64Array::from(vec![3.0, 4.0]))),
    ])
    .unwrap();
    let mut bytes = Vec::new();
    let mut writer =
        datafusion::parquet::arrow::ArrowWriter::try_new(&mut bytes, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let f3 = Fixture::new(&declared, &[]);
    f3.write("events.parquet", &bytes);
    let summary = build_features(&f3.store, &f3.job()).await.unwrap();
    assert_eq!(summary.groups[0].rows, 2, "{summary:?}");
}

#[tokio::test]
async fn column_of_the_wrong_type() {
    let config = WINDOW_CONFIG.replace("n = { type = \"int64\" }", "n = { type = \"double\" }");
    let f = Fixture::new(&config, &[("events.csv", &good_events())]);
    fails(
        &f,
        Exit::BadInput,
        &["trailing", "\"n\"", "int64", "declared double"],
    )
    .await;
}

#[tokio::test]
async fn missing_column_in_source() {
    let csv = "key,ts\na,2024-01-01T12:00:00\n";
    let config = WINDOW_CONFIG.replace("  { name = \"value\", type = \"double\" },\n", "");
    let f = Fixture::new(&config, &[("events.csv", csv)]);
    let err = fails(&f, Exit::Config, &["value"]).await;
    assert!(matches!(err, Error::Sql { .. }), "{err}");
}

#[tokio::test]
async fn empty_input() {
    let f = Fixture::new(WINDOW_CONFIG, &[("events.csv", "key,ts,value\n")]);
    fails(&f, Exit::BadInput, &["trailing", "no rows"]).await;
}

/// NaN and infinities reaching a float feature are bad input by default: the run is rejected
/// (exit 4) naming the group, column and first row, and commits nothing. A `finite` rule
/// declared on the column replaces the default: with severity warn the run commits and
/// records the warning.
#[tokio::test]
async fn nan_and_infinity_fail_a_finite_rule() {
    let csv = format!(
        "{}a,2024-01-03T12:00:00,NaN\na,2024-01-04T12:00:00,inf\n",
        good_events()
    );
    let f = Fixture::new(WINDOW_CONFIG, &[("events.csv", &csv)]);
    let summary = build_features(&f.store, &f.job()).await.unwrap();
    assert_eq!(summary.status, storage::RunStatus::Rejected);
    let failures = &summary.groups[0].failures;
    assert_eq!(failures.len(), 1, "{failures:?}");
    for needle in [
        "\"trailing\" column \"mean_3d\": rule finite failed: NaN or infinite values",
        "default rule",
        "first: key=a, day=",
    ] {
        assert!(
            failures[0].contains(needle),
            "{needle:?} missing from {failures:?}"
        );
    }
    assert!(f.tables().await.is_empty());

    let config = format!(
        "{WINDOW_CONFIG}\n[[groups.trailing.rules]]\nrule = \"finite\"\ncolumn = \"mean_3d\"\nseverity = \"warn\"\n"
    );
    let f = Fixture::new(&config, &[("events.csv", &csv)]);
    let summary = build_features(&f.store, &f.job()).await.unwrap();
    assert_eq!(summary.status, storage::RunStatus::Succeeded);
    let warnings = &summary.groups[0].warnings;
    assert!(
        warnings.len() == 1
            && warnings[0].contains("rule finite failed: NaN or infinite values; first"),
        "{warnings:?}"
    );
    assert_eq!(f.tables().await.len(), 1);
}

#[tokio::test]
async fn sql_error_names_the_group() {
    let config = WINDOW_CONFIG.replace("FROM daily\n", "FROM no_such_table\n");
    let f = Fixture::new(&config, &[("events.csv", &good_events())]);
    fails(&f, Exit::Config, &["trailing", "no_such_table"]).await;
}

/// A group whose query fails on its data: a division by zero.
const BOOM: &str = r#"[groups.boom]
entity_keys = ["key"]
event_time = "day"
sql = """
SELECT key, CAST('2024-01-01' AS DATE) AS day,
       MAX(CAST(value AS BIGINT) / (CAST(value AS BIGINT) - CAST(value AS BIGINT))) AS boom
FROM events GROUP BY key
"""
"#;

/// A group that fails on its data stops the groups still waiting to start (nothing will be
/// committed, so their work would be lost): the error is the failing group's, with its exit
/// code, and names the groups not started.
#[tokio::test]
async fn a_failing_group_stops_the_groups_not_yet_started() {
    let config = WINDOW_CONFIG.replace("[groups.trailing]", &format!("{BOOM}\n[groups.trailing]"));
    let f = Fixture::new(&config, &[("events.csv", &good_events())]);
    let mut job = f.job();
    job.engine.concurrent_groups = 1;
    let err = build_features(&f.store, &job).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("\"boom\"") && text.to_lowercase().contains("zero"),
        "{text}"
    );
    assert!(
        text.contains("not started after that failure: trailing"),
        "{text}"
    );
    assert_eq!(err.exit(), Exit::BadInput);
    assert!(f.tables().await.is_empty());

    // Side by side, both groups start: the error is the failing group's alone.
    let err = build_features(&f.store, &f.job()).await.unwrap_err();
    assert!(!err.to_string().contains("not started"), "{err}");
    assert_eq!(err.exit(), Exit::BadInput);
    assert!(f.tables().await.is_empty());
}

/// When several groups fail, the error names every one of them, not only the first; the exit
/// code is the first declared group's (a SQL error here: 2, before the data error's 3).
#[tokio::test]
async fn every_failed_group_is_reported() {
    let bad_sql = r#"[groups.bad_sql]
entity_keys = ["key"]
event_time = "day"
sql = "SELECT key, day, no_such_column FROM daily"
"#;
    let config = WINDOW_CONFIG.replace(
        "[groups.trailing]",
        &format!("{bad_sql}\n{BOOM}\n[groups.trailing]"),
    );
    let f = Fixture::new(&config, &[("events.csv", &good_events())]);
    let mut job = f.job();
    job.engine.concurrent_groups = 3;
    let err = build_features(&f.store, &job).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("\"bad_sql\"") && text.contains("no_such_column"),
        "{text}"
    );
    assert!(text.contains("also: group \"boom\""), "{text}");
    assert_eq!(err.exit(), Exit::Config);
    assert!(f.tables().await.is_empty());
}

/// Groups that fail on the same bad record of a source they share report it once.
#[tokio::test]
async fn a_bad_record_two_groups_read_is_reported_once() {
    let second = r#"[groups.copy]
entity_keys = ["key"]
event_time = "day"
sql = "SELECT key, day, n FROM daily"

[groups.trailing]"#;
    let config = WINDOW_CONFIG.replace("[groups.trailing]", second);
    let csv = format!("{}a,2024-01-03T12:00:00,not-a-number\n", good_events());
    let f = Fixture::new(&config, &[("events.csv", &csv)]);
    let err = fails(&f, Exit::BadInput, &["line 5:"]).await;
    let text = err.to_string();
    assert_eq!(text.matches("line 5:").count(), 1, "{text}");
}

/// A run that fails still leaves a record of its attempt: status `failed`, the error, its
/// inputs, and no outputs; a retry of the same run adds a second attempt.
#[tokio::test]
async fn a_failed_run_is_recorded_with_its_error() {
    let f = Fixture::new(WINDOW_CONFIG, &[("events.csv", "key,ts,value\n")]);
    let mut job = f.job();
    job.run_id = Some("nightly-1".into());
    let pipeline = Name::new(NameKind::Pipeline, "feature-pipeline").unwrap();
    let run = Name::new(NameKind::RunId, "nightly-1").unwrap();
    for attempts in 1..=2 {
        let err = build_features(&f.store, &job).await.unwrap_err();
        let records = f.store.run_records(&pipeline, &run).await.unwrap();
        assert_eq!(records.len(), attempts);
        let last = records.last().unwrap();
        assert_eq!(last.status, RunStatus::Failed);
        assert_eq!(last.error.as_deref(), Some(err.to_string().as_str()));
        assert!(last.outputs.is_empty());
        assert!(
            matches!(&last.inputs[..], [ObjectRef::Source { url }] if url.ends_with("events.csv")),
            "{:?}",
            last.inputs
        );
    }
    assert!(f.tables().await.is_empty());
}

#[test]
fn check_reports_every_problem_with_its_location() {
    let config = WINDOW_CONFIG
        .replace("[groups.trailing]", "[groups.\"../evil\"]")
        .replace("[groups.trailing.columns]", "[groups.\"../evil\".columns]")
        .replace(
            "[[groups.trailing.rules]]\nrule = \"not_null\"",
            "[[groups.\"../evil\".rules]]\nrule = \"not_null\"",
        )
        .replace(
            "[[groups.trailing.rules]]\nrule = \"unique_key\"",
            "[[groups.\"../evil\".rules]]\nrule = \"range\"\ncolumn = \"nope\"",
        )
        .replace("FROM daily\n", "FROM daily WHERE\n");
    let f = Fixture::new(&config, &[]);
    let repo = LoadedRepo::load(&f.path("features.toml")).unwrap();
    let problems = repo.repo.problems();
    let all = problems.join("\n");
    for needle in [
        "groups.../evil: invalid feature group name",
        "groups.../evil.sql:",
        "unknown column \"nope\"",
        "needs `min`, `max` or both",
    ] {
        assert!(all.contains(needle), "{needle:?} missing from:\n{all}");
    }
}

/// `check` plans the SQL against the sources' schemas (the declared CSV columns here), without
/// reading rows: an unknown column, an unknown function, a declared column the query does not
/// return and an output type the layout cannot store are each reported under their group; a correct repository has no problem; without
/// its source file nothing can be planned, and it says why.
#[tokio::test]
async fn check_plans_the_sql_against_the_sources() {
    let f = Fixture::new(WINDOW_CONFIG, &[("events.csv", &good_events())]);
    let repo = LoadedRepo::load(&f.path("features.toml")).unwrap();
    assert_eq!(engine::plan_problems(&repo).await.unwrap(), Ok(vec![]));

    let extra = r#"[groups.typo]
entity_keys = ["key"]
event_time = "day"
sql = "SELECT key, day, mean_vlaue FROM daily"

[groups.no_such_function]
entity_keys = ["key"]
event_time = "day"
sql = "SELECT key, day, frobnicate(n) AS x FROM daily"

[groups.short]
entity_keys = ["key"]
event_time = "day"
sql = "SELECT key, day FROM daily"
[groups.short.columns]
key = { type = "string" }
day = { type = "date32[day]" }
n = { type = "int64" }

[groups.listy]
entity_keys = ["key"]
event_time = "day"
sql = "SELECT key, day, make_array(n) AS ns FROM daily"

[groups.trailing]"#;
    let config = WINDOW_CONFIG.replace("[groups.trailing]", extra);
    let f = Fixture::new(&config, &[("events.csv", &good_events())]);
    let repo = LoadedRepo::load(&f.path("features.toml")).unwrap();
    let problems = engine::plan_problems(&repo).await.unwrap().unwrap();
    let all = problems.join("\n");
    assert_eq!(problems.len(), 4, "{all}");
    for needle in [
        "groups.typo.sql:",
        "mean_vlaue",
        "groups.no_such_function.sql:",
        "frobnicate",
        "groups.short:",
        "\"n\" is missing from the query output",
        "groups.listy:",
        "not a supported Arrow type",
    ] {
        assert!(all.contains(needle), "{needle:?} missing from:\n{all}");
    }

    let missing = Fixture::new(WINDOW_CONFIG, &[]);
    let repo = LoadedRepo::load(&missing.path("features.toml")).unwrap();
    let why = engine::plan_problems(&repo).await.unwrap().unwrap_err();
    assert!(why.contains("events.csv"), "{why}");

    // A source that is on the machine but contradicts its declared columns is bad input, as
    // the run would find, not "nothing to plan".
    let reordered = good_events().replacen("key,ts,value", "key,value,ts", 1);
    let wrong = Fixture::new(WINDOW_CONFIG, &[("events.csv", &reordered)]);
    let repo = LoadedRepo::load(&wrong.path("features.toml")).unwrap();
    let err = engine::plan_problems(&repo).await.unwrap_err();
    assert_eq!(err.exit(), Exit::BadInput, "{err}");
    assert!(err.to_string().contains("[key, value, ts]"), "{err}");
}

#[test]
fn unknown_keys_are_config_errors_with_a_location() {
    let config = WINDOW_CONFIG.replace("owner = \"tests\"", "owner = \"tests\"\nownr = \"typo\"");
    let f = Fixture::new(&config, &[]);
    let err = LoadedRepo::load(&f.path("features.toml")).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("ownr") && text.contains("line"), "{text}");
    assert_eq!(err.exit(), Exit::Config);

    // Every unknown key is reported at once, with its line and column (in an inline table, a
    // multi-line value, a rule), followed by the other problems of the file.
    let config = WINDOW_CONFIG
        .replace(
            "format = \"csv\"",
            "format = \"csv\"\nformt = [\n  1,\n  2,\n]",
        )
        .replace("{ name = \"ts\",", "{ name = \"ts\", typ = \"x\",")
        .replace("owner = \"tests\"", "owner = \"tests\"\nownr = \"typo\"")
        .replace(
            "rule = \"unique_key\"",
            "rule = \"unique_key\"\nseverty = \"warn\"",
        )
        .replace(
            "entity_keys = [\"key\"]",
            "entity_keys = [\"key\", \"nope\"]",
        );
    let f = Fixture::new(&config, &[]);
    let err = LoadedRepo::load(&f.path("features.toml")).unwrap_err();
    let text = err.to_string();
    assert_eq!(err.exit(), Exit::Config);
    let line = |needle: &str| config.lines().position(|l| l.contains(needle)).unwrap() + 1;
    for expected in [
        format!("line {}, column 1: unknown field `formt`", line("formt")),
        format!("line {}, column 18: unknown field `typ`", line("typ =")),
        format!("line {}, column 1: unknown field `ownr`", line("ownr")),
        format!(
            "line {}, column 1: unknown field `severty`",
            line("severty")
        ),
        "unknown column \"nope\"".to_string(),
    ] {
        assert!(
            text.contains(&expected),
            "{expected:?} missing from: {text}"
        );
    }

    // An unknown table (its whole section) and a dotted key do not end the list either.
    let config = format!(
        "[sourcez.x]\nformat = \"csv\"\npath = [\n  \"a\",\n]\n\n{}",
        WINDOW_CONFIG
            .replace(
                "owner = \"tests\"",
                "owner = \"tests\"\nlabels.team = \"x\""
            )
            .replace(
                "rule = \"unique_key\"",
                "rule = \"unique_key\"\nseverty = \"warn\""
            )
    );
    let line = |needle: &str| config.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let f = Fixture::new(&config, &[]);
    let text = LoadedRepo::load(&f.path("features.toml"))
        .unwrap_err()
        .to_string();
    for expected in [
        "line 1, column 2: unknown field `sourcez`".to_string(),
        format!(
            "line {}, column 1: unknown field `labels`",
            line("labels.team")
        ),
        format!(
            "line {}, column 1: unknown field `severty`",
            line("severty")
        ),
    ] {
        assert!(
            text.contains(&expected),
            "{expected:?} missing from: {text}"
        );
    }
}

/// Duplicate (entity, event time) rows fail `unique_key` whatever order the query returns
/// them in: unsorted, sorted by the entity only (duplicates not adjacent: the rule then keeps
/// only the current entity's keys), or sorted by the whole key (duplicates adjacent); and
/// whether the key comes out of the engine as `Utf8` or as string views.
#[tokio::test]
async fn duplicate_keys_fail_unique_key_in_any_output_order() {
    // Key a has two rows on 2024-01-01 (one at 12:00, one at 18:00), between other days.
    let csv = "key,ts,value\n\
               a,2024-01-01T12:00:00,1.0\n\
               b,2024-01-01T12:00:00,2.0\n\
               a,2024-01-02T12:00:00,3.0\n\
               a,2024-01-01T18:00:00,4.0\n\
               b,2024-01-02T12:00:00,5.0\n";
    let orders = [
        "",
        "ORDER BY key",
        "ORDER BY key, day",
        "ORDER BY key DESC, day DESC",
    ];
    // `CAST(.. AS VARCHAR)` gives `Utf8View` in DataFusion.
    let keys = ["key", "CAST(key AS VARCHAR)"];
    for (order, key) in orders.iter().flat_map(|o| keys.map(|k| (*o, k))) {
        let config = format!(
            r#"
[sources.events]
format = "csv"
path = "events.csv"
columns = [
  {{ name = "key", type = "string" }},
  {{ name = "ts", type = "timestamp[us]" }},
  {{ name = "value", type = "double" }},
]

[groups.daily]
entity_keys = ["key"]
event_time = "day"
sql = "SELECT {key} AS key, CAST(ts AS DATE) AS day, value FROM events {order}"

[groups.daily.columns]
key = {{ type = "string" }}
day = {{ type = "date32[day]" }}
value = {{ type = "double" }}

[[groups.daily.rules]]
rule = "unique_key"
"#
        );
        let f = Fixture::new(&config, &[("events.csv", csv)]);
        let summary = build_features(&f.store, &f.job()).await.unwrap();
        assert_eq!(
            summary.status,
            storage::RunStatus::Rejected,
            "{order:?} {key}"
        );
        let failures = summary.groups[0].failures.join("\n");
        assert!(
            failures.contains("unique_key")
                && failures.contains("key=a, day=2024-01-01")
                && failures.contains("measured 1"),
            "{order:?}: {failures}"
        );
        assert!(f.tables().await.is_empty(), "{order:?}: nothing committed");
    }
}

/// The `ordered_by` rule is checked on the source a group reads: a run of groups that do not
/// read an out-of-order source commits; a run of one that does fails naming it.
#[tokio::test]
async fn an_out_of_order_source_fails_only_the_groups_reading_it() {
    let config = format!(
        "{}{}",
        WINDOW_CONFIG.replace(
            "path = \"events.csv\"",
            "path = \"events.csv\"\nordered_by = \"ts\""
        ),
        r#"
[sources.other]
format = "csv"
path = "other.csv"
columns = [
  { name = "key", type = "string" },
  { name = "ts", type = "timestamp[us]" },
  { name = "value", type = "double" },
]

[groups.totals]
entity_keys = ["key"]
event_time = "last"
sql = "SELECT key, MAX(ts) AS last, SUM(value) AS total FROM other GROUP BY key"
"#
    );
    let backwards = events_csv(&[("a", 2, 1.0), ("a", 1, 2.0)]);
    let f = Fixture::new(
        &config,
        &[("events.csv", &backwards), ("other.csv", &good_events())],
    );
    let mut job = f.job();
    job.groups = vec!["totals".into()];
    build_features(&f.store, &job).await.unwrap();
    assert_eq!(f.tables().await, vec!["totals".to_string()]);

    job.groups = vec!["trailing".into()];
    let err = build_features(&f.store, &job).await.unwrap_err();
    assert_eq!(err.exit(), Exit::BadInput, "{err}");
    assert!(err.to_string().contains("events.csv"), "{err}");
    assert!(err.to_string().contains("row 1"), "{err}");
    assert_eq!(f.tables().await, vec!["totals".to_string()]);
}
