//! What a run commits: point-in-time windows, idempotent ranges, time travel, validation.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::compute::concat_batches;
use arrow::datatypes::{Date32Type, Float64Type};
use feature_pipeline::{EngineOptions, LoadedRepo, build_features, engine, parse_time};
use storage::{Name, NameKind, RunStatus, Severity, VersionSpec};

use crate::support::{Fixture, WINDOW_CONFIG, events_csv, rows, sorted_lines};

/// Day D's own value is huge, so any leak of day D (or later) into D's feature shows.
fn leaky_events() -> Vec<(&'static str, i64, f64)> {
    let mut events = Vec::new();
    for day in 0..10 {
        events.push(("a", day, day as f64));
        events.push(("a", day, day as f64 + 1.0));
        if day % 2 == 0 {
            events.push(("b", day, 1000.0 * day as f64));
        }
    }
    events
}

#[tokio::test]
async fn trailing_window_never_uses_the_current_day_or_later() {
    let events = leaky_events();
    let f = Fixture::new(WINDOW_CONFIG, &[("events.csv", &events_csv(&events))]);
    let summary = build_features(&f.store, &f.job()).await.unwrap();
    assert_eq!(summary.status, RunStatus::Succeeded);

    // Direct recomputation from the raw rows: daily means, then the mean over D-3..D-1.
    let mut daily: HashMap<(&str, i64), Vec<f64>> = HashMap::new();
    for (k, d, v) in &events {
        daily.entry((k, *d)).or_default().push(*v);
    }
    let daily_mean = |k: &str, d: i64| {
        daily
            .get(&(k, d))
            .map(|v| v.iter().sum::<f64>() / v.len() as f64)
    };
    let table = Name::new(NameKind::FeatureGroup, "trailing").unwrap();
    let snapshot = f.store.table(&table, VersionSpec::Latest).await.unwrap();
    let batches = snapshot.read_all(&f.store, None).await.unwrap();
    let epoch_2024 = chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
    let mut checked = 0;
    for batch in &batches {
        let keys = batch.column_by_name("key").unwrap().as_string::<i32>();
        let days = batch
            .column_by_name("day")
            .unwrap()
            .as_primitive::<Date32Type>();
        let means = batch
            .column_by_name("mean_3d")
            .unwrap()
            .as_primitive::<Float64Type>();
        for i in 0..batch.num_rows() {
            let key = keys.value(i);
            let day =
                (Date32Type::to_naive_date_opt(days.value(i)).unwrap() - epoch_2024).num_days();
            let window: Vec<f64> = (day - 3..day).filter_map(|d| daily_mean(key, d)).collect();
            let expected =
                (!window.is_empty()).then(|| window.iter().sum::<f64>() / window.len() as f64);
            let actual = means.is_valid(i).then(|| means.value(i));
            assert_eq!(actual, expected, "key {key} day {day}");
            checked += 1;
        }
    }
    assert_eq!(checked, 15, "10 days of a, 5 of b");
}

#[tokio::test]
async fn rerunning_a_range_is_idempotent() {
    let f = Fixture::new(
        WINDOW_CONFIG,
        &[("events.csv", &events_csv(&leaky_events()))],
    );
    build_features(&f.store, &f.job()).await.unwrap();
    let full = rows(&f.store, "trailing", VersionSpec::Latest).await;

    let mut job = f.job();
    job.range = Some((
        parse_time("2024-01-05").unwrap(),
        parse_time("2024-01-08").unwrap(),
    ));
    let first = build_features(&f.store, &job).await.unwrap();
    assert_eq!(first.status, RunStatus::Succeeded);
    assert_eq!(
        first.groups[0].rows, 5,
        "days 4..6 of a (3) and b on days 4 and 6 (2)"
    );
    let again = build_features(&f.store, &job).await.unwrap();
    assert_eq!(
        again.status,
        RunStatus::AlreadyDone,
        "same logical run: nothing new"
    );
    assert_eq!(f.versions("trailing").await, 2);
    // Replacing a range with the same computation leaves the same rows: none duplicated.
    assert_eq!(rows(&f.store, "trailing", VersionSpec::Latest).await, full);

    // A different run id over the same range still replaces, never duplicates.
    job.run_id = Some("manual-rerun".into());
    job.repo.text.push_str("\n# edited\n");
    let forced = build_features(&f.store, &job).await.unwrap();
    assert_eq!(forced.status, RunStatus::Succeeded);
    assert_eq!(rows(&f.store, "trailing", VersionSpec::Latest).await, full);
}

