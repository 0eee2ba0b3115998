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

/// The `FTI_*` / `JOB_COMPLETION_INDEX` keys of the YAML mappings in `block`, one per line
/// (`${FTI_...}` interpolations are Compose's own variables, not the binaries').
fn env_keys(block: &str) -> String {
    block
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with("FTI_") || l.starts_with("JOB_COMPLETION_INDEX"))
        .filter_map(|l| l.split(':').next())
        .collect::<Vec<_>>()
        .join("\n")
}

/// docker/compose.yaml: each job service (image `fti/<binary>:…`), its `command:` and the
/// `FTI_*` keys of its environment, the shared `x-fti-env` block included.
fn compose_jobs(path: &std::path::Path, helps: &BTreeMap<&str, String>) -> usize {
    let compose = std::fs::read_to_string(path).unwrap();
    let shared = compose
        .split("\nx-fti-env:")
        .nth(1)
        .expect("an x-fti-env block")
        .split("\n\n")
        .next()
        .unwrap();
    assert!(
        env_keys(shared).contains("FTI_STORE"),
        "compose.yaml: x-fti-env sets no FTI_STORE"
    );
    let services = compose
        .split("\nservices:\n")
        .nth(1)
        .expect("a services section");
    // One block per service: a line indented by exactly two spaces starts one, a line not
    // indented at all (the next top-level key) ends the section.
    let mut blocks: Vec<String> = Vec::new();
    for line in services.lines() {
        if !line.is_empty() && !line.starts_with(' ') {
            break;
        }
        let indent = line.len() - line.trim_start().len();
        if indent == 2 && !line.trim_start().starts_with('#') {
            blocks.push(String::new());
        }
        if let Some(block) = blocks.last_mut() {
            block.push_str(line);
            block.push('\n');
        }
    }
    let (mut checked, mut jobs) = (0, 0);
    for block in &blocks {
        let Some(bin) = BINARIES
            .iter()
            .find(|b| block.contains(&format!("image: fti/{b}:")))
        else {
            continue;
        };
        jobs += 1;
        let mut relevant: Vec<String> = block
            .lines()
            .filter(|l| l.trim_start().starts_with("command:"))
            .map(str::to_string)
            .collect();
        assert!(
            !relevant.is_empty(),
            "compose.yaml: the {bin} job has no command"
        );
        relevant.push(env_keys(block));
        if block.contains("*fti-env") {
            relevant.push(env_keys(shared));
        }
        checked += check("compose.yaml", bin, &relevant.join("\n"), helps);
    }
    assert_eq!(jobs, BINARIES.len(), "compose.yaml: one job per binary");
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
    checked += compose_jobs(&root.join("docker/compose.yaml"), &helps);
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
