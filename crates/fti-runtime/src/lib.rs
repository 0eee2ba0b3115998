//! What every FTI pipeline binary shares, so one deployment environment drives all three:
//! the `--store` and logging flags (each with an environment variable), the exit codes an
//! orchestrator acts on, log setup (text for people, JSON lines for machines) and the code
//! version recorded in lineage.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use tracing_subscriber::EnvFilter;

/// Exit codes, part of the interface (docs/OPERATIONS.md). Retry only on [`Exit::Infra`] and
/// [`Exit::Conflict`]; [`Exit::AlreadyDone`] is 99, Airflow's default `skip_on_exit_code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Committed or published.
    Success = 0,
    /// A bug: please report it. Panics also exit with 101.
    Internal = 1,
    /// Bad flags or configuration: fix the config, do not retry.
    Config = 2,
    /// Bad input data (missing file, malformed rows, wrong types, NaN...): do not retry.
    BadInput = 3,
    /// Validation rules or the model gate rejected the output; nothing was published.
    Rejected = 4,
    /// The store or a service failed (network, permissions, timeouts): retry.
    Infra = 5,
    /// Lost a race with a concurrent run (alias or pointer moved): retry or investigate.
    Conflict = 6,
    /// Monitoring thresholds (drift, skew) failed; nothing was published.
    Monitoring = 7,
    /// Nothing to do: the same logical run already committed. Safe to treat as success.
    AlreadyDone = 99,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

/// Maps a storage error to the exit code that tells an orchestrator whether to retry.
pub fn storage_exit(error: &storage::Error) -> Exit {
    use storage::Error as E;
    match error {
        E::ObjectStore { .. } | E::Open { .. } | E::CommitConflict { .. } => Exit::Infra,
        E::AliasConflict { .. } => Exit::Conflict,
        E::InvalidName { .. } | E::InvalidUrl { .. } | E::InvalidArgument { .. } => Exit::Config,
        E::UnsupportedLayout { .. } => Exit::Config,
        E::RejectedModel { .. } => Exit::Rejected,
        _ => Exit::BadInput,
    }
}

/// Where the store is. Shared by all three binaries.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Store URL: a local path, file:///abs/path, s3://bucket/prefix (AWS_* env), gs://, az://
    #[arg(long, env = "FTI_STORE", value_name = "URL")]
    pub store: String,
}

/// Log format on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Text on a terminal, JSON otherwise.
    Auto,
    /// Readable text (colours only on a terminal).
    Text,
    /// One JSON object per line, with the run id on every line.
    Json,
}

/// Logging flags. Shared by all three binaries.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log format on stderr
    #[arg(long, env = "FTI_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto, global = true)]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info`, `debug`, `storage=debug,info`
    #[arg(long, env = "FTI_LOG", default_value = "info", global = true)]
    pub log_level: String,
}

impl LogArgs {
    /// Whether stderr gets JSON lines.
    pub fn json(&self) -> bool {
        match self.log_format {
            LogFormat::Json => true,
            LogFormat::Text => false,
            LogFormat::Auto => !std::io::stderr().is_terminal(),
        }
    }

    /// Installs the global subscriber. Logs go to stderr; stdout is kept for the run summary.
    pub fn init(&self) {
        let filter = EnvFilter::try_new(&self.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
        let stderr_is_tty = std::io::stderr().is_terminal();
        let json = self.json();
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr);
        let result = if json {
            builder
                .json()
                .with_current_span(true)
                .with_span_list(false)
                .flatten_event(true)
                .try_init()
        } else {
            builder
                .with_ansi(stderr_is_tty)
                .with_target(false)
                .try_init()
        };
        // A second init (tests calling main twice) keeps the first subscriber.
        let _ = result;
    }
}

/// The code version recorded in lineage: `FTI_CODE_VERSION` if set (e.g. a git sha injected
/// at image build), else the crate version.
pub fn code_version(package_version: &str) -> String {
    std::env::var("FTI_CODE_VERSION").unwrap_or_else(|_| package_version.to_string())
}

/// Lower-case hex SHA-256 of the given parts, for config hashes and derived run ids.
pub fn hash_parts<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hex::encode(hasher.finalize())
}

