//! Evaluation on the held-out test split, beside a constant baseline.

use std::collections::BTreeMap;

use fti_learn::Matrix;
use fti_learn::model::{Scores, Target, Task};
use serde::Serialize;

/// Everything the report and the gate need.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub rows: usize,
    pub metrics: BTreeMap<String, f64>,
    /// The same metrics for a constant predictor (training class rates or mean).
    pub baseline: BTreeMap<String, f64>,
    pub classes: Vec<String>,
    /// `confusion[actual][predicted]`.
    pub confusion: Vec<Vec<u64>>,
    /// ROC curve points (false positive rate, true positive rate), binary only.
    pub roc: Vec<(f64, f64)>,
    /// Reliability: per probability decile, (mean predicted, observed rate, count).
    pub calibration: Vec<(f64, f64, u64)>,
    /// Regression: a sample of (predicted, actual).
    pub residuals: Vec<(f64, f64)>,
}

/// ROC AUC of scores against 0/1 labels, ties handled as half (Mann-Whitney).
pub fn roc_auc(scores: &[f64], positive: &[bool]) -> f64 {
    roc_points(scores, positive).1
}

fn sorted_desc(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    order
}

/// (curve points, area) of the ROC curve.
fn roc_points(scores: &[f64], positive: &[bool]) -> (Vec<(f64, f64)>, f64) {
    let pos = positive.iter().filter(|p| **p).count() as f64;
    let neg = positive.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return (vec![(0.0, 0.0), (1.0, 1.0)], f64::NAN);
    }
    let order = sorted_desc(scores);
    let (mut tp, mut fp, mut area) = (0.0, 0.0, 0.0);
    let mut points = vec![(0.0, 0.0)];
    let mut i = 0;
    while i < order.len() {
        let s = scores[order[i]];
        let (tp0, fp0) = (tp, fp);
        while i < order.len() && scores[order[i]] == s {
            if positive[order[i]] {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            i += 1;
        }
        area += (fp - fp0) / neg * (tp + tp0) / 2.0 / pos;
        points.push((fp / neg, tp / pos));
    }
    (downsample(points, 200), area)
}

fn downsample(points: Vec<(f64, f64)>, n: usize) -> Vec<(f64, f64)> {
    if points.len() <= n {
        return points;
    }
    let step = points.len() as f64 / n as f64;
    let mut out: Vec<(f64, f64)> = (0..n).map(|i| points[(i as f64 * step) as usize]).collect();
    out.push(*points.last().expect("not empty"));
    out
}