/// A range the query returns no rows for (the events of those days were wrong and are
/// gone) is bad input, committing nothing, unless the run allows it: then the range is
/// committed empty, its old rows deleted and the others kept.
#[tokio::test]
async fn an_empty_range_is_committed_only_when_allowed() {
    let events = leaky_events();
    let f = Fixture::new(WINDOW_CONFIG, &[("events.csv", &events_csv(&events))]);
    build_features(&f.store, &f.job()).await.unwrap();
    let full = rows(&f.store, "trailing", VersionSpec::Latest).await;
    let emptied = ["2024-01-05", "2024-01-06", "2024-01-07"];
    let expected: Vec<String> = full
        .iter()
        .filter(|row| !emptied.iter().any(|day| row.contains(day)))
        .cloned()
        .collect();
    assert_eq!(
        full.len() - expected.len(),
        5,
        "days 4..6 of a and b on days 4 and 6"
    );

    let corrected: Vec<_> = events
        .into_iter()
        .filter(|(_, day, _)| !(4..7).contains(day))
        .collect();
    f.write("events.csv", events_csv(&corrected));
    let mut job = f.job();
    job.range = Some((
        parse_time(emptied[0]).unwrap(),
        parse_time("2024-01-08").unwrap(),
    ));
    let err = build_features(&f.store, &job).await.unwrap_err();
    assert_eq!(err.exit(), fti_runtime::Exit::BadInput, "{err}");
    assert!(err.to_string().contains("--allow-empty"), "{err}");
    assert_eq!(f.versions("trailing").await, 1);

    job.allow_empty = true;
    let summary = build_features(&f.store, &job).await.unwrap();
    assert_eq!(summary.status, RunStatus::Succeeded);
    assert_eq!(summary.groups[0].rows, 0);
    assert_eq!(f.versions("trailing").await, 2);
    assert_eq!(
        rows(&f.store, "trailing", VersionSpec::Latest).await,
        expected
    );
}

/// A re-run is skipped only while the commit it made is in effect: after config A, then B,
/// running A again brings A's rows back (it used to report A's old version as done and leave
/// B's rows), a retry of that is skipped, and `force` computes a run that is done.
#[tokio::test]
async fn a_reverted_config_is_committed_again() {
    let f = Fixture::new(
        WINDOW_CONFIG,
        &[("events.csv", &events_csv(&leaky_events()))],
    );
    let config_a = f.job();
    let mut config_b = f.job();
    config_b.repo.text = config_b
        .repo
        .text
        .replace("       n\nFROM daily", "       n * 10 AS n\nFROM daily");
    config_b.repo.repo.groups.get_mut("trailing").unwrap().sql =
        config_b.repo.repo.groups["trailing"]
            .sql
            .replace("       n\nFROM daily", "       n * 10 AS n\nFROM daily");
    assert_ne!(config_a.repo.text, config_b.repo.text);

    build_features(&f.store, &config_a).await.unwrap();
    let rows_a = rows(&f.store, "trailing", VersionSpec::Latest).await;
    build_features(&f.store, &config_b).await.unwrap();
    assert_ne!(
        rows(&f.store, "trailing", VersionSpec::Latest).await,
        rows_a
    );

    let reverted = build_features(&f.store, &config_a).await.unwrap();
    assert_eq!(reverted.status, RunStatus::Succeeded);
    assert_eq!(f.versions("trailing").await, 3);
    assert_eq!(
        rows(&f.store, "trailing", VersionSpec::Latest).await,
        rows_a
    );
    let retried = build_features(&f.store, &config_a).await.unwrap();
    assert_eq!(retried.status, RunStatus::AlreadyDone);
    assert_eq!(retried.groups[0].version, Some(3));

    let mut forced = config_a.clone();
    forced.force = true;
    let forced = build_features(&f.store, &forced).await.unwrap();
    assert_eq!(forced.status, RunStatus::Succeeded);
    assert_eq!(f.versions("trailing").await, 4);
    assert_eq!(
        rows(&f.store, "trailing", VersionSpec::Latest).await,
        rows_a
    );
}

