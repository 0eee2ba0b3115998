//! Column statistics of Arrow data, computed in one streaming pass with bounded memory, and
//! the drift measures (PSI, KS) that compare them. The feature pipeline stores these with
//! every commit; training and inference compare against them for skew.

use std::collections::HashMap;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Float64Type};
use storage::types::{is_temporal, type_name};
use storage::{ColumnStatistics, Histogram, TableStatistics};

/// Values kept per numeric column for quantiles and drift (a uniform reservoir sample).
pub const SAMPLE_SIZE: usize = 20_000;
/// Distinct values tracked per categorical column; past this the column counts as high
/// cardinality and keeps no frequencies.
pub const MAX_CATEGORIES: usize = 50_000;
/// Bins of the stored histogram.
pub const HISTOGRAM_BINS: usize = 20;
/// Quantiles stored for numeric columns.
pub const QUANTILES: [f64; 7] = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Numeric,
    Temporal,
    Categorical,
    Other,
}

fn kind_of(data_type: &DataType) -> Kind {
    if data_type.is_numeric() {
        Kind::Numeric
    } else if is_temporal(data_type) {
        Kind::Temporal
    } else if matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Boolean
    ) {
        Kind::Categorical
    } else {
        Kind::Other
    }
}

/// Streaming statistics of one column.
#[derive(Debug, Clone)]
pub struct ColumnProfiler {
    data_type: DataType,
    kind: Kind,
    count: u64,
    nulls: u64,
    nans: u64,
    mean: f64,
    m2: f64,
    min: f64,
    max: f64,
    sample: Vec<f64>,
    rng: u64,
    categories: Option<HashMap<String, u64, foldhash::fast::FixedState>>,
}

/// The statistics of a column plus the sample they were computed from (for drift checks).
#[derive(Debug, Clone)]
pub struct ColumnProfile {
    pub stats: ColumnStatistics,
    /// Finite values sampled uniformly (numeric columns only).
    pub sample: Vec<f64>,
}

impl ColumnProfiler {
    pub fn new(data_type: &DataType) -> Self {
        let kind = kind_of(data_type);
        ColumnProfiler {
            data_type: data_type.clone(),
            kind,
            count: 0,
            nulls: 0,
            nans: 0,
            mean: 0.0,
            m2: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            sample: Vec::new(),
            rng: 0x9E37_79B9_7F4A_7C15,
            categories: (kind == Kind::Categorical).then(HashMap::default),
        }
    }

    /// Adds an array of this column's values.
    pub fn update(&mut self, array: &ArrayRef) {
        self.nulls += array.null_count() as u64;
        match self.kind {
            Kind::Numeric => {
                let Ok(values) = arrow::compute::cast(array, &DataType::Float64) else {
                    return;
                };
                for v in values.as_primitive::<Float64Type>().iter().flatten() {
                    self.add_number(v);
                }
            }
            Kind::Temporal => {
                if let Ok(micros) = storage::table::to_micros(array) {
                    for v in micros.iter().flatten() {
                        self.count += 1;
                        self.min = self.min.min(v as f64);
                        self.max = self.max.max(v as f64);
                    }
                }
            }
            Kind::Categorical => {
                let Ok(strings) = arrow::compute::cast(array, &DataType::Utf8) else {
                    return;
                };
                let strings = strings.as_string::<i32>();
                for v in strings.iter().flatten() {
                    self.count += 1;
                    if let Some(categories) = &mut self.categories {
                        if let Some(n) = categories.get_mut(v) {
                            *n += 1;
                        } else if categories.len() < MAX_CATEGORIES {
                            categories.insert(v.to_string(), 1);
                        } else {
                            self.categories = None;
                        }
                    }
                }
            }
            Kind::Other => self.count += (array.len() - array.null_count()) as u64,
        }
    }

    fn add_number(&mut self, v: f64) {
        if !v.is_finite() {
            self.nans += 1;
            return;
        }
        self.count += 1;
        let delta = v - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (v - self.mean);
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        if self.sample.len() < SAMPLE_SIZE {
            self.sample.push(v);
        } else {
            // Reservoir sampling (algorithm R) with a fixed-seed xorshift: deterministic for
            // a given input order.
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            let j = self.rng % self.count;
            if (j as usize) < SAMPLE_SIZE {
                self.sample[j as usize] = v;
            }
        }
    }