/// Average precision (area under the precision-recall curve, step-wise as scikit-learn).
pub fn pr_auc(scores: &[f64], positive: &[bool]) -> f64 {
    let pos = positive.iter().filter(|p| **p).count() as f64;
    if pos == 0.0 {
        return f64::NAN;
    }
    let order = sorted_desc(scores);
    let (mut tp, mut fp, mut ap, mut last_recall) = (0.0, 0.0, 0.0, 0.0);
    let mut i = 0;
    while i < order.len() {
        let s = scores[order[i]];
        while i < order.len() && scores[order[i]] == s {
            if positive[order[i]] {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            i += 1;
        }
        let recall = tp / pos;
        ap += (recall - last_recall) * tp / (tp + fp);
        last_recall = recall;
    }
    ap
}

fn log_loss(probs: &Matrix, index: &[usize]) -> f64 {
    let eps = 1e-15;
    index
        .iter()
        .enumerate()
        .map(|(r, &c)| -probs.row(r)[c].clamp(eps, 1.0 - eps).ln())
        .sum::<f64>()
        / index.len().max(1) as f64
}

fn argmax(row: &[f64]) -> usize {
    row.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

fn classification(
    probs: &Matrix,
    index: &[usize],
    k: usize,
) -> (BTreeMap<String, f64>, Vec<Vec<u64>>) {
    let mut m = BTreeMap::new();
    let n = index.len().max(1) as f64;
    let mut confusion = vec![vec![0u64; k]; k];
    for (r, &actual) in index.iter().enumerate() {
        // Binary: positive at p >= 0.5, as the peer reports accuracy.
        let predicted = if k == 2 {
            usize::from(probs.row(r)[1] >= 0.5)
        } else {
            argmax(probs.row(r))
        };
        confusion[actual][predicted] += 1;
    }
    let correct: u64 = (0..k).map(|c| confusion[c][c]).sum();
    m.insert("accuracy".into(), correct as f64 / n);
    m.insert("log_loss".into(), log_loss(probs, index));
    let prf = |c: usize| {
        let tp = confusion[c][c] as f64;
        let predicted: f64 = (0..k).map(|a| confusion[a][c] as f64).sum();
        let actual: f64 = confusion[c].iter().sum::<u64>() as f64;
        let p = if predicted > 0.0 { tp / predicted } else { 0.0 };
        let r = if actual > 0.0 { tp / actual } else { 0.0 };
        let f = if p + r > 0.0 {
            2.0 * p * r / (p + r)
        } else {
            0.0
        };
        (p, r, f)
    };
    if k == 2 {
        let (p, r, f) = prf(1);
        m.insert("precision".into(), p);
        m.insert("recall".into(), r);
        m.insert("f1".into(), f);
        let scores: Vec<f64> = (0..index.len()).map(|r| probs.row(r)[1]).collect();
        let positive: Vec<bool> = index.iter().map(|&c| c == 1).collect();
        m.insert("roc_auc".into(), roc_auc(&scores, &positive));
        m.insert("pr_auc".into(), pr_auc(&scores, &positive));
        let brier = scores
            .iter()
            .zip(&positive)
            .map(|(s, &p)| (s - f64::from(u8::from(p))).powi(2))
            .sum::<f64>()
            / n;
        m.insert("brier".into(), brier);
    } else {
        let all: Vec<(f64, f64, f64)> = (0..k).map(prf).collect();
        m.insert(
            "macro_precision".into(),
            all.iter().map(|x| x.0).sum::<f64>() / k as f64,
        );
        m.insert(
            "macro_recall".into(),
            all.iter().map(|x| x.1).sum::<f64>() / k as f64,
        );
        m.insert(
            "macro_f1".into(),
            all.iter().map(|x| x.2).sum::<f64>() / k as f64,
        );
        let aucs: Vec<f64> = (0..k)
            .map(|c| {
                let scores: Vec<f64> = (0..index.len()).map(|r| probs.row(r)[c]).collect();
                let positive: Vec<bool> = index.iter().map(|&a| a == c).collect();
                roc_auc(&scores, &positive)
            })
            .filter(|a| a.is_finite())
            .collect();
        m.insert(
            "roc_auc".into(),
            aucs.iter().sum::<f64>() / aucs.len().max(1) as f64,
        );
    }
    (m, confusion)
}

fn regression(pred: &[f64], actual: &[f64]) -> BTreeMap<String, f64> {
    let n = actual.len().max(1) as f64;
    let mean = actual.iter().sum::<f64>() / n;
    let sse: f64 = pred.iter().zip(actual).map(|(p, a)| (p - a).powi(2)).sum();
    let sst: f64 = actual.iter().map(|a| (a - mean).powi(2)).sum();
    BTreeMap::from([
        ("rmse".to_string(), (sse / n).sqrt()),
        (
            "mae".to_string(),
            pred.iter()
                .zip(actual)
                .map(|(p, a)| (p - a).abs())
                .sum::<f64>()
                / n,
        ),
        (
            "r2".to_string(),
            if sst > 0.0 { 1.0 - sse / sst } else { 0.0 },
        ),
    ])
}

/// Evaluates `scores` against `target`; `train` gives the baseline's constant prediction.
pub fn evaluate(task: Task, scores: &Scores, target: &Target, train: &Target) -> Evaluation {
    match (scores, target, train) {
        (
            Scores::Probabilities { classes, probs },
            Target::Classes { index, .. },
            Target::Classes {
                index: train_index, ..
            },
        ) => {
            let k = classes.len();
            let (metrics, confusion) = classification(probs, index, k);
            let mut rates = vec![0.0; k];
            for &c in train_index {
                rates[c] += 1.0 / train_index.len().max(1) as f64;
            }
            let constant = Matrix {
                rows: index.len(),
                cols: k,
                data: (0..index.len())
                    .flat_map(|_| rates.iter().copied())
                    .collect(),
            };
            let (baseline, _) = classification(&constant, index, k);
            let mut calibration = Vec::new();
            if k == 2 {
                let mut bins = vec![(0.0, 0.0, 0u64); 10];
                for (r, &c) in index.iter().enumerate() {
                    let p = probs.row(r)[1];
                    let b = ((p * 10.0) as usize).min(9);
                    bins[b].0 += p;
                    bins[b].1 += f64::from(u8::from(c == 1));
                    bins[b].2 += 1;
                }
                calibration = bins
                    .into_iter()
                    .filter(|b| b.2 > 0)
                    .map(|(s, o, n)| (s / n as f64, o / n as f64, n))
                    .collect();
            }
            let roc = if k == 2 {
                let scores: Vec<f64> = (0..index.len()).map(|r| probs.row(r)[1]).collect();
                let positive: Vec<bool> = index.iter().map(|&c| c == 1).collect();
                roc_points(&scores, &positive).0
            } else {
                Vec::new()
            };
            Evaluation {
                rows: index.len(),
                metrics,
                baseline,
                classes: classes.clone(),
                confusion,
                roc,
                calibration,
                residuals: Vec::new(),
            }
        }
        (Scores::Values(pred), Target::Values(actual), Target::Values(train_values)) => {
            let mean = train_values.iter().sum::<f64>() / train_values.len().max(1) as f64;
            let step = (actual.len() / 2000).max(1);
            Evaluation {
                rows: actual.len(),
                metrics: regression(pred, actual),
                baseline: regression(&vec![mean; actual.len()], actual),
                classes: Vec::new(),
                confusion: Vec::new(),
                roc: Vec::new(),
                calibration: Vec::new(),
                residuals: pred
                    .iter()
                    .zip(actual)
                    .step_by(step)
                    .map(|(p, a)| (*p, *a))
                    .collect(),
            }
        }
        _ => {
            let _ = task;
            unreachable!("scores, target and task agree by construction")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_matches_pairwise_definition() {
        let scores = [0.1, 0.4, 0.35, 0.8, 0.4, 0.9, 0.2];
        let labels = [false, false, true, true, true, true, false];
        // Fraction of (positive, negative) pairs ranked correctly, ties counting half.
        let mut pairs = 0.0;
        let mut good = 0.0;
        for i in 0..7 {
            for j in 0..7 {
                if labels[i] && !labels[j] {
                    pairs += 1.0;
                    good += if scores[i] > scores[j] {
                        1.0
                    } else if scores[i] == scores[j] {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
        }
        assert!((roc_auc(&scores, &labels) - good / pairs).abs() < 1e-12);
    }

    #[test]
    fn perfect_and_constant_predictions() {
        let probs = Matrix {
            rows: 4,
            cols: 2,
            data: vec![0.9, 0.1, 0.8, 0.2, 0.3, 0.7, 0.1, 0.9],
        };
        let target = Target::Classes {
            index: vec![0, 0, 1, 1],
            classes: vec!["f".into(), "t".into()],
        };
        let e = evaluate(
            Task::Binary,
            &Scores::Probabilities {
                classes: vec!["f".into(), "t".into()],
                probs,
            },
            &target,
            &target,
        );
        assert_eq!(e.metrics["roc_auc"], 1.0);
        assert_eq!(e.metrics["accuracy"], 1.0);
        assert_eq!(e.metrics["pr_auc"], 1.0);
        assert_eq!(e.baseline["roc_auc"], 0.5);
        assert!((e.baseline["log_loss"] - 2f64.ln()).abs() < 1e-12);
        assert_eq!(e.confusion, vec![vec![2, 0], vec![0, 2]]);
    }

    #[test]
    fn regression_metrics() {
        let e = regression(&[1.0, 2.0, 3.0], &[1.0, 2.0, 5.0]);
        assert!((e["rmse"] - (4.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert!((e["mae"] - 2.0 / 3.0).abs() < 1e-12);
    }
}
