//! `training-pipeline`: parses flags, runs one command, maps the outcome to an exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::builder::FalseyValueParser;
use clap::{Parser, Subcommand};
use fti_runtime::{Exit, LogArgs, StoreArgs};
use storage::Store;
use training_pipeline::{Error, LoadedSpec, TrainJob, registry, train_model};

/// Feature tables in, an evaluated, gated, registered model version out.
///
/// A model spec (TOML) names the label and feature groups, the split, preprocessing,
/// algorithm and gate. Exit codes: 0 registered (and promoted if asked), 2 bad spec/flags,
/// 3 bad input data, 4 rejected by the gate (registered as rejected), 5 store failure
/// (retry), 6 the alias moved concurrently, 99 this exact run was already registered.
#[derive(Debug, Parser)]
#[command(name = "training-pipeline", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    log: LogArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train, evaluate, gate and register a model version
    Train {
        /// Model spec file, e.g. examples/flights/model.toml
        #[arg(env = "FTI_MODEL_SPEC")]
        spec: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
        /// Move the gate's alias to the new version if it passes the gate
        #[arg(long, env = "FTI_PROMOTE", value_parser = FalseyValueParser::new())]
        promote: bool,
        /// Run id recorded in lineage; default derived from the spec and the table versions
        #[arg(long, env = "FTI_RUN_ID")]
        run_id: Option<String>,
        /// Train and evaluate, print the summary, register nothing
        #[arg(long, env = "FTI_DRY_RUN", value_parser = FalseyValueParser::new())]
        dry_run: bool,
        /// Who is recorded as moving the alias
        #[arg(long, env = "FTI_ACTOR", default_value = "training-pipeline")]
        actor: String,
    },
    /// Check a model spec without reading data
    Check {
        /// Model spec file
        #[arg(env = "FTI_MODEL_SPEC")]
        spec: PathBuf,
    },
    /// List registered models, their versions and aliases
    Models {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Show a model version's manifest (metrics, gate, lineage, files)
    Show {
        #[command(flatten)]
        store: StoreArgs,
        /// Model name
        model: String,
        /// Version number, alias or `latest`
        #[arg(default_value = "latest")]
        version: String,
    },
    /// Point an alias at a version (refused for versions the gate rejected)
    Promote {
        #[command(flatten)]
        store: StoreArgs,
        /// Model name
        model: String,
        /// Version number (or alias / `latest`)
        version: String,
        /// Alias to move
        #[arg(long, default_value = "champion")]
        alias: String,
        /// Why, recorded in the alias history
        #[arg(long)]
        reason: String,
        /// Who, recorded in the alias history
        #[arg(long, env = "FTI_ACTOR", default_value = "operator")]
        actor: String,
    },
    /// Point an alias back at the version before its current one
    Rollback {
        #[command(flatten)]
        store: StoreArgs,
        /// Model name
        model: String,
        /// Alias to move
        #[arg(long, default_value = "champion")]
        alias: String,
        /// Why, recorded in the alias history
        #[arg(long)]
        reason: String,
        /// Who, recorded in the alias history
        #[arg(long, env = "FTI_ACTOR", default_value = "operator")]
        actor: String,
    },
    /// Every move of an alias
    History {
        #[command(flatten)]
        store: StoreArgs,
        /// Model name
        model: String,
        /// Alias
        #[arg(long, default_value = "champion")]
        alias: String,
    },
}

fn main() -> ExitCode {
    let cli: Cli = fti_runtime::parse_cli(env!("CARGO_PKG_NAME"));
    fti_runtime::run_main(env!("CARGO_PKG_NAME"), &cli.log, run(cli.command))
}

fn print(value: &serde_json::Value) {
    fti_runtime::outln!("{value:#}");
}

async fn run(command: Command) -> Result<Exit, Error> {
    match command {
        Command::Train {
            spec,
            store,
            promote,
            run_id,
            dry_run,
            actor,
        } => {
            let job = TrainJob {
                spec: LoadedSpec::load(&spec)?,
                promote,
                run_id,
                dry_run,
                actor,
            };
            let store = Store::open(&store.store).await?;
            let summary = train_model(&store, &job).await?;
            Ok(fti_runtime::finish_run(&summary, summary.status))
        }
        Command::Check { spec } => {
            let loaded = LoadedSpec::load(&spec)?;
            loaded.check()?;
            fti_runtime::outln!(
                "{}",
                serde_json::json!({"spec": spec, "ok": true, "model": loaded.spec.model.name})
            );
            Ok(Exit::Success)
        }
        Command::Models { store } => {
            print(&registry::models(&Store::open(&store.store).await?).await?);
            Ok(Exit::Success)
        }
        Command::Show {
            store,
            model,
            version,
        } => {
            print(&registry::show(&Store::open(&store.store).await?, &model, &version).await?);
            Ok(Exit::Success)
        }
        Command::Promote {
            store,
            model,
            version,
            alias,
            reason,
            actor,
        } => {
            print(
                &registry::promote(
                    &Store::open(&store.store).await?,
                    &model,
                    &alias,
                    &version,
                    &actor,
                    &reason,
                )
                .await?,
            );
            Ok(Exit::Success)
        }
        Command::Rollback {
            store,
            model,
            alias,
            reason,
            actor,
        } => {
            print(
                &registry::rollback(
                    &Store::open(&store.store).await?,
                    &model,
                    &alias,
                    &actor,
                    &reason,
                )
                .await?,
            );
            Ok(Exit::Success)
        }
        Command::History {
            store,
            model,
            alias,
        } => {
            print(&registry::history(&Store::open(&store.store).await?, &model, &alias).await?);
            Ok(Exit::Success)
        }
    }
}
