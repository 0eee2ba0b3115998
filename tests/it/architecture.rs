//! The pipelines never depend on each other: they talk only through the storage layout.

use std::collections::{HashMap, HashSet};
use std::process::Command;

const PIPELINES: [&str; 3] = [
    "feature-pipeline",
    "training-pipeline",
    "inference-pipeline",
];

/// Workspace packages each pipeline reaches through path dependencies (normal, dev and
/// build), read from `cargo metadata --no-deps` so the check needs no network.
#[test]
fn pipelines_never_depend_on_each_other() {
    let output = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--manifest-path",
        ])
        .arg(tests::workspace_root().join("Cargo.toml"))
        .output()
        .expect("run cargo metadata");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let packages = metadata["packages"].as_array().unwrap();
    let local: HashMap<&str, Vec<&str>> = packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["path"].is_string())
                .map(|d| d["name"].as_str().unwrap())
                .collect();
            (p["name"].as_str().unwrap(), deps)
        })
        .collect();
    for pipeline in PIPELINES {
        assert!(
            local.contains_key(pipeline),
            "{pipeline} is a workspace member"
        );
        let mut seen = HashSet::new();
        let mut stack = vec![pipeline];
        while let Some(next) = stack.pop() {
            for dep in local.get(next).into_iter().flatten() {
                if seen.insert(*dep) {
                    stack.push(dep);
                }
            }
        }
        for other in PIPELINES {
            assert!(
                other == pipeline || !seen.contains(other),
                "{pipeline} depends on {other}: the pipelines may talk only through storage"
            );
        }
        assert!(
            seen.contains("storage"),
            "{pipeline} uses the storage crate"
        );
    }
}
