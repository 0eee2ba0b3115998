//! Preprocessing fitted on the training split and stored with the model as a data file
//! (`preprocessing.json`), applied by the same code at training and at inference.

use std::collections::{BTreeMap, HashMap};

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Float64Type};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::matrix::Matrix;

/// Version of the `preprocessing.json` format.
pub const FORMAT_VERSION: u32 = 1;

/// How to fill missing numeric values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Impute {
    Mean,
    Median,
    /// A fixed value (`fill_value`).
    Constant,
}

/// How to scale numeric values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    Standard,
    MinMax,
    None,
}

/// How to encode categorical (string or bool) values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    OneHot,
    Ordinal,
}

/// What to do with a category not seen in training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unseen {
    /// Encode as "no known category" (all zeros one-hot, -1 ordinal) and count it.
    Ignore,
    /// Fail the run, naming the column and value.
    Error,
}

/// Preprocessing settings from the model spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreprocessSpec {
    #[serde(default = "default_impute")]
    pub impute: Impute,
    #[serde(default)]
    pub fill_value: f64,
    #[serde(default = "default_scale")]
    pub scale: Scale,
    #[serde(default = "default_encoding")]
    pub categorical: Encoding,
    #[serde(default = "default_unseen")]
    pub unseen: Unseen,
}

fn default_impute() -> Impute {
    Impute::Median
}
fn default_scale() -> Scale {
    Scale::Standard
}
fn default_encoding() -> Encoding {
    Encoding::OneHot
}
fn default_unseen() -> Unseen {
    Unseen::Ignore
}

impl Default for PreprocessSpec {
    fn default() -> Self {
        PreprocessSpec {
            impute: default_impute(),
            fill_value: 0.0,
            scale: default_scale(),
            categorical: default_encoding(),
            unseen: default_unseen(),
        }
    }
}

/// One input column's fitted transform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FittedColumn {
    /// `(value or fill - center) / scale`.
    Numeric {
        name: String,
        fill: f64,
        center: f64,
        scale: f64,
    },
    /// Categories in training order of first appearance sorted; missing values are their own
    /// category `null` if seen in training.
    Categorical {
        name: String,
        categories: Vec<String>,
        encoding: Encoding,
        unseen: Unseen,
    },
}

impl FittedColumn {
    pub fn name(&self) -> &str {
        match self {
            FittedColumn::Numeric { name, .. } | FittedColumn::Categorical { name, .. } => name,
        }
    }

    fn width(&self) -> usize {
        match self {
            FittedColumn::Numeric { .. } => 1,
            FittedColumn::Categorical {
                categories,
                encoding: Encoding::OneHot,
                ..
            } => categories.len(),
            FittedColumn::Categorical { .. } => 1,
        }
    }
}

/// The fitted preprocessing of a model version (`preprocessing.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocessing {
    pub format_version: u32,
    pub columns: Vec<FittedColumn>,
}

/// The result of a transform, with what the policies did.
#[derive(Debug, Clone, PartialEq)]
pub struct Transformed {
    pub matrix: Matrix,
    /// Per input column: values imputed.
    pub imputed: BTreeMap<String, usize>,
    /// Per categorical column: values not seen in training (policy `ignore`).
    pub unseen: BTreeMap<String, usize>,
}

fn is_categorical(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Boolean
    )
}

/// Numeric values as f64 (nulls as NaN); fails on NaN or infinity in the data itself.
fn numeric_values(name: &str, array: &ArrayRef) -> Result<Vec<f64>> {
    let values = arrow::compute::cast(array, &DataType::Float64).map_err(|_| Error::WrongType {
        column: name.to_string(),
        expected: "a number".into(),
        found: array.data_type().to_string(),
    })?;
    let values = values.as_primitive::<Float64Type>();
    let mut out = Vec::with_capacity(values.len());
    for i in 0..values.len() {
        if values.is_null(i) {
            out.push(f64::NAN);
        } else {
            let v = values.value(i);
            if !v.is_finite() {
                return Err(Error::NonFinite {
                    column: name.to_string(),
                    row: i,
                });
            }
            out.push(v);
        }
    }
    Ok(out)
}