#[tokio::test]
async fn incremental_append_then_time_travel() {
    let mut events = leaky_events();
    let f = Fixture::new(WINDOW_CONFIG, &[("events.csv", &events_csv(&events))]);
    build_features(&f.store, &f.job()).await.unwrap();
    let v1 = rows(&f.store, "trailing", VersionSpec::Latest).await;

    // A new day arrives; only that day is computed and appended.
    events.push(("a", 10, 10.0));
    f.write("events.csv", events_csv(&events));
    let mut job = f.job();
    job.range = Some((
        parse_time("2024-01-11").unwrap(),
        parse_time("2024-01-12").unwrap(),
    ));
    let summary = build_features(&f.store, &job).await.unwrap();
    assert_eq!(summary.groups[0].version, Some(2));
    let v2 = rows(&f.store, "trailing", VersionSpec::Latest).await;
    assert_eq!(v2.len(), v1.len() + 1);
    assert!(v1.iter().all(|r| v2.contains(r)), "earlier rows unchanged");
    // Time travel: version 1 is still exactly what it was.
    assert_eq!(
        rows(&f.store, "trailing", VersionSpec::Version(1)).await,
        v1
    );
}

const RULES: &str = r#"
[[groups.trailing.rules]]
rule = "range"
column = "n"
max = 1
severity = "SEVERITY"
"#;

#[tokio::test]
async fn failed_error_rule_commits_nothing() {
    let config = format!("{WINDOW_CONFIG}{}", RULES.replace("SEVERITY", "error"));
    let f = Fixture::new(&config, &[("events.csv", &events_csv(&leaky_events()))]);
    let summary = build_features(&f.store, &f.job()).await.unwrap();
    assert_eq!(summary.status, RunStatus::Rejected);
    let group = &summary.groups[0];
    assert_eq!((group.status, group.rules_failed), ("rejected", 1));
    let failure = &group.failures[0];
    for needle in ["\"trailing\"", "\"n\"", "range", "measured", "<= 1"] {
        assert!(failure.contains(needle), "{needle} missing from: {failure}");
    }
    assert!(f.tables().await.is_empty(), "nothing committed");
}

#[tokio::test]
async fn failed_warn_rule_commits_and_records_the_warning() {
    let config = format!("{WINDOW_CONFIG}{}", RULES.replace("SEVERITY", "warn"));
    let f = Fixture::new(&config, &[("events.csv", &events_csv(&leaky_events()))]);
    let summary = build_features(&f.store, &f.job()).await.unwrap();
    assert_eq!(summary.status, RunStatus::Succeeded);
    assert_eq!(summary.groups[0].rules_warned, 1);
    let table = Name::new(NameKind::FeatureGroup, "trailing").unwrap();
    let snapshot = f.store.table(&table, VersionSpec::Latest).await.unwrap();
    let report = snapshot.commit.validation.unwrap();
    let warned: Vec<_> = report.warnings().collect();
    assert_eq!(warned.len(), 1);
    assert_eq!(
        (warned[0].rule.as_str(), warned[0].severity),
        ("range", Severity::Warn)
    );
    assert_eq!(warned[0].measured["max"], 2.0);
    // Statistics were stored with the commit.
    let stats = snapshot.commit.statistics.unwrap();
    assert_eq!(stats.num_rows, 15);
    assert_eq!(stats.columns["n"].max, Some(2.0));
}