    pub fn finish(mut self) -> ColumnProfile {
        let mut stats = ColumnStatistics {
            data_type: type_name(&self.data_type),
            count: self.count,
            null_count: self.nulls,
            nan_count: self.nans,
            ..Default::default()
        };
        if self.count > 0 && matches!(self.kind, Kind::Numeric | Kind::Temporal) {
            stats.min = Some(self.min);
            stats.max = Some(self.max);
        }
        if self.kind == Kind::Numeric && self.count > 0 {
            stats.mean = Some(self.mean);
            stats.std = Some(if self.count > 1 {
                (self.m2 / (self.count - 1) as f64).sqrt()
            } else {
                0.0
            });
            self.sample.sort_by(f64::total_cmp);
            stats.quantiles = QUANTILES
                .iter()
                .map(|&q| (q, quantile_sorted(&self.sample, q)))
                .collect();
            stats.histogram = Some(histogram(&self.sample, self.min, self.max, self.count));
        }
        if let Some(categories) = self.categories {
            stats.distinct_count = Some(categories.len() as u64);
            let mut top: Vec<(String, u64)> = categories.into_iter().collect();
            top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            top.truncate(100);
            stats.top_values = top;
        }
        ColumnProfile {
            stats,
            sample: self.sample,
        }
    }
}

/// Linear-interpolated quantile of sorted values.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Equal-width histogram of `sample` over `[min, max]`, scaled to `total` values.
fn histogram(sample: &[f64], min: f64, max: f64, total: u64) -> Histogram {
    let bins = if max > min { HISTOGRAM_BINS } else { 1 };
    let width = if max > min {
        (max - min) / bins as f64
    } else {
        1.0
    };
    let edges: Vec<f64> = (0..=bins).map(|i| min + width * i as f64).collect();
    let raw = bin_counts(&edges, sample);
    let scale = total as f64 / sample.len().max(1) as f64;
    Histogram {
        edges,
        counts: raw
            .iter()
            .map(|&c| (c as f64 * scale).round() as u64)
            .collect(),
    }
}

/// Counts `values` into the bins given by `edges`; values outside go to the first/last bin.
pub fn bin_counts(edges: &[f64], values: &[f64]) -> Vec<u64> {
    let bins = edges.len().saturating_sub(1).max(1);
    let mut counts = vec![0u64; bins];
    for &v in values {
        let i = edges
            .partition_point(|&e| e <= v)
            .saturating_sub(1)
            .min(bins - 1);
        counts[i] += 1;
    }
    counts
}

/// Population stability index between a reference histogram and new values binned on the
/// reference's edges. 0 = same distribution; > 0.1 moderate, > 0.25 large shift (rule of thumb).
pub fn psi(reference: &Histogram, values: &[f64]) -> f64 {
    let actual = bin_counts(&reference.edges, values);
    let expected_total: u64 = reference.counts.iter().sum();
    let actual_total: u64 = actual.iter().sum();
    if expected_total == 0 || actual_total == 0 {
        return 0.0;
    }
    const FLOOR: f64 = 1e-4;
    reference
        .counts
        .iter()
        .zip(&actual)
        .map(|(&e, &a)| {
            let e = (e as f64 / expected_total as f64).max(FLOOR);
            let a = (a as f64 / actual_total as f64).max(FLOOR);
            (a - e) * (a / e).ln()
        })
        .sum()
}

/// Kolmogorov–Smirnov distance between a reference histogram and new values, measured at the
/// reference's bin edges (the largest gap between the two cumulative distributions).
pub fn ks(reference: &Histogram, values: &[f64]) -> f64 {
    let actual = bin_counts(&reference.edges, values);
    let expected_total: u64 = reference.counts.iter().sum();
    let actual_total: u64 = actual.iter().sum();
    if expected_total == 0 || actual_total == 0 {
        return 0.0;
    }
    let (mut ce, mut ca, mut worst) = (0.0, 0.0, 0.0f64);
    for (&e, &a) in reference.counts.iter().zip(&actual) {
        ce += e as f64 / expected_total as f64;
        ca += a as f64 / actual_total as f64;
        worst = worst.max((ce - ca).abs());
    }
    worst
}

/// Total variation distance between two category frequency tables (0 = same, 1 = disjoint).
pub fn category_distance(reference: &[(String, u64)], current: &[(String, u64)]) -> f64 {
    let total = |t: &[(String, u64)]| t.iter().map(|(_, n)| *n).sum::<u64>().max(1) as f64;
    let (rt, ct) = (total(reference), total(current));
    let mut freq: HashMap<&str, (f64, f64)> = HashMap::new();
    for (k, n) in reference {
        freq.entry(k).or_default().0 = *n as f64 / rt;
    }
    for (k, n) in current {
        freq.entry(k).or_default().1 = *n as f64 / ct;
    }
    0.5 * freq.values().map(|(r, c)| (r - c).abs()).sum::<f64>()
}

