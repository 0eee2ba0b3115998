//! `feature-pipeline`: parses flags, runs one command, maps the outcome to an exit code.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::builder::FalseyValueParser;
use clap::{Parser, Subcommand};
use feature_pipeline::{
    EngineOptions, Error, FeatureJob, LoadedRepo, build_features, engine, inspect, parse_time,
};
use fti_runtime::{Exit, LogArgs, StoreArgs};
use storage::Store;

/// Raw data in, validated and versioned feature tables out.
///
/// Feature groups are declared in a TOML feature repository (sources, SQL, columns, rules).
/// Exit codes: 0 committed, 2 bad config/flags, 3 bad input data, 4 validation failed
/// (nothing committed), 5 store failure (retry), 99 already committed by an identical run.
#[derive(Debug, Parser)]
#[command(name = "feature-pipeline", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    log: LogArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Compute, validate and commit feature groups
    Run {
        /// Feature repository file, e.g. examples/flights/features.toml
        #[arg(env = "FTI_FEATURE_CONFIG")]
        config: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
        /// Only these groups (repeatable); default all
        #[arg(long = "group", env = "FTI_GROUPS", value_delimiter = ',')]
        groups: Vec<String>,
        /// Incremental run: first event time to (re)compute, inclusive (YYYY-MM-DD or RFC 3339)
        #[arg(long, env = "FTI_FROM", requires = "to")]
        from: Option<String>,
        /// Incremental run: end of the event-time range, exclusive
        #[arg(long, env = "FTI_TO", requires = "from")]
        to: Option<String>,
        /// Run id recorded in commits and the run record; default derived from config, groups, range and inputs
        #[arg(long, env = "FTI_RUN_ID")]
        run_id: Option<String>,
        /// Replace a source's path: NAME=PATH (repeatable)
        #[arg(long = "source", env = "FTI_SOURCES", value_delimiter = ',', value_parser = parse_override)]
        sources: Vec<(String, String)>,
        /// Compute and validate, print the summary, write nothing
        #[arg(long, env = "FTI_DRY_RUN", value_parser = FalseyValueParser::new())]
        dry_run: bool,
        /// Compute and commit even if this logical run's commit is still in effect (e.g. a
        /// source rewritten with the same size and modification time)
        #[arg(long, env = "FTI_FORCE", value_parser = FalseyValueParser::new())]
        force: bool,
        /// Incremental run: commit a range the query returns no rows for, deleting the rows the
        /// table had there (without it, no rows is bad input, exit 3); no effect on a full run
        #[arg(long, env = "FTI_ALLOW_EMPTY", value_parser = FalseyValueParser::new())]
        allow_empty: bool,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Check a feature repository file without reading data
    Check {
        /// Feature repository file
        #[arg(env = "FTI_FEATURE_CONFIG")]
        config: PathBuf,
    },
    /// Print a group's query plan, to see where its time goes when tuning its SQL
    Explain {
        /// Feature repository file
        #[arg(env = "FTI_FEATURE_CONFIG")]
        config: PathBuf,
        /// The group
        #[arg(long)]
        group: String,
        /// Replace a source's path: NAME=PATH (repeatable)
        #[arg(long = "source", env = "FTI_SOURCES", value_delimiter = ',', value_parser = parse_override)]
        sources: Vec<(String, String)>,
        /// Run the query (writing nothing) and show each operator's rows and time
        #[arg(long)]
        analyze: bool,
        /// The engine settings of the run being tuned (they change the plan: spills, the
        /// partitions per query, round-robin repartitioning when more cores than groups at once)
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// List the feature tables in the store
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Show a table version's schema, statistics and validation report
    Describe {
        #[command(flatten)]
        store: StoreArgs,
        /// Feature group name
        group: String,
        /// Version (default latest)
        #[arg(long)]
        version: Option<u64>,
    },
    /// Show every version of a table
    History {
        #[command(flatten)]
        store: StoreArgs,
        /// Feature group name
        group: String,
    },
    /// Delete data files no commit references (crashed or rejected runs)
    Vacuum {
        #[command(flatten)]
        store: StoreArgs,
        /// Only files older than this many seconds
        #[arg(long, env = "FTI_VACUUM_MIN_AGE_SECS", default_value_t = 3600)]
        min_age_secs: u64,
        /// List what would be deleted, delete nothing
        #[arg(long)]
        dry_run: bool,
    },
}

/// Query engine settings, shared by `run` and `explain` so a plan is explained as it runs.
#[derive(Debug, clap::Args)]
struct EngineArgs {
    /// Memory the query engine may use before spilling, in MiB
    #[arg(long, env = "FTI_MEMORY_LIMIT_MB", default_value_t = 1024)]
    memory_limit_mb: usize,
    /// Feature groups computed at the same time (1 = one after the other, least memory)
    #[arg(long, env = "FTI_CONCURRENT_GROUPS", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..))]
    concurrent_groups: u16,
}

impl EngineArgs {
    fn options(&self) -> EngineOptions {
        EngineOptions {
            memory_limit: self.memory_limit_mb << 20,
            concurrent_groups: usize::from(self.concurrent_groups),
            ..EngineOptions::default()
        }
    }
}

fn parse_override(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(n, p)| (n.to_string(), p.to_string()))
        .ok_or_else(|| format!("expected NAME=PATH, got {s:?}"))
}

