//! What the binaries print on stdout, for the orchestrators that read it: one JSON line for a
//! failed run too, and no panic when the reader has gone away.

use std::process::{Command, Stdio};

/// Each pipeline's run command on a config file that does not exist.
const FAILING_RUNS: [(&str, &str); 3] = [
    ("feature-pipeline", "run"),
    ("training-pipeline", "train"),
    ("inference-pipeline", "score"),
];

/// A run that fails (here: its config file is missing, exit 2) still ends its stdout with
/// the one-line JSON summary, naming the pipeline, the status, the exit code and the error
/// with its cause; with JSON logs, stderr holds only JSON lines.
#[test]
fn a_failed_run_prints_a_json_summary() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    for (bin, command) in FAILING_RUNS {
        let out = Command::new(tests::bin_dir().join(bin))
            .args([command, "/nonexistent/fti.toml", "--store"])
            .arg(&store)
            .env("FTI_LOG_FORMAT", "json")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bin}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let last = stdout.lines().last().unwrap_or_default();
        let summary: serde_json::Value =
            serde_json::from_str(last).unwrap_or_else(|e| panic!("{bin}: {e}: {stdout:?}"));
        assert_eq!(summary["pipeline"], bin, "{summary}");
        assert_eq!(summary["status"], "failed", "{summary}");
        assert_eq!(summary["exit_code"], 2, "{summary}");
        // The cause is said too, not only "cannot read config".
        assert!(
            summary["error"]
                .as_str()
                .is_some_and(|e| e.contains("/nonexistent/fti.toml")
                    && e.contains("No such file or directory")),
            "{summary}"
        );
        // With JSON logs, every line on stderr is JSON, the error's included.
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("No such file or directory"),
            "{bin}: {stderr}"
        );
        for line in stderr.lines() {
            assert!(
                serde_json::from_str::<serde_json::Value>(line).is_ok(),
                "{bin}: not JSON: {line}"
            );
        }
    }
}

/// A bad command line (here an unknown flag) is a failed run too: exit 2 and the summary
/// naming the flag; `--help` prints no summary.
#[test]
fn a_bad_command_line_prints_a_json_summary() {
    for (bin, command) in FAILING_RUNS {
        let out = Command::new(tests::bin_dir().join(bin))
            .args([command, "x.toml", "--no-such-flag"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bin}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let summary: serde_json::Value = serde_json::from_str(stdout.trim_end())
            .unwrap_or_else(|e| panic!("{bin}: {e}: {stdout:?}"));
        assert_eq!(summary["status"], "failed", "{summary}");
        assert_eq!(summary["exit_code"], 2, "{summary}");
        assert!(
            summary["error"]
                .as_str()
                .is_some_and(|e| e.contains("--no-such-flag")),
            "{summary}"
        );
        let help = Command::new(tests::bin_dir().join(bin))
            .args([command, "--help"])
            .output()
            .unwrap();
        assert_eq!(help.status.code(), Some(0), "{bin}");
        assert!(!String::from_utf8_lossy(&help.stdout).contains("\"status\""));
    }
}

/// A command whose stdout is closed before it prints (`… | head -c 0`) exits with its own
/// code, not the panic's 101.
#[test]
fn a_closed_stdout_is_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let url = store.to_str().unwrap().to_string();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        storage::Store::open(&url)
            .await
            .unwrap()
            .init()
            .await
            .unwrap();
    });
    for _ in 0..3 {
        let mut child = Command::new(tests::bin_dir().join("feature-pipeline"))
            .args(["list", "--store"])
            .arg(&store)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Closed at once: the process is still starting when it goes.
        drop(child.stdout.take());
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "{status:?}");
    }
}

/// An inspection command on a store that is not there (a mistyped `--store`) is a flag error,
/// and creates nothing.
#[test]
fn inspecting_a_missing_store_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("stroe");
    for args in [vec!["list"], vec!["history", "labels"]] {
        let out = Command::new(tests::bin_dir().join("feature-pipeline"))
            .args(&args)
            .arg("--store")
            .arg(&typo)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("no such directory"),
            "{args:?}"
        );
        assert!(!typo.exists(), "{args:?} created the store");
    }
}
