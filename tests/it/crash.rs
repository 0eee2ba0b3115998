//! Writers killed with SIGKILL at random moments never leave a half-visible version, and
//! vacuum removes what they left behind without touching committed data.

use std::collections::{HashMap, HashSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use storage::{Name, NameKind, Store, VacuumOptions, VersionSpec};

const ROWS_PER_COMMIT: usize = 3000;
const DAY_US: i64 = 86_400_000_000;

/// A small deterministic generator, seeded from the clock and printed, so a failure can be
/// replayed with `FTI_CRASH_SEED`.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

fn kill_writers_repeatedly(url: &str, kills: usize) {
    let seed = std::env::var("FTI_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| chrono::Utc::now().timestamp_micros() as u64);
    eprintln!("crash test on {url}: seed {seed}");
    let mut rng = Lcg(seed);
    for _ in 0..kills {
        let mut child = Command::new(env!("CARGO_BIN_EXE_crash-writer"))
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn crash-writer");
        std::thread::sleep(Duration::from_millis(30 + rng.next(400)));
        if let Ok(Some(status)) = child.try_wait() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "crash-writer exited by itself ({status}): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
    }
}

async fn check_every_version(store: &Store) -> u64 {
    let table = Name::new(NameKind::FeatureGroup, "crash").unwrap();
    let history = store.table_history(&table).await.expect("log readable");
    for commit in &history {
        let snapshot = store
            .table(&table, VersionSpec::Version(commit.version))
            .await
            .unwrap();
        let batches = snapshot
            .read_all(store, Some(vec!["ts".into(), "tag".into()]))
            .await
            .unwrap_or_else(|e| panic!("version {} unreadable: {e}", commit.version));
        let mut per_tag: HashMap<String, usize> = HashMap::new();
        let mut total = 0;
        let own_tag = commit.metadata["tag"].as_str().unwrap();
        let range = match commit.operation {
            storage::Operation::ReplaceRange { from_us, to_us } => Some((from_us, to_us)),
            _ => None,
        };
        for batch in &batches {
            let ts = batch
                .column(0)
                .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
            let tags = batch.column(1).as_string::<i32>();
            for i in 0..batch.num_rows() {
                *per_tag.entry(tags.value(i).to_string()).or_default() += 1;
                if let Some((from, to)) = range
                    && (from..to).contains(&ts.value(i))
                {
                    assert_eq!(
                        tags.value(i),
                        own_tag,
                        "a replaced range holds only the new rows"
                    );
                }
            }
            total += batch.num_rows();
        }
        assert_eq!(
            total as u64, commit.num_rows,
            "version {} row count",
            commit.version
        );
        assert_eq!(
            per_tag.get(own_tag).copied(),
            Some(ROWS_PER_COMMIT),
            "version {} shows all of its own commit",
            commit.version
        );
        if commit.operation == storage::Operation::Overwrite {
            assert_eq!(per_tag.len(), 1, "an overwrite leaves only its own rows");
        }
    }
    history.len() as u64
}

async fn crash_and_recover(url: String, kills: usize) {
    let url2 = url.clone();
    tokio::task::spawn_blocking(move || kill_writers_repeatedly(&url2, kills))
        .await
        .unwrap();
    let store = Store::open(&url).await.unwrap();
    let versions = check_every_version(&store).await;
    assert!(
        versions >= 3,
        "the writers committed only {versions} versions; kill later"
    );

    let report = store
        .vacuum(VacuumOptions {
            min_age: Duration::ZERO,
            dry_run: false,
        })
        .await
        .unwrap();
    eprintln!(
        "{versions} versions; vacuum deleted {} files",
        report.deleted.len()
    );
    assert_eq!(
        check_every_version(&store).await,
        versions,
        "vacuum touched no version"
    );

    // Nothing unreferenced is left under the table.
    let table = Name::new(NameKind::FeatureGroup, "crash").unwrap();
    let referenced: HashSet<String> = store
        .table_history(&table)
        .await
        .unwrap()
        .iter()
        .flat_map(|c| {
            c.add
                .iter()
                .map(|f| format!("tables/crash/{}", f.file.path))
        })
        .collect();
    let again = store
        .vacuum(VacuumOptions {
            min_age: Duration::ZERO,
            dry_run: true,
        })
        .await
        .unwrap();
    assert!(
        again.deleted.is_empty(),
        "a second vacuum finds nothing: {again:?}"
    );
    assert!(!referenced.is_empty());
    let _ = DAY_US;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_writers_on_local_store() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    crash_and_recover(dir.path().display().to_string(), 25).await;
    eprintln!("local crash test took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_writers_on_s3() {
    let Some(url) = tests::s3_url("crash") else {
        return;
    };
    crash_and_recover(url, 10).await;
}