/// Streaming statistics of every column of a table.
#[derive(Debug, Clone)]
pub struct TableProfiler {
    columns: Vec<(String, ColumnProfiler)>,
    rows: u64,
}

impl TableProfiler {
    pub fn new(schema: &arrow::datatypes::Schema) -> Self {
        TableProfiler {
            columns: schema
                .fields()
                .iter()
                .map(|f| (f.name().clone(), ColumnProfiler::new(f.data_type())))
                .collect(),
            rows: 0,
        }
    }

    pub fn update(&mut self, batch: &arrow::array::RecordBatch) {
        self.rows += batch.num_rows() as u64;
        for (name, profiler) in &mut self.columns {
            if let Some(column) = batch.column_by_name(name) {
                profiler.update(column);
            }
        }
    }

    /// Statistics of every column, plus each numeric column's sample.
    pub fn finish(self) -> (TableStatistics, HashMap<String, Vec<f64>>) {
        let mut stats = TableStatistics {
            num_rows: self.rows,
            ..Default::default()
        };
        let mut samples = HashMap::new();
        for (name, profiler) in self.columns {
            let profile = profiler.finish();
            stats.columns.insert(name.clone(), profile.stats);
            samples.insert(name, profile.sample);
        }
        (stats, samples)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Float64Array, StringArray};

    use super::*;

    fn profile(values: &[Option<f64>]) -> ColumnProfile {
        let mut p = ColumnProfiler::new(&DataType::Float64);
        p.update(&(Arc::new(Float64Array::from(values.to_vec())) as ArrayRef));
        p.finish()
    }

    #[test]
    fn numeric_statistics_match_direct_computation() {
        let values: Vec<Option<f64>> = (1..=100)
            .map(|i| Some(i as f64))
            .chain([None, Some(f64::NAN)])
            .collect();
        let s = profile(&values).stats;
        assert_eq!((s.count, s.null_count, s.nan_count), (100, 1, 1));
        assert_eq!((s.min, s.max, s.mean), (Some(1.0), Some(100.0), Some(50.5)));
        let std = (values
            .iter()
            .flatten()
            .filter(|v| v.is_finite())
            .map(|v| (v - 50.5).powi(2))
            .sum::<f64>()
            / 99.0)
            .sqrt();
        assert!((s.std.unwrap() - std).abs() < 1e-9);
        let median = s.quantiles.iter().find(|(q, _)| *q == 0.5).unwrap().1;
        assert!((median - 50.5).abs() < 1e-9);
        let h = s.histogram.unwrap();
        assert_eq!(h.counts.iter().sum::<u64>(), 100);
    }

    #[test]
    fn categorical_statistics_count_values() {
        let mut p = ColumnProfiler::new(&DataType::Utf8);
        let a: ArrayRef = Arc::new(StringArray::from(vec![
            Some("b"),
            Some("a"),
            Some("b"),
            None,
        ]));
        p.update(&a);
        let s = p.finish().stats;
        assert_eq!(s.distinct_count, Some(2));
        assert_eq!(
            s.top_values,
            vec![("b".to_string(), 2), ("a".to_string(), 1)]
        );
        assert_eq!(s.null_count, 1);
    }

    #[test]
    fn drift_is_zero_for_the_same_data_and_large_for_a_shift() {
        let same: Vec<Option<f64>> = (0..1000).map(|i| Some((i % 100) as f64)).collect();
        let reference = profile(&same).stats.histogram.unwrap();
        let values: Vec<f64> = same.iter().flatten().copied().collect();
        assert!(psi(&reference, &values) < 1e-9);
        assert!(ks(&reference, &values) < 1e-9);
        let shifted: Vec<f64> = values.iter().map(|v| v + 50.0).collect();
        assert!(psi(&reference, &shifted) > 0.25);
        assert!(ks(&reference, &shifted) > 0.4);
    }

    #[test]
    fn category_distance_bounds() {
        let a = vec![("x".to_string(), 5), ("y".to_string(), 5)];
        let b = vec![("z".to_string(), 3)];
        assert_eq!(category_distance(&a, &a), 0.0);
        assert!((category_distance(&a, &b) - 1.0).abs() < 1e-12);
    }
}
