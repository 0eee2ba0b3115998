//! Column statistics of Arrow data, computed in one streaming pass with bounded memory, and
//! the drift measures (PSI, KS) that compare them. The feature pipeline stores these with
//! every commit; training and inference compare against them for skew.

use std::collections::HashMap;

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, GenericStringArray, OffsetSizeTrait, StringViewArray,
};
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
    reservoir: Reservoir,
    categories: Option<Categories>,
    /// Integers converted to floats, a chunk at a time.
    buffer: Vec<f64>,
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
            reservoir: Reservoir::new(SAMPLE_SIZE),
            categories: (kind == Kind::Categorical).then(Categories::default),
            buffer: Vec::new(),
        }
    }

    /// What the values added so far hold, for rules watching for the batch that first breaks
    /// them.
    pub fn so_far(&self) -> SoFar {
        SoFar {
            nulls: self.nulls,
            non_finite: self.nans,
            min: self.min,
            max: self.max,
        }
    }

    /// Adds an array of this column's values.
    pub fn update(&mut self, array: &ArrayRef) {
        self.nulls += array.null_count() as u64;
        match self.kind {
            Kind::Numeric if array.null_count() == 0 && array.data_type().is_integer() => {
                self.add_integers(array)
            }
            Kind::Numeric => {
                let Ok(values) = arrow::compute::cast(array, &DataType::Float64) else {
                    return;
                };
                self.add_numbers(values.as_primitive::<Float64Type>());
            }
            Kind::Temporal => {
                self.count += (array.len() - array.null_count()) as u64;
                if let Some((min, max)) = storage::table::micros_range_f64(array) {
                    self.min = self.min.min(min);
                    self.max = self.max.max(max);
                }
            }
            Kind::Categorical => {
                self.count += (array.len() - array.null_count()) as u64;
                if let Some(categories) = &mut self.categories
                    && !categories.add(array)
                {
                    self.categories = None;
                }
            }
            Kind::Other => self.count += (array.len() - array.null_count()) as u64,
        }
    }

    /// Adds a batch of numbers: its moments are computed on their own and merged (Chan et
    /// al.), which keeps the per-value loop free of divisions. Sums are taken relative to the
    /// batch's first finite value, so values near the float range do not overflow them.
    fn add_numbers(&mut self, values: &Float64Array) {
        if values.null_count() == 0 && values.values().iter().all(|v| v.is_finite()) {
            self.add_finite(values.values());
            return;
        }
        let (mut n, mut shifted, mut min, mut max) = (0u64, 0.0, f64::INFINITY, f64::NEG_INFINITY);
        let mut origin: Option<f64> = None;
        let mut visit = |v: f64| {
            if v.is_finite() {
                let o = *origin.get_or_insert(v);
                n += 1;
                shifted += v - o;
                min = min.min(v);
                max = max.max(v);
                self.reservoir.offer(v);
            } else {
                self.nans += 1;
            }
        };
        if values.null_count() == 0 {
            values.values().iter().for_each(|&v| visit(v));
        } else {
            values.iter().flatten().for_each(visit);
        }
        let Some(origin) = origin else {
            return;
        };
        let batch_mean = origin + shifted / n as f64;
        let squares = |v: f64| {
            if v.is_finite() {
                (v - batch_mean) * (v - batch_mean)
            } else {
                0.0
            }
        };
        let batch_m2: f64 = if values.null_count() == 0 {
            values.values().iter().map(|&v| squares(v)).sum()
        } else {
            values.iter().flatten().map(squares).sum()
        };
        self.merge_moments(n, batch_mean, batch_m2, min, max);
    }

    /// [`Self::add_numbers`] for integers without nulls: they are finite, so they go to
    /// [`Self::add_finite`] a chunk at a time through a buffer kept between batches, with no
    /// converted array allocated and no finiteness pass.
    fn add_integers(&mut self, array: &ArrayRef) {
        const CHUNK: usize = 4096;
        let mut buffer = std::mem::take(&mut self.buffer);
        arrow::array::downcast_integer_array!(
            array => {
                for chunk in array.values().chunks(CHUNK) {
                    buffer.clear();
                    buffer.extend(chunk.iter().map(|&v| v as f64));
                    self.add_finite(&buffer);
                }
            }
            _ => {}
        );
        self.buffer = buffer;
    }

    /// [`Self::add_numbers`] for a batch without nulls, NaN or infinities: each pass is a
    /// loop over the slice alone, which the compiler vectorises, and the reservoir jumps from
    /// one taken value to the next instead of looking at every value.
    fn add_finite(&mut self, values: &[f64]) {
        let Some(&origin) = values.first() else {
            return;
        };
        let n = values.len();
        let shifted = lane_sum(values, |v| v - origin);
        let batch_mean = origin + shifted / n as f64;
        let batch_m2 = lane_sum(values, |v| (v - batch_mean) * (v - batch_mean));
        let (min, max) = lane_min_max(values);
        self.reservoir.offer_all(values);
        self.merge_moments(n as u64, batch_mean, batch_m2, min, max);
    }

    /// Merges a batch's count, mean, sum of squared deviations, minimum and maximum into the
    /// column's (Chan et al.).
    fn merge_moments(&mut self, n: u64, batch_mean: f64, batch_m2: f64, min: f64, max: f64) {
        let total = self.count + n;
        if self.count == 0 {
            (self.mean, self.m2) = (batch_mean, batch_m2);
        } else {
            let delta = batch_mean - self.mean;
            self.mean += delta * (n as f64 / total as f64);
            self.m2 += batch_m2 + delta * delta * (self.count as f64 / total as f64) * n as f64;
        }
        self.count = total;
        self.min = self.min.min(min);
        self.max = self.max.max(max);
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
            self.reservoir.sample.sort_by(f64::total_cmp);
            stats.quantiles = QUANTILES
                .iter()
                .map(|&q| (q, quantile_sorted(&self.reservoir.sample, q)))
                .collect();
            stats.histogram = Some(histogram(
                &self.reservoir.sample,
                self.min,
                self.max,
                self.count,
            ));
        }
        if let Some(categories) = self.categories {
            let mut top = categories.into_counts();
            stats.distinct_count = Some(top.len() as u64);
            top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            top.truncate(100);
            stats.top_values = top;
        }
        ColumnProfile {
            stats,
            sample: self.reservoir.sample,
        }
    }
}

