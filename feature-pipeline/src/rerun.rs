//! When a group's logical run is already done, and the key its commit carries.
//!
//! A logical run (config, group, range, source fingerprints) is done while the commit it made
//! is still in effect: no later commit has replaced the rows it wrote. A config reverted after
//! another one was committed, or a range re-run after a full refresh overwrote it, is computed
//! and committed again. That commit cannot carry the plain key (the store keeps the first
//! commit with a key as the answer for it), so it carries the key derived for the version it
//! was computed on, which a retry of the same run finds again.

use storage::{Operation, TableCommit};

/// What to do with one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rerun {
    /// The logical run's commit is this version and still in effect: nothing to do.
    Done { version: u64 },
    /// Compute and commit under this idempotency key.
    Compute { key: String },
}

/// Decides for the logical run whose key is `key` on a table with `history` (in version
/// order). `force` computes even when the run is done.
pub fn plan(history: &[TableCommit], key: &str, force: bool) -> Rerun {
    let latest = history.last().map_or(0, |c| c.version);
    let last_done = history
        .iter()
        .rev()
        .find(|c| c.idempotency_key.as_deref().is_some_and(|k| of_run(k, key)));
    match last_done {
        Some(done) if !force && in_effect(history, done) => Rerun::Done {
            version: done.version,
        },
        None if !force => Rerun::Compute {
            key: key.to_string(),
        },
        _ => Rerun::Compute {
            key: derived_key(key, latest),
        },
    }
}

/// The key of a run of `key` computed on version `base` of the table (0: no table yet).
/// Readable, so that finding a run's commits is one comparison per commit of the history.
fn derived_key(key: &str, base: u64) -> String {
    format!("{key}@v{base}")
}

/// Whether commit key `k` is the logical run `key`'s, plain or derived.
fn of_run(k: &str, key: &str) -> bool {
    match k.strip_prefix(key) {
        Some("") => true,
        Some(rest) => rest
            .strip_prefix("@v")
            .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())),
        None => false,
    }
}

/// Whether no commit after `done` has replaced rows it wrote: only range replacements of
/// other ranges may follow a range replacement; nothing may follow a full refresh or an append.
fn in_effect(history: &[TableCommit], done: &TableCommit) -> bool {
    history
        .iter()
        .filter(|c| c.version > done.version)
        .all(|later| match (&done.operation, &later.operation) {
            (
                Operation::ReplaceRange { from_us, to_us },
                Operation::ReplaceRange {
                    from_us: later_from,
                    to_us: later_to,
                },
            ) => later_to <= from_us || later_from >= to_us,
            _ => false,
        })
}

#[cfg(test)]
mod tests {
    use super::{Rerun, derived_key, plan};
    use storage::{Name, NameKind, Operation, TableCommit, TableDefinition};

    fn commit(version: u64, operation: Operation, key: &str) -> TableCommit {
        let name = Name::new(NameKind::FeatureGroup, "g").unwrap();
        TableCommit {
            format_version: 1,
            table: name.clone(),
            version,
            commit_id: uuid::Uuid::new_v4(),
            timestamp: chrono::Utc::now(),
            operation,
            definition: TableDefinition {
                name,
                entity_keys: vec![],
                event_time: "t".into(),
                columns: vec![],
                description: String::new(),
                owner: String::new(),
                tags: Default::default(),
            },
            add: vec![],
            remove: vec![],
            num_rows: 0,
            run_id: None,
            idempotency_key: Some(key.to_string()),
            statistics: None,
            validation: None,
            metadata: Default::default(),
        }
    }

    fn range(from_us: i64, to_us: i64) -> Operation {
        Operation::ReplaceRange { from_us, to_us }
    }

    /// A full refresh is done until anything is committed after it: config A, then B, then A
    /// again computes A again, under a key a retry of that run finds.
    #[test]
    fn a_reverted_config_is_computed_again_and_its_retry_is_done() {
        let mut history = vec![commit(1, Operation::Overwrite, "A")];
        assert_eq!(plan(&history, "A", false), Rerun::Done { version: 1 });
        history.push(commit(2, Operation::Overwrite, "B"));
        let Rerun::Compute { key } = plan(&history, "A", false) else {
            panic!("A was replaced by B");
        };
        assert_eq!(key, derived_key("A", 2));
        history.push(commit(3, Operation::Overwrite, &key));
        assert_eq!(plan(&history, "A", false), Rerun::Done { version: 3 });
        assert_eq!(
            plan(&history, "B", false),
            Rerun::Compute {
                key: derived_key("B", 3)
            }
        );
        // A new logical run keeps its plain key, even one that starts like another's.
        assert_eq!(
            plan(&history, "C", false),
            Rerun::Compute { key: "C".into() }
        );
        assert!(!super::of_run("AB", "A") && !super::of_run("A@vx", "A"));
        assert!(super::of_run("A@v12", "A") && super::of_run("A", "A"));
    }

    /// A range replacement stays done while only other ranges are replaced after it; an
    /// overlapping range or a full refresh undoes it.
    #[test]
    fn a_range_is_done_until_its_rows_are_replaced() {
        let mut history = vec![
            commit(1, Operation::Overwrite, "full"),
            commit(2, range(10, 20), "r1"),
            commit(3, range(20, 30), "r2"),
            commit(4, range(0, 10), "r0"),
        ];
        assert_eq!(plan(&history, "r1", false), Rerun::Done { version: 2 });
        assert!(matches!(
            plan(&history, "full", false),
            Rerun::Compute { .. }
        ));
        history.push(commit(5, range(15, 25), "r3"));
        assert!(matches!(plan(&history, "r1", false), Rerun::Compute { .. }));
        assert_eq!(plan(&history, "r3", false), Rerun::Done { version: 5 });
        history.push(commit(6, Operation::Overwrite, "full2"));
        assert!(matches!(plan(&history, "r3", false), Rerun::Compute { .. }));
    }

    /// `force` computes a run that is done, under a key no commit carries.
    #[test]
    fn force_computes_a_done_run() {
        let history = vec![commit(1, Operation::Overwrite, "A")];
        assert_eq!(
            plan(&history, "A", true),
            Rerun::Compute {
                key: derived_key("A", 1)
            }
        );
        assert_eq!(
            plan(&[], "A", true),
            Rerun::Compute {
                key: derived_key("A", 0)
            }
        );
    }
}