#[tokio::test]
async fn drift_rule_compares_with_the_previous_version() {
    let config = format!(
        "{WINDOW_CONFIG}\n[[groups.trailing.rules]]\nrule = \"drift\"\ncolumn = \"mean_3d\"\nmethod = \"psi\"\nmax = 0.2\n"
    );
    let f = Fixture::new(&config, &[("events.csv", &events_csv(&leaky_events()))]);
    assert_eq!(
        build_features(&f.store, &f.job()).await.unwrap().status,
        RunStatus::Succeeded
    );
    // The same keys and days with values a thousand times larger: the distribution moved.
    let shifted: Vec<_> = leaky_events()
        .into_iter()
        .map(|(k, d, v)| (k, d, v * 1000.0 + 5e6))
        .collect();
    f.write("events.csv", events_csv(&shifted));
    let summary = build_features(&f.store, &f.job()).await.unwrap();
    assert_eq!(summary.status, RunStatus::Rejected, "{summary:?}");
    assert!(
        summary.groups[0].failures[0].contains("drift"),
        "{:?}",
        summary.groups[0].failures
    );
    assert_eq!(
        f.versions("trailing").await,
        1,
        "the drifted data was not committed"
    );
}

/// A range run's rows are compared with the latest version's rows in that range, not with
/// the statistics of whatever the last commit wrote (the whole table here): unchanged data
/// passes, a moved range fails, and a full run after range runs compares with the whole table.
#[tokio::test]
async fn drift_in_a_range_run_compares_the_same_range() {
    let config = format!(
        "{WINDOW_CONFIG}\n[[groups.trailing.rules]]\nrule = \"drift\"\ncolumn = \"mean_3d\"\nmethod = \"psi\"\nmax = 0.2\n"
    );
    let f = Fixture::new(&config, &[("events.csv", &events_csv(&leaky_events()))]);
    build_features(&f.store, &f.job()).await.unwrap();
    let mut range = f.job();
    range.range = Some((
        parse_time("2024-01-06").unwrap(),
        parse_time("2024-01-09").unwrap(),
    ));
    range.force = true;
    let same = build_features(&f.store, &range).await.unwrap();
    assert_eq!(same.status, RunStatus::Succeeded, "{same:?}");
    let drift = |s: &feature_pipeline::RunSummary| s.groups[0].failures.clone();
    assert!(drift(&same).is_empty());

    let shifted: Vec<_> = leaky_events()
        .into_iter()
        .map(|(k, d, v)| {
            (
                k,
                d,
                if (5..8).contains(&d) {
                    v * 1000.0 + 5e6
                } else {
                    v
                },
            )
        })
        .collect();
    f.write("events.csv", events_csv(&shifted));
    let moved = build_features(&f.store, &range).await.unwrap();
    assert_eq!(moved.status, RunStatus::Rejected, "{moved:?}");
    assert!(drift(&moved)[0].contains("psi drift"), "{moved:?}");

    // Back to the original data: a full run after the range run compares with the whole
    // latest version, which is the original table.
    f.write("events.csv", events_csv(&leaky_events()));
    let mut full = f.job();
    full.force = true;
    let again = build_features(&f.store, &full).await.unwrap();
    assert_eq!(again.status, RunStatus::Succeeded, "{again:?}");
}

#[tokio::test]
async fn json_lines_and_parquet_sources_give_the_same_table() {
    let events = leaky_events();
    let csv = Fixture::new(WINDOW_CONFIG, &[("events.csv", &events_csv(&events))]);
    build_features(&csv.store, &csv.job()).await.unwrap();
    let expected = rows(&csv.store, "trailing", VersionSpec::Latest).await;

    let mut jsonl = String::new();
    for (key, day, value) in &events {
        let date =
            chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap() + chrono::Duration::days(*day);
        jsonl.push_str(&format!(
            "{{\"key\": \"{key}\", \"ts\": \"{date}T12:00:00\", \"value\": {value:?}}}\n"
        ));
    }
    let config = WINDOW_CONFIG
        .replace("format = \"csv\"", "format = \"jsonl\"")
        .replace("path = \"events.csv\"", "path = \"events.jsonl\"");
    let json = Fixture::new(&config, &[("events.jsonl", &jsonl)]);
    build_features(&json.store, &json.job()).await.unwrap();
    assert_eq!(
        rows(&json.store, "trailing", VersionSpec::Latest).await,
        expected
    );
}