/// A uniform sample of at most `size` values from a stream (reservoir sampling, Li's
/// algorithm L: it draws random numbers only when a value is taken, not for every value).
/// The generator has a fixed seed, so the sample is deterministic for a given input order.
#[derive(Debug, Clone)]
struct Reservoir {
    size: usize,
    sample: Vec<f64>,
    /// Values offered so far.
    seen: u64,
    /// The 1-based position of the next value to take once the sample is full.
    next: u64,
    w: f64,
    rng: u64,
}

impl Reservoir {
    fn new(size: usize) -> Self {
        Reservoir {
            size,
            sample: Vec::new(),
            seen: 0,
            next: 0,
            w: 1.0,
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }

    /// A uniform draw in (0, 1) from a xorshift generator.
    fn uniform(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        ((self.rng >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Moves `next` past the values skipped before the next one taken.
    fn skip(&mut self) {
        self.w *= (self.uniform().ln() / self.size as f64).exp();
        let gap = (self.uniform().ln() / (-self.w).ln_1p()).floor();
        self.next = self.seen + gap.min(u64::MAX as f64 / 2.0) as u64 + 1;
    }

    /// Offers every value of `values` in order: the same sample as offering them one by one.
    fn offer_all(&mut self, values: &[f64]) {
        let first_seen = self.seen;
        let mut rest = values;
        while self.sample.len() < self.size {
            let Some((&v, tail)) = rest.split_first() else {
                return;
            };
            self.offer(v);
            rest = tail;
        }
        // The value at 1-based position `p` is `values[p - first_seen - 1]`.
        while let Some(&v) = self
            .next
            .checked_sub(first_seen + 1)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| values.get(i))
        {
            self.seen = self.next;
            let slot = (self.uniform() * self.size as f64) as usize;
            self.sample[slot.min(self.size - 1)] = v;
            self.skip();
        }
        self.seen = first_seen + values.len() as u64;
    }

    #[inline]
    fn offer(&mut self, v: f64) {
        self.seen += 1;
        if self.sample.len() < self.size {
            self.sample.push(v);
            if self.sample.len() == self.size {
                self.skip();
            }
        } else if self.seen == self.next {
            let slot = (self.uniform() * self.size as f64) as usize;
            self.sample[slot.min(self.size - 1)] = v;
            self.skip();
        }
    }
}

/// The sum of `f(v)` over `values`, in eight interleaved partial sums that the compiler keeps
/// in vector registers (one running sum would serialise every addition).
fn lane_sum(values: &[f64], f: impl Fn(f64) -> f64) -> f64 {
    let mut lanes = [0.0f64; 8];
    let chunks = values.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += f(v);
        }
    }
    lanes.iter().sum::<f64>() + tail
}

/// The minimum and maximum of `values`, which hold no NaN, in eight lanes.
fn lane_min_max(values: &[f64]) -> (f64, f64) {
    let mut lo = [f64::INFINITY; 8];
    let mut hi = [f64::NEG_INFINITY; 8];
    let chunks = values.chunks_exact(8);
    let tail = chunks.remainder();
    for chunk in chunks {
        for i in 0..8 {
            lo[i] = if chunk[i] < lo[i] { chunk[i] } else { lo[i] };
            hi[i] = if chunk[i] > hi[i] { chunk[i] } else { hi[i] };
        }
    }
    let min = lo.iter().chain(tail).fold(f64::INFINITY, |a, &v| a.min(v));
    let max = hi
        .iter()
        .chain(tail)
        .fold(f64::NEG_INFINITY, |a, &v| a.max(v));
    (min, max)
}

/// Value counts of a categorical column, up to [`MAX_CATEGORIES`] distinct values. Strings
/// of up to 15 bytes are counted under their bytes packed in a `u128` (length in the top
/// byte), so counting them hashes one integer and compares no strings.
#[derive(Debug, Clone, Default)]
struct Categories {
    short: HashMap<u128, u64, foldhash::fast::FixedState>,
    long: HashMap<String, u64, foldhash::fast::FixedState>,
}

impl Categories {
    fn len(&self) -> usize {
        self.short.len() + self.long.len()
    }