fn main() -> ExitCode {
    let cli: Cli = fti_runtime::parse_cli(env!("CARGO_PKG_NAME"));
    fti_runtime::run_main(env!("CARGO_PKG_NAME"), &cli.log, run(cli.command))
}

async fn run(command: Command) -> Result<Exit, Error> {
    match command {
        Command::Run {
            config,
            store,
            groups,
            from,
            to,
            run_id,
            sources,
            dry_run,
            force,
            allow_empty,
            engine,
        } => {
            let range = match (from, to) {
                (Some(from), Some(to)) => {
                    let (from, to) = (parse_time(&from)?, parse_time(&to)?);
                    if from >= to {
                        return Err(Error::Flag("--from must be before --to".into()));
                    }
                    Some((from, to))
                }
                _ => None,
            };
            let job = FeatureJob {
                repo: LoadedRepo::load(&config)?,
                groups,
                range,
                run_id,
                dry_run,
                force,
                allow_empty,
                overrides: sources,
                engine: engine.options(),
            };
            let store = Store::open(&store.store).await?;
            let summary = build_features(&store, &job).await?;
            Ok(fti_runtime::finish_run(&summary, summary.status))
        }
        Command::Check { config } => {
            let repo = LoadedRepo::load(&config)?;
            repo.repo.check(&config)?;
            // Then the SQL against the sources' schemas, when they are on this machine.
            // A source on this machine that contradicts its declaration is bad input (exit 3).
            let sql_planned = match engine::plan_problems(&repo).await? {
                Ok(problems) if problems.is_empty() => serde_json::json!(true),
                Ok(problems) => {
                    return Err(Error::InvalidConfig {
                        path: config.display().to_string(),
                        problems,
                    });
                }
                Err(why) => serde_json::json!(format!("no: {why}")),
            };
            fti_runtime::outln!(
                "{}",
                serde_json::json!({"config": config, "ok": true, "sql_planned": sql_planned, "sources": repo.repo.sources.len(), "groups": repo.repo.groups.keys().collect::<Vec<_>>()})
            );
            Ok(Exit::Success)
        }
        Command::Explain {
            config,
            group,
            sources,
            analyze,
            engine,
        } => {
            let repo = LoadedRepo::load(&config)?;
            repo.repo.check(&config)?;
            let options = engine.options();
            fti_runtime::out!(
                "{}",
                engine::explain(&repo, &group, &sources, &options, analyze).await?
            );
            Ok(Exit::Success)
        }
        Command::List { store } => {
            let store = Store::open_existing(&store.store).await?;
            fti_runtime::outln!("{:#}", inspect::list(&store).await?);
            Ok(Exit::Success)
        }
        Command::Describe {
            store,
            group,
            version,
        } => {
            let store = Store::open_existing(&store.store).await?;
            fti_runtime::outln!("{:#}", inspect::describe(&store, &group, version).await?);
            Ok(Exit::Success)
        }
        Command::History { store, group } => {
            let store = Store::open_existing(&store.store).await?;
            fti_runtime::outln!("{:#}", inspect::history(&store, &group).await?);
            Ok(Exit::Success)
        }
        Command::Vacuum {
            store,
            min_age_secs,
            dry_run,
        } => {
            let store = Store::open_existing(&store.store).await?;
            let report = store
                .vacuum(storage::VacuumOptions {
                    min_age: Duration::from_secs(min_age_secs),
                    dry_run,
                })
                .await?;
            fti_runtime::outln!("{}", serde_json::to_value(&report).unwrap_or_default());
            Ok(Exit::Success)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `explain` plans under the engine flags `run` takes, so it shows the plan that runs.
    #[test]
    fn explain_takes_the_engine_flags_of_run() {
        let args = ["feature-pipeline", "explain", "f.toml", "--group", "g"];
        let extra = ["--memory-limit-mb", "64", "--concurrent-groups", "1"];
        let cli = Cli::try_parse_from(args.iter().chain(&extra)).unwrap();
        let Command::Explain { engine, .. } = cli.command else {
            panic!("not explain");
        };
        let options = engine.options();
        assert_eq!(options.memory_limit, 64 << 20);
        assert_eq!(options.concurrent_groups, 1);
        let run = ["feature-pipeline", "run", "f.toml", "--store", "s"];
        let cli = Cli::try_parse_from(run.iter().chain(&extra)).unwrap();
        let Command::Run {
            engine: run_engine, ..
        } = cli.command
        else {
            panic!("not run");
        };
        assert_eq!(run_engine.options().memory_limit, options.memory_limit);
        assert_eq!(run_engine.options().concurrent_groups, 1);
    }
}