/// Time stamps in seconds (a CSV source's inferred times) and `date64` have no Parquet type
/// that other readers read back as written (pyarrow sees integers and `date32`): a group that
/// outputs them stores milliseconds and `date32`, the same instants and days.
#[tokio::test]
async fn seconds_and_date64_are_stored_as_types_every_reader_knows() {
    let config = r#"
[sources.events]
format = "csv"
path = "events.csv"
columns = [
  { name = "key", type = "string" },
  { name = "ts", type = "timestamp[s]" },
  { name = "value", type = "double" },
]

[groups.raw]
entity_keys = ["key"]
event_time = "ts"
sql = "SELECT key, ts, arrow_cast(CAST(ts AS DATE), 'Date64') AS day, value FROM events"
"#;
    let f = Fixture::new(config, &[("events.csv", &events_csv(&leaky_events()))]);
    build_features(&f.store, &f.job()).await.unwrap();
    let table = Name::new(NameKind::FeatureGroup, "raw").unwrap();
    let snapshot = f.store.table(&table, VersionSpec::Latest).await.unwrap();
    let types: Vec<(&str, &str)> = snapshot
        .definition()
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.data_type.as_str()))
        .collect();
    assert_eq!(
        types,
        [
            ("key", "string"),
            ("ts", "timestamp[ms]"),
            ("day", "date32[day]"),
            ("value", "double")
        ]
    );
    let batches = snapshot.read_all(&f.store, None).await.unwrap();
    let batch = concat_batches(&batches[0].schema(), &batches).unwrap();
    let noon = 12 * 3_600_000i64;
    for (i, (_, day, _)) in leaky_events().iter().enumerate() {
        let ts = batch
            .column(1)
            .as_primitive::<arrow::datatypes::TimestampMillisecondType>();
        assert_eq!(ts.value(i), (19_723 + day) * 86_400_000 + noon, "row {i}");
        assert_eq!(
            batch.column(2).as_primitive::<Date32Type>().value(i),
            (19_723 + day) as i32,
            "row {i}"
        );
    }
}

#[tokio::test]
async fn a_cached_view_gives_the_same_table() {
    let events = events_csv(&leaky_events());
    let plain = Fixture::new(WINDOW_CONFIG, &[("events.csv", &events)]);
    build_features(&plain.store, &plain.job()).await.unwrap();
    let config = WINDOW_CONFIG.replace("[views.daily]\n", "[views.daily]\ncache = true\n");
    assert_ne!(config, WINDOW_CONFIG);
    let cached = Fixture::new(&config, &[("events.csv", &events)]);
    build_features(&cached.store, &cached.job()).await.unwrap();
    assert_eq!(
        rows(&cached.store, "trailing", VersionSpec::Latest).await,
        rows(&plain.store, "trailing", VersionSpec::Latest).await
    );
}

