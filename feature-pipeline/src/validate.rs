//! Validation rules, checked on the query output before anything is committed.
//!
//! Most rules are judged from the statistics computed in the same pass (null counts, min,
//! max, NaN counts); uniqueness and allowed values need their own streaming state.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Schema};
use arrow::row::{RowConverter, SortField};
use serde_json::json;
use storage::{RuleResult, TableStatistics, ValidationReport};

use crate::config::{AllowedValue, DriftMethod, GroupConfig, RuleConfig, RuleKind, SeverityConfig};

/// Streaming state of a group's rules.
pub struct Validator {
    group: String,
    /// The group's rules, then the default ones ([`with_default_rules`]).
    rules: Vec<RuleConfig>,
    declared_rules: usize,
    key_columns: Vec<String>,
    converter: Option<RowConverter>,
    /// Key columns the input is sorted by (see [`Validator::new`]), their encoder, and the
    /// current run of their values.
    sorted_by: Vec<String>,
    /// The sorted-by columns include every key column: equal keys are adjacent.
    sorted_by_whole_key: bool,
    run_converter: Option<RowConverter>,
    run: Option<Vec<u8>>,
    /// Hashes of the (entity, event time) keys seen (in the current run when sorted).
    seen: HashSet<u64, foldhash::fast::FixedState>,
    duplicates: u64,
    first_duplicate: Option<String>,
    /// Why uniqueness could not be checked (a key type the row format cannot encode, or a
    /// batch whose key types differ from the first one's): the rule then fails, never passes
    /// unchecked.
    unique_unchecked: Option<String>,
    allowed: HashMap<usize, AllowedState>,
    /// NaN and infinities in the float columns of `range` rules, by rule: the statistics'
    /// minimum and maximum are over finite values, so they alone would pass an infinity.
    non_finite: HashMap<usize, NonFinite>,
    /// By rule: the first row that broke it (its key and the column's value), for the
    /// failure message.
    first_offender: HashMap<usize, String>,
    /// By rule judged value by value: its column's running statistics before the batch.
    watched: HashMap<usize, fti_stats::SoFar>,
}

/// Counts of the values of a float column that are not finite numbers.
#[derive(Debug, Default, Clone, Copy)]
struct NonFinite {
    nan: u64,
    neg_inf: u64,
    pos_inf: u64,
}

impl NonFinite {
    fn update(&mut self, column: &ArrayRef) {
        let Ok(values) = arrow::compute::cast(column, &DataType::Float64) else {
            return;
        };
        let values = values.as_primitive::<arrow::datatypes::Float64Type>();
        let mut count = |v: f64| {
            if v.is_nan() {
                self.nan += 1;
            } else if v == f64::INFINITY {
                self.pos_inf += 1;
            } else if v == f64::NEG_INFINITY {
                self.neg_inf += 1;
            }
        };
        match values.null_count() {
            0 => values.values().iter().for_each(|&v| count(v)),
            _ => values.iter().flatten().for_each(count),
        }
    }
}

/// An `allowed_values` rule: its values encoded in the row format for the column's type, so
/// that membership is typed equality whatever the type (strings, numbers, dates).
struct AllowedState {
    values: Vec<AllowedValue>,
    encoded: Option<EncodedValues>,
    violations: u64,
    /// The first row outside the set in the current batch, taken after each batch.
    example_row: Option<usize>,
    /// Why a batch's values could not be checked (an allowed value that is not of the
    /// column's type, a type the row format cannot encode); the rule then fails.
    unchecked: Option<String>,
}

/// Floats as `f64` with `-0.0` as `0.0` and one NaN: the row format encodes a float's bits,
/// which would tell apart values that compare equal (`ROUND(-0.2)` is `-0.0`, and a computed
/// NaN rarely has the bits of a parsed one). Other arrays are returned as they are.
fn by_value(array: ArrayRef) -> Result<ArrayRef, String> {
    if !array.data_type().is_floating() {
        return Ok(array);
    }
    let floats = arrow::compute::cast(&array, &DataType::Float64).map_err(|e| e.to_string())?;
    let floats = floats.as_primitive::<arrow::datatypes::Float64Type>();
    Ok(Arc::new(floats.unary::<_, arrow::datatypes::Float64Type>(
        |v| if v.is_nan() { f64::NAN } else { v + 0.0 },
    )))
}

/// Allowed values encoded for one column type: the type, its encoder and the encoded values.
type EncodedValues = (DataType, RowConverter, HashSet<Box<[u8]>>);

impl AllowedState {
    fn update(&mut self, column: &ArrayRef) {
        if let Err(e) = self.check(column) {
            self.unchecked.get_or_insert(e);
        }
    }

