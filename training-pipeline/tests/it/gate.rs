//! The gate decides what may serve; the registry keeps every verdict and every alias move.

use storage::{AliasAction, ModelStatus, Name, NameKind, RunStatus};
use training_pipeline::train_model;

use crate::support::{GOOD, NOISE, job, spec, store};

fn names() -> (Name, Name) {
    (
        Name::new(NameKind::Model, "m").unwrap(),
        Name::new(NameKind::Alias, "champion").unwrap(),
    )
}

#[tokio::test]
async fn better_model_moves_the_alias_worse_is_rejected_and_rollback_restores() {
    let store = store().await;
    let (model, champion) = names();

    // v1: a weak model on noise, the first champion (judged by thresholds alone).
    let first = train_model(&store, &job(&spec("gbm", "iterations = 20", NOISE)))
        .await
        .unwrap();
    assert_eq!(
        (first.version, first.promoted.as_deref()),
        (Some(1), Some("champion"))
    );

    // v2: the real signal beats it on the same test set and takes the alias.
    let better = train_model(&store, &job(&spec("gbm", "iterations = 30", GOOD)))
        .await
        .unwrap();
    assert_eq!(better.status, RunStatus::Succeeded, "{:?}", better.gate);
    assert!(
        better.metrics["roc_auc"] > first.metrics["roc_auc"] + 0.2,
        "{:?} vs {:?}",
        better.metrics,
        first.metrics
    );
    assert_eq!(
        store
            .alias(&model, &champion)
            .await
            .unwrap()
            .unwrap()
            .version,
        2
    );
    let check = &better.gate["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "champion")
        .unwrap();
    assert_eq!(check["champion_version"], 1);

    // v3: noise again, a worse challenger: registered as rejected, the alias stays.
    let worse = train_model(&store, &job(&spec("gbm", "iterations = 25", NOISE)))
        .await
        .unwrap();
    assert_eq!(worse.status, RunStatus::Rejected);
    assert_eq!(worse.version, Some(3));
    assert!(
        worse.gate["reason"]
            .as_str()
            .unwrap()
            .contains("does not beat champion v2"),
        "{}",
        worse.gate
    );
    assert_eq!(
        store.model_version(&model, 3).await.unwrap().status,
        ModelStatus::Rejected
    );
    assert_eq!(
        store
            .alias(&model, &champion)
            .await
            .unwrap()
            .unwrap()
            .version,
        2
    );
    // A rejected version cannot be promoted by hand either.
    assert!(matches!(
        store.promote(&model, &champion, 3, "op", "try").await,
        Err(storage::Error::RejectedModel { version: 3, .. })
    ));

    // Rollback restores the previous champion; history shows all three moves.
    store
        .rollback(&model, &champion, "oncall", "v2 misbehaves")
        .await
        .unwrap();
    let history = store.alias_history(&model, &champion).await.unwrap();
    let moves: Vec<(u64, AliasAction)> = history.iter().map(|m| (m.version, m.action)).collect();
    assert_eq!(
        moves,
        [
            (1, AliasAction::Promote),
            (2, AliasAction::Promote),
            (1, AliasAction::Rollback)
        ]
    );
    assert_eq!(history[2].actor, "oncall");
}

#[tokio::test]
async fn same_spec_same_tables_same_seed_give_identical_model_bytes() {
    let store = store().await;
    let (model, _) = names();
    let text = spec("gbm", "iterations = 20", GOOD);
    let mut a = job(&text);
    a.run_id = Some("a".into());
    let mut b = job(&text);
    b.run_id = Some("b".into());
    let va = train_model(&store, &a).await.unwrap().version.unwrap();
    let vb = train_model(&store, &b).await.unwrap().version.unwrap();
    let (ma, mb) = (
        store.model_version(&model, va).await.unwrap(),
        store.model_version(&model, vb).await.unwrap(),
    );
    assert_eq!(ma.files["model.json"].sha256, mb.files["model.json"].sha256);
    assert_eq!(
        ma.files["preprocessing.json"].sha256,
        mb.files["preprocessing.json"].sha256
    );
    // The lineage records the exact table versions read.
    let tables: Vec<String> = ma.lineage.tables.iter().map(|t| format!("{t:?}")).collect();
    assert_eq!(tables.len(), 2, "{tables:?}");
}

#[tokio::test]
async fn rerunning_the_same_training_run_registers_nothing_new() {
    let store = store().await;
    let text = spec("logistic_regression", "alpha = 1.0", GOOD);
    let first = train_model(&store, &job(&text)).await.unwrap();
    let again = train_model(&store, &job(&text)).await.unwrap();
    assert_eq!(again.status, RunStatus::AlreadyDone);
    assert_eq!(again.version, first.version);
    assert_eq!(store.model_versions(&names().0).await.unwrap(), [1]);
}

#[tokio::test]
async fn every_classifier_trains_and_reports_probabilities() {
    let store = store().await;
    for (algorithm, params) in [
        ("gbm", "iterations = 20"),
        ("logistic_regression", "alpha = 1.0"),
        ("random_forest", "n_trees = 6\nmax_depth = 4"),
        ("decision_tree", "max_depth = 4"),
        ("knn", "k = 15"),
    ] {
        let mut j = job(&spec(algorithm, params, GOOD));
        j.dry_run = true;
        let summary = train_model(&store, &j).await.unwrap();
        let auc = summary.metrics["roc_auc"];
        assert!(auc > 0.75, "{algorithm}: roc_auc {auc}");
        for metric in [
            "accuracy",
            "precision",
            "recall",
            "f1",
            "pr_auc",
            "log_loss",
            "brier",
        ] {
            assert!(summary.metrics[metric].is_finite(), "{algorithm}: {metric}");
        }
        assert_eq!(summary.baseline["roc_auc"], 0.5);
    }
}

#[tokio::test]
async fn multiclass_and_regression_work_by_spec_alone() {
    let store = store().await;
    let multiclass = spec("gbm", "iterations = 30", GOOD)
        .replace("task = \"binary\"", "task = \"multiclass\"")
        .replace("column = \"label\"", "column = \"tier\"")
        .replace(
            "metric = \"roc_auc\"\nmin = 0.5",
            "metric = \"accuracy\"\nmin = 0.5",
        )
        .replace(
            "[gate.champion]\nmetric = \"roc_auc\"",
            "[gate.champion]\nmetric = \"accuracy\"",
        );
    for algorithm in ["gbm", "logistic_regression", "random_forest"] {
        let text = multiclass
            .replace("name = \"gbm\"", &format!("name = \"{algorithm}\""))
            .replace(
                "iterations = 30",
                if algorithm == "random_forest" {
                    "n_trees = 6\nmax_depth = 6"
                } else if algorithm == "gbm" {
                    "iterations = 30"
                } else {
                    ""
                },
            );
        let mut j = job(&text);
        j.dry_run = true;
        let s = train_model(&store, &j).await.unwrap();
        assert!(
            s.metrics["accuracy"] > s.baseline["accuracy"] + 0.2,
            "{algorithm}: {:?} vs {:?}",
            s.metrics,
            s.baseline
        );
        assert!(
            s.metrics["macro_f1"] > 0.5 && s.metrics["log_loss"].is_finite(),
            "{algorithm}: {:?}",
            s.metrics
        );
    }
    let regression = spec("gbm", "iterations = 40", GOOD)
        .replace("task = \"binary\"", "task = \"regression\"")
        .replace("column = \"label\"", "column = \"amount\"")
        .replace(
            "metric = \"roc_auc\"\nmin = 0.5",
            "metric = \"r2\"\nmin = 0.5",
        )
        .replace(
            "[gate.champion]\nmetric = \"roc_auc\"",
            "[gate.champion]\nmetric = \"rmse\"",
        );
    for (algorithm, params) in [
        ("gbm", "iterations = 40"),
        ("linear", ""),
        ("ridge", "alpha = 0.1"),
        ("random_forest", "n_trees = 6\nmax_depth = 6"),
        ("knn", "k = 10"),
    ] {
        let text = regression
            .replace("name = \"gbm\"", &format!("name = \"{algorithm}\""))
            .replace("iterations = 40", params);
        let mut j = job(&text);
        j.dry_run = true;
        let s = train_model(&store, &j).await.unwrap();
        assert!(s.metrics["r2"] > 0.9, "{algorithm}: {:?}", s.metrics);
        assert!(
            s.metrics["rmse"] < s.baseline["rmse"] / 2.0,
            "{algorithm}: {:?} vs {:?}",
            s.metrics,
            s.baseline
        );
    }
}
