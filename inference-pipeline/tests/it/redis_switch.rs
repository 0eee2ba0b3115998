//! The Redis export against a real server: versioned keyspaces, one atomic pointer switch, no
//! stale keys, pruning, rollback, and a concurrent reader that never sees a mix.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use inference_pipeline::exports::RedisTarget;
use redis::AsyncCommands;

fn redis_url() -> Option<String> {
    match std::env::var("FTI_TEST_REDIS_URL") {
        Ok(u) => Some(u),
        Err(_) if std::env::var("FTI_TEST_SKIP_SERVICES").as_deref() == Ok("1") => None,
        Err(_) => panic!(
            "FTI_TEST_REDIS_URL is not set: run the tests with `bash scripts/test.sh`, or set FTI_TEST_SKIP_SERVICES=1"
        ),
    }
}

fn entries(n: usize, version: u64, skip: usize) -> Vec<(String, String)> {
    (skip..n)
        .map(|i| {
            (
                format!("k{i}"),
                serde_json::json!({"value": i, "model_version": version}).to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn readers_never_see_a_mix_and_old_keys_do_not_linger() {
    let Some(url) = redis_url() else { return };
    let prefix = format!("t{}", std::process::id());
    let mut target = RedisTarget::connect(&url, &prefix, 2).await.unwrap();
    target.load("s1", &entries(20_000, 1, 0)).await.unwrap();
    target.switch("s1").await.unwrap();

    // A reader polls: current pointer, then a batch of keys under it; all must agree.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (url, prefix, stop) = (url.clone(), prefix.clone(), stop.clone());
        tokio::spawn(async move {
            let client = redis::Client::open(url.as_str()).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            let mut seen = std::collections::BTreeSet::new();
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) || reads == 0 {
                let current: String = conn.get(format!("{prefix}:current")).await.unwrap();
                let keys: Vec<String> = (0..50)
                    .map(|i| format!("{prefix}:{current}:k{}", i * 97 % 20_000))
                    .collect();
                let values: Vec<Option<String>> = conn.mget(&keys).await.unwrap();
                let versions: std::collections::BTreeSet<u64> = values
                    .iter()
                    .flatten()
                    .map(|v| {
                        serde_json::from_str::<serde_json::Value>(v).unwrap()["model_version"]
                            .as_u64()
                            .unwrap()
                    })
                    .collect();
                assert!(
                    versions.len() <= 1,
                    "a mix of model versions under {current}: {versions:?}"
                );
                seen.extend(versions);
                reads += 1;
            }
            (seen, reads)
        })
    };
    // Meanwhile a new snapshot (without k0..k99: those must disappear) is loaded and switched.
    target.load("s2", &entries(20_000, 2, 100)).await.unwrap();
    target.switch("s2").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    let (seen, reads) = reader.await.unwrap();
    assert!(reads > 1, "the reader polled during the load");
    assert!(seen.contains(&2), "the reader saw the switch: {seen:?}");

    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let stale: Option<String> = conn.get(format!("{prefix}:s2:k0")).await.unwrap();
    assert_eq!(
        stale, None,
        "keys absent from the new batch are absent for readers"
    );

    // keep = 2: a third snapshot prunes the first keyspace; rollback goes back one.
    target.load("s3", &entries(10, 3, 0)).await.unwrap();
    let pruned = target.switch("s3").await.unwrap();
    assert_eq!(pruned, ["s1"]);
    let gone: Option<String> = conn.get(format!("{prefix}:s1:k5")).await.unwrap();
    assert_eq!(gone, None);
    assert_eq!(target.rollback().await.unwrap(), "s2");
    assert_eq!(target.current().await.unwrap().as_deref(), Some("s2"));
    for s in ["s2", "s3"] {
        target.delete_keyspace(s).await.unwrap();
    }
    let _: () = conn
        .del(&[format!("{prefix}:current"), format!("{prefix}:snapshots")])
        .await
        .unwrap();
}