    /// Counts the values of `array`; false once there are more than [`MAX_CATEGORIES`].
    fn add(&mut self, array: &ArrayRef) -> bool {
        match array.data_type() {
            DataType::Boolean => {
                let values = array.as_boolean();
                let trues = values.true_count() as u64;
                let falses = (values.len() - values.null_count()) as u64 - trues;
                for (value, n) in [("true", trues), ("false", falses)] {
                    if n > 0 {
                        *self
                            .short
                            .entry(pack(value.as_bytes()).unwrap_or_default())
                            .or_default() += n;
                    }
                }
                true
            }
            DataType::Utf8 => self.add_string_array(array.as_string::<i32>()),
            DataType::LargeUtf8 => self.add_string_array(array.as_string::<i64>()),
            DataType::Utf8View => self.add_string_views(array.as_string_view()),
            _ => match arrow::compute::cast(array, &DataType::Utf8) {
                Ok(strings) => self.add_strings(strings.as_string::<i32>().iter()),
                Err(_) => true,
            },
        }
    }

    fn add_strings<'a>(&mut self, values: impl Iterator<Item = Option<&'a str>>) -> bool {
        values
            .flatten()
            .all(|v| self.count(pack(v.as_bytes()), || v))
    }

    /// [`Self::add_strings`] for an offsets-and-bytes array: a string of up to 15 bytes is
    /// packed from one 16-byte load of the value buffer (where the buffer has 16 bytes from
    /// the string's start), not copied byte by byte.
    fn add_string_array<O: OffsetSizeTrait>(&mut self, array: &GenericStringArray<O>) -> bool {
        let offsets = array.value_offsets();
        let data = array.value_data();
        (0..array.len()).filter(|&i| array.is_valid(i)).all(|i| {
            let (start, end) = (offsets[i].as_usize(), offsets[i + 1].as_usize());
            let len = end - start;
            let key = match data.get(start..start + 16) {
                Some(word) if len <= 15 => {
                    let word = u128::from_le_bytes(word.try_into().expect("a 16-byte slice"));
                    Some(word & ((1u128 << (8 * len)) - 1) | ((len as u128) << 120))
                }
                _ => pack(&data[start..end]),
            };
            self.count(key, || array.value(i))
        })
    }

