//! The flights example through the real `feature-pipeline` binary on the embedded demo slice,
//! checked against a direct recomputation from the raw rows (tests/python/check_flights_features.py).

use std::process::Command;

#[test]
fn flights_demo_features_match_a_direct_recomputation() {
    let Some(python) = tests::python() else {
        return;
    };
    let root = tests::workspace_root();
    let store = tempfile::tempdir().unwrap();
    let out = Command::new(tests::bin_dir().join("feature-pipeline"))
        .args(["run", "examples/flights/features.toml", "--store"])
        .arg(store.path())
        .args(["--log-format", "json"])
        .current_dir(&root)
        .output()
        .expect("run feature-pipeline (built by cargo test --workspace)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(summary["status"], "succeeded");
    let groups: Vec<&str> = summary["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["group"].as_str().unwrap())
        .collect();
    // Every group of the config, in declaration order (the order a run starts them in): the
    // `[groups.NAME]` tables as they come in the file.
    let config = std::fs::read_to_string(root.join("examples/flights/features.toml")).unwrap();
    let declared: Vec<&str> = config
        .lines()
        .filter_map(|line| line.strip_prefix("[groups.")?.strip_suffix(']'))
        .filter(|name| !name.contains('.'))
        .collect();
    assert_eq!(declared.len(), 5, "{declared:?}");
    assert_eq!(groups, declared);

    let check = Command::new(python)
        .arg(root.join("tests/python/check_flights_features.py"))
        .arg(store.path())
        .arg(root.join("examples/flights/data/flights-demo.parquet"))
        .arg("200")
        .env("ARROW_DEFAULT_MEMORY_POOL", "system")
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(
        String::from_utf8_lossy(&check.stdout)
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(report["mismatches"], 0);
    assert!(report["values_checked"].as_u64().unwrap() >= 800);

    // A second identical run commits nothing and says so with exit code 99.
    let again = Command::new(tests::bin_dir().join("feature-pipeline"))
        .args(["run", "examples/flights/features.toml", "--store"])
        .arg(store.path())
        .current_dir(&root)
        .output()
        .unwrap();
    assert_eq!(
        again.status.code(),
        Some(99),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}