fn category_values(array: &ArrayRef) -> Result<Vec<Option<String>>> {
    let strings = arrow::compute::cast(array, &DataType::Utf8)?;
    Ok(strings
        .as_string::<i32>()
        .iter()
        .map(|v| v.map(str::to_string))
        .collect())
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

impl Preprocessing {
    /// Fits on the training columns (name, values), in model input order.
    pub fn fit(spec: &PreprocessSpec, columns: &[(String, ArrayRef)]) -> Result<Preprocessing> {
        let mut fitted = Vec::with_capacity(columns.len());
        for (name, array) in columns {
            if is_categorical(array.data_type()) {
                let mut categories: Vec<String> = category_values(array)?
                    .into_iter()
                    .map(|v| v.unwrap_or_else(|| "null".into()))
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                categories.sort();
                fitted.push(FittedColumn::Categorical {
                    name: name.clone(),
                    categories,
                    encoding: spec.categorical,
                    unseen: spec.unseen,
                });
                continue;
            }
            let values = numeric_values(name, array)?;
            let mut present: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
            let fill = match spec.impute {
                Impute::Constant => spec.fill_value,
                Impute::Mean if present.is_empty() => 0.0,
                Impute::Mean => present.iter().sum::<f64>() / present.len() as f64,
                Impute::Median => median(&mut present),
            };
            let filled: Vec<f64> = values
                .iter()
                .map(|v| if v.is_nan() { fill } else { *v })
                .collect();
            let (center, scale) = match spec.scale {
                Scale::None => (0.0, 1.0),
                Scale::Standard => {
                    let n = filled.len().max(1) as f64;
                    let mean = filled.iter().sum::<f64>() / n;
                    // Population standard deviation, as scikit-learn's StandardScaler.
                    let var = filled.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
                    (mean, if var > 0.0 { var.sqrt() } else { 1.0 })
                }
                Scale::MinMax => {
                    let lo = filled.iter().copied().fold(f64::INFINITY, f64::min);
                    let hi = filled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    if hi > lo {
                        (lo, hi - lo)
                    } else {
                        (lo.min(0.0), 1.0)
                    }
                }
            };
            fitted.push(FittedColumn::Numeric {
                name: name.clone(),
                fill,
                center,
                scale,
            });
        }
        Ok(Preprocessing {
            format_version: FORMAT_VERSION,
            columns: fitted,
        })
    }

    /// Names of the model inputs after encoding (one per one-hot category).
    pub fn output_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for c in &self.columns {
            match c {
                FittedColumn::Categorical {
                    name,
                    categories,
                    encoding: Encoding::OneHot,
                    ..
                } => names.extend(categories.iter().map(|v| format!("{name}={v}"))),
                other => names.push(other.name().to_string()),
            }
        }
        names
    }

    /// Input column names in order.
    pub fn input_names(&self) -> Vec<&str> {
        self.columns.iter().map(FittedColumn::name).collect()
    }

    /// Applies the fitted transform to columns looked up by name.
    pub fn transform(&self, columns: &HashMap<String, ArrayRef>) -> Result<Transformed> {
        let rows = columns.values().next().map_or(0, |a| a.len());
        let width: usize = self.columns.iter().map(FittedColumn::width).sum();
        let mut matrix = Matrix::zeros(rows, width);
        let mut imputed = BTreeMap::new();
        let mut unseen_counts = BTreeMap::new();
        let mut offset = 0;
        for fitted in &self.columns {
            let name = fitted.name();
            let array = columns.get(name).ok_or_else(|| Error::MissingColumn {
                column: name.to_string(),
            })?;
            if array.len() != rows {
                return Err(Error::ColumnCount {
                    expected: rows,
                    found: array.len(),
                });
            }
            match fitted {
                FittedColumn::Numeric {
                    fill,
                    center,
                    scale,
                    ..
                } => {
                    if is_categorical(array.data_type()) {
                        return Err(Error::WrongType {
                            column: name.to_string(),
                            expected: "a number".into(),
                            found: array.data_type().to_string(),
                        });
                    }
                    let values = numeric_values(name, array)?;
                    let mut n_imputed = 0;
                    for (r, v) in values.into_iter().enumerate() {
                        let v = if v.is_nan() {
                            n_imputed += 1;
                            *fill
                        } else {
                            v
                        };
                        matrix.data[r * width + offset] = (v - center) / scale;
                    }
                    imputed.insert(name.to_string(), n_imputed);
                }
                FittedColumn::Categorical {
                    categories,
                    encoding,
                    unseen,
                    ..
                } => {
                    if !is_categorical(array.data_type()) && array.data_type().is_floating() {
                        return Err(Error::WrongType {
                            column: name.to_string(),
                            expected: "a string or bool category".into(),
                            found: array.data_type().to_string(),
                        });
                    }
                    let index: HashMap<&str, usize> = categories
                        .iter()
                        .enumerate()
                        .map(|(i, c)| (c.as_str(), i))
                        .collect();
                    let mut n_unseen = 0;
                    for (r, v) in category_values(array)?.into_iter().enumerate() {
                        let v = v.unwrap_or_else(|| "null".into());
                        match (index.get(v.as_str()), unseen) {
                            (Some(&k), _) => match encoding {
                                Encoding::OneHot => matrix.data[r * width + offset + k] = 1.0,
                                Encoding::Ordinal => matrix.data[r * width + offset] = k as f64,
                            },
                            (None, Unseen::Error) => {
                                return Err(Error::UnseenCategory {
                                    column: name.to_string(),
                                    value: v,
                                });
                            }
                            (None, Unseen::Ignore) => {
                                n_unseen += 1;
                                if *encoding == Encoding::Ordinal {
                                    matrix.data[r * width + offset] = -1.0;
                                }
                            }
                        }
                    }
                    unseen_counts.insert(name.to_string(), n_unseen);
                }
            }
            offset += fitted.width();
        }
        Ok(Transformed {
            matrix,
            imputed,
            unseen: unseen_counts,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Float64Array, StringArray};

    use super::*;

    fn cols(values: Vec<Option<f64>>, cats: Vec<Option<&str>>) -> Vec<(String, ArrayRef)> {
        vec![
            ("x".into(), Arc::new(Float64Array::from(values)) as ArrayRef),
            ("c".into(), Arc::new(StringArray::from(cats)) as ArrayRef),
        ]
    }

    #[test]
    fn fits_on_training_data_and_applies_the_same_transform() {
        let train = cols(
            vec![Some(1.0), Some(3.0), None, Some(5.0)],
            vec![Some("a"), Some("b"), Some("a"), None],
        );
        let p = Preprocessing::fit(&PreprocessSpec::default(), &train).unwrap();
        // Median of 1, 3, 5 fills the null; standardisation uses the filled values.
        let FittedColumn::Numeric {
            fill,
            center,
            scale,
            ..
        } = &p.columns[0]
        else {
            panic!()
        };
        assert_eq!((*fill, *center), (3.0, 3.0));
        assert!((scale - (2.0f64).sqrt()).abs() < 1e-12);
        assert_eq!(p.output_names(), ["x", "c=a", "c=b", "c=null"]);

        let serving = cols(vec![None, Some(3.0)], vec![Some("b"), Some("zzz")]);
        let map: HashMap<String, ArrayRef> = serving.into_iter().collect();
        let t = p.transform(&map).unwrap();
        assert_eq!(t.matrix.row(0), &[0.0, 0.0, 1.0, 0.0]);
        assert_eq!(
            t.matrix.row(1),
            &[0.0, 0.0, 0.0, 0.0],
            "unseen category: all zeros"
        );
        assert_eq!((t.imputed["x"], t.unseen["c"]), (1, 1));

        // Round trip through the stored file format.
        let json = serde_json::to_string(&p).unwrap();
        let back: Preprocessing = serde_json::from_str(&json).unwrap();
        assert_eq!(back.transform(&map).unwrap(), t);
    }

    #[test]
    fn unseen_category_can_be_an_error() {
        let train = cols(vec![Some(1.0)], vec![Some("a")]);
        let spec = PreprocessSpec {
            unseen: Unseen::Error,
            ..Default::default()
        };
        let p = Preprocessing::fit(&spec, &train).unwrap();
        let map: HashMap<String, ArrayRef> = cols(vec![Some(1.0)], vec![Some("new")])
            .into_iter()
            .collect();
        let err = p.transform(&map).unwrap_err().to_string();
        assert!(err.contains("\"c\"") && err.contains("\"new\""), "{err}");
    }

    #[test]
    fn nan_in_features_is_an_error_naming_the_column() {
        let train = cols(vec![Some(1.0), Some(f64::NAN)], vec![Some("a"), Some("a")]);
        let err = Preprocessing::fit(&PreprocessSpec::default(), &train).unwrap_err();
        assert!(
            matches!(err, Error::NonFinite { ref column, row: 1 } if column == "x"),
            "{err}"
        );
    }
}
