//! Helpers shared by the end-to-end tests: the services the tests run against and the
//! workspace's binaries.

use std::path::PathBuf;

/// The directory holding the workspace's built binaries (`target/<profile>`), found from the
/// running test executable (`target/<profile>/deps/it-<hash>`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let deps = exe.parent().expect("exe has a parent");
    deps.parent().expect("deps has a parent").to_path_buf()
}

/// The S3 URL of the test server started by `scripts/test.sh`, with a fresh prefix; `None`
/// only when `FTI_TEST_SKIP_SERVICES=1`.
pub fn s3_url(label: &str) -> Option<String> {
    match std::env::var("FTI_TEST_S3_URL") {
        Ok(base) => Some(format!(
            "{}/{label}/{}",
            base.trim_end_matches('/'),
            uuid::Uuid::new_v4().simple()
        )),
        Err(_) if std::env::var("FTI_TEST_SKIP_SERVICES").as_deref() == Ok("1") => None,
        Err(_) => panic!(
            "FTI_TEST_S3_URL is not set: run the tests with `bash scripts/test.sh`, or set \
             FTI_TEST_SKIP_SERVICES=1 to skip service-backed tests"
        ),
    }
}

/// The Python with pyarrow and duckdb installed by `scripts/setup.sh`.
pub fn python() -> Option<PathBuf> {
    match std::env::var("FTI_PYTHON") {
        Ok(p) => Some(PathBuf::from(p)),
        Err(_) if std::env::var("FTI_TEST_SKIP_SERVICES").as_deref() == Ok("1") => None,
        Err(_) => panic!(
            "FTI_PYTHON is not set: run the tests with `bash scripts/test.sh`, or set \
             FTI_TEST_SKIP_SERVICES=1 to skip tests that need Python"
        ),
    }
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace root")
        .to_path_buf()
}
