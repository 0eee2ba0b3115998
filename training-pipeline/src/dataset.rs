//! The training set: label rows split into train/validation/test, joined point-in-time with
//! every feature group, exactly as recorded table versions say.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray};
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::datatypes::{DataType, Int64Type, Schema};
use fti_learn::model::{Target, Task};
use fti_learn::pit::{AsOf, JoinSource, join_sources};
use futures::StreamExt;
use storage::{ColumnDef, Name, NameKind, ObjectRef, Store, TableSnapshot, VersionSpec};
use tracing::info;

use crate::error::{Error, Result};
use crate::spec::{FeatureSource, ModelSpec, SplitMethod, parse_duration_us};

/// Which split a row belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Train,
    Validation,
    Test,
}

/// The assembled training data, before preprocessing.
pub struct Dataset {
    /// Model inputs in spec order.
    pub inputs: Vec<ColumnDef>,
    pub columns: BTreeMap<String, ArrayRef>,
    pub label: ArrayRef,
    pub parts: Vec<Part>,
    /// Label times in microseconds (for reports).
    pub times: Vec<i64>,
    /// Exact table versions read.
    pub tables: Vec<ObjectRef>,
}

impl Dataset {
    pub fn indices(&self, part: Part) -> Vec<usize> {
        self.parts
            .iter()
            .enumerate()
            .filter(|(_, p)| **p == part)
            .map(|(i, _)| i)
            .collect()
    }

    /// The input columns at `rows`, by name.
    pub fn take(&self, rows: &[usize]) -> Result<std::collections::HashMap<String, ArrayRef>> {
        let indices = arrow::array::UInt32Array::from_iter_values(rows.iter().map(|&r| r as u32));
        self.columns
            .iter()
            .map(|(name, array)| {
                Ok((
                    name.clone(),
                    arrow::compute::take(array, &indices, None).map_err(fti_learn::Error::from)?,
                ))
            })
            .collect()
    }

    /// The inputs in model order, at `rows`.
    pub fn ordered(&self, rows: &[usize]) -> Result<Vec<(String, ArrayRef)>> {
        let mut taken = self.take(rows)?;
        Ok(self
            .inputs
            .iter()
            .map(|c| {
                (
                    c.name.clone(),
                    taken.remove(&c.name).expect("every input is a column"),
                )
            })
            .collect())
    }
}

async fn latest(store: &Store, group: &str, role: &'static str) -> Result<TableSnapshot> {
    let name = Name::new(NameKind::FeatureGroup, group)?;
    match store.table(&name, VersionSpec::Latest).await {
        Ok(s) => Ok(s),
        Err(storage::Error::TableNotFound { .. }) => Err(Error::MissingGroup {
            group: group.to_string(),
            role,
        }),
        Err(e) => Err(e.into()),
    }
}