    fn check(&mut self, column: &ArrayRef) -> Result<(), String> {
        let data_type = column.data_type();
        if self.encoded.as_ref().is_none_or(|(t, _, _)| t != data_type) {
            let allowed = by_value(crate::config::allowed_array(&self.values, data_type)?)?;
            let converter = RowConverter::new(vec![SortField::new(allowed.data_type().clone())])
                .map_err(|e| e.to_string())?;
            let rows = converter
                .convert_columns(&[allowed])
                .map_err(|e| e.to_string())?;
            let set = rows.iter().map(|r| r.as_ref().into()).collect();
            self.encoded = Some((data_type.clone(), converter, set));
        }
        let Some((_, converter, set)) = &self.encoded else {
            return Ok(());
        };
        let rows = converter
            .convert_columns(&[by_value(column.clone())?])
            .map_err(|e| e.to_string())?;
        for (i, row) in rows.iter().enumerate() {
            if column.is_valid(i) && !set.contains(row.as_ref()) {
                self.violations += 1;
                self.example_row.get_or_insert(i);
            }
        }
        Ok(())
    }
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
            RowConverter::new(fields)
        };
        let mut unique_unchecked = None;
        let converter = wants_unique
            .then(|| converter_for(&key_columns))
            .and_then(|c| c.map_err(|e| unique_unchecked = Some(e.to_string())).ok());
        // Only a leading run of key columns counts: a non-key column before them breaks it.
        let sorted_by: Vec<String> = sorted_by
            .iter()
            .take_while(|c| key_columns.contains(c))
            .cloned()
            .collect();
        let run_converter = (wants_unique && !sorted_by.is_empty())
            .then(|| converter_for(&sorted_by).ok())
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
                        encoded: None,
                        violations: 0,
                        example_row: None,
                        unchecked: None,
                    },
                )
            })
            .collect();
        let non_finite = config
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.rule == RuleKind::Range)
            .filter(|(_, r)| {
                r.column
                    .as_deref()
                    .and_then(|c| schema.field_with_name(c).ok())
                    .is_some_and(|f| f.data_type().is_floating())
            })
            .map(|(i, _)| (i, NonFinite::default()))
            .collect();
        let sorted_by_whole_key = key_columns.iter().all(|k| sorted_by.contains(k));
        Validator {
            group: group.to_string(),
            declared_rules: config.rules.len(),
            rules: with_default_rules(&config.rules, schema),
            key_columns,
            converter,
            sorted_by_whole_key,
            sorted_by,
            run_converter,
            run: None,
            seen: HashSet::default(),
            duplicates: 0,
            first_duplicate: None,
            unique_unchecked,
            allowed,
            non_finite,
            first_offender: HashMap::new(),
            watched: HashMap::new(),
        }
    }

    /// Takes in a batch; `profiled` is the group's statistics with the batch already added.
    pub fn update(&mut self, batch: &RecordBatch, profiled: &fti_stats::TableProfiler) {
        if self.converter.is_some() && batch.num_rows() > 0 {
            let columns: Vec<ArrayRef> = self
                .key_columns
                .iter()
                .filter_map(|k| batch.column_by_name(k).cloned())
                .collect();
            let sorted: Vec<ArrayRef> = self
                .sorted_by
                .iter()
                .filter_map(|k| batch.column_by_name(k).cloned())
                .collect();
            match arrow::compute::partition(&sorted) {
                Ok(runs) if runs.len() == batch.num_rows() => {
                    // Every row differs from the next in the sorted-by columns (a row number,
                    // say): runs of one row, where a key can only repeat in the first (the
                    // previous batch's last run going on) or the last (going on in the next
                    // batch). Only those two are checked; no run ranges are built.
                    let rows = batch.num_rows();
                    self.check_run(&columns, &sorted, 0..1, rows);
                    if rows > 1 {
                        self.check_run(&columns, &sorted, rows - 1..rows, rows);
                    }
                    self.run = self.encode_row(&sorted, rows - 1);
                }
                Ok(runs) if !sorted.is_empty() => {
                    for run in runs.ranges() {
                        self.check_run(&columns, &sorted, run, batch.num_rows());
                    }
                    self.run = self.encode_row(&sorted, batch.num_rows().saturating_sub(1));
                }
                _ => self.check_rows(&columns, 0..batch.num_rows()),
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
            state.update(column);
            if let Some(row) = state.example_row.take()
                && !self.first_offender.contains_key(i)
            {
                let described = describe_offender(batch, &self.key_columns, &self.rules[*i], row);
                self.first_offender.insert(*i, described);
            }
        }
        // The statistics tell which batch first breaks a rule; only that batch is searched.
        for (i, rule) in self.rules.iter().enumerate() {
            if self.first_offender.contains_key(&i) {
                continue;
            }
            let Some(name) = rule.column.as_deref() else {
                continue;
            };
            let (Some(column), Some(after)) = (batch.column_by_name(name), profiled.so_far(name))
            else {
                continue;
            };
            let before = self.watched.insert(i, after).unwrap_or_default();
            if breaks(rule, &before, &after)
                && let Some(row) = first_offender(rule, column)
            {
                let described = describe_offender(batch, &self.key_columns, rule, row);
                self.first_offender.insert(i, described);
            }
        }
        for (i, counts) in &mut self.non_finite {
            if let Some(column) = self.rules[*i]
                .column
                .as_deref()
                .and_then(|c| batch.column_by_name(c))
            {
                counts.update(column);
            }
        }
    }

    /// Uniqueness within one run of equal sorted-by values (`rows` of the batch): equal keys
    /// can only be in the same run, which may have begun in the previous batch.
    fn check_run(
        &mut self,
        columns: &[ArrayRef],
        sorted: &[ArrayRef],
        rows: std::ops::Range<usize>,
        batch_rows: usize,
    ) {
        let continues =
            rows.start == 0 && self.run.is_some() && self.encode_row(sorted, 0) == self.run;
        if !continues && !self.seen.is_empty() {
            self.seen.clear();
        }
        if self.sorted_by_whole_key {
            // Sorted by the whole key: every row of a run after its first repeats it.
            let first_repeat = rows.start + usize::from(!continues);
            if first_repeat < rows.end {
                self.count_duplicates((rows.end - first_repeat) as u64, columns, first_repeat);
            }
        } else if continues || rows.len() > 1 || rows.end == batch_rows {
            // A run of one row that ends inside the batch cannot hold a duplicate; the last
            // run's keys are kept for the next batch.
            self.check_rows(columns, rows);
        }
    }

    /// Remembers the keys of `rows`, counting those seen before.
    fn check_rows(&mut self, columns: &[ArrayRef], rows: std::ops::Range<usize>) {
        let Some(converter) = &self.converter else {
            return;
        };
        let slice: Vec<ArrayRef> = columns
            .iter()
            .map(|c| c.slice(rows.start, rows.len()))
            .collect();
        let keys = match converter.convert_columns(&slice) {
            Ok(keys) => keys,
            Err(e) => {
                self.unique_unchecked.get_or_insert_with(|| e.to_string());
                return;
            }
        };
        let mut repeats = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            if !self.seen.insert(self.seen.hasher().hash_one(key.as_ref())) {
                repeats.push(rows.start + i);
            }
        }
        if let Some(&first) = repeats.first() {
            self.count_duplicates(repeats.len() as u64, columns, first);
        }
    }

    fn count_duplicates(&mut self, n: u64, columns: &[ArrayRef], first: usize) {
        self.duplicates += n;
        if self.first_duplicate.is_none() {
            self.first_duplicate = Some(describe_row(columns, &self.key_columns, first));
        }
    }

    /// Row `i` of the sorted-by columns in the row format, to compare runs across batches.
    fn encode_row(&self, sorted: &[ArrayRef], i: usize) -> Option<Vec<u8>> {
        let converter = self.run_converter.as_ref()?;
        let row: Vec<ArrayRef> = sorted.iter().map(|c| c.slice(i, 1)).collect();
        let rows = converter.convert_columns(&row).ok()?;
        (rows.num_rows() == 1).then(|| rows.row(0).as_ref().to_vec())
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
            let data_type = column
                .as_deref()
                .and_then(|c| schema.field_with_name(c).ok())
                .map(|f| f.data_type());
            let cannot_measure = data_type.and_then(|t| rule.rule.cannot_measure(t));
            let (passed, measured, limit, what) = match rule.rule {
                // A rule on a column the group does not output checks nothing: it fails.
                _ if column.is_some() && data_type.is_none() => (
                    false,
                    json!(null),
                    json!(null),
                    "no such column in the group's output".to_string(),
                ),
                // Nor does one on a type it cannot measure (`drift` on strings has no
                // histogram and would pass as if there were no previous version).
                _ if cannot_measure.is_some() => (
                    false,
                    json!(null),
                    json!(null),
                    cannot_measure.clone().unwrap_or_default(),
                ),
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
                    // -inf is below any minimum, +inf above any maximum, and NaN in no range.
                    let odd = self.non_finite.get(&i).copied().unwrap_or_default();
                    let nan = if rule.min.is_some() || rule.max.is_some() {
                        odd.nan
                    } else {
                        0
                    };
                    let below = rule.min.is_some_and(|m| lo.is_some_and(|v| v < m))
                        || (rule.min.is_some() && odd.neg_inf > 0);
                    let above = rule.max.is_some_and(|m| hi.is_some_and(|v| v > m))
                        || (rule.max.is_some() && odd.pos_inf > 0);
                    let limit = match (rule.min, rule.max) {
                        (Some(a), Some(b)) => format!("[{a}, {b}]"),
                        (Some(a), None) => format!(">= {a}"),
                        (None, Some(b)) => format!("<= {b}"),
                        (None, None) => String::new(),
                    };
                    let mut measured = json!({"min": lo, "max": hi});
                    let mut what = "values out of range".to_string();
                    if odd.nan + odd.neg_inf + odd.pos_inf > 0 {
                        measured["nan"] = json!(odd.nan);
                        measured["-inf"] = json!(odd.neg_inf);
                        measured["+inf"] = json!(odd.pos_inf);
                        what = format!(
                            "values out of range (min and max of the finite values; {} NaN, {} -inf, {} +inf)",
                            odd.nan, odd.neg_inf, odd.pos_inf
                        );
                    }
                    (!below && !above && nan == 0, measured, json!(limit), what)
                }
                RuleKind::AllowedValues => {
                    let state = &self.allowed[&i];
                    // The first value outside the set is named with its row, below.
                    let what = match &state.unchecked {
                        Some(e) => format!("values could not be checked: {e}"),
                        None => "values outside the allowed set".to_string(),
                    };
                    (
                        state.violations == 0 && state.unchecked.is_none(),
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
                    let keys = self.key_columns.join(", ");
                    let what = match (&self.unique_unchecked, &self.first_duplicate) {
                        (Some(e), _) => format!("({keys}) could not be checked: {e}"),
                        (None, Some(d)) => format!("duplicate ({keys}) rows, first: {d}"),
                        (None, None) => format!("duplicate ({keys}) rows"),
                    };
                    let passed = self.duplicates == 0 && self.unique_unchecked.is_none();
                    (passed, json!(self.duplicates), json!(0), what)
                }
                RuleKind::Finite => {
                    let bad = col_stats.map_or(0, |s| s.nan_count);
                    let what = match (i < self.declared_rules, bad == 0) {
                        (true, _) => "NaN or infinite values",
                        (false, true) => "NaN or infinite values (default rule of float columns)",
                        (false, false) => {
                            "NaN or infinite values (the default rule of every float column; \
                             a finite rule declared on the column, e.g. with severity = \
                             \"warn\", replaces it)"
                        }
                    }
                    .to_string();
                    (bad == 0, json!(bad), json!(0), what)
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
            let what = match self.first_offender.get(&i) {
                Some(row) if !passed => format!("{what}; first: {row}"),
                _ => what,
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

/// `rules` and, for each float column of `schema` without a declared `finite` rule, a default
/// one (severity error): NaN and infinities are bad input unless a group says otherwise.
fn with_default_rules(rules: &[RuleConfig], schema: &Schema) -> Vec<RuleConfig> {
    let declared = |name: &str| {
        rules
            .iter()
            .any(|r| r.rule == RuleKind::Finite && r.column.as_deref() == Some(name))
    };
    let defaults = schema
        .fields()
        .iter()
        .filter(|f| f.data_type().is_floating() && !declared(f.name()))
        .map(|f| RuleConfig {
            rule: RuleKind::Finite,
            column: Some(f.name().clone()),
            columns: None,
            min: None,
            max: None,
            values: None,
            method: None,
            severity: SeverityConfig::Error,
        });
    rules.iter().cloned().chain(defaults).collect()
}

/// Whether a batch that moved a column's running statistics from `before` to `after` holds a
/// value that breaks `rule` (one judged value by value).
fn breaks(rule: &RuleConfig, before: &fti_stats::SoFar, after: &fti_stats::SoFar) -> bool {
    match rule.rule {
        RuleKind::NotNull | RuleKind::MaxNullFraction => after.nulls > before.nulls,
        RuleKind::Finite => after.non_finite > before.non_finite,
        RuleKind::Range => {
            let (min, max) = (
                rule.min.unwrap_or(f64::NEG_INFINITY),
                rule.max.unwrap_or(f64::INFINITY),
            );
            after.non_finite > before.non_finite
                || (after.min < min && after.min < before.min)
                || (after.max > max && after.max > before.max)
        }
        _ => false,
    }
}

/// The first row of `column` (one batch) that breaks `rule`, for rules that judge values one
/// by one.
fn first_offender(rule: &RuleConfig, column: &ArrayRef) -> Option<usize> {
    let floats = || arrow::compute::cast(column, &DataType::Float64).ok();
    let first = |values: &ArrayRef, bad: &dyn Fn(f64) -> bool| {
        let values = values.as_primitive::<arrow::datatypes::Float64Type>();
        (0..values.len()).find(|&i| values.is_valid(i) && bad(values.value(i)))
    };
    match rule.rule {
        RuleKind::NotNull | RuleKind::MaxNullFraction => {
            column.logical_nulls()?.iter().position(|valid| !valid)
        }
        RuleKind::Finite if column.data_type().is_floating() => {
            first(&floats()?, &|v| !v.is_finite())
        }
        // Dates and times are judged in microseconds (the statistics' unit): not here.
        RuleKind::Range
            if column.data_type().is_numeric() && (rule.min.is_some() || rule.max.is_some()) =>
        {
            let (min, max) = (
                rule.min.unwrap_or(f64::NEG_INFINITY),
                rule.max.unwrap_or(f64::INFINITY),
            );
            // NaN is in no range.
            first(&floats()?, &|v: f64| v.is_nan() || v < min || v > max)
        }
        _ => None,
    }
}

/// `key=…, event_time=…, column=value` of a batch row.
fn describe_offender(
    batch: &RecordBatch,
    keys: &[String],
    rule: &RuleConfig,
    row: usize,
) -> String {
    let mut names: Vec<String> = keys.to_vec();
    if let Some(column) = &rule.column
        && !names.contains(column)
    {
        names.push(column.clone());
    }
    let (names, columns): (Vec<String>, Vec<ArrayRef>) = names
        .into_iter()
        .filter_map(|n| batch.column_by_name(&n).cloned().map(|c| (n, c)))
        .unzip();
    describe_row(&columns, &names, row)
}

fn describe_row(columns: &[arrow::array::ArrayRef], names: &[String], row: usize) -> String {
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    // A null is told apart from an empty string.
    let options = FormatOptions::default().with_null("null");
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int32Array, StringArray};
    use arrow::datatypes::Field;

    use super::*;

    /// A group keyed by `k` and `day` with the one rule `unique_key`.
    fn unique_key_config() -> GroupConfig {
        toml::from_str(
            r#"
entity_keys = ["k"]
event_time = "day"
sql = "unused"
rules = [{ rule = "unique_key" }]
"#,
        )
        .unwrap()
    }

    /// The results of a group's `rules` over `batches`, the first batch's schema standing for
    /// the declared one.
    fn rule_results(rules: &str, batches: &[RecordBatch]) -> Vec<RuleResult> {
        let config: GroupConfig = toml::from_str(&format!(
            "entity_keys = [\"k\"]\nevent_time = \"t\"\nsql = \"unused\"\n{rules}"
        ))
        .unwrap();
        let schema = batches[0].schema();
        let mut validator = Validator::new("g", &config, &schema, &[]);
        let mut profiler = fti_stats::TableProfiler::new(&schema);
        for batch in batches {
            profiler.update(batch);
            validator.update(batch, &profiler);
        }
        let (stats, samples) = profiler.finish();
        validator.finish(&schema, &stats, &samples, None).rules
    }

    fn one_column(name: &str, column: ArrayRef) -> RecordBatch {
        RecordBatch::try_from_iter([(name, column)]).unwrap()
    }

    /// Allowed values are compared as the column's type, not as text: `1`, `"1"` and `1.0`
    /// are one value of a float column (and `-0.0` is `0`), a date column takes ISO dates, strings match
    /// exactly in every encoding, and nulls are left to `not_null`. The count and the first
    /// value outside the set are those of a direct look at the rows, and the message names
    /// the group, column, rule, measured value and limit.
    #[test]
    fn allowed_values_compare_as_the_column_type() {
        use arrow::array::{Date32Array, Float64Array, Int64Array, StringViewArray};
        let rules = r#"
rules = [
  { rule = "allowed_values", column = "n", values = [1, "2"] },
  { rule = "allowed_values", column = "x", values = [0.5, 1] },
  { rule = "allowed_values", column = "d", values = ["2001-01-01"] },
  { rule = "allowed_values", column = "s", values = ["ORD", "SFO"] },
]"#;
        let batch = |n: Vec<Option<i64>>, x: Vec<f64>, d: Vec<i32>, s: ArrayRef| {
            RecordBatch::try_from_iter([
                ("n", Arc::new(Int64Array::from(n)) as ArrayRef),
                ("x", Arc::new(Float64Array::from(x)) as ArrayRef),
                ("d", Arc::new(Date32Array::from(d)) as ArrayRef),
                ("s", s),
            ])
            .unwrap()
        };
        // 2001-01-01 is day 11323 since the epoch.
        let first = batch(
            vec![Some(1), None, Some(2)],
            vec![0.5, 1.0, 1.0],
            vec![11323, 11323, 11323],
            Arc::new(StringViewArray::from(vec!["ORD", "SFO", "ORD"])),
        );
        let second = batch(
            vec![Some(3), Some(2), Some(30)],
            vec![1.0, 2.0, 0.5],
            vec![11323, 11324, 11325],
            Arc::new(StringArray::from(vec![Some("SFO"), None, Some("sfo")])),
        );
        let results = rule_results(rules, &[first, second]);
        let summary: Vec<(bool, serde_json::Value, &str)> = results
            .iter()
            .map(|r| (r.passed, r.measured.clone(), r.message.as_str()))
            .collect();
        // The float column also gets the default `finite` rule, after the declared ones.
        assert_eq!(summary.len(), 5);
        assert!(
            summary[4].0 && summary[4].2.contains("rule finite passed"),
            "{summary:?}"
        );
        assert_eq!(
            summary[..4],
            [
                (
                    false,
                    json!(2),
                    r#"group "g" column "n": rule allowed_values failed: values outside the allowed set; first: n=3: measured 2, limit [1,"2"]"#
                ),
                (
                    false,
                    json!(1),
                    r#"group "g" column "x": rule allowed_values failed: values outside the allowed set; first: x=2.0: measured 1, limit [0.5,1]"#
                ),
                (
                    false,
                    json!(2),
                    r#"group "g" column "d": rule allowed_values failed: values outside the allowed set; first: d=2001-01-02: measured 2, limit ["2001-01-01"]"#
                ),
                (
                    false,
                    json!(1),
                    r#"group "g" column "s": rule allowed_values failed: values outside the allowed set; first: s=sfo: measured 1, limit ["ORD","SFO"]"#
                ),
            ]
        );
        assert_eq!(results[0].limit, json!([1, "2"]));
        // Floats are compared by value, not by their bits: -0.0 is the allowed 0, and a NaN
        // with other bits than the one TOML's `nan` parses to is that NaN.
        let floats = one_column(
            "x",
            Arc::new(Float64Array::from(vec![
                -0.0,
                f64::from_bits(0xFFF8_0000_0000_0001),
                0.0,
                2.0,
            ])),
        );
        let results = rule_results(
            r#"rules = [{ rule = "allowed_values", column = "x", values = [0, nan] }]"#,
            &[floats],
        );
        assert_eq!(
            (results[0].passed, &results[0].measured),
            (false, &json!(1)),
            "{results:?}"
        );
        // A column whose values are all allowed (nulls aside) passes.
        let all_allowed = one_column(
            "n",
            Arc::new(Int64Array::from(vec![Some(2), None, Some(1)])),
        );
        let results = rule_results(
            r#"rules = [{ rule = "allowed_values", column = "n", values = [1, "2"] }]"#,
            &[all_allowed],
        );
        assert!(results[0].passed, "{results:?}");
    }

    /// `range` judges every value of a float column, not only the finite ones the statistics'
    /// minimum and maximum are taken over: -inf is below any `min`, +inf above any `max`, and
    /// NaN is in no range. A column of finite values inside the bounds passes.
    #[test]
    fn range_counts_infinities_and_nan() {
        use arrow::array::Float64Array;
        let column = |values: Vec<Option<f64>>| {
            one_column("x", Arc::new(Float64Array::from(values)) as ArrayRef)
        };
        let judge = |rule: &str, values: Vec<Option<f64>>| {
            let results = rule_results(
                &format!("rules = [{{ rule = \"range\", column = \"x\", {rule} }}]"),
                &[column(values)],
            );
            (results[0].passed, results[0].measured.clone())
        };
        let inf = f64::INFINITY;
        assert!(judge("min = 0, max = 100", vec![Some(5.0), None]).0);
        let (passed, measured) = judge("min = 0, max = 100", vec![Some(5.0), Some(inf)]);
        assert!(!passed);
        assert_eq!(
            measured,
            json!({"min": 5.0, "max": 5.0, "nan": 0, "-inf": 0, "+inf": 1})
        );
        assert!(!judge("min = 0, max = 100", vec![Some(5.0), Some(-inf)]).0);
        assert!(!judge("min = 0, max = 100", vec![Some(f64::NAN), Some(5.0)]).0);
        // One-sided: +inf is at least 0, -inf at most 100; NaN fails either.
        assert!(judge("min = 0", vec![Some(5.0), Some(inf)]).0);
        assert!(judge("max = 100", vec![Some(5.0), Some(-inf)]).0);
        assert!(!judge("min = 0", vec![Some(-inf)]).0);
        assert!(!judge("max = 100", vec![Some(f64::NAN)]).0);
    }

    /// A failed rule that judges values one by one names the first row that broke it (its
    /// key and value), in any batch; a passing rule names none.
    #[test]
    fn a_failed_rule_names_the_first_row_that_broke_it() {
        use arrow::array::{Float64Array, Int64Array};
        let batch = |keys: Vec<i64>, values: Vec<Option<f64>>| {
            let t: Vec<i64> = keys.iter().map(|k| k * 10).collect();
            RecordBatch::try_from_iter([
                ("k", Arc::new(Int64Array::from(keys)) as ArrayRef),
                ("t", Arc::new(Int64Array::from(t)) as ArrayRef),
                ("x", Arc::new(Float64Array::from(values)) as ArrayRef),
            ])
            .unwrap()
        };
        let batches = [
            batch(vec![1, 2, 3], vec![Some(1.0), Some(2.0), Some(3.0)]),
            batch(
                vec![4, 5, 6, 7, 8],
                vec![Some(4.0), None, Some(f64::NAN), Some(-1.0), Some(99.0)],
            ),
        ];
        let rules = r#"
rules = [
  { rule = "not_null", column = "x" },
  { rule = "max_null_fraction", column = "x", max = 0.0 },
  { rule = "finite", column = "x" },
  { rule = "range", column = "x", min = 0 },
  { rule = "range", column = "x", max = 50 },
  { rule = "range", column = "x", min = 0, max = 1000 },
  { rule = "allowed_values", column = "x", values = [1, 2, 3, 4] },
  { rule = "range", column = "k", min = 0, max = 100 },
]
"#;
        let results = rule_results(rules, &batches);
        let first = |i: usize| {
            let message = &results[i].message;
            message.split_once("; first: ").map(|(_, rest)| {
                rest.split_once(": measured")
                    .map_or(rest, |(row, _)| row)
                    .to_string()
            })
        };
        assert_eq!(
            first(0).as_deref(),
            Some("k=5, t=50, x=null"),
            "{}",
            results[0].message
        );
        assert_eq!(first(1).as_deref(), Some("k=5, t=50, x=null"));
        assert_eq!(first(2).as_deref(), Some("k=6, t=60, x=NaN"));
        // NaN is in no range, so it is the first row out of `min = 0` (before the -1).
        assert_eq!(first(3).as_deref(), Some("k=6, t=60, x=NaN"));
        assert_eq!(first(4).as_deref(), Some("k=6, t=60, x=NaN"));
        assert_eq!(first(5).as_deref(), Some("k=6, t=60, x=NaN"));
        assert_eq!(first(6).as_deref(), Some("k=6, t=60, x=NaN"));
        assert!(
            results[7].passed && first(7).is_none(),
            "{}",
            results[7].message
        );

        // Without the NaN, each range names its own first row.
        let batches = [
            batch(vec![1, 2], vec![Some(1.0), Some(2.0)]),
            batch(vec![3, 4, 5], vec![Some(60.0), Some(-1.0), Some(70.0)]),
        ];
        let results = rule_results(rules, &batches);
        let first = |i: usize| {
            results[i].message.split_once("; first: ").map(|(_, rest)| {
                rest.split_once(": measured")
                    .map_or(rest, |(r, _)| r)
                    .to_string()
            })
        };
        assert_eq!(first(3).as_deref(), Some("k=4, t=40, x=-1.0"));
        assert_eq!(first(4).as_deref(), Some("k=3, t=30, x=60.0"));
        assert_eq!(first(5).as_deref(), Some("k=4, t=40, x=-1.0"));
        assert!(results[7].passed && first(7).is_none());
        assert_eq!(first(6).as_deref(), Some("k=3, t=30, x=60.0"));
    }

    /// A rule that cannot measure its column fails, saying why, instead of passing with
    /// nothing checked: a column the group does not output, `range` on strings (a date
    /// takes it), `drift` on strings (which would pass as if there were no previous
    /// version), an allowed value that is not of the column's type, `finite` on strings
    /// (an integer column takes it).
    #[test]
    fn rules_that_cannot_check_their_column_fail() {
        use arrow::array::{Date32Array, Int64Array};
        let rules = r#"rules = [
  { rule = "not_null", column = "nope" },
  { rule = "range", column = "s", min = 0 },
  { rule = "range", column = "d", min = 0 },
  { rule = "drift", column = "s", method = "psi", max = 0.25 },
  { rule = "allowed_values", column = "n", values = [1, "one"] },
  { rule = "finite", column = "s" },
  { rule = "finite", column = "n" },
]"#;
        let batch = RecordBatch::try_from_iter([
            ("s", Arc::new(StringArray::from(vec!["a"])) as ArrayRef),
            ("d", Arc::new(Date32Array::from(vec![1])) as ArrayRef),
            ("n", Arc::new(Int64Array::from(vec![1])) as ArrayRef),
        ])
        .unwrap();
        let results = rule_results(rules, &[batch]);
        let outcome: Vec<(bool, &str)> = results
            .iter()
            .map(|r| (r.passed, r.message.split(": ").nth(2).unwrap_or_default()))
            .collect();
        assert_eq!(
            outcome,
            [
                (false, "no such column in the group's output"),
                (
                    false,
                    "range applies to numbers, dates and time stamps, not Utf8"
                ),
                (true, "values out of range"),
                (false, "drift is measured on numeric columns, not Utf8"),
                (false, "values could not be checked"),
                (false, "finite applies to numbers, not Utf8"),
                (true, "NaN or infinite values"),
            ]
        );
        assert!(
            results[4]
                .message
                .contains(r#"allowed value "one" is not of type Int64"#),
            "{results:?}"
        );
    }

    /// A batch whose keys the row encoder cannot read fails `unique_key`, naming why,
    /// instead of passing it unchecked.
    #[test]
    fn unique_key_fails_when_it_cannot_read_the_keys() {
        let config = unique_key_config();
        let declared = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("day", DataType::Int32, true),
        ]));
        // The key arrives as a list, not the strings the row encoder was built for.
        let list =
            arrow::array::ListArray::from_iter_primitive::<arrow::datatypes::Int32Type, _, _>([
                Some(vec![Some(1)]),
                Some(vec![Some(1)]),
            ]);
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("k", arrow::array::Array::data_type(&list).clone(), false),
                Field::new("day", DataType::Int32, true),
            ])),
            vec![Arc::new(list), Arc::new(Int32Array::from(vec![1, 1]))],
        )
        .unwrap();
        let mut validator = Validator::new("g", &config, &declared, &[]);
        validator.update(&batch, &fti_stats::TableProfiler::new(&declared));
        let report = validator.finish(
            &declared,
            &TableStatistics::default(),
            &HashMap::new(),
            None,
        );
        let result = &report.rules[0];
        assert_eq!(result.rule, "unique_key");
        assert!(!result.passed, "{result:?}");
        assert!(
            result.message.contains("could not be checked"),
            "{result:?}"
        );
    }

    /// Duplicate counts and the first duplicate reported, whatever the batch boundaries, the
    /// sort order the plan reports and the string encoding of the key, equal those of a direct
    /// count over all rows.
    #[test]
    fn unique_key_counts_every_repeat_across_batches_and_orders() {
        let config = unique_key_config();
        let mut state = 7u64;
        let mut next = move |n: u64| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) % n
        };
        for case in 0..300 {
            let rows = 1 + next(40) as usize;
            let domain = 1 + next(12);
            let mut keys: Vec<(String, Option<i32>)> = (0..rows)
                .map(|_| {
                    let k = format!("k{}", next(domain.min(4)));
                    let day = (next(6) > 0).then(|| next(domain) as i32);
                    (k, day)
                })
                .collect();
            let sorted_by: Vec<String> = match case % 3 {
                0 => vec![],
                1 => {
                    keys.sort_by(|a, b| a.0.cmp(&b.0));
                    vec!["k".into()]
                }
                _ => {
                    keys.sort();
                    vec!["k".into(), "day".into()]
                }
            };
            // Every pairing of the three orders with the two encodings (case % 6).
            let strings = [DataType::Utf8, DataType::Utf8View][case % 2].clone();
            let schema = Arc::new(Schema::new(vec![
                Field::new("k", strings.clone(), false),
                Field::new("day", DataType::Int32, true),
            ]));
            let mut seen = HashSet::new();
            let repeats: Vec<_> = keys.iter().filter(|k| !seen.insert(*k)).collect();
            let expected = repeats.len() as u64;
            let first = repeats.first().map(|(k, day)| {
                format!(
                    "k={k}, day={}",
                    day.map_or("null".to_string(), |d| d.to_string())
                )
            });
            let mut validator = Validator::new("g", &config, &schema, &sorted_by);
            let mut start = 0;
            while start < rows {
                let len = (next(8) as usize).min(rows - start);
                let part = &keys[start..start + len];
                let batch = RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        arrow::compute::cast(
                            &StringArray::from_iter_values(part.iter().map(|k| &k.0)),
                            &strings,
                        )
                        .unwrap(),
                        Arc::new(Int32Array::from_iter(part.iter().map(|k| k.1))),
                    ],
                )
                .unwrap();
                validator.update(&batch, &fti_stats::TableProfiler::new(&schema));
                start += len;
            }
            assert_eq!(
                validator.duplicates, expected,
                "case {case}: order {sorted_by:?}, keys {keys:?}"
            );
            assert_eq!(validator.first_duplicate, first, "case {case}");
        }
    }
}