    /// [`Self::add_strings`] for a view array: a string of up to 12 bytes is inline in its
    /// 16-byte view (length, then the bytes; read as a little-endian `u128`, as arrow-rs
    /// does), so its packed key is the view shifted, with no load from a data buffer.
    fn add_string_views(&mut self, array: &StringViewArray) -> bool {
        let views = array.views();
        (0..array.len()).filter(|&i| array.is_valid(i)).all(|i| {
            let view = views[i];
            let len = view as u32 as usize;
            let key = match len <= 12 {
                // The bytes past `len` are masked: the format asks for zero padding, but a
                // key must not depend on a producer honouring it.
                true => Some((view >> 32) & ((1u128 << (8 * len)) - 1) | ((len as u128) << 120)),
                false => pack(array.value(i).as_bytes()),
            };
            self.count(key, || array.value(i))
        })
    }

    /// Counts one value, under its packed `key` if it has one; false once there are more
    /// than [`MAX_CATEGORIES`].
    #[inline]
    fn count<'a>(&mut self, key: Option<u128>, value: impl FnOnce() -> &'a str) -> bool {
        let full = self.len() >= MAX_CATEGORIES;
        match key {
            Some(key) => match self.short.get_mut(&key) {
                Some(n) => *n += 1,
                None if full => return false,
                None => {
                    self.short.insert(key, 1);
                }
            },
            None => {
                let value = value();
                match self.long.get_mut(value) {
                    Some(n) => *n += 1,
                    None if full => return false,
                    None => {
                        self.long.insert(value.to_string(), 1);
                    }
                }
            }
        }
        true
    }

    fn into_counts(self) -> Vec<(String, u64)> {
        let short = self.short.into_iter().map(|(key, n)| (unpack(key), n));
        short.chain(self.long).collect()
    }
}

/// Bytes of up to 15 as one integer: the bytes, then the length in the top byte.
#[inline]
fn pack(bytes: &[u8]) -> Option<u128> {
    if bytes.len() > 15 {
        return None;
    }
    let mut buffer = [0u8; 16];
    buffer[..bytes.len()].copy_from_slice(bytes);
    buffer[15] = bytes.len() as u8;
    Some(u128::from_le_bytes(buffer))
}

fn unpack(key: u128) -> String {
    let buffer = key.to_le_bytes();
    let len = buffer[15] as usize;
    // Packed from a `&str`, so valid UTF-8.
    String::from_utf8_lossy(&buffer[..len]).into_owned()
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

/// A column's running counts and range ([`ColumnProfiler::so_far`]); `min` and `max` are over
/// the finite numbers (dates and times in microseconds) and start at +inf and -inf.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SoFar {
    pub nulls: u64,
    pub non_finite: u64,
    pub min: f64,
    pub max: f64,
}