/// A source with a `row_index`: a query using the index gets each row's 0-based position in
/// the file, whatever other columns it reads and in whatever order; a query not using it
/// (read in parallel) sees the same rows.
#[tokio::test]
async fn row_index_numbers_rows_in_file_order() {
    // Keys out of key order, so file order is not the order of any column but the index.
    let events: Vec<(&str, i64, f64)> = (0..500)
        .map(|i| (["c", "a", "b"][i % 3], (i as i64 * 7) % 40, i as f64))
        .collect();
    let config = r#"
[sources.events]
format = "csv"
path = "events.csv"
row_index = "row"
columns = [
  { name = "key", type = "string" },
  { name = "ts", type = "timestamp[us]" },
  { name = "value", type = "double" },
]

[groups.indexed]
entity_keys = ["row"]
event_time = "ts"
sql = "SELECT value, key, row, ts FROM events"

[groups.unindexed]
entity_keys = ["key"]
event_time = "day"
sql = """
SELECT key, CAST(MIN(ts) AS DATE) AS day, SUM(value) AS total, COUNT(*) AS n
FROM events GROUP BY key
"""
"#;
    let f = Fixture::new(config, &[("events.csv", &events_csv(&events))]);
    build_features(&f.store, &f.job()).await.unwrap();

    let mut expected: Vec<String> = events
        .iter()
        .enumerate()
        .map(|(row, (key, _, value))| format!("{value:?} {key} {row}"))
        .collect();
    expected.sort();
    let mut indexed: Vec<String> = rows(&f.store, "indexed", VersionSpec::Latest)
        .await
        .iter()
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            format!("{} {} {}", cells[1], cells[2], cells[3])
        })
        .collect();
    indexed.sort();
    assert_eq!(indexed, expected);

    let totals = rows(&f.store, "unindexed", VersionSpec::Latest).await;
    assert_eq!(totals.len(), 3);
    for key in ["a", "b", "c"] {
        let (sum, n) = events
            .iter()
            .filter(|(k, _, _)| *k == key)
            .fold((0.0, 0), |(s, n), (_, _, v)| (s + v, n + 1));
        let line = totals
            .iter()
            .find(|l| l.contains(&format!("| {key} ")))
            .unwrap();
        assert!(line.contains(&format!("| {sum:?} ")), "{line}: sum {sum}");
        assert!(line.contains(&format!("| {n} ")), "{line}: count {n}");
    }
}

/// `explain --analyze` runs the group's query and shows its operators with their row counts;
/// it commits nothing; an unknown group is a flag error naming the groups there are.
#[tokio::test]
async fn explain_shows_the_plan_and_writes_nothing() {
    let f = Fixture::new(
        WINDOW_CONFIG,
        &[("events.csv", &events_csv(&leaky_events()))],
    );
    let job = f.job();
    let plan = feature_pipeline::engine::explain(&job.repo, "trailing", &[], &job.engine, true)
        .await
        .unwrap();
    assert!(plan.contains("BoundedWindowAggExec"), "{plan}");
    assert!(plan.contains("output_rows"), "{plan}");
    assert!(f.tables().await.is_empty());

    let err = feature_pipeline::engine::explain(&job.repo, "nope", &[], &job.engine, false)
        .await
        .unwrap_err();
    assert_eq!(err.exit(), fti_runtime::Exit::Config);
    assert!(err.to_string().contains("trailing"), "{err}");
}

/// A cached view's rows count against the memory limit for as long as the run holds them;
/// when they do not fit, every query reading the view computes it again, with the same rows.
#[tokio::test]
async fn cached_views_are_held_within_the_memory_limit() {
    // 3,000 events, held by a cached row-per-event view: the query reading it takes no
    // memory of its own, so a limit one byte short of the rows leaves it only the cache.
    let events: Vec<(&str, i64, f64)> = (0..3_000)
        .map(|i| (["a", "b", "c"][i % 3], (i / 100) as i64, i as f64))
        .collect();
    let events = events_csv(&events);
    let config = format!(
        "{}\n[views.raw]\ncache = true\nsql = \"SELECT key, ts, value FROM events\"\n",
        WINDOW_CONFIG
    );
    let f = Fixture::new(&config, &[("events.csv", &events)]);
    let repo = LoadedRepo::load(&f.path("features.toml")).unwrap();
    // Each query's rows (sorted here: an ORDER BY would take memory of its own) and what the
    // pool holds after it.
    let read = |memory_limit: usize| {
        let repo = &repo;
        async move {
            let options = EngineOptions {
                memory_limit,
                cores: 2,
                concurrent_groups: 1,
            };
            let ctx = engine::session(repo, &[], &options, 1).await.unwrap();
            let mut results = Vec::new();
            for _ in 0..2 {
                let batches = ctx
                    .sql("SELECT key, ts, value FROM raw")
                    .await
                    .unwrap()
                    .collect()
                    .await
                    .unwrap();
                results.push((
                    sorted_lines(&batches),
                    ctx.runtime_env().memory_pool.reserved(),
                ));
            }
            results
        }
    };
    let held = read(256 << 20).await;
    let (expected, reserved) = held[0].clone();
    assert_eq!(expected.len(), 3_000);
    assert!(reserved > 0, "the cached rows are not counted");
    assert_eq!(held[1], held[0], "a second query reads the same held rows");

    for (again, after) in read(reserved - 1).await {
        assert_eq!(again, expected);
        assert_eq!(after, 0, "rows that do not fit are not held");
    }
}

