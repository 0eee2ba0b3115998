//! A tiny feature repository over a CSV of events, written fresh for each test.

use std::path::PathBuf;

use arrow::array::RecordBatch;

use feature_pipeline::{EngineOptions, FeatureJob, LoadedRepo};
use storage::{Name, NameKind, Store, VersionSpec};

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub store: Store,
}

/// Events `(key, day, value)`: day `d` is 2024-01-01 + d days, at noon.
pub fn events_csv(rows: &[(&str, i64, f64)]) -> String {
    let mut csv = String::from("key,ts,value\n");
    for (key, day, value) in rows {
        let date =
            chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap() + chrono::Duration::days(*day);
        csv.push_str(&format!("{key},{date}T12:00:00,{value}\n"));
    }
    csv
}

/// Per key and day D: the mean of the values of days D-3..D-1 (a trailing window that
/// excludes the current day), on every day that has events.
pub const WINDOW_CONFIG: &str = r#"
[sources.events]
format = "csv"
path = "events.csv"
columns = [
  { name = "key", type = "string" },
  { name = "ts", type = "timestamp[us]" },
  { name = "value", type = "double" },
]

[views.daily]
sql = """
SELECT key, CAST(ts AS DATE) AS day, AVG(value) AS mean_value, COUNT(*) AS n
FROM events GROUP BY key, CAST(ts AS DATE)
"""

[groups.trailing]
description = "trailing 3-day mean per key, excluding the current day"
owner = "tests"
entity_keys = ["key"]
event_time = "day"
sql = """
SELECT key, day,
       AVG(mean_value) OVER (PARTITION BY key ORDER BY day
           RANGE BETWEEN INTERVAL '3 days' PRECEDING AND INTERVAL '1 day' PRECEDING) AS mean_3d,
       n
FROM daily
"""

[groups.trailing.columns]
key = { type = "string" }
day = { type = "date32[day]" }
mean_3d = { type = "double", description = "mean of daily means over D-3..D-1" }
n = { type = "int64" }

[[groups.trailing.rules]]
rule = "unique_key"

[[groups.trailing.rules]]
rule = "not_null"
column = "key"
"#;

impl Fixture {
    pub fn new(config: &str, files: &[(&str, &str)]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("features.toml"), config).unwrap();
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        Fixture {
            dir,
            store: Store::memory(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, content: impl AsRef<[u8]>) {
        std::fs::write(self.path(name), content).unwrap();
    }

    pub fn job(&self) -> FeatureJob {
        FeatureJob {
            repo: LoadedRepo::load(&self.path("features.toml")).unwrap(),
            groups: vec![],
            range: None,
            run_id: None,
            dry_run: false,
            force: false,
            allow_empty: false,
            overrides: vec![],
            engine: EngineOptions {
                memory_limit: 256 << 20,
                // Two groups side by side get two partitions each: plans are parallel
                // (partial and final aggregations, exchanges, merges) as on a larger machine.
                cores: 4,
                concurrent_groups: 2,
            },
        }
    }

    /// Table names in the store.
    pub async fn tables(&self) -> Vec<String> {
        self.store
            .list_tables()
            .await
            .unwrap()
            .into_iter()
            .map(|n| n.to_string())
            .collect()
    }

    pub async fn versions(&self, table: &str) -> usize {
        let name = Name::new(NameKind::FeatureGroup, table).unwrap();
        self.store.table_history(&name).await.unwrap().len()
    }
}

/// The rows of a table version as pretty-printed text, sorted (for equality checks).
pub async fn rows(store: &Store, table: &str, at: VersionSpec) -> Vec<String> {
    let name = Name::new(NameKind::FeatureGroup, table).unwrap();
    let snapshot = store.table(&name, at).await.unwrap();
    sorted_lines(&snapshot.read_all(store, None).await.unwrap())
}

/// The rows of `batches` as pretty-printed text, sorted: equal for the same rows in any
/// order and any split into batches.
pub fn sorted_lines(batches: &[RecordBatch]) -> Vec<String> {
    let text = arrow::util::pretty::pretty_format_batches(batches)
        .unwrap()
        .to_string();
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with('|'))
        .skip(1)
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}
