//! Training-serving skew: the scored inputs compared with the training inputs' statistics
//! stored with the model, and the distribution of the predictions.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use serde_json::{Value, json};
use storage::TableStatistics;

use crate::config::MonitoringSection;

/// The monitoring report and the thresholds it failed.
pub struct Monitoring {
    pub report: Value,
    pub failures: Vec<String>,
}

/// Compares scored input statistics with the training reference.
pub fn compare(
    training: Option<&TableStatistics>,
    scored: &TableStatistics,
    samples: &HashMap<String, Vec<f64>>,
    unseen: &BTreeMap<String, usize>,
    predictions: &storage::ColumnStatistics,
    thresholds: &MonitoringSection,
) -> Monitoring {
    let mut features = Vec::new();
    let mut failures = Vec::new();
    for (name, now) in &scored.columns {
        let reference = training.and_then(|t| t.columns.get(name));
        let null_rate = now.null_count as f64 / scored.num_rows.max(1) as f64;
        let train_null_rate = reference
            .map(|r| r.null_count as f64 / training.map_or(1, |t| t.num_rows.max(1)) as f64);
        let (psi, ks) = match (
            reference.and_then(|r| r.histogram.as_ref()),
            samples.get(name),
        ) {
            (Some(h), Some(sample)) if !sample.is_empty() => (
                Some(fti_stats::psi(h, sample)),
                Some(fti_stats::ks(h, sample)),
            ),
            _ => (None, None),
        };
        let category_distance = match reference {
            Some(r) if !r.top_values.is_empty() && !now.top_values.is_empty() => {
                Some(fti_stats::category_distance(&r.top_values, &now.top_values))
            }
            _ => None,
        };
        let unseen_count = unseen.get(name).copied().unwrap_or(0);
        let unseen_fraction = unseen_count as f64 / scored.num_rows.max(1) as f64;
        if let (Some(max), Some(psi)) = (thresholds.max_psi, psi)
            && psi > max
        {
            failures.push(format!("feature {name:?}: psi {psi:.4} > {max}"));
        }
        if let (Some(max), Some(train)) = (thresholds.max_null_rate_increase, train_null_rate)
            && null_rate - train > max
        {
            failures.push(format!(
                "feature {name:?}: null rate {null_rate:.4} vs {train:.4} in training (> +{max})"
            ));
        }
        if let Some(max) = thresholds.max_unseen_fraction
            && unseen_fraction > max
        {
            failures.push(format!(
                "feature {name:?}: {unseen_fraction:.4} of values unseen in training (> {max})"
            ));
        }
        features.push(json!({
            "feature": name,
            "psi": psi,
            "ks": ks,
            "null_rate": null_rate,
            "training_null_rate": train_null_rate,
            "mean": now.mean,
            "training_mean": reference.and_then(|r| r.mean),
            "category_distance": category_distance,
            "unseen": unseen_count,
        }));
    }
    Monitoring {
        report: json!({
            "rows": scored.num_rows,
            "reference": if training.is_some() { "training_statistics.json of the model version" } else { "none (the model has no training statistics)" },
            "features": features,
            "predictions": predictions,
            "thresholds": {"max_psi": thresholds.max_psi, "max_null_rate_increase": thresholds.max_null_rate_increase, "max_unseen_fraction": thresholds.max_unseen_fraction, "fail": thresholds.fail},
            "failures": failures,
        }),
        failures,
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A readable page of the report: per-feature drift with bars, and the prediction histogram.
pub fn html(title: &str, report: &Value) -> String {
    let mut rows = String::new();
    for f in report["features"].as_array().into_iter().flatten() {
        let psi = f["psi"].as_f64();
        let width = psi.map_or(0.0, |p| (p / 0.5).min(1.0) * 200.0);
        let color = match psi {
            Some(p) if p > 0.25 => "#d62728",
            Some(p) if p > 0.1 => "#ff7f0e",
            _ => "#2ca02c",
        };
        let num = |v: &Value| v.as_f64().map_or("–".to_string(), |x| format!("{x:.4}"));
        let _ = write!(
            rows,
            r##"<tr><td>{}</td><td>{}<svg width="210" height="12"><rect width="{width:.1}" height="12" fill="{color}"/></svg></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"##,
            esc(f["feature"].as_str().unwrap_or_default()),
            num(&f["psi"]),
            num(&f["ks"]),
            num(&f["null_rate"]),
            num(&f["training_null_rate"]),
            num(&f["mean"]),
            num(&f["training_mean"]),
            f["unseen"],
        );
    }
    let mut hist = String::new();
    if let Some(h) = report["predictions"]["histogram"].as_object() {
        let counts: Vec<f64> = h["counts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_f64)
            .collect();
        let edges: Vec<f64> = h["edges"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_f64)
            .collect();
        let max = counts.iter().copied().fold(1.0, f64::max);
        let _ = write!(
            hist,
            r#"<svg width="440" height="180" role="img" aria-label="prediction histogram">"#
        );
        for (i, c) in counts.iter().enumerate() {
            let h = c / max * 150.0;
            let _ = write!(
                hist,
                r##"<rect x="{}" y="{:.1}" width="20" height="{h:.1}" fill="#1f77b4"><title>[{:.3}, {:.3}): {c}</title></rect>"##,
                10 + i * 21,
                160.0 - h,
                edges[i],
                edges.get(i + 1).copied().unwrap_or(f64::NAN)
            );
        }
        if let (Some(lo), Some(hi)) = (edges.first(), edges.last()) {
            let _ = write!(
                hist,
                r#"<text x="10" y="176" font-size="11">{lo:.3}</text><text x="400" y="176" font-size="11">{hi:.3}</text>"#
            );
        }
        hist += "</svg>";
    }
    let failures: Vec<String> = report["failures"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(esc))
        .collect();
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body {{ font-family: system-ui, sans-serif; margin: 2em; }} table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }} .bad {{ color: #c33; }}</style></head><body>
<h1>{title}</h1><p>{rows_scored} entities scored; reference: {reference}</p>
<p class="{cls}">{verdict}</p>
<h2>Inputs: training-serving skew</h2>
<table><tr><th>feature</th><th>PSI</th><th>KS</th><th>null rate</th><th>training null rate</th><th>mean</th><th>training mean</th><th>unseen</th></tr>{rows}</table>
<h2>Prediction distribution</h2>{hist}
</body></html>"#,
        title = esc(title),
        rows_scored = report["rows"],
        reference = esc(report["reference"].as_str().unwrap_or_default()),
        cls = if failures.is_empty() { "" } else { "bad" },
        verdict = if failures.is_empty() {
            "All monitoring thresholds passed.".to_string()
        } else {
            format!("Thresholds failed: {}", failures.join("; "))
        },
    )
}