/// A cached aggregate reserves what its rows hold: the aggregation emits its groups as slices
/// of one batch, and each buffer counts once, not once per slice.
#[tokio::test]
async fn a_cached_aggregate_reserves_its_rows_once() {
    // 200,000 groups: slices of 64Ki rows (the session's batch size) of one emitted batch.
    let keys: Vec<String> = (0..200_000).map(|i| format!("k{i}")).collect();
    let events: Vec<(&str, i64, f64)> = keys.iter().map(|k| (k.as_str(), 0, 1.0)).collect();
    let config = WINDOW_CONFIG.replace("[views.daily]\n", "[views.daily]\ncache = true\n");
    let f = Fixture::new(&config, &[("events.csv", &events_csv(&events))]);
    let repo = LoadedRepo::load(&f.path("features.toml")).unwrap();
    let options = EngineOptions {
        memory_limit: 256 << 20,
        cores: 1,
        concurrent_groups: 1,
    };
    let ctx = engine::session(&repo, &[], &options, 1).await.unwrap();
    let df = ctx.sql("SELECT * FROM daily").await.unwrap();
    let schema = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await.unwrap();
    assert!(batches.len() > 1);
    // The same rows in one freshly allocated batch.
    let compact = concat_batches(&schema, &batches).unwrap();
    assert_eq!(compact.num_rows(), 200_000);
    let reserved = ctx.runtime_env().memory_pool.reserved();
    // At most twice the compact size: buffers grown by doubling hold up to twice their rows.
    assert!(
        reserved > 0 && reserved < 2 * compact.get_array_memory_size(),
        "reserved {reserved} bytes for rows taking {}",
        compact.get_array_memory_size()
    );
}

/// A `cache = true` view gives the rows its SQL gives uncached, and is computed only when a
/// group of the run reads it: a cached view that fails when computed fails the groups that
/// read it, naming the view, and no other.
#[tokio::test]
async fn cached_views_are_computed_on_first_use_with_the_same_rows() {
    let events = events_csv(&leaky_events());
    let plain = Fixture::new(WINDOW_CONFIG, &[("events.csv", &events)]);
    build_features(&plain.store, &plain.job()).await.unwrap();
    let expected = rows(&plain.store, "trailing", VersionSpec::Latest).await;

    let config = format!(
        "{}{}",
        WINDOW_CONFIG.replace("[views.daily]\n", "[views.daily]\ncache = true\n"),
        r#"
[views.broken]
cache = true
sql = "SELECT key, CAST(value AS BIGINT) / (CAST(value AS BIGINT) - CAST(value AS BIGINT)) AS boom FROM events"

[groups.boom]
entity_keys = ["key"]
event_time = "day"
sql = "SELECT key, CAST('2024-01-01' AS DATE) AS day, MAX(boom) AS boom FROM broken GROUP BY key"
"#
    );
    let f = Fixture::new(&config, &[("events.csv", &events)]);
    let mut job = f.job();
    job.groups = vec!["trailing".into()];
    let summary = build_features(&f.store, &job).await.unwrap();
    assert_eq!(summary.status, RunStatus::Succeeded);
    assert_eq!(
        rows(&f.store, "trailing", VersionSpec::Latest).await,
        expected
    );

    job.groups = vec!["boom".into()];
    let err = build_features(&f.store, &job)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("view broken") && err.to_lowercase().contains("zero"),
        "{err}"
    );
    assert_eq!(f.tables().await, vec!["trailing".to_string()]);
}
