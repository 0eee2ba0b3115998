//! `inference-pipeline`: parses flags, runs one command, maps the outcome to an exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::builder::FalseyValueParser;
use clap::{Args, Parser, Subcommand};
use fti_runtime::{Exit, LogArgs, StoreArgs};
use inference_pipeline::exports::RedisTarget;
use inference_pipeline::score::{Standing, commit, snapshot_for, standing};
use inference_pipeline::{Error, LoadedConfig, ScoreJob, parse_time, score};
use storage::{DatasetKind, Store};

/// A registered model and the latest features in; predictions and key-value exports out.
///
/// Each run writes an immutable snapshot (predictions Parquet, JSON lines / CSV / DynamoDB
/// exports, a monitoring report), then moves the dataset's `current` pointer and the Redis
/// pointer key atomically. Exit codes: 0 published (or part written), 2 bad config/flags,
/// 3 bad input (model, features, entities), 5 store or Redis failure (retry), 7 monitoring
/// thresholds failed (nothing published), 99 this exact snapshot is already published.
#[derive(Debug, Parser)]
#[command(name = "inference-pipeline", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    log: LogArgs,
}

/// What identifies a scoring job (and so its snapshot).
#[derive(Debug, Args)]
struct JobArgs {
    /// Scoring config, e.g. examples/flights/score.toml
    #[arg(env = "FTI_SCORING_CONFIG")]
    config: PathBuf,
    #[command(flatten)]
    store: StoreArgs,
    /// Model version, alias or `latest` (default: the config's, usually `champion`)
    #[arg(long = "model", env = "FTI_MODEL_REF")]
    model_ref: Option<String>,
    /// Score as of this time (YYYY-MM-DD or RFC 3339); default now
    #[arg(long, env = "FTI_AS_OF")]
    as_of: Option<String>,
    /// Number of shards (one process each, e.g. a Kubernetes Indexed Job's completions)
    #[arg(long, env = "FTI_SHARD_COUNT", default_value_t = 1)]
    shard_count: usize,
    /// Redis URL, overriding the config's
    #[arg(long, env = "FTI_REDIS_URL")]
    redis_url: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Score the entities (this shard's share) and publish when the snapshot is complete
    Score {
        #[command(flatten)]
        job: JobArgs,
        /// This shard's index, 0-based (Kubernetes sets JOB_COMPLETION_INDEX)
        #[arg(long, env = "JOB_COMPLETION_INDEX", default_value_t = 0)]
        shard_index: usize,
        /// Run id recorded in lineage; default derived from the snapshot and shard
        #[arg(long, env = "FTI_RUN_ID")]
        run_id: Option<String>,
        /// Score and monitor, print the summary, publish nothing
        #[arg(long, env = "FTI_DRY_RUN", value_parser = FalseyValueParser::new())]
        dry_run: bool,
    },
    /// Seal and publish a sharded snapshot once every shard has written its part
    Commit {
        #[command(flatten)]
        job: JobArgs,
    },
    /// Point the dataset (and Redis) back at the previous snapshot
    Rollback {
        /// Scoring config
        #[arg(env = "FTI_SCORING_CONFIG")]
        config: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
        /// Redis URL, overriding the config's
        #[arg(long, env = "FTI_REDIS_URL")]
        redis_url: Option<String>,
        /// Why, recorded in the pointer history
        #[arg(long)]
        reason: String,
    },
    /// List the dataset's snapshots and its pointer history
    Snapshots {
        /// Scoring config
        #[arg(env = "FTI_SCORING_CONFIG")]
        config: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
}

fn main() -> ExitCode {
    let cli: Cli = fti_runtime::parse_cli(env!("CARGO_PKG_NAME"));
    fti_runtime::run_main(env!("CARGO_PKG_NAME"), &cli.log, run(cli.command))
}

fn job(
    args: JobArgs,
    shard_index: usize,
    run_id: Option<String>,
    dry_run: bool,
) -> Result<(ScoreJob, String), Error> {
    let as_of = args.as_of.as_deref().map(parse_time).transpose()?;
    Ok((
        ScoreJob {
            config: LoadedConfig::load(&args.config)?,
            model_ref: args.model_ref,
            as_of,
            shard_index,
            shard_count: args.shard_count,
            run_id,
            dry_run,
            redis_url: args.redis_url,
        },
        args.store.store,
    ))
}

async fn run(command: Command) -> Result<Exit, Error> {
    match command {
        Command::Score {
            job: args,
            shard_index,
            run_id,
            dry_run,
        } => {
            let (job, url) = job(args, shard_index, run_id, dry_run)?;
            let store = Store::open(&url).await?;
            let summary = score(&store, &job).await?;
            Ok(fti_runtime::finish_run(&summary, summary.status))
        }
        Command::Commit { job: args } => {
            let (job, url) = job(args, 0, None, false)?;
            let store = Store::open(&url).await?;
            let (manifest, dataset, snapshot, versions) = snapshot_for(&store, &job).await?;
            let outcome = match standing(&store, &dataset, &snapshot).await? {
                Standing::Current => Some("already_published"),
                Standing::Superseded => Some("superseded"),
                Standing::NeverPublished => None,
            };
            if let Some(outcome) = outcome {
                fti_runtime::outln!(
                    "{}",
                    serde_json::json!({"snapshot": snapshot, "outcome": outcome})
                );
                return Ok(Exit::AlreadyDone);
            }
            let redis = commit(
                &store, &job, &manifest, &dataset, &snapshot, &versions, "commit",
            )
            .await?;
            fti_runtime::outln!(
                "{}",
                serde_json::json!({"snapshot": snapshot, "outcome": "published", "redis": redis})
            );
            Ok(Exit::Success)
        }
        Command::Rollback {
            config,
            store,
            redis_url,
            reason,
        } => {
            let config = LoadedConfig::load(&config)?;
            let store = Store::open(&store.store).await?;
            let dataset = storage::Name::new(
                storage::NameKind::Dataset,
                config.config.output.dataset.as_str(),
            )?;
            let moved = store
                .rollback_pointer(DatasetKind::Predictions, &dataset, "operator", &reason)
                .await?;
            let mut redis = None;
            if let Some(r) = &config.config.redis {
                let url = redis_url
                    .or_else(|| r.url.clone())
                    .ok_or_else(|| Error::Flag("redis: no url".into()))?;
                let mut target = RedisTarget::connect(&url, &r.prefix, r.keep).await?;
                redis = Some(target.rollback().await?);
            }
            let current = match moved {
                storage::Published::Moved(m) | storage::Published::AlreadyCurrent(m) => m,
            };
            fti_runtime::outln!(
                "{}",
                serde_json::json!({"dataset": dataset, "current": current.snapshot, "redis_current": redis})
            );
            Ok(Exit::Success)
        }
        Command::Snapshots { config, store } => {
            let config = LoadedConfig::load(&config)?;
            let store = Store::open(&store.store).await?;
            let dataset = storage::Name::new(
                storage::NameKind::Dataset,
                config.config.output.dataset.as_str(),
            )?;
            let snapshots = store
                .list_snapshots(DatasetKind::Predictions, &dataset)
                .await?;
            let history = store
                .pointer_history(DatasetKind::Predictions, &dataset)
                .await?;
            fti_runtime::outln!(
                "{:#}",
                serde_json::json!({"dataset": dataset, "snapshots": snapshots, "pointer_history": history})
            );
            Ok(Exit::Success)
        }
    }
}
