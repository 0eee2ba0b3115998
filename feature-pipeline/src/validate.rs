//! Validation rules, checked on the query output before anything is committed.
//!
//! Most rules are judged from the statistics computed in the same pass (null counts, min,
//! max, NaN counts); uniqueness and allowed values need their own streaming state.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Schema};
use arrow::row::{RowConverter, SortField};
use serde_json::json;
use storage::{RuleResult, TableStatistics, ValidationReport};

use crate::config::{DriftMethod, GroupConfig, RuleConfig, RuleKind};

/// Streaming state of a group's rules.
pub struct Validator {
    group: String,
    rules: Vec<RuleConfig>,
    key_columns: Vec<String>,
    converter: Option<RowConverter>,
    /// Key columns the input is sorted by (see [`Validator::new`]), their encoder, and the
    /// current run of their values.
    sorted_by: Vec<String>,
    run_converter: Option<RowConverter>,
    run: Option<Vec<u8>>,
    /// Hashes of the (entity, event time) keys seen (in the current run when sorted).
    seen: HashSet<u64, foldhash::fast::FixedState>,
    duplicates: u64,
    first_duplicate: Option<String>,
    allowed: HashMap<usize, AllowedState>,
}

struct AllowedState {
    values: HashSet<String>,
    violations: u64,
    example: Option<String>,
}

