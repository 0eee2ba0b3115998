//! Bad input: a clear error, the right exit code, and the published snapshot untouched.

use fti_runtime::Exit;
use inference_pipeline::{Error, score};
use storage::{Name, NameKind, Store};

use crate::support::{CONFIG, World, job, published, register, world};

/// Publishes a good snapshot first, then breaks something and checks the failure.
async fn fails_and_keeps_the_published_snapshot(
    store: &Store,
    job: inference_pipeline::ScoreJob,
    exit: Exit,
    needles: &[&str],
) {
    let before = published(store).await;
    let err = score(store, &job).await.unwrap_err();
    let text = err.to_string();
    for needle in needles {
        assert!(text.contains(needle), "{needle:?} missing from: {text}");
    }
    assert_eq!(err.exit(), exit, "{text}");
    assert_eq!(
        published(store).await,
        before,
        "the published snapshot is untouched after: {text}"
    );
}

async fn good() -> Store {
    let store = Store::memory();
    world(&store, World::default()).await;
    register(&store, World::default(), true, 0.0).await;
    score(&store, &crate::support::job(CONFIG)).await.unwrap();
    store
}

#[tokio::test]
async fn no_model_under_the_alias() {
    let store = good().await;
    let mut j = job(CONFIG);
    j.model_ref = Some("staging".into());
    fails_and_keeps_the_published_snapshot(&store, j, Exit::BadInput, &["\"m\"", "staging"]).await;
}

#[tokio::test]
async fn model_features_missing_from_the_store() {
    let store = Store::memory();
    world(
        &store,
        World {
            no_feature_group: true,
            ..Default::default()
        },
    )
    .await;
    register(&store, World::default(), true, 0.0).await;
    fails_and_keeps_the_published_snapshot(
        &store,
        job(CONFIG),
        Exit::BadInput,
        &["\"g\"", "no committed version"],
    )
    .await;
}

#[tokio::test]
async fn feature_of_the_wrong_type() {
    let store = Store::memory();
    world(
        &store,
        World {
            x_as_string: true,
            ..Default::default()
        },
    )
    .await;
    register(&store, World::default(), true, 0.0).await;
    fails_and_keeps_the_published_snapshot(
        &store,
        job(CONFIG),
        Exit::BadInput,
        &["\"x\"", "string", "double"],
    )
    .await;
}

#[tokio::test]
async fn corrupted_model_file() {
    let store = good().await;
    let m = Name::new(NameKind::Model, "m").unwrap();
    let manifest = store.model_version(&m, 1).await.unwrap();
    let key =
        object_store::path::Path::from(format!("models/m/{}", manifest.files["model.json"].path));
    use object_store::ObjectStoreExt;
    store
        .object_store()
        .put(
            &key,
            object_store::PutPayload::from_static(b"{\"truncated\":"),
        )
        .await
        .unwrap();
    fails_and_keeps_the_published_snapshot(&store, job(CONFIG), Exit::BadInput, &["model.json"])
        .await;
}

#[tokio::test]
async fn no_entities_at_the_as_of_time() {
    let store = good().await;
    let mut j = job(CONFIG);
    j.as_of = Some(crate::support::T0 - 10 * crate::support::DAY);
    fails_and_keeps_the_published_snapshot(&store, j, Exit::BadInput, &["no entity", "ctx"]).await;
}

#[tokio::test]
async fn nan_in_features() {
    let store = Store::memory();
    world(
        &store,
        World {
            nan: true,
            ..Default::default()
        },
    )
    .await;
    register(&store, World::default(), true, 0.0).await;
    fails_and_keeps_the_published_snapshot(&store, job(CONFIG), Exit::BadInput, &["\"x\"", "NaN"])
        .await;
}

#[tokio::test]
async fn unseen_category_follows_the_model_policy() {
    // Policy `error`: the run fails naming the column and value.
    let strict = World {
        unseen_category: true,
        strict_categories: true,
        ..Default::default()
    };
    let store = Store::memory();
    world(&store, strict).await;
    register(&store, strict, true, 0.0).await;
    fails_and_keeps_the_published_snapshot(
        &store,
        job(CONFIG),
        Exit::BadInput,
        &["\"cat\"", "never-seen"],
    )
    .await;
    // Policy `ignore`: scored, counted in the monitoring report, and failed by its threshold.
    let lenient = World {
        unseen_category: true,
        ..Default::default()
    };
    let store = Store::memory();
    world(&store, lenient).await;
    register(&store, lenient, true, 0.0).await;
    let config = format!("{CONFIG}\n[monitoring]\nmax_unseen_fraction = 0.01\n");
    let err = score(&store, &job(&config)).await.unwrap_err();
    assert!(matches!(err, Error::Monitoring { .. }), "{err}");
    assert_eq!(err.exit(), Exit::Monitoring);
    assert!(err.to_string().contains("\"cat\""), "{err}");
    assert!(published(&store).await.is_none());
}

#[tokio::test]
async fn unreachable_redis() {
    let store = good().await;
    let config = format!("{CONFIG}\n[redis]\nurl = \"redis://127.0.0.1:1/\"\nprefix = \"t\"\n");
    let mut j = job(&config);
    j.as_of = Some(crate::support::T0 + 1);
    fails_and_keeps_the_published_snapshot(&store, j, Exit::Infra, &["redis://127.0.0.1:1/"]).await;
}