/// `println!` for what a binary prints on stdout, without its panic when stdout is closed
/// (`feature-pipeline history … | head`): the reader went away, so the rest is dropped, and
/// the exit code still tells the outcome.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// `print!` as [`outln!`] is `println!`.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// Prints the one-line JSON run summary on stdout.
pub fn print_summary(summary: &serde_json::Value) {
    outln!("{summary}");
}

/// The command line, parsed; a bad one (an unknown flag, a missing argument, a bad value)
/// ends stdout with the failure summary, like any failed run, before clap's message and exit
/// code 2. `--help` and `--version` print only themselves.
pub fn parse_cli<C: clap::Parser>(pipeline: &str) -> C {
    C::try_parse().unwrap_or_else(|e| {
        if e.use_stderr() {
            // clap's message up to its usage lines, on one line ("the following required
            // arguments were not provided: --store <URL> <CONFIG>").
            let rendered = e.render().to_string();
            let message = match e.kind() {
                clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    "no command given (see --help)".to_string()
                }
                _ => rendered
                    .lines()
                    .take_while(|l| !l.trim().is_empty() && !l.starts_with("Usage:"))
                    .map(str::trim)
                    .collect::<Vec<_>>()
                    .join(" "),
            };
            let message = message.strip_prefix("error: ").unwrap_or(&message);
            print_summary(&serde_json::json!({
                "pipeline": pipeline,
                "status": "failed",
                "exit_code": Exit::Config as u8,
                "error": format!("invalid command line: {message}"),
            }));
        }
        e.exit()
    })
}

/// Prints a run's summary and returns the exit code its status means.
pub fn finish_run(summary: &impl serde::Serialize, status: storage::RunStatus) -> Exit {
    print_summary(&serde_json::to_value(summary).unwrap_or_default());
    match status {
        storage::RunStatus::Succeeded => Exit::Success,
        storage::RunStatus::AlreadyDone => Exit::AlreadyDone,
        storage::RunStatus::Rejected => Exit::Rejected,
        storage::RunStatus::Failed => Exit::Internal,
    }
}

/// Errors that know their exit code: each pipeline's error type.
pub trait ExitError: std::error::Error {
    fn exit(&self) -> Exit;
}

/// The whole `main` of a pipeline binary after flag parsing: set up logging, run `work` on a
/// multi-threaded runtime, print an error once, and turn the outcome into the exit code. A
/// failure also prints a one-line JSON summary on stdout (`pipeline`, `status: "failed"`,
/// `exit_code`, `error`), so that what reads a run's stdout gets one line either way.
pub fn run_main<E: ExitError>(
    pipeline: &str,
    log: &LogArgs,
    work: impl std::future::Future<Output = Result<Exit, E>>,
) -> ExitCode {
    log.init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return Exit::Internal.into();
        }
    };
    match runtime.block_on(work) {
        Ok(exit) => exit.into(),
        Err(e) => {
            let message = with_causes(&e);
            tracing::error!("{message}");
            // In JSON the log line above is the error; a plain line would break the format.
            if !log.json() {
                eprintln!("error: {message}");
            }
            let exit = e.exit();
            print_summary(&serde_json::json!({
                "pipeline": pipeline,
                "status": "failed",
                "exit_code": exit as u8,
                "error": message,
            }));
            exit.into()
        }
    }
}

/// An error and the causes its message does not already say ("cannot read config x.toml: No
/// such file or directory", "object store error on layout.json: … connection refused").
pub fn with_causes(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = c.source();
    }
    message
}

/// Parses a time given on the command line or in a config: `YYYY-MM-DD`,
/// `YYYY-MM-DDTHH:MM:SS` (naive, read as UTC) or RFC 3339; microseconds since the epoch.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_micros());
    }
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S") {
        return Ok(t.and_utc().timestamp_micros());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc()
            .timestamp_micros());
    }
    Err(format!(
        "cannot parse time {s:?}: use YYYY-MM-DD, YYYY-MM-DDTHH:MM:SS or RFC 3339"
    ))
}

/// Parses a duration like `7d`, `36h`, `90m`, `45s` to microseconds.
///
/// ```
/// assert_eq!(fti_runtime::parse_duration_us("2d"), Some(172_800_000_000));
/// assert_eq!(fti_runtime::parse_duration_us("2 weeks"), None);
/// ```
pub fn parse_duration_us(s: &str) -> Option<i64> {
    let s = s.trim();
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: i64 = number.parse().ok()?;
    let seconds = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        _ => return None,
    };
    n.checked_mul(seconds * 1_000_000)
}