impl Validator {
    /// `sorted_by`: key columns the rows arrive sorted by, as the query plan reports its output
    /// ordering (its leading key columns); equal keys are then adjacent within each run of
    /// equal values of those columns, so uniqueness only remembers the current run.
    pub fn new(group: &str, config: &GroupConfig, schema: &Schema, sorted_by: &[String]) -> Self {
        let mut key_columns = config.entity_keys.clone();
        key_columns.push(config.event_time.clone());
        let wants_unique = config.rules.iter().any(|r| r.rule == RuleKind::UniqueKey);
        let converter_for = |columns: &[String]| {
            let fields = columns
                .iter()
                .filter_map(|k| schema.field_with_name(k).ok())
                .map(|f| SortField::new(f.data_type().clone()))
                .collect();
            RowConverter::new(fields).ok()
        };
        let converter = wants_unique.then(|| converter_for(&key_columns)).flatten();
        // Only a leading run of key columns counts: a non-key column before them breaks it.
        let sorted_by: Vec<String> = sorted_by
            .iter()
            .take_while(|c| key_columns.contains(c))
            .cloned()
            .collect();
        let run_converter = (wants_unique && !sorted_by.is_empty())
            .then(|| converter_for(&sorted_by))
            .flatten();
        let allowed = config
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.rule == RuleKind::AllowedValues)
            .map(|(i, r)| {
                let values = r.values.iter().flatten().cloned().collect();
                (
                    i,
                    AllowedState {
                        values,
                        violations: 0,
                        example: None,
                    },
                )
            })
            .collect();
        Validator {
            group: group.to_string(),
            rules: config.rules.clone(),
            key_columns,
            converter,
            sorted_by,
            run_converter,
            run: None,
            seen: HashSet::default(),
            duplicates: 0,
            first_duplicate: None,
            allowed,
        }
    }

    pub fn update(&mut self, batch: &RecordBatch) {
        if let Some(converter) = &self.converter {
            let columns: Vec<_> = self
                .key_columns
                .iter()
                .filter_map(|k| batch.column_by_name(k).cloned())
                .collect();
            let runs = self.run_converter.as_ref().and_then(|c| {
                let columns: Vec<_> = self
                    .sorted_by
                    .iter()
                    .filter_map(|k| batch.column_by_name(k).cloned())
                    .collect();
                c.convert_columns(&columns).ok()
            });
            if let Ok(rows) = converter.convert_columns(&columns) {
                for (i, row) in rows.iter().enumerate() {
                    if let Some(runs) = &runs {
                        let new_run = match i {
                            0 => self.run.as_deref() != Some(runs.row(0).as_ref()),
                            _ => runs.row(i) != runs.row(i - 1),
                        };
                        if new_run {
                            // A new run of the sorted columns: no earlier key can recur.
                            self.seen.clear();
                        }
                    }
                    if !self.seen.insert(self.seen.hasher().hash_one(row.as_ref())) {
                        self.duplicates += 1;
                        if self.first_duplicate.is_none() {
                            self.first_duplicate =
                                Some(describe_row(&columns, &self.key_columns, i));
                        }
                    }
                }
                if let Some(runs) = &runs
                    && runs.num_rows() > 0
                {
                    self.run = Some(runs.row(runs.num_rows() - 1).as_ref().to_vec());
                }
            }
        }
        for (i, state) in &mut self.allowed {
            let Some(column) = self.rules[*i]
                .column
                .as_deref()
                .and_then(|c| batch.column_by_name(c))
            else {
                continue;
            };
            let Ok(strings) = arrow::compute::cast(column, &DataType::Utf8) else {
                continue;
            };
            for value in strings.as_string::<i32>().iter().flatten() {
                if !state.values.contains(value) {
                    state.violations += 1;
                    state.example.get_or_insert_with(|| value.to_string());
                }
            }
        }
    }

    /// Judges every rule. `previous` is the statistics of the previous committed version.
    pub fn finish(
        self,
        schema: &Schema,
        stats: &TableStatistics,
        samples: &HashMap<String, Vec<f64>>,
        previous: Option<&TableStatistics>,
    ) -> ValidationReport {
        let mut report = ValidationReport::default();
        for (i, rule) in self.rules.iter().enumerate() {
            let column = rule.column.clone();
            let col_stats = column.as_deref().and_then(|c| stats.columns.get(c));
            let (passed, measured, limit, what) = match rule.rule {
                RuleKind::RequiredColumns => {
                    let missing: Vec<&String> = rule
                        .columns
                        .iter()
                        .flatten()
                        .filter(|c| schema.field_with_name(c).is_err())
                        .collect();
                    (
                        missing.is_empty(),
                        json!(missing),
                        json!("all present"),
                        "missing columns".to_string(),
                    )
                }
                RuleKind::ForbiddenColumns => {
                    let present: Vec<&String> = rule
                        .columns
                        .iter()
                        .flatten()
                        .filter(|c| schema.field_with_name(c).is_ok())
                        .collect();
                    (
                        present.is_empty(),
                        json!(present),
                        json!("none present"),
                        "forbidden columns present".to_string(),
                    )
                }
                RuleKind::NotNull => {
                    let nulls = col_stats.map_or(0, |s| s.null_count);
                    (
                        nulls == 0,
                        json!(nulls),
                        json!(0),
                        "null values".to_string(),
                    )
                }
                RuleKind::MaxNullFraction => {
                    let nulls = col_stats.map_or(0, |s| s.null_count);
                    let fraction = nulls as f64 / stats.num_rows.max(1) as f64;
                    let max = rule.max.unwrap_or(0.0);
                    (
                        fraction <= max,
                        json!(fraction),
                        json!(format!("<= {max}")),
                        "null fraction".to_string(),
                    )
                }
                RuleKind::Range => {
                    let (lo, hi) = (col_stats.and_then(|s| s.min), col_stats.and_then(|s| s.max));
                    let below = rule.min.is_some_and(|m| lo.is_some_and(|v| v < m));
                    let above = rule.max.is_some_and(|m| hi.is_some_and(|v| v > m));
                    let limit = match (rule.min, rule.max) {
                        (Some(a), Some(b)) => format!("[{a}, {b}]"),
                        (Some(a), None) => format!(">= {a}"),
                        (None, Some(b)) => format!("<= {b}"),
                        (None, None) => String::new(),
                    };
                    (
                        !below && !above,
                        json!({"min": lo, "max": hi}),
                        json!(limit),
                        "values out of range".to_string(),
                    )
                }
                RuleKind::AllowedValues => {
                    let state = &self.allowed[&i];
                    let what = match &state.example {
                        Some(e) => format!("values outside the allowed set (e.g. {e:?})"),
                        None => "values outside the allowed set".to_string(),
                    };
                    (
                        state.violations == 0,
                        json!(state.violations),
                        json!(rule.values),
                        what,
                    )
                }
                RuleKind::RowCount => {
                    let n = stats.num_rows as f64;
                    let ok = rule.min.is_none_or(|m| n >= m) && rule.max.is_none_or(|m| n <= m);
                    let limit = json!({"min": rule.min, "max": rule.max});
                    (ok, json!(stats.num_rows), limit, "row count".to_string())
                }
                RuleKind::UniqueKey => {
                    let what = match &self.first_duplicate {
                        Some(d) => format!(
                            "duplicate ({}) rows, first: {d}",
                            self.key_columns.join(", ")
                        ),
                        None => format!("duplicate ({}) rows", self.key_columns.join(", ")),
                    };
                    (self.duplicates == 0, json!(self.duplicates), json!(0), what)
                }
                RuleKind::Finite => {
                    let bad = col_stats.map_or(0, |s| s.nan_count);
                    (
                        bad == 0,
                        json!(bad),
                        json!(0),
                        "NaN or infinite values".to_string(),
                    )
                }
                RuleKind::Drift => {
                    let reference = previous
                        .and_then(|p| p.columns.get(column.as_deref().unwrap_or_default()))
                        .and_then(|s| s.histogram.as_ref());
                    let sample = samples.get(column.as_deref().unwrap_or_default());
                    let max = rule.max.unwrap_or(f64::INFINITY);
                    match (reference, sample) {
                        (Some(reference), Some(sample)) => {
                            let value = match rule.method {
                                Some(DriftMethod::Ks) => fti_stats::ks(reference, sample),
                                _ => fti_stats::psi(reference, sample),
                            };
                            let method = if rule.method == Some(DriftMethod::Ks) {
                                "ks"
                            } else {
                                "psi"
                            };
                            (
                                value <= max,
                                json!(value),
                                json!(format!("<= {max}")),
                                format!("{method} drift against the previous version"),
                            )
                        }
                        // The first version has nothing to drift from.
                        _ => (
                            true,
                            json!(null),
                            json!(format!("<= {max}")),
                            "no previous version to compare with".to_string(),
                        ),
                    }
                }
            };
            let severity = rule.severity.into();
            let on = column
                .as_deref()
                .map(|c| format!(" column {c:?}"))
                .unwrap_or_default();
            let message = format!(
                "group {:?}{on}: rule {} {}: {what}: measured {measured}, limit {limit}",
                self.group,
                rule_name(rule.rule),
                if passed { "passed" } else { "failed" },
            );
            report.rules.push(RuleResult {
                rule: rule_name(rule.rule).to_string(),
                column,
                severity,
                passed,
                measured,
                limit,
                message,
            });
        }
        report
    }
}

fn describe_row(columns: &[arrow::array::ArrayRef], names: &[String], row: usize) -> String {
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    let options = FormatOptions::default();
    names
        .iter()
        .zip(columns)
        .map(|(name, array)| {
            let value = ArrayFormatter::try_new(array.as_ref(), &options)
                .map(|f| f.value(row).to_string())
                .unwrap_or_default();
            format!("{name}={value}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn rule_name(kind: RuleKind) -> &'static str {
    match kind {
        RuleKind::RequiredColumns => "required_columns",
        RuleKind::ForbiddenColumns => "forbidden_columns",
        RuleKind::NotNull => "not_null",
        RuleKind::MaxNullFraction => "max_null_fraction",
        RuleKind::Range => "range",
        RuleKind::AllowedValues => "allowed_values",
        RuleKind::RowCount => "row_count",
        RuleKind::UniqueKey => "unique_key",
        RuleKind::Finite => "finite",
        RuleKind::Drift => "drift",
    }
}
