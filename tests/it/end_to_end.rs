//! The three real binaries as separate processes on one store: features -> train -> score ->
//! exports, on the local filesystem and on the S3 server. They share nothing but the store.

use std::path::Path;
use std::process::{Command, Output};

use storage::{DatasetKind, Name, NameKind, Store};

fn run(bin: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(tests::bin_dir().join(bin))
        .args(args)
        .envs(env.iter().copied())
        .env("FTI_LOG_FORMAT", "json")
        .current_dir(tests::workspace_root())
        .output()
        .unwrap_or_else(|e| panic!("run {bin} (built by cargo test --workspace): {e}"))
}

/// The JSON a command printed: a run's one-line summary, or an inspection command's document.
fn summary(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&stdout)
        .or_else(|_| serde_json::from_str(stdout.lines().last().unwrap_or("{}")))
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)))
}

fn ok(out: &Output, code: i32) -> serde_json::Value {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    summary(out)
}

fn redis_prefix(label: &str) -> String {
    format!("e2e-{label}-{}", std::process::id())
}

/// Scoring config with a Redis export under a unique prefix.
fn score_config(dir: &Path, prefix: &str) -> String {
    let text = std::fs::read_to_string(tests::workspace_root().join("examples/flights/score.toml"))
        .unwrap();
    let text = text.replace(
        "# [redis]\n# prefix = \"route_delay\"\n# keep = 3",
        &format!("[redis]\nprefix = \"{prefix}\"\nkeep = 3"),
    );
    let path = dir.join("score.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

async fn flights_end_to_end(store_url: &str, label: &str) -> serde_json::Value {
    let redis = std::env::var("FTI_TEST_REDIS_URL").expect("FTI_TEST_REDIS_URL (scripts/test.sh)");
    let dir = tempfile::tempdir().unwrap();
    let prefix = redis_prefix(label);
    let config = score_config(dir.path(), &prefix);
    let s = store_url;

    let features = ok(
        &run(
            "feature-pipeline",
            &["run", "examples/flights/features.toml", "--store", s],
            &[],
        ),
        0,
    );
    assert_eq!(features["status"], "succeeded");
    let train = ok(
        &run(
            "training-pipeline",
            &[
                "train",
                "examples/flights/model.toml",
                "--store",
                s,
                "--promote",
            ],
            &[],
        ),
        0,
    );
    assert_eq!(
        (train["verdict"].as_str(), train["promoted"].as_str()),
        (Some("accepted"), Some("champion"))
    );
    assert!(
        train["metrics"]["roc_auc"].as_f64().unwrap() > 0.6,
        "{}",
        train["metrics"]
    );

    let scored = ok(
        &run(
            "inference-pipeline",
            &[
                "score",
                &config,
                "--store",
                s,
                "--as-of",
                "2001-07-02",
                "--redis-url",
                &redis,
            ],
            &[],
        ),
        0,
    );
    assert_eq!(
        (scored["outcome"].as_str(), scored["entities"].as_u64()),
        (Some("published"), Some(750))
    );
    assert_eq!(scored["model_version"], train["version"]);
    // The same job again publishes nothing and says so.
    ok(
        &run(
            "inference-pipeline",
            &[
                "score",
                &config,
                "--store",
                s,
                "--as-of",
                "2001-07-02",
                "--redis-url",
                &redis,
            ],
            &[],
        ),
        99,
    );

    // The JSON-lines export, read through the storage crate, equals the Redis values.
    let store = Store::open(s).await.unwrap();
    let dataset = Name::new(NameKind::Dataset, "route_delay").unwrap();
    let current = store
        .current(DatasetKind::Predictions, &dataset)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        current.snapshot.as_str(),
        scored["snapshot"].as_str().unwrap()
    );
    let manifest = store
        .snapshot(DatasetKind::Predictions, &dataset, &current.snapshot)
        .await
        .unwrap();
    let kv = String::from_utf8(
        store
            .snapshot_file(&manifest, "kv.jsonl")
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    let client = redis::Client::open(redis.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let pointer: String = redis::cmd("GET")
        .arg(format!("{prefix}:current"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(pointer, current.snapshot.as_str());
    let mut jsonl = serde_json::Map::new();
    for line in kv.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = v["key"].as_str().unwrap().to_string();
        let stored: String = redis::cmd("GET")
            .arg(format!("{prefix}:{pointer}:{key}"))
            .query_async(&mut conn)
            .await
            .unwrap();
        let stored: serde_json::Value = serde_json::from_str(&stored).unwrap();
        assert_eq!(stored["value"], v["value"], "{key}");
        assert_eq!(stored["model_version"], v["model_version"]);
        jsonl.insert(key, v["value"].clone());
    }
    assert_eq!(jsonl.len(), 750);
    serde_json::Value::Object(jsonl)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flights_end_to_end_on_the_local_filesystem() {
    let Some(python) = tests::python() else {
        return;
    };
    let store = tempfile::tempdir().unwrap();
    let url = store.path().display().to_string();
    let jsonl = flights_end_to_end(&url, "local").await;

    // pyarrow reads the published Parquet predictions (docs/STORAGE.md rules only): the same
    // scores as the export.
    let out = Command::new(python)
        .arg(tests::workspace_root().join("tests/python/read_predictions.py"))
        .args([&url, "route_delay"])
        .env("ARROW_DEFAULT_MEMORY_POOL", "system")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(read["scores"], jsonl);
    assert_eq!(read["model_version"], serde_json::json!([1]));

    // The model report renders in a real browser.
    if let Ok(chromium) = std::env::var("FTI_CHROMIUM") {
        let report = walk(store.path(), "report.html").expect("a report.html in the model version");
        let profile = tempfile::tempdir().unwrap();
        let dom = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("--dump-dom")
            .arg(format!("file://{}", report.display()))
            .output()
            .unwrap();
        let dom = String::from_utf8_lossy(&dom.stdout);
        for needle in [
            "flight_delay — version 1",
            "ROC curve",
            "Calibration",
            "Feature importance",
            "<svg",
            "accepted",
        ] {
            assert!(
                dom.contains(needle),
                "{needle:?} missing from the rendered report"
            );
        }
    }
}

fn walk(dir: &Path, name: &str) -> Option<std::path::PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = walk(&path, name) {
                return Some(found);
            }
        } else if path.file_name().is_some_and(|n| n == name) {
            return Some(path);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flights_end_to_end_on_s3() {
    let Some(url) = tests::s3_url("e2e") else {
        return;
    };
    flights_end_to_end(&url, "s3").await;
}

/// Day one, then a second day appended incrementally; a weaker retrain is rejected by the gate
/// and scoring keeps using the champion; a bad export is rolled back.
async fn second_day_rejected_retrain_and_rollback(store_url: &str) {
    let python = tests::python().expect("python");
    let dir = tempfile::tempdir().unwrap();
    let day_one = dir.path().join("flights-day-one.parquet");
    let full = tests::workspace_root().join("examples/flights/data/flights-demo.parquet");
    // Day one: everything before 2001-06-30.
    let cut = Command::new(python)
        .args(["-c", "import sys, datetime, pyarrow.parquet as pq, pyarrow.compute as pc; t = pq.read_table(sys.argv[1]); pq.write_table(t.filter(pc.less(t['date'], datetime.datetime(2001, 6, 30))), sys.argv[2], compression='zstd')"])
        .arg(&full)
        .arg(&day_one)
        .env("ARROW_DEFAULT_MEMORY_POOL", "system")
        .output()
        .unwrap();
    assert!(
        cut.status.success(),
        "{}",
        String::from_utf8_lossy(&cut.stderr)
    );
    let s = store_url;
    let source = format!("flights={}", day_one.display());
    let full_source = format!("flights={}", full.display());
    let config = tests::workspace_root()
        .join("examples/flights/score.toml")
        .display()
        .to_string();

    ok(
        &run(
            "feature-pipeline",
            &[
                "run",
                "examples/flights/features.toml",
                "--store",
                s,
                "--source",
                &source,
            ],
            &[],
        ),
        0,
    );
    let first = ok(
        &run(
            "training-pipeline",
            &[
                "train",
                "examples/flights/model.toml",
                "--store",
                s,
                "--promote",
            ],
            &[],
        ),
        0,
    );
    assert_eq!(first["version"], 1);
    let score_a = ok(
        &run(
            "inference-pipeline",
            &["score", &config, "--store", s, "--as-of", "2001-06-30"],
            &[],
        ),
        0,
    );
    assert_eq!(score_a["model_version"], 1);

    // The second day arrives: only its range is recomputed and replaced.
    let day_two = ok(
        &run(
            "feature-pipeline",
            &[
                "run",
                "examples/flights/features.toml",
                "--store",
                s,
                "--source",
                &full_source,
                "--from",
                "2001-06-30",
                "--to",
                "2001-07-03",
            ],
            &[],
        ),
        0,
    );
    let labels = day_two["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group"] == "labels")
        .unwrap();
    assert_eq!(
        (labels["status"].as_str(), labels["version"].as_u64()),
        (Some("committed"), Some(2))
    );
    let history = ok(
        &run(
            "feature-pipeline",
            &["history", "labels", "--store", s],
            &[],
        ),
        0,
    );
    let versions = history["versions"].as_array().unwrap();
    assert_eq!(versions[1]["operation"]["kind"], "replace_range");
    assert!(
        versions[1]["rows"].as_u64() > versions[0]["rows"].as_u64(),
        "the new day's flights were added"
    );

    // A weaker challenger (logistic regression) is registered as rejected; the champion stays.
    let challenger = run(
        "training-pipeline",
        &[
            "train",
            "examples/flights/model-logreg.toml",
            "--store",
            s,
            "--promote",
        ],
        &[],
    );
    let challenger = ok(&challenger, 4);
    assert_eq!(
        (
            challenger["verdict"].as_str(),
            challenger["version"].as_u64()
        ),
        (Some("rejected"), Some(2))
    );
    let champion = ok(
        &run(
            "training-pipeline",
            &["show", "flight_delay", "champion", "--store", s],
            &[],
        ),
        0,
    );
    assert_eq!(champion["version"], 1);

    // Scoring the new day still uses the champion.
    let score_b = ok(
        &run(
            "inference-pipeline",
            &["score", &config, "--store", s, "--as-of", "2001-07-02"],
            &[],
        ),
        0,
    );
    assert_eq!(score_b["model_version"], 1);
    assert_ne!(score_b["snapshot"], score_a["snapshot"]);

    // The new export is rolled back: the day-one snapshot is current again.
    let rolled = ok(
        &run(
            "inference-pipeline",
            &["rollback", &config, "--store", s, "--reason", "e2e"],
            &[],
        ),
        0,
    );
    assert_eq!(rolled["current"], score_a["snapshot"]);
    let alias_history = ok(
        &run(
            "training-pipeline",
            &["history", "flight_delay", "--store", s],
            &[],
        ),
        0,
    );
    assert_eq!(
        alias_history["moves"].as_array().unwrap().len(),
        1,
        "the rejected model never moved the alias"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_day_on_the_local_filesystem() {
    if tests::python().is_none() {
        return;
    }
    let store = tempfile::tempdir().unwrap();
    second_day_rejected_retrain_and_rollback(&store.path().display().to_string()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_day_on_s3() {
    let Some(url) = tests::s3_url("second-day") else {
        return;
    };
    if tests::python().is_none() {
        return;
    }
    second_day_rejected_retrain_and_rollback(&url).await;
}
