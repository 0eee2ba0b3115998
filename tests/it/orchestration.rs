//! docs/OPERATIONS.md and the orchestration examples agree with the binaries' real `--help`:
//! every flag and every `FTI_*` variable they name exists.

use std::collections::BTreeMap;
use std::process::Command;

const BINARIES: [&str; 3] = [
    "feature-pipeline",
    "training-pipeline",
    "inference-pipeline",
];

/// `--help` of a binary and of each of its subcommands, concatenated.
fn help(bin: &str) -> String {
    let path = tests::bin_dir().join(bin);
    let top = String::from_utf8(
        Command::new(&path)
            .arg("--help")
            .output()
            .expect("run --help")
            .stdout,
    )
    .unwrap();
    let mut all = top.clone();
    let commands = top
        .split("Commands:")
        .nth(1)
        .unwrap_or_default()
        .split("Options:")
        .next()
        .unwrap_or_default();
    for line in commands.lines() {
        let Some(sub) = line.split_whitespace().next() else {
            continue;
        };
        if sub == "help" {
            continue;
        }
        let out = Command::new(&path).args([sub, "--help"]).output().unwrap();
        all.push_str(&String::from_utf8(out.stdout).unwrap());
    }
    all
}

fn tokens(text: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices(prefix) {
        if i > 0 && text.as_bytes()[i - 1].is_ascii_alphanumeric() {
            continue;
        }
        let rest = &text[i..];
        let end = rest[prefix.len()..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .map_or(rest.len(), |e| e + prefix.len());
        let token = rest[..end].trim_end_matches(['-', '_']).to_string();
        if token.len() > prefix.len() {
            out.push(token);
        }
    }
    out
}

/// Whether `help` names `flag` as a whole word.
fn has_flag(help: &str, flag: &str) -> bool {
    help.match_indices(flag).any(|(i, _)| {
        let next = help[i + flag.len()..].chars().next();
        !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    })
}

/// Flags (`--x`) and variables (`FTI_X`, `JOB_COMPLETION_INDEX`) in `text` must be in `help`.
fn check(file: &str, bin: &str, text: &str, helps: &BTreeMap<&str, String>) -> usize {
    let help = &helps[bin];
    let mut checked = 0;
    for flag in tokens(text, "--") {
        assert!(has_flag(help, &flag), "{file}: {bin} has no flag {flag}");
        checked += 1;
    }
    for var in tokens(text, "FTI_")
        .into_iter()
        .chain(tokens(text, "JOB_COMPLETION_INDEX"))
    {
        assert!(
            help.contains(&format!("[env: {var}=")),
            "{file}: {bin} reads no {var}"
        );
        checked += 1;
    }
    checked
}

#[test]
fn examples_and_operations_doc_use_real_flags() {
    let helps: BTreeMap<&str, String> = BINARIES.iter().map(|b| (*b, help(b))).collect();
    let root = tests::workspace_root();
    let mut checked = 0;

    // Airflow: one DockerOperator block per binary.
    let dag = std::fs::read_to_string(root.join("examples/orchestration/airflow_dag.py")).unwrap();
    for block in dag.split("DockerOperator(").skip(1) {
        let block = block.split("\n\n").next().unwrap();
        let bin = BINARIES
            .iter()
            .find(|b| block.contains(&format!("fti/{b}:")))
            .expect("an fti image");
        checked += check(
            "airflow_dag.py",
            bin,
            &block.replace("skip_on_exit_code", ""),
            &helps,
        );
    }
    // Kubernetes: one binary per manifest; only the container args and env are flags.
    for entry in std::fs::read_dir(root.join("examples/orchestration/kubernetes"))
        .unwrap()
        .flatten()
    {
        let text = std::fs::read_to_string(entry.path()).unwrap();
        let bin = BINARIES
            .iter()
            .find(|b| text.contains(&format!("fti/{b}:")))
            .expect("an fti image");
        let relevant: String = text
            .lines()
            .filter(|l| {
                l.contains("args:")
                    || l.contains("name: FTI_")
                    || l.contains("JOB_COMPLETION_INDEX") && !l.trim_start().starts_with('#')
            })
            .collect::<Vec<_>>()
            .join("\n");
        checked += check(&entry.file_name().to_string_lossy(), bin, &relevant, &helps);
    }
    // docs/OPERATIONS.md: command lines, and the variable table.
    let ops = std::fs::read_to_string(root.join("docs/OPERATIONS.md")).unwrap();
    for line in ops.lines() {
        if let Some(bin) = BINARIES.iter().find(|b| line.starts_with(&format!("{b} "))) {
            checked += check("OPERATIONS.md", bin, line, &helps);
        }
        if line.starts_with("| `FTI_") || line.starts_with("| `JOB_") {
            let all: String = helps.values().cloned().collect();
            for var in tokens(line, "FTI_")
                .into_iter()
                .chain(tokens(line, "JOB_COMPLETION_INDEX"))
            {
                assert!(
                    all.contains(&format!("[env: {var}=")),
                    "OPERATIONS.md: no binary reads {var}"
                );
                checked += 1;
            }
            for flag in tokens(line, "--") {
                assert!(has_flag(&all, &flag), "OPERATIONS.md: no binary has {flag}");
                checked += 1;
            }
        }
    }
    assert!(checked > 60, "only {checked} flags and variables checked");
}
