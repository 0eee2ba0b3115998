//! Bad input: a clear error naming what and where, the right exit code, nothing registered.

use fti_runtime::Exit;
use storage::{Name, NameKind, Store};
use training_pipeline::{Error, train_model};

use crate::support::{Data, GOOD, job, spec, store, store_with};

async fn fails(store: &Store, text: &str, exit: Exit, needles: &[&str]) {
    let err = train_model(store, &job(text)).await.unwrap_err();
    let message = err.to_string();
    for needle in needles {
        assert!(
            message.contains(needle),
            "{needle:?} missing from: {message}"
        );
    }
    assert_eq!(err.exit(), exit, "{message}");
    let model = Name::new(NameKind::Model, "m").unwrap();
    assert!(
        store.model_versions(&model).await.unwrap().is_empty(),
        "nothing registered after: {message}"
    );
}

#[tokio::test]
async fn missing_label_group() {
    let text = spec("gbm", "", GOOD).replace("group = \"l\"", "group = \"nope\"");
    fails(
        &store().await,
        &text,
        Exit::BadInput,
        &["\"nope\"", "label"],
    )
    .await;
}

#[tokio::test]
async fn missing_feature_column() {
    let text = spec(
        "gbm",
        "",
        "[[features]]\ngroup = \"f\"\ncolumns = [\"signl\"]\n",
    );
    fails(
        &store().await,
        &text,
        Exit::BadInput,
        &["\"f\"", "\"signl\"", "signal"],
    )
    .await;
}

#[tokio::test]
async fn wrong_label_type() {
    let text = spec("gbm", "", GOOD).replace("column = \"label\"", "column = \"noise\"");
    fails(
        &store().await,
        &text,
        Exit::BadInput,
        &["\"noise\"", "float"],
    )
    .await;
}

#[tokio::test]
async fn empty_training_set_after_the_split() {
    let text = spec("gbm", "", GOOD).replace(
        "train_before = \"2024-02-10\"",
        "train_before = \"2023-01-01\"",
    );
    fails(
        &store().await,
        &text,
        Exit::BadInput,
        &["train split is empty"],
    )
    .await;
}

#[tokio::test]
async fn single_class_label() {
    fails(
        &store_with(Data {
            single_class: true,
            ..Default::default()
        })
        .await,
        &spec("gbm", "", GOOD),
        Exit::BadInput,
        &["single class"],
    )
    .await;
}

#[tokio::test]
async fn nan_in_features() {
    fails(
        &store_with(Data {
            nan_feature: true,
            ..Default::default()
        })
        .await,
        &spec("gbm", "", GOOD),
        Exit::BadInput,
        &["\"signal\"", "NaN"],
    )
    .await;
}

#[tokio::test]
async fn unknown_algorithm_and_parameter_are_spec_errors() {
    for (algorithm, params, needle) in [
        ("svm", "", "unknown algorithm"),
        ("gbm", "depth = 3", "unknown field `depth`"),
    ] {
        let err = train_model(&store().await, &job(&spec(algorithm, params, GOOD)))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidSpec { .. }), "{err}");
        assert!(err.to_string().contains(needle), "{err}");
        assert_eq!(err.exit(), Exit::Config);
    }
}

#[tokio::test]
async fn gate_without_rules_is_a_config_error() {
    let text = spec("gbm", "", GOOD).replace("[[gate.thresholds]]\nmetric = \"roc_auc\"\nmin = 0.5\n[gate.champion]\nmetric = \"roc_auc\"\nmin_improvement = 0.0\n", "");
    let err = train_model(&store().await, &job(&text)).await.unwrap_err();
    assert!(err.to_string().contains("gate: no rule"), "{err}");
    assert_eq!(err.exit(), Exit::Config);
}