fn require(snapshot: &TableSnapshot, column: &str) -> Result<ColumnDef> {
    snapshot
        .definition()
        .column(column)
        .cloned()
        .ok_or_else(|| Error::MissingColumn {
            group: snapshot.table.to_string(),
            column: column.to_string(),
            available: snapshot
                .definition()
                .columns
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// splitmix64: a uniform deterministic hash of (seed, row) for random splits and samples.
fn unit(seed: u64, row: u64) -> f64 {
    let mut z = seed.wrapping_add(row.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Reads, splits and joins the training set. `extra` sources are joined too but are not model
/// inputs (the champion's features, so it can be re-evaluated on the same rows).
pub async fn assemble(store: &Store, spec: &ModelSpec, extra: &[FeatureSource]) -> Result<Dataset> {
    let label_table = latest(store, &spec.label.group, "label").await?;
    let label_def = label_table.definition().clone();
    let label_col = require(&label_table, &spec.label.column)?;
    let time_col = spec
        .label
        .time
        .clone()
        .unwrap_or_else(|| label_def.event_time.clone());
    require(&label_table, &time_col)?;
    let mut tables = vec![ObjectRef::Table {
        name: label_table.table.to_string(),
        version: label_table.version,
    }];

    // Feature sources: snapshots and the label columns they need.
    let mut sources = Vec::new();
    let mut needed: Vec<String> = vec![label_col.name.clone(), time_col.clone()];
    let mut inputs: Vec<(ColumnDef, Option<usize>)> = Vec::new();
    let mut extra_columns: Vec<(ColumnDef, Option<usize>)> = Vec::new();
    let all = spec
        .features
        .iter()
        .map(|s| (s, true))
        .chain(extra.iter().map(|s| (s, false)));
    for (source, is_input) in all {
        let known = |name: &str,
                     inputs: &[(ColumnDef, Option<usize>)],
                     extra: &[(ColumnDef, Option<usize>)]| {
            inputs.iter().chain(extra).any(|(c, _)| c.name == name)
        };
        if source.group == spec.label.group {
            let columns = match &source.columns {
                Some(c) => c.clone(),
                None => label_def
                    .feature_columns()
                    .map(|c| c.name.clone())
                    .filter(|c| *c != label_col.name)
                    .collect(),
            };
            for c in columns {
                if is_input {
                    inputs.push((require(&label_table, &c)?, None));
                } else if known(&c, &inputs, &extra_columns) {
                    continue;
                } else {
                    extra_columns.push((require(&label_table, &c)?, None));
                }
                needed.push(c);
            }
            continue;
        }
        let snapshot = latest(store, &source.group, "feature").await?;
        let columns: Vec<String> = match &source.columns {
            Some(c) => c.clone(),
            None => snapshot
                .definition()
                .feature_columns()
                .map(|c| c.name.clone())
                .collect(),
        };
        let mut columns = columns;
        if !is_input {
            columns.retain(|c| !known(c, &inputs, &extra_columns));
            if columns.is_empty() {
                continue;
            }
        }
        for c in &columns {
            let entry = (require(&snapshot, c)?, Some(sources.len()));
            if is_input {
                inputs.push(entry);
            } else {
                extra_columns.push(entry);
            }
        }
        for key in &snapshot.definition().entity_keys {
            let label_column = source.join.get(key).cloned().unwrap_or_else(|| key.clone());
            require(&label_table, &label_column)?;
            needed.push(label_column);
        }
        let max_age = source
            .max_age
            .as_ref()
            .or(spec.join.max_age.as_ref())
            .and_then(|a| parse_duration_us(a));
        if is_input {
            tables.push(ObjectRef::Table {
                name: snapshot.table.to_string(),
                version: snapshot.version,
            });
        }
        sources.push((snapshot, columns, source.join.clone(), max_age));
    }
    let mut seen = std::collections::HashSet::new();
    for (c, _) in &inputs {
        if !seen.insert(c.name.clone()) {
            return Err(Error::InvalidSpec {
                path: "features".into(),
                problems: vec![format!(
                    "feature {:?} is selected twice (from two groups?)",
                    c.name
                )],
            });
        }
    }
    let sample_col = spec
        .split
        .train_sample
        .as_ref()
        .and_then(|s| s.column.clone());
    if let Some(c) = &sample_col {
        require(&label_table, c)?;
        needed.push(c.clone());
    }
    needed.sort();
    needed.dedup();

    // Stream the label table, keeping only rows that land in a split.
    let train_before = spec
        .split
        .train_before
        .as_deref()
        .map(crate::parse_time)
        .transpose()?;
    let test_from = spec
        .split
        .test_from
        .as_deref()
        .map(crate::parse_time)
        .transpose()?;
    let mut stream = label_table.batches(store, Some(needed.clone()));
    let mut kept = Vec::new();
    let mut parts = Vec::new();
    let mut row_offset = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let times = storage::table::to_micros(batch.column_by_name(&time_col).expect("projected"))?;
        let sample: Option<Vec<Option<i64>>> = match &sample_col {
            Some(c) => {
                let values = arrow::compute::cast(
                    batch.column_by_name(c).expect("projected"),
                    &DataType::Int64,
                )
                .map_err(|e| Error::BadData {
                    what: format!("split.train_sample.column {c:?}"),
                    message: format!("not an integer column: {e}"),
                })?;
                Some(values.as_primitive::<Int64Type>().iter().collect())
            }
            None => None,
        };
        let mut keep = Vec::with_capacity(batch.num_rows());
        for i in 0..batch.num_rows() {
            let row = row_offset + i as u64;
            let t = times.value(i);
            let part = match spec.split.method {
                SplitMethod::Time => {
                    if train_before.is_some_and(|b| t < b) {
                        Part::Train
                    } else if test_from.is_some_and(|f| t >= f) {
                        Part::Test
                    } else {
                        Part::Validation
                    }
                }
                SplitMethod::Random => {
                    let u = unit(spec.split.seed, row);
                    let test = spec.split.test_fraction.unwrap_or(0.0);
                    let valid = spec.split.validation_fraction.unwrap_or(0.0);
                    if u < test {
                        Part::Test
                    } else if u < test + valid {
                        Part::Validation
                    } else {
                        Part::Train
                    }
                }
            };
            let sampled_in = part != Part::Train
                || match (&spec.split.train_sample, &sample) {
                    (Some(s), Some(values)) => {
                        values[i].is_some_and(|v| v.rem_euclid(s.modulo.unwrap_or(1)) == 0)
                    }
                    (Some(s), None) => {
                        unit(spec.split.seed ^ 0x5A5A, row) < s.fraction.unwrap_or(1.0)
                    }
                    (None, _) => true,
                };
            keep.push(sampled_in);
            if sampled_in {
                parts.push(part);
            }
        }
        row_offset += batch.num_rows() as u64;
        let mask = BooleanArray::from(keep);
        kept.push(filter_record_batch(&batch, &mask).map_err(fti_learn::Error::from)?);
    }
    let schema = kept
        .first()
        .map(|b| b.schema())
        .unwrap_or_else(|| Arc::new(Schema::empty()));
    let labels = concat_batches(&schema, &kept).map_err(fti_learn::Error::from)?;
    info!(
        rows = labels.num_rows(),
        label_version = label_table.version,
        "label rows read and split"
    );

    // Point-in-time joins.
    let time_values = storage::table::to_micros(
        labels
            .column_by_name(&time_col)
            .ok_or(Error::EmptySplit { split: "train" })?,
    )?;
    let mut columns: BTreeMap<String, ArrayRef> = BTreeMap::new();
    for (c, source) in inputs.iter().chain(&extra_columns) {
        if source.is_none() {
            columns.insert(
                c.name.clone(),
                labels.column_by_name(&c.name).expect("projected").clone(),
            );
        }
    }
    let joins: Vec<JoinSource> = sources
        .into_iter()
        .map(|(snapshot, feature_columns, join, max_age)| {
            JoinSource::new(
                snapshot,
                feature_columns,
                &join,
                AsOf {
                    inclusive: spec.join.inclusive,
                    max_age_us: max_age,
                },
            )
        })
        .collect();
    for (name, values) in join_sources(store, &labels, &time_values, &joins).await? {
        columns.insert(name, values);
    }
    for join in &joins {
        info!(group = %join.snapshot.table, version = join.snapshot.version, "point-in-time join");
    }
    Ok(Dataset {
        inputs: inputs.into_iter().map(|(c, _)| c).collect(),
        columns,
        label: labels
            .column_by_name(&label_col.name)
            .expect("projected")
            .clone(),
        parts,
        times: time_values.values().to_vec(),
        tables,
    })
}

/// The training target for `rows`, with class names fixed by the training split.
pub fn target(
    task: Task,
    label: &ArrayRef,
    name: &str,
    train: &[usize],
    rows: &[usize],
    classes: Option<&[String]>,
) -> Result<Target> {
    let nulls = rows.iter().filter(|&&r| label.is_null(r)).count();
    if nulls > 0 {
        return Err(fti_learn::Error::NullLabels {
            column: name.to_string(),
            nulls,
        }
        .into());
    }
    if task == Task::Regression {
        let values =
            arrow::compute::cast(label, &DataType::Float64).map_err(|e| Error::BadData {
                what: format!("label {name:?}"),
                message: format!("a regression label must be numeric: {e}"),
            })?;
        let values = values.as_primitive::<arrow::datatypes::Float64Type>();
        return Ok(Target::Values(
            rows.iter().map(|&r| values.value(r)).collect(),
        ));
    }
    if matches!(label.data_type(), DataType::Float32 | DataType::Float64) {
        return Err(Error::BadData {
            what: format!("label {name:?}"),
            message: "a classification label must be a bool, integer or string, not a float".into(),
        });
    }
    let strings = arrow::compute::cast(label, &DataType::Utf8).map_err(fti_learn::Error::from)?;
    let strings = strings.as_string::<i32>();
    let classes: Vec<String> = match classes {
        Some(c) => c.to_vec(),
        None => {
            let mut c: Vec<String> = train
                .iter()
                .map(|&r| strings.value(r).to_string())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            c.sort();
            c
        }
    };
    if task == Task::Binary && classes.len() > 2 {
        return Err(Error::BadData {
            what: format!("label {name:?}"),
            message: format!(
                "a binary task needs two classes, the training split has {}: {}",
                classes.len(),
                classes.join(", ")
            ),
        });
    }
    let index: std::collections::HashMap<&str, usize> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect();
    let mut out = Vec::with_capacity(rows.len());
    for &r in rows {
        let v = strings.value(r);
        let i = *index.get(v).ok_or_else(|| Error::BadData {
            what: format!("label {name:?}"),
            message: format!("class {v:?} does not occur in the training split"),
        })?;
        out.push(i);
    }
    Ok(Target::Classes {
        index: out,
        classes,
    })
}
