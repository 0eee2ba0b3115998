//! The backends the conformance suite runs against.

use storage::Store;
use tempfile::TempDir;

/// A store under test and the means to open more independent handles on it.
pub struct TestStore {
    pub url: String,
    memory: Option<Store>,
    _dir: Option<TempDir>,
}

impl TestStore {
    pub fn memory() -> Self {
        TestStore {
            url: "memory:///".into(),
            memory: Some(Store::memory()),
            _dir: None,
        }
    }

    pub fn local() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        TestStore {
            url: format!("file://{}", dir.path().display()),
            memory: None,
            _dir: Some(dir),
        }
    }

    /// A fresh prefix on the S3 server that `scripts/test.sh` starts. Without one the test
    /// fails, unless `FTI_TEST_SKIP_SERVICES=1` says to skip service-backed tests.
    pub fn s3() -> Option<Self> {
        match std::env::var("FTI_TEST_S3_URL") {
            Ok(base) => Some(TestStore {
                url: format!(
                    "{}/storage-it/{}",
                    base.trim_end_matches('/'),
                    uuid::Uuid::new_v4().simple()
                ),
                memory: None,
                _dir: None,
            }),
            Err(_) if std::env::var("FTI_TEST_SKIP_SERVICES").as_deref() == Ok("1") => {
                eprintln!("FTI_TEST_SKIP_SERVICES=1: skipping the S3 backend");
                None
            }
            Err(_) => panic!(
                "FTI_TEST_S3_URL is not set: run the tests with `bash scripts/test.sh`, which \
                 starts a local S3 server, or set FTI_TEST_SKIP_SERVICES=1 to skip S3 tests"
            ),
        }
    }

    /// An independent handle (its own client, for remote stores) on the same store.
    pub async fn handle(&self) -> Store {
        match &self.memory {
            Some(store) => store.clone(),
            None => Store::open(&self.url).await.expect("open store"),
        }
    }
}

/// Generates one test per backend for each conformance case.
#[macro_export]
macro_rules! conformance_suite {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                super::$case($crate::backend::TestStore::memory()).await
            })*
        }
        mod local {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                super::$case($crate::backend::TestStore::local()).await
            })*
        }
        mod s3 {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                if let Some(store) = $crate::backend::TestStore::s3() {
                    super::$case(store).await
                }
            })*
        }
    };
}