impl Default for SoFar {
    fn default() -> Self {
        SoFar {
            nulls: 0,
            non_finite: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
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

    /// The running state of `column`, if profiled.
    pub fn so_far(&self, column: &str) -> Option<SoFar> {
        self.columns
            .iter()
            .find(|(name, _)| name == column)
            .map(|(_, p)| p.so_far())
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

    use arrow::array::{BooleanArray, StringArray, StringViewArray};

    use super::*;

    fn profile(values: &[Option<f64>]) -> ColumnProfile {
        let mut p = ColumnProfiler::new(&DataType::Float64);
        p.update(&(Arc::new(Float64Array::from(values.to_vec())) as ArrayRef));
        p.finish()
    }

    /// Date and time-stamp columns get their range in microseconds since the epoch, over
    /// every batch: a date too far out for an `i64` of microseconds still counts (as a
    /// float) instead of dropping its batch from the range.
    #[test]
    fn temporal_range_spans_every_batch_in_microseconds() {
        use arrow::array::{Date32Array, TimestampNanosecondArray};
        let mut dates = ColumnProfiler::new(&DataType::Date32);
        for batch in [vec![Some(3), None, Some(-2)], vec![Some(i32::MAX), Some(0)]] {
            dates.update(&(Arc::new(Date32Array::from(batch)) as ArrayRef));
        }
        let s = dates.finish().stats;
        assert_eq!((s.count, s.null_count), (4, 1));
        assert_eq!(s.min, Some(-2.0 * 86_400_000_000.0));
        assert_eq!(s.max, Some(f64::from(i32::MAX) * 86_400_000_000.0));

        // Nanoseconds truncate toward zero, as the event-time range of a commit does.
        let mut times = ColumnProfiler::new(&DataType::Timestamp(
            arrow::datatypes::TimeUnit::Nanosecond,
            None,
        ));
        let array: ArrayRef = Arc::new(TimestampNanosecondArray::from(vec![-5_500, 1_999]));
        times.update(&array);
        let s = times.finish().stats;
        assert_eq!((s.min, s.max), (Some(-5.0), Some(1.0)));
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

    /// Values near the float range keep a finite mean (the sums are relative).
    #[test]
    fn huge_values_keep_a_finite_mean() {
        let s = profile(&[Some(1e308), Some(1e308), Some(1e308)]).stats;
        assert_eq!(s.mean, Some(1e308));
        assert_eq!(s.std, Some(0.0));
    }

    /// Moments merged batch by batch equal the direct computation over all values.
    #[test]
    fn moments_over_batches_match_direct_computation() {
        let values: Vec<f64> = (0..10_000)
            .map(|i| ((i * 7919) % 1000) as f64 / 3.0)
            .collect();
        let mut p = ColumnProfiler::new(&DataType::Float64);
        for chunk in values.chunks(777) {
            p.update(&(Arc::new(Float64Array::from(chunk.to_vec())) as ArrayRef));
        }
        let s = p.finish().stats;
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let std = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        assert_eq!(s.count, values.len() as u64);
        assert!((s.mean.unwrap() - mean).abs() < 1e-9 * mean.abs());
        assert!((s.std.unwrap() - std).abs() < 1e-9 * std);
    }

    /// Integer columns (converted a chunk at a time) get the statistics and the sample of
    /// the same values as floats, over batches longer and shorter than a chunk, with a null
    /// batch in between (which takes the general path).
    #[test]
    fn integers_give_the_statistics_of_their_floats() {
        let values: Vec<i64> = (0..60_000i64)
            .map(|i| (i * 7919) % 100_003 - 50_000)
            .collect();
        let mut ints = ColumnProfiler::new(&DataType::Int64);
        let mut floats = ColumnProfiler::new(&DataType::Float64);
        for (k, chunk) in values.chunks(9_000).enumerate() {
            let with_null = k == 2;
            let int: ArrayRef = match with_null {
                true => Arc::new(arrow::array::Int64Array::from_iter(
                    chunk
                        .iter()
                        .enumerate()
                        .map(|(i, &v)| (i != 5).then_some(v)),
                )),
                false => Arc::new(arrow::array::Int64Array::from(chunk.to_vec())),
            };
            ints.update(&int);
            floats.update(&arrow::compute::cast(&int, &DataType::Float64).unwrap());
        }
        let (a, b) = (ints.finish(), floats.finish());
        assert_eq!(a.sample, b.sample);
        assert_eq!(a.stats.data_type, "int64");
        let (a, b) = (a.stats, b.stats);
        assert_eq!(
            (a.count, a.null_count, a.min, a.max),
            (b.count, b.null_count, b.min, b.max)
        );
        assert_eq!((&a.quantiles, &a.histogram), (&b.quantiles, &b.histogram));
        let close = |x: Option<f64>, y: Option<f64>| {
            (x.unwrap() - y.unwrap()).abs() < 1e-9 * y.unwrap().abs().max(1.0)
        };
        assert!(
            close(a.mean, b.mean) && close(a.std, b.std),
            "{a:?} vs {b:?}"
        );
    }

    /// The reservoir keeps SAMPLE_SIZE distinct values spread over the whole stream, not
    /// its beginning.
    #[test]
    fn reservoir_sample_is_uniform_over_the_stream() {
        let n = 1_000_000u64;
        let mut p = ColumnProfiler::new(&DataType::Float64);
        let all: Vec<f64> = (0..n).map(|i| i as f64).collect();
        for chunk in all.chunks(65_536) {
            p.update(&(Arc::new(Float64Array::from(chunk.to_vec())) as ArrayRef));
        }
        let mut sample = p.finish().sample;
        assert_eq!(sample.len(), SAMPLE_SIZE);
        let k = sample.len() as f64;
        let mean = sample.iter().sum::<f64>() / k;
        // The mean of a uniform sample of 0..n is within 4 standard errors of (n - 1) / 2.
        let se = (n as f64 / 12f64.sqrt()) / k.sqrt();
        assert!(
            (mean - (n - 1) as f64 / 2.0).abs() < 4.0 * se,
            "mean {mean}"
        );
        for (lo, hi) in [(0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0)] {
            let share = sample
                .iter()
                .filter(|&&v| v >= lo * n as f64 && v < hi * n as f64)
                .count() as f64
                / k;
            assert!(
                (share - 0.25).abs() < 0.02,
                "share of [{lo}, {hi}): {share}"
            );
        }
        sample.sort_by(f64::total_cmp);
        sample.dedup();
        assert_eq!(sample.len(), SAMPLE_SIZE, "no value is taken twice");
    }

    /// Offering a batch at once takes the same values into the same slots as offering them
    /// one by one, whatever the batch sizes.
    #[test]
    fn offering_batches_keeps_the_one_by_one_sample() {
        let all: Vec<f64> = (0..50_000).map(|i| i as f64).collect();
        let mut one_by_one = Reservoir::new(500);
        all.iter().for_each(|&v| one_by_one.offer(v));
        let mut batched = Reservoir::new(500);
        let mut rest = all.as_slice();
        for size in [1usize, 499, 1, 3, 777, 10_000, 4096].into_iter().cycle() {
            let (batch, tail) = rest.split_at(size.min(rest.len()));
            batched.offer_all(batch);
            rest = tail;
            if rest.is_empty() {
                break;
            }
        }
        assert_eq!(batched.seen, all.len() as u64);
        assert_eq!(batched.sample, one_by_one.sample);
        assert!(batched.sample.iter().any(|&v| v > 40_000.0));
    }

    /// A batch without nulls or non-finite values (the vectorised path) and one with them
    /// give the moments, extremes and counts of a direct computation.
    #[test]
    fn finite_and_mixed_batches_give_the_direct_statistics() {
        let finite: Vec<Option<f64>> = (0..1001)
            .map(|i| Some((i * 37 % 101) as f64 - 50.5))
            .collect();
        let mut mixed = finite.clone();
        mixed.extend([None, Some(f64::NAN), Some(f64::INFINITY), Some(-7.25)]);
        for (values, nans) in [(&finite, 0), (&mixed, 2)] {
            let s = profile(values).stats;
            let xs: Vec<f64> = values
                .iter()
                .flatten()
                .copied()
                .filter(|v| v.is_finite())
                .collect();
            let n = xs.len() as f64;
            let mean = xs.iter().sum::<f64>() / n;
            let std = (xs.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
            assert_eq!((s.count, s.nan_count), (xs.len() as u64, nans));
            assert!((s.mean.unwrap() - mean).abs() < 1e-12 * mean.abs().max(1.0));
            assert!((s.std.unwrap() - std).abs() < 1e-12 * std);
            assert_eq!(s.min, xs.iter().copied().reduce(f64::min));
            assert_eq!(s.max, xs.iter().copied().reduce(f64::max));
        }
    }

    /// Strings packed from the value buffer or from their views count as the same categories
    /// as strings packed byte by byte: every length around the 12- and 15-byte limits, values
    /// at the buffer's end (too close to it for a 16-byte load), nulls, and sliced arrays.
    #[test]
    fn strings_packed_from_the_buffer_count_like_byte_by_byte() {
        let words: Vec<String> = (0..40)
            .map(|i| {
                "xyz0123456789abcdefghij"
                    .chars()
                    .cycle()
                    .skip(i)
                    .take(i % 20)
                    .collect()
            })
            .collect();
        let values: Vec<Option<&str>> = words
            .iter()
            .enumerate()
            .flat_map(|(i, w)| [Some(w.as_str()), (i % 3 == 0).then_some("ab")])
            .chain([Some("short"), Some("a"), Some("")])
            .collect();
        // Sorted counts after `add` fills a fresh `Categories`.
        let counts = |add: &dyn Fn(&mut Categories) -> bool| {
            let mut categories = Categories::default();
            assert!(add(&mut categories));
            let mut counts = categories.into_counts();
            counts.sort();
            counts
        };
        let views = StringViewArray::from(values.clone());
        let sliced_views = views.slice(3, views.len() - 3);
        for array in [views, sliced_views] {
            let fast = counts(&|c| c.add_string_views(&array));
            assert_eq!(fast, counts(&|c| c.add_strings(array.iter())));
        }
        let array = StringArray::from(values.clone());
        let sliced = array.slice(3, array.len() - 3);
        for array in [array, sliced] {
            let fast = counts(&|c| c.add_string_array(&array));
            assert_eq!(fast, counts(&|c| c.add_strings(array.iter())));
            assert_eq!(
                fast.iter().map(|c| c.1).sum::<u64>(),
                array.len() as u64 - array.null_count() as u64
            );
        }
    }

    /// Every string encoding, long strings and booleans are counted by value.
    #[test]
    fn categories_are_counted_in_every_encoding() {
        let long = "a value longer than fifteen bytes";
        let values = vec![
            Some("b"),
            Some(""),
            Some(long),
            None,
            Some("b"),
            Some(long),
            Some("b"),
        ];
        let expected = vec![
            ("b".to_string(), 3),
            (long.to_string(), 2),
            (String::new(), 1),
        ];
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(values.clone())),
            Arc::new(arrow::array::LargeStringArray::from(values.clone())),
            Arc::new(StringViewArray::from(values.clone())),
        ];
        for array in arrays {
            let mut p = ColumnProfiler::new(array.data_type());
            p.update(&array);
            let s = p.finish().stats;
            assert_eq!(s.distinct_count, Some(3), "{}", array.data_type());
            assert_eq!(s.top_values, expected, "{}", array.data_type());
            assert_eq!((s.count, s.null_count), (6, 1));
        }
        let flags: ArrayRef = Arc::new(BooleanArray::from(vec![
            Some(true),
            None,
            Some(false),
            Some(true),
        ]));
        let mut p = ColumnProfiler::new(&DataType::Boolean);
        p.update(&flags);
        let s = p.finish().stats;
        assert_eq!(
            s.top_values,
            vec![("true".to_string(), 2), ("false".to_string(), 1)]
        );
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
