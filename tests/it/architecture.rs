//! The pipelines never depend on each other: they talk only through the storage layout.

use std::collections::{HashMap, HashSet};
use std::process::Command;

const PIPELINES: [&str; 3] = [
    "feature-pipeline",
    "training-pipeline",
    "inference-pipeline",
];

#[test]
fn pipelines_never_depend_on_each_other() {
    let output = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
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

    // package id -> (name, ids of everything it depends on, dev and build included)
    let names: HashMap<&str, &str> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let edges: HashMap<&str, Vec<&str>> = metadata["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let deps = n["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_str().unwrap())
                .collect();
            (n["id"].as_str().unwrap(), deps)
        })
        .collect();

    let members: Vec<&str> = metadata["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    let member_names: HashSet<&str> = members.iter().map(|id| names[id]).collect();
    assert!(member_names.contains("storage"), "{member_names:?}");

    for id in &members {
        let name = names[id];
        if !PIPELINES.contains(&name) {
            continue;
        }
        // Everything reachable from this pipeline.
        let mut seen = HashSet::new();
        let mut stack = vec![*id];
        while let Some(next) = stack.pop() {
            for dep in edges.get(next).into_iter().flatten() {
                if seen.insert(*dep) {
                    stack.push(dep);
                }
            }
        }
        for dep in seen {
            let dep_name = names[dep];
            assert!(
                !PIPELINES.contains(&dep_name) || dep_name == name,
                "{name} depends on {dep_name}: the pipelines may talk only through storage"
            );
        }
    }
}
