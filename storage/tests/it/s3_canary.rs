//! The S3 server under test must honour conditional creates, or every commit test against it
//! would pass while commits are silently lost.

use std::sync::Arc;

use object_store::path::Path;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};

use crate::backend::TestStore;

async fn create(
    store: &Arc<dyn ObjectStore>,
    key: &Path,
    body: &'static str,
) -> Result<(), object_store::Error> {
    let opts = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    store
        .put_opts(key, PutPayload::from_static(body.as_bytes()), opts)
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_server_honours_conditional_create() {
    let Some(t) = TestStore::s3() else { return };
    let store = t.handle().await;
    let inner = store.object_store().clone();
    let key = Path::from("canary/once");
    create(&inner, &key, "first").await.unwrap();
    let second = create(&inner, &key, "second").await;
    assert!(
        matches!(
            second,
            Err(object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. })
        ),
        "a second create must fail, got {second:?}"
    );

    let race = Path::from("canary/race");
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let store = t.handle().await.object_store().clone();
        let race = race.clone();
        tasks.push(tokio::spawn(async move {
            create(&store, &race, "x").await.is_ok()
        }));
    }
    let mut winners = 0;
    for task in tasks {
        winners += task.await.unwrap() as usize;
    }
    assert_eq!(
        winners, 1,
        "16 concurrent creates must have exactly one winner"
    );
}
