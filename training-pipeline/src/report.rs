//! The HTML report stored with every model version: self-contained (inline SVG, no scripts,
//! no network), so it opens offline from the store.

use std::fmt::Write;

use crate::metrics::Evaluation;

/// What the report shows besides the evaluation.
pub struct ReportContext<'a> {
    pub model: &'a str,
    pub version: Option<u64>,
    pub algorithm: &'a str,
    pub task: &'a str,
    pub verdict: &'a str,
    pub gate: &'a serde_json::Value,
    pub importance: Option<Vec<(String, f64)>>,
    pub train_rows: usize,
    pub tables: &'a [storage::ObjectRef],
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const W: f64 = 320.0;
const H: f64 = 320.0;
const PAD: f64 = 40.0;

fn axes(title: &str, x: &str, y: &str) -> String {
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{tw}" height="{th}" role="img" aria-label="{title}">
<text x="{cx}" y="16" text-anchor="middle" font-weight="bold">{title}</text>
<rect x="{PAD}" y="{PAD}" width="{W}" height="{H}" fill="#fafafa" stroke="#999"/>
<text x="{cx}" y="{bx}" text-anchor="middle" font-size="12">{x}</text>
<text x="12" y="{cy}" text-anchor="middle" font-size="12" transform="rotate(-90 12 {cy})">{y}</text>
"##,
        tw = W + 2.0 * PAD,
        th = H + 2.0 * PAD,
        cx = PAD + W / 2.0,
        cy = PAD + H / 2.0,
        bx = H + 2.0 * PAD - 8.0,
        title = esc(title),
        x = esc(x),
        y = esc(y),
    )
}

fn px(v: f64, lo: f64, hi: f64) -> f64 {
    PAD + (v - lo) / (hi - lo).max(1e-12) * W
}

fn py(v: f64, lo: f64, hi: f64) -> f64 {
    PAD + H - (v - lo) / (hi - lo).max(1e-12) * H
}

fn polyline(points: &[(f64, f64)], color: &str, dashed: bool) -> String {
    let pts: Vec<String> = points
        .iter()
        .map(|(x, y)| format!("{:.1},{:.1}", px(*x, 0.0, 1.0), py(*y, 0.0, 1.0)))
        .collect();
    format!(
        r#"<polyline fill="none" stroke="{color}" stroke-width="2" {} points="{}"/>"#,
        if dashed {
            r#"stroke-dasharray="4 4""#
        } else {
            ""
        },
        pts.join(" ")
    )
}

fn roc_svg(e: &Evaluation) -> String {
    let mut s = axes(
        &format!(
            "ROC curve (AUC {:.4})",
            e.metrics.get("roc_auc").copied().unwrap_or(f64::NAN)
        ),
        "false positive rate",
        "true positive rate",
    );
    s += &polyline(&[(0.0, 0.0), (1.0, 1.0)], "#bbb", true);
    s += &polyline(&e.roc, "#1f77b4", false);
    s + "</svg>"
}

fn calibration_svg(e: &Evaluation) -> String {
    let mut s = axes(
        "Calibration",
        "mean predicted probability",
        "observed positive rate",
    );
    s += &polyline(&[(0.0, 0.0), (1.0, 1.0)], "#bbb", true);
    let pts: Vec<(f64, f64)> = e.calibration.iter().map(|(p, o, _)| (*p, *o)).collect();
    s += &polyline(&pts, "#d62728", false);
    for (p, o, n) in &e.calibration {
        let _ = write!(
            s,
            r##"<circle cx="{:.1}" cy="{:.1}" r="4" fill="#d62728"><title>{n} examples</title></circle>"##,
            px(*p, 0.0, 1.0),
            py(*o, 0.0, 1.0)
        );
    }
    s + "</svg>"
}

fn residual_svg(e: &Evaluation) -> String {
    let lo = e
        .residuals
        .iter()
        .flat_map(|(p, a)| [*p, *a])
        .fold(f64::INFINITY, f64::min);
    let hi = e
        .residuals
        .iter()
        .flat_map(|(p, a)| [*p, *a])
        .fold(f64::NEG_INFINITY, f64::max);
    let mut s = axes("Predicted vs actual", "predicted", "actual");
    let _ = write!(
        s,
        r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#bbb" stroke-dasharray="4 4"/>"##,
        px(lo, lo, hi),
        py(lo, lo, hi),
        px(hi, lo, hi),
        py(hi, lo, hi)
    );
    for (p, a) in &e.residuals {
        let _ = write!(
            s,
            r##"<circle cx="{:.1}" cy="{:.1}" r="2" fill="#1f77b4" fill-opacity="0.5"/>"##,
            px(*p, lo, hi),
            py(*a, lo, hi)
        );
    }
    s + "</svg>"
}

fn importance_svg(items: &[(String, f64)]) -> String {
    let max = items.iter().map(|(_, v)| *v).fold(0.0, f64::max).max(1e-12);
    let row = 18.0;
    let label_w = 220.0;
    let height = items.len() as f64 * row + 30.0;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{height}" role="img" aria-label="Feature importance"><text x="4" y="14" font-weight="bold">Feature importance</text>"#,
        label_w + 260.0
    );
    for (i, (name, v)) in items.iter().enumerate() {
        let y = 24.0 + i as f64 * row;
        let w = v / max * 240.0;
        let _ = write!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end" font-size="12">{}</text><rect x="{label_w}" y="{:.1}" width="{w:.1}" height="{:.1}" fill="#2ca02c"><title>{v:.4}</title></rect>"##,
            label_w - 6.0,
            y + 12.0,
            esc(name),
            y + 2.0,
            row - 4.0
        );
    }
    s + "</svg>"
}

fn confusion_table(e: &Evaluation) -> String {
    let max = e
        .confusion
        .iter()
        .flatten()
        .copied()
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let mut s = String::from("<table class=\"confusion\"><tr><th>actual \\ predicted</th>");
    for c in &e.classes {
        let _ = write!(s, "<th>{}</th>", esc(c));
    }
    s += "</tr>";
    for (i, row) in e.confusion.iter().enumerate() {
        let _ = write!(s, "<tr><th>{}</th>", esc(&e.classes[i]));
        for &n in row {
            let shade = 255.0 - 150.0 * n as f64 / max;
            let _ = write!(
                s,
                r##"<td style="background: rgb({shade:.0},{shade:.0},255)">{n}</td>"##
            );
        }
        s += "</tr>";
    }
    s + "</table>"
}

/// Renders the report.
pub fn render(ctx: &ReportContext, e: &Evaluation) -> String {
    let mut metrics =
        String::from("<table><tr><th>metric</th><th>model</th><th>baseline</th></tr>");
    for (name, v) in &e.metrics {
        let b = e
            .baseline
            .get(name)
            .map_or(String::new(), |b| format!("{b:.5}"));
        let _ = write!(
            metrics,
            "<tr><td>{}</td><td><b>{v:.5}</b></td><td>{b}</td></tr>",
            esc(name)
        );
    }
    metrics += "</table>";
    let mut plots = String::new();
    if !e.roc.is_empty() {
        plots += &roc_svg(e);
    }
    if !e.calibration.is_empty() {
        plots += &calibration_svg(e);
    }
    if !e.residuals.is_empty() {
        plots += &residual_svg(e);
    }
    let importance = ctx
        .importance
        .as_ref()
        .map(|items| importance_svg(items))
        .unwrap_or_else(|| "<p>This algorithm reports no feature importance.</p>".into());
    let tables: Vec<String> = ctx
        .tables
        .iter()
        .map(|t| match t {
            storage::ObjectRef::Table { name, version } => format!("{} v{version}", esc(name)),
            other => esc(&format!("{other:?}")),
        })
        .collect();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{model} v{version} — model report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }} td, th {{ border: 1px solid #ccc; padding: 4px 10px; text-align: right; }}
.verdict {{ font-size: 1.3em; font-weight: bold; }} .accepted {{ color: #2a7; }} .rejected {{ color: #c33; }}
.plots svg {{ margin: 0 1em 1em 0; }} pre {{ background: #f5f5f5; padding: 1em; overflow: auto; }}
</style></head><body>
<h1 id="title">{model} — version {version}</h1>
<p>{algorithm} · {task} · trained on {train_rows} examples from {tables} · evaluated on {rows} held-out test examples</p>
<p class="verdict {verdict}">Gate verdict: {verdict}</p>
<h2>Test metrics</h2>{metrics}
<div class="plots">{plots}</div>
<h2>Confusion matrix</h2>{confusion}
<h2>Feature importance</h2>{importance}
<h2>Gate</h2><pre>{gate}</pre>
</body></html>
"#,
        model = esc(ctx.model),
        version = ctx.version.map_or("?".to_string(), |v| v.to_string()),
        algorithm = esc(ctx.algorithm),
        task = esc(ctx.task),
        train_rows = ctx.train_rows,
        tables = tables.join(", "),
        rows = e.rows,
        verdict = esc(ctx.verdict),
        confusion = if e.confusion.is_empty() {
            "<p>(regression)</p>".to_string()
        } else {
            confusion_table(e)
        },
        gate = esc(&serde_json::to_string_pretty(ctx.gate).unwrap_or_default()),
    )
}
