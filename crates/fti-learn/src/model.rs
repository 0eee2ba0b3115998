//! Model fit and predict behind one enum, serialised as the `model.json` artifact of a model
//! version. Every fit and predict checks its input first: smartcore accepts NaN silently and
//! panics on a wrong column count, so neither may reach it.

use rayon::prelude::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use smartcore::ensemble::random_forest_classifier::{
    RandomForestClassifier, RandomForestClassifierParameters,
};
use smartcore::ensemble::random_forest_regressor::{
    RandomForestRegressor, RandomForestRegressorParameters,
};
use smartcore::linalg::basic::arrays::{Array, Array2};
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::linear::elastic_net::{ElasticNet, ElasticNetParameters};
use smartcore::linear::lasso::{Lasso, LassoParameters};
use smartcore::linear::linear_regression::{LinearRegression, LinearRegressionParameters};
use smartcore::linear::logistic_regression::{LogisticRegression, LogisticRegressionParameters};
use smartcore::linear::ridge_regression::{RidgeRegression, RidgeRegressionParameters};
use smartcore::metrics::distance::euclidian::Euclidian;
use smartcore::neighbors::knn_classifier::{KNNClassifier, KNNClassifierParameters};
use smartcore::neighbors::knn_regressor::{KNNRegressor, KNNRegressorParameters};
use smartcore::tree::decision_tree_classifier::{
    DecisionTreeClassifier, DecisionTreeClassifierParameters,
};
use smartcore::tree::decision_tree_regressor::{
    DecisionTreeRegressor, DecisionTreeRegressorParameters,
};

use crate::error::{Error, Result};
use crate::matrix::Matrix;

/// Version of the `model.json` format.
pub const FORMAT_VERSION: u32 = 1;

/// What is predicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    Binary,
    Multiclass,
    Regression,
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Task::Binary => "binary",
            Task::Multiclass => "multiclass",
            Task::Regression => "regression",
        })
    }
}

/// The algorithms, by the name used in model specs.
pub const ALGORITHMS: [&str; 9] = [
    "gbm",
    "logistic_regression",
    "random_forest",
    "decision_tree",
    "knn",
    "linear",
    "ridge",
    "lasso",
    "elastic_net",
];

/// Training targets: class indices (0..k) for classification, values for regression.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Classes {
        index: Vec<usize>,
        classes: Vec<String>,
    },
    Values(Vec<f64>),
}

/// Predictions: class probabilities (rows x classes) or values.
#[derive(Debug, Clone, PartialEq)]
pub enum Scores {
    Probabilities { classes: Vec<String>, probs: Matrix },
    Values(Vec<f64>),
}

type M = DenseMatrix<f64>;
type Lr = LogisticRegression<f64, i32, M, Vec<i32>>;
type Tree = DecisionTreeClassifier<f64, i32, M, Vec<i32>>;
type Forest = RandomForestClassifier<f64, i32, M, Vec<i32>>;
type Knn = KNNClassifier<f64, i32, M, Vec<i32>, Euclidian<f64>>;
type KnnReg = KNNRegressor<f64, f64, M, Vec<f64>, Euclidian<f64>>;

/// A fitted model: the content of `model.json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Model {
    pub format_version: u32,
    pub algorithm: String,
    pub task: Task,
    /// Number of input columns (after preprocessing).
    pub n_features: usize,
    /// Class names by index (classification).
    pub classes: Vec<String>,
    pub fitted: Fitted,
}

/// The algorithm-specific fitted state.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fitted {
    /// forust-ml boosters as their own JSON: one for binary/regression, one per class
    /// (one-vs-rest) for multiclass.
    Gbm {
        boosters: Vec<String>,
    },
    LogisticRegression {
        model: Box<Lr>,
    },
    /// The trees of smartcore forests, with class frequencies in their leaves.
    RandomForest {
        trees: Vec<ProbabilityTree>,
    },
    DecisionTree {
        tree: ProbabilityTree,
    },
    Knn {
        model: Box<Knn>,
    },
    RandomForestRegressor {
        forests: Vec<RandomForestRegressor<f64, f64, M, Vec<f64>>>,
    },
    DecisionTreeRegressor {
        model: Box<DecisionTreeRegressor<f64, f64, M, Vec<f64>>>,
    },
    KnnRegressor {
        model: Box<KnnReg>,
    },
    Linear {
        model: Box<LinearRegression<f64, f64, M, Vec<f64>>>,
    },
    Ridge {
        model: Box<RidgeRegression<f64, f64, M, Vec<f64>>>,
    },
    Lasso {
        model: Box<Lasso<f64, f64, M, Vec<f64>>>,
    },
    ElasticNet {
        model: Box<ElasticNet<f64, f64, M, Vec<f64>>>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GbmParams {
    #[serde(default = "d100")]
    iterations: usize,
    #[serde(default = "d03")]
    learning_rate: f32,
    #[serde(default = "d6")]
    max_depth: usize,
    #[serde(default = "d1f")]
    l2: f32,
    #[serde(default = "d1f")]
    min_leaf_weight: f32,
    #[serde(default = "d1f")]
    subsample: f32,
    #[serde(default = "d256")]
    nbins: u16,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogisticParams {
    /// L2 penalty (scikit-learn's 1/C).
    #[serde(default = "d1")]
    alpha: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ForestParams {
    #[serde(default = "d100")]
    n_trees: usize,
    /// Required: smartcore's unbounded trees are impractically slow.
    max_depth: u16,
    #[serde(default = "d1u")]
    min_samples_leaf: usize,
    #[serde(default = "d2u")]
    min_samples_split: usize,
    /// Features tried per split (default sqrt of the feature count).
    m: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TreeParams {
    max_depth: Option<u16>,
    #[serde(default = "d1u")]
    min_samples_leaf: usize,
    #[serde(default = "d2u")]
    min_samples_split: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KnnParams {
    #[serde(default = "d5u")]
    k: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoParams {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PenaltyParams {
    #[serde(default = "d1")]
    alpha: f64,
    #[serde(default = "d05")]
    l1_ratio: f64,
}

fn d100() -> usize {
    100
}
fn d03() -> f32 {
    0.3
}
fn d6() -> usize {
    6
}
fn d1f() -> f32 {
    1.0
}
fn d256() -> u16 {
    256
}
fn d1() -> f64 {
    1.0
}
fn d05() -> f64 {
    0.5
}
fn d1u() -> usize {
    1
}
fn d2u() -> usize {
    2
}
fn d5u() -> usize {
    5
}

fn params<T: DeserializeOwned>(algorithm: &str, params: &Value) -> Result<T> {
    let value = if params.is_null() {
        Value::Object(Default::default())
    } else {
        params.clone()
    };
    serde_json::from_value(value).map_err(|e| Error::Params {
        algorithm: algorithm.to_string(),
        message: e.to_string(),
    })
}

/// Checks an algorithm name and its parameters for a task without fitting.
pub fn check_params(algorithm: &str, task: Task, p: &Value) -> Result<()> {
    let unsupported = || Error::UnsupportedTask {
        algorithm: algorithm.to_string(),
        task: task.to_string(),
    };
    let classification = task != Task::Regression;
    match algorithm {
        "gbm" => params::<GbmParams>(algorithm, p).map(drop),
        "logistic_regression" if classification => params::<LogisticParams>(algorithm, p).map(drop),
        "random_forest" => params::<ForestParams>(algorithm, p).map(drop),
        "decision_tree" => params::<TreeParams>(algorithm, p).map(drop),
        "knn" => params::<KnnParams>(algorithm, p).map(drop),
        "linear" if !classification => params::<NoParams>(algorithm, p).map(drop),
        "ridge" | "lasso" if !classification => params::<LogisticParams>(algorithm, p).map(drop),
        "elastic_net" if !classification => params::<PenaltyParams>(algorithm, p).map(drop),
        "logistic_regression" | "linear" | "ridge" | "lasso" | "elastic_net" => Err(unsupported()),
        other => Err(Error::Params {
            algorithm: other.to_string(),
            message: format!("unknown algorithm (known: {})", ALGORITHMS.join(", ")),
        }),
    }
}

fn fail(algorithm: &str) -> impl Fn(smartcore::error::Failed) -> Error + '_ {
    move |e| Error::Algorithm {
        algorithm: algorithm.to_string(),
        message: e.to_string(),
    }
}

fn dense(x: &Matrix) -> Result<M> {
    DenseMatrix::new(x.rows, x.cols, x.data.clone(), false).map_err(fail("matrix"))
}

/// Every value must be finite before it reaches an algorithm.
fn check_finite(x: &Matrix) -> Result<()> {
    if let Some(i) = x.data.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFinite {
            column: format!("input #{}", i % x.cols.max(1)),
            row: i / x.cols.max(1),
        });
    }
    Ok(())
}

/// Splits `total` trees into one sub-forest per thread.
fn forest_shares(total: usize) -> Vec<usize> {
    let threads = rayon::current_num_threads().clamp(1, total.max(1));
    (0..threads)
        .map(|i| total / threads + usize::from(i < total % threads))
        .collect()
}

impl Model {
    /// Fits `algorithm` with `p` (its parameters) on `x` and `y`.
    pub fn fit(
        algorithm: &str,
        task: Task,
        p: &Value,
        seed: u64,
        x: &Matrix,
        y: &Target,
    ) -> Result<Model> {
        check_params(algorithm, task, p)?;
        if x.rows == 0 {
            return Err(Error::EmptyTrainingSet);
        }
        check_finite(x)?;
        let classes = match y {
            Target::Classes { classes, index } => {
                let mut seen: Vec<bool> = vec![false; classes.len()];
                for &i in index {
                    seen[i] = true;
                }
                if seen.iter().filter(|s| **s).count() < 2 {
                    let class = index
                        .first()
                        .map(|&i| classes[i].clone())
                        .unwrap_or_default();
                    return Err(Error::SingleClass { class });
                }
                classes.clone()
            }
            Target::Values(_) => Vec::new(),
        };
        let xm = dense(x)?;
        let labels: Vec<i32> = match y {
            Target::Classes { index, .. } => index.iter().map(|&i| i as i32).collect(),
            Target::Values(_) => Vec::new(),
        };
        let values: Vec<f64> = match y {
            Target::Values(v) => v.clone(),
            Target::Classes { .. } => Vec::new(),
        };
        let f = fail(algorithm);
        let fitted = match (algorithm, task) {
            ("gbm", _) => {
                let gp: GbmParams = params(algorithm, p)?;
                let targets: Vec<Vec<f64>> = match task {
                    Task::Regression => vec![values.clone()],
                    Task::Binary => vec![labels.iter().map(|&l| l as f64).collect()],
                    Task::Multiclass => (0..classes.len())
                        .map(|k| labels.iter().map(|&l| f64::from(l as usize == k)).collect())
                        .collect(),
                };
                let columns = x.column_major();
                let data = forust_ml::Matrix::new(&columns, x.rows, x.cols);
                let weights = vec![1.0; x.rows];
                let mut boosters = Vec::new();
                for target in targets {
                    let objective = if task == Task::Regression {
                        forust_ml::objective::ObjectiveType::SquaredLoss
                    } else {
                        forust_ml::objective::ObjectiveType::LogLoss
                    };
                    let mut booster = forust_ml::GradientBooster::default()
                        .set_objective_type(objective)
                        .set_iterations(gp.iterations)
                        .set_learning_rate(gp.learning_rate)
                        .set_max_depth(gp.max_depth)
                        .set_l2(gp.l2)
                        .set_min_leaf_weight(gp.min_leaf_weight)
                        .set_subsample(gp.subsample)
                        .set_nbins(gp.nbins)
                        .set_seed(seed)
                        .set_parallel(true);
                    booster
                        .fit(&data, &target, &weights, None)
                        .map_err(|e| Error::Algorithm {
                            algorithm: algorithm.into(),
                            message: e.to_string(),
                        })?;
                    boosters.push(booster.json_dump().map_err(|e| Error::Algorithm {
                        algorithm: algorithm.into(),
                        message: e.to_string(),
                    })?);
                }
                Fitted::Gbm { boosters }
            }
            ("logistic_regression", _) => {
                let lp: LogisticParams = params(algorithm, p)?;
                let parameters = LogisticRegressionParameters::default().with_alpha(lp.alpha);
                Fitted::LogisticRegression {
                    model: Box::new(Lr::fit(&xm, &labels, parameters).map_err(f)?),
                }
            }
            ("random_forest", Task::Regression) => {
                let fp: ForestParams = params(algorithm, p)?;
                let forests = forest_shares(fp.n_trees)
                    .into_par_iter()
                    .enumerate()
                    .map(|(i, n)| {
                        let parameters = RandomForestRegressorParameters {
                            max_depth: Some(fp.max_depth),
                            min_samples_leaf: fp.min_samples_leaf,
                            min_samples_split: fp.min_samples_split,
                            n_trees: n,
                            m: fp.m,
                            keep_samples: false,
                            seed: seed.wrapping_add(i as u64),
                        };
                        RandomForestRegressor::fit(&xm, &values, parameters)
                            .map_err(fail(algorithm))
                    })
                    .collect::<Result<Vec<_>>>()?;
                Fitted::RandomForestRegressor { forests }
            }
            ("random_forest", _) => {
                let fp: ForestParams = params(algorithm, p)?;
                let forests = forest_shares(fp.n_trees)
                    .into_par_iter()
                    .enumerate()
                    .map(|(i, n)| {
                        let parameters = RandomForestClassifierParameters::default()
                            .with_n_trees(n as u16)
                            .with_max_depth(fp.max_depth)
                            .with_min_samples_leaf(fp.min_samples_leaf)
                            .with_min_samples_split(fp.min_samples_split)
                            .with_seed(seed.wrapping_add(i as u64));
                        let parameters = match fp.m {
                            Some(m) => parameters.with_m(m),
                            None => parameters,
                        };
                        Forest::fit(&xm, &labels, parameters).map_err(fail(algorithm))
                    })
                    .collect::<Result<Vec<_>>>()?;
                let mut trees = Vec::new();
                for forest in &forests {
                    let value =
                        serde_json::to_value(forest).map_err(|e| Error::Artifact(e.to_string()))?;
                    for tree in value["trees"].as_array().into_iter().flatten() {
                        trees.push(tree.clone());
                    }
                }
                let trees = trees
                    .par_iter()
                    .map(|t| ProbabilityTree::from_smartcore(t, x, &labels, classes.len()))
                    .collect::<Result<Vec<_>>>()?;
                Fitted::RandomForest { trees }
            }
            ("decision_tree", Task::Regression) => {
                let tp: TreeParams = params(algorithm, p)?;
                let parameters = DecisionTreeRegressorParameters {
                    max_depth: tp.max_depth,
                    min_samples_leaf: tp.min_samples_leaf,
                    min_samples_split: tp.min_samples_split,
                    seed: Some(seed),
                };
                Fitted::DecisionTreeRegressor {
                    model: Box::new(
                        DecisionTreeRegressor::fit(&xm, &values, parameters).map_err(f)?,
                    ),
                }
            }
            ("decision_tree", _) => {
                let tp: TreeParams = params(algorithm, p)?;
                let mut parameters = DecisionTreeClassifierParameters::default()
                    .with_min_samples_leaf(tp.min_samples_leaf)
                    .with_min_samples_split(tp.min_samples_split);
                if let Some(depth) = tp.max_depth {
                    parameters = parameters.with_max_depth(depth);
                }
                parameters.seed = Some(seed);
                let tree = Tree::fit(&xm, &labels, parameters).map_err(f)?;
                let value =
                    serde_json::to_value(&tree).map_err(|e| Error::Artifact(e.to_string()))?;
                Fitted::DecisionTree {
                    tree: ProbabilityTree::from_smartcore(&value, x, &labels, classes.len())?,
                }
            }
            ("knn", Task::Regression) => {
                let kp: KnnParams = params(algorithm, p)?;
                let parameters = KNNRegressorParameters::default().with_k(kp.k);
                Fitted::KnnRegressor {
                    model: Box::new(KNNRegressor::fit(&xm, &values, parameters).map_err(f)?),
                }
            }
            ("knn", _) => {
                let kp: KnnParams = params(algorithm, p)?;
                let parameters = KNNClassifierParameters::default().with_k(kp.k);
                Fitted::Knn {
                    model: Box::new(KNNClassifier::fit(&xm, &labels, parameters).map_err(f)?),
                }
            }
            ("linear", _) => Fitted::Linear {
                model: Box::new(
                    LinearRegression::fit(&xm, &values, LinearRegressionParameters::default())
                        .map_err(f)?,
                ),
            },
            ("ridge", _) => {
                let rp: LogisticParams = params(algorithm, p)?;
                let parameters = RidgeRegressionParameters::default().with_alpha(rp.alpha);
                Fitted::Ridge {
                    model: Box::new(RidgeRegression::fit(&xm, &values, parameters).map_err(f)?),
                }
            }
            ("lasso", _) => {
                let rp: LogisticParams = params(algorithm, p)?;
                let parameters = LassoParameters::default().with_alpha(rp.alpha);
                Fitted::Lasso {
                    model: Box::new(Lasso::fit(&xm, &values, parameters).map_err(f)?),
                }
            }
            ("elastic_net", _) => {
                let ep: PenaltyParams = params(algorithm, p)?;
                let parameters = ElasticNetParameters::default()
                    .with_alpha(ep.alpha)
                    .with_l1_ratio(ep.l1_ratio);
                Fitted::ElasticNet {
                    model: Box::new(ElasticNet::fit(&xm, &values, parameters).map_err(f)?),
                }
            }
            (other, _) => {
                return Err(Error::Params {
                    algorithm: other.to_string(),
                    message: "unknown algorithm".into(),
                });
            }
        };
        Ok(Model {
            format_version: FORMAT_VERSION,
            algorithm: algorithm.to_string(),
            task,
            n_features: x.cols,
            classes,
            fitted,
        })
    }

    /// Predicts; checks the column count and that every value is finite first.
    pub fn predict(&self, x: &Matrix) -> Result<Scores> {
        if x.cols != self.n_features {
            return Err(Error::ColumnCount {
                expected: self.n_features,
                found: x.cols,
            });
        }
        check_finite(x)?;
        if x.rows == 0 {
            return Ok(match self.task {
                Task::Regression => Scores::Values(Vec::new()),
                _ => Scores::Probabilities {
                    classes: self.classes.clone(),
                    probs: Matrix::zeros(0, self.classes.len()),
                },
            });
        }
        let algorithm = self.algorithm.as_str();
        let f = fail(algorithm);
        let k = self.classes.len();
        let probs = |rows: Vec<Vec<f64>>| Scores::Probabilities {
            classes: self.classes.clone(),
            probs: Matrix {
                rows: rows.len(),
                cols: k,
                data: rows.into_iter().flatten().collect(),
            },
        };
        Ok(match &self.fitted {
            Fitted::Gbm { boosters } => {
                let columns = x.column_major();
                let data = forust_ml::Matrix::new(&columns, x.rows, x.cols);
                let mut raw = Vec::with_capacity(boosters.len());
                for json in boosters {
                    let booster = forust_ml::GradientBooster::from_json(json)
                        .map_err(|e| Error::Artifact(e.to_string()))?;
                    raw.push(booster.predict(&data, true));
                }
                match self.task {
                    Task::Regression => Scores::Values(raw.remove(0)),
                    Task::Binary => probs(
                        raw[0]
                            .iter()
                            .map(|&z| {
                                let p = sigmoid(z);
                                vec![1.0 - p, p]
                            })
                            .collect(),
                    ),
                    Task::Multiclass => probs(
                        (0..x.rows)
                            .map(|r| {
                                let ps: Vec<f64> = raw.iter().map(|col| sigmoid(col[r])).collect();
                                let total: f64 = ps.iter().sum::<f64>().max(f64::MIN_POSITIVE);
                                ps.into_iter().map(|p| p / total).collect()
                            })
                            .collect(),
                    ),
                }
            }
            Fitted::LogisticRegression { model } => {
                let coef = model.coefficients();
                let intercept = model.intercept();
                let (rows_c, _) = coef.shape();
                probs(
                    (0..x.rows)
                        .map(|r| {
                            let row = x.row(r);
                            let z: Vec<f64> = (0..rows_c)
                                .map(|c| {
                                    *intercept.get((c, 0))
                                        + row
                                            .iter()
                                            .enumerate()
                                            .map(|(j, v)| v * coef.get((c, j)))
                                            .sum::<f64>()
                                })
                                .collect();
                            if k == 2 && rows_c == 1 {
                                let p = sigmoid(z[0]);
                                vec![1.0 - p, p]
                            } else {
                                softmax(&z)
                            }
                        })
                        .collect(),
                )
            }
            Fitted::RandomForest { trees } => {
                // The mean of the trees' leaf class frequencies, as scikit-learn's forests do.
                let rows: Vec<Vec<f64>> = (0..x.rows)
                    .into_par_iter()
                    .map(|r| {
                        let mut sum = vec![0.0; k];
                        for tree in trees {
                            for (s, p) in sum.iter_mut().zip(tree.leaf(x.row(r))) {
                                *s += p;
                            }
                        }
                        sum.iter().map(|s| s / trees.len().max(1) as f64).collect()
                    })
                    .collect();
                probs(rows)
            }
            Fitted::DecisionTree { tree } => {
                probs((0..x.rows).map(|r| tree.leaf(x.row(r)).to_vec()).collect())
            }
            Fitted::Knn { model } => probs(model.predict_proba(&dense(x)?).map_err(f)?),
            Fitted::RandomForestRegressor { forests } => {
                let xm = dense(x)?;
                let mut sum = vec![0.0; x.rows];
                let mut weights = 0usize;
                for forest in forests {
                    let trees = serde_json::to_value(forest)
                        .ok()
                        .and_then(|v| v["trees"].as_array().map(Vec::len))
                        .unwrap_or(1);
                    let pred = forest.predict(&xm).map_err(fail(algorithm))?;
                    for (s, v) in sum.iter_mut().zip(pred) {
                        *s += v * trees as f64;
                    }
                    weights += trees;
                }
                Scores::Values(sum.into_iter().map(|s| s / weights.max(1) as f64).collect())
            }
            Fitted::DecisionTreeRegressor { model } => {
                Scores::Values(model.predict(&dense(x)?).map_err(f)?)
            }
            Fitted::KnnRegressor { model } => Scores::Values(model.predict(&dense(x)?).map_err(f)?),
            Fitted::Linear { model } => Scores::Values(model.predict(&dense(x)?).map_err(f)?),
            Fitted::Ridge { model } => Scores::Values(model.predict(&dense(x)?).map_err(f)?),
            Fitted::Lasso { model } => Scores::Values(model.predict(&dense(x)?).map_err(f)?),
            Fitted::ElasticNet { model } => Scores::Values(model.predict(&dense(x)?).map_err(f)?),
        })
    }

    /// Relative importance per input column where the model has a notion of it.
    pub fn feature_importance(&self) -> Option<Vec<f64>> {
        match &self.fitted {
            Fitted::Gbm { boosters } => {
                let mut total = vec![0.0; self.n_features];
                for json in boosters {
                    let booster = forust_ml::GradientBooster::from_json(json).ok()?;
                    let importance = booster.calculate_feature_importance(
                        forust_ml::gradientbooster::ImportanceMethod::TotalGain,
                        true,
                    );
                    for (i, v) in importance {
                        if i < total.len() {
                            total[i] += f64::from(v);
                        }
                    }
                }
                Some(total)
            }
            Fitted::LogisticRegression { model } => {
                let coef = model.coefficients();
                let (rows, cols) = coef.shape();
                Some(
                    (0..cols)
                        .map(|j| (0..rows).map(|c| coef.get((c, j)).abs()).sum())
                        .collect(),
                )
            }
            Fitted::Linear { model } => Some(coefficients(model.coefficients())),
            Fitted::Ridge { model } => Some(coefficients(model.coefficients())),
            Fitted::Lasso { model } => Some(coefficients(model.coefficients())),
            Fitted::ElasticNet { model } => Some(coefficients(model.coefficients())),
            _ => None,
        }
    }

    pub fn to_json(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| Error::Artifact(e.to_string()))
    }

    pub fn from_json(bytes: &[u8]) -> Result<Model> {
        let model: Model =
            serde_json::from_slice(bytes).map_err(|e| Error::Artifact(e.to_string()))?;
        if model.format_version != FORMAT_VERSION {
            return Err(Error::Artifact(format!(
                "model.json format version {} is not supported (expected {FORMAT_VERSION})",
                model.format_version
            )));
        }
        Ok(model)
    }
}

/// A fitted classification tree with the class frequencies of the training rows in each leaf.
/// smartcore's own `predict_proba` returns the leaf's majority class as probability 1, which
/// makes forest probabilities mere vote counts; leaf frequencies give calibrated scores.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbabilityTree {
    nodes: Vec<TreeNode>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TreeNode {
    feature: usize,
    /// `None` at a leaf (and for smartcore's NaN split values).
    threshold: Option<f64>,
    /// Children for `value <= threshold` and otherwise; `None` at a leaf.
    children: Option<(usize, usize)>,
    /// Class frequencies (leaves only).
    probs: Vec<f64>,
}

impl ProbabilityTree {
    /// Reads a smartcore tree's serialised nodes and counts the training rows in each leaf.
    fn from_smartcore(tree: &Value, x: &Matrix, y: &[i32], k: usize) -> Result<ProbabilityTree> {
        let bad = |what: &str| Error::Artifact(format!("unexpected smartcore tree layout: {what}"));
        let mut nodes = Vec::new();
        for node in tree["nodes"].as_array().ok_or_else(|| bad("no nodes"))? {
            let child = |name: &str| node[name].as_u64().map(|c| c as usize);
            let output = node["output"].as_u64().ok_or_else(|| bad("no output"))? as usize;
            let mut probs = vec![0.0; k];
            if output < k {
                probs[output] = 1.0;
            }
            nodes.push(TreeNode {
                feature: node["split_feature"].as_u64().unwrap_or(0) as usize,
                threshold: node["split_value"].as_f64(),
                children: child("true_child").zip(child("false_child")),
                probs,
            });
        }
        if nodes.is_empty() {
            return Err(bad("empty tree"));
        }
        let mut tree = ProbabilityTree { nodes };
        let mut counts: Vec<Vec<f64>> = vec![vec![0.0; k]; tree.nodes.len()];
        for (r, &label) in y.iter().enumerate() {
            let leaf = tree.leaf_index(x.row(r));
            counts[leaf][label as usize] += 1.0;
        }
        for (node, count) in tree.nodes.iter_mut().zip(counts) {
            let total: f64 = count.iter().sum();
            // A leaf no training row reaches keeps its majority class.
            if node.children.is_none() && total > 0.0 {
                node.probs = count.into_iter().map(|c| c / total).collect();
            }
        }
        Ok(tree)
    }

    fn leaf_index(&self, row: &[f64]) -> usize {
        let mut i = 0;
        while let Some((yes, no)) = self.nodes[i].children {
            let node = &self.nodes[i];
            // smartcore sends a row left when value <= threshold (never for a NaN threshold).
            i = if node.threshold.is_some_and(|t| row[node.feature] <= t) {
                yes
            } else {
                no
            };
        }
        i
    }

    /// Class frequencies of the leaf `row` falls in.
    pub fn leaf(&self, row: &[f64]) -> &[f64] {
        &self.nodes[self.leaf_index(row)].probs
    }
}

fn coefficients<A: Array2<f64>>(c: &A) -> Vec<f64> {
    let (rows, cols) = c.shape();
    if cols == 1 {
        (0..rows).map(|i| c.get((i, 0)).abs()).collect()
    } else {
        (0..cols).map(|j| c.get((0, j)).abs()).collect()
    }
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

fn softmax(z: &[f64]) -> Vec<f64> {
    let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = z.iter().map(|v| (v - max).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two separable blobs: every classifier must get them right with probabilities.
    fn blobs() -> (Matrix, Target) {
        let mut data = Vec::new();
        let mut index = Vec::new();
        for i in 0..200 {
            let class = i % 2;
            let base = if class == 0 { -2.0 } else { 2.0 };
            data.push(base + (i as f64 * 0.37).sin());
            data.push(base + (i as f64 * 0.91).cos());
            index.push(class);
        }
        (
            Matrix {
                rows: 200,
                cols: 2,
                data,
            },
            Target::Classes {
                index,
                classes: vec!["no".into(), "yes".into()],
            },
        )
    }

    #[test]
    fn every_classifier_separates_blobs_with_probabilities() {
        let (x, y) = blobs();
        let Target::Classes { index, .. } = &y else {
            unreachable!()
        };
        for (algorithm, p) in [
            ("gbm", serde_json::json!({"iterations": 20})),
            ("logistic_regression", serde_json::json!({})),
            (
                "random_forest",
                serde_json::json!({"n_trees": 8, "max_depth": 4}),
            ),
            ("decision_tree", serde_json::json!({"max_depth": 4})),
            ("knn", serde_json::json!({"k": 3})),
        ] {
            let model = Model::fit(algorithm, Task::Binary, &p, 7, &x, &y).unwrap();
            let bytes = model.to_json().unwrap();
            let model = Model::from_json(&bytes).unwrap();
            let Scores::Probabilities { probs, .. } = model.predict(&x).unwrap() else {
                panic!()
            };
            let correct = (0..x.rows)
                .filter(|&r| (probs.row(r)[1] > 0.5) == (index[r] == 1))
                .count();
            assert!(correct >= 195, "{algorithm}: {correct}/200");
            for r in 0..x.rows {
                let s: f64 = probs.row(r).iter().sum();
                assert!(
                    (s - 1.0).abs() < 1e-9,
                    "{algorithm}: probabilities sum to {s}"
                );
            }
        }
    }

    #[test]
    fn tree_probabilities_are_leaf_frequencies_not_votes() {
        // Two overlapping classes on one feature: a depth-1 tree's leaves are mixed.
        let x = Matrix {
            rows: 100,
            cols: 1,
            data: (0..100).map(|i| (i % 10) as f64).collect(),
        };
        // Below 5: one in five positive; from 5: four in five.
        let index = (0..100)
            .map(|i: usize| usize::from((i % 10 < 5) == (i / 10).is_multiple_of(5)))
            .collect();
        let y = Target::Classes {
            index,
            classes: vec!["n".into(), "p".into()],
        };
        let model = Model::fit(
            "decision_tree",
            Task::Binary,
            &serde_json::json!({"max_depth": 3}),
            0,
            &x,
            &y,
        )
        .unwrap();
        let Scores::Probabilities { probs, .. } = model.predict(&x).unwrap() else {
            panic!()
        };
        let Target::Classes { index, .. } = &y else {
            unreachable!()
        };
        // Rows sharing a leaf share a prediction; it must be that leaf's positive rate.
        let mut leaves: std::collections::BTreeMap<u64, (f64, f64)> = Default::default();
        for (r, &label) in index.iter().enumerate() {
            let p = probs.row(r)[1];
            let entry = leaves.entry(p.to_bits()).or_default();
            entry.0 += 1.0;
            entry.1 += label as f64;
        }
        assert!(leaves.len() >= 2, "{leaves:?}");
        assert!(
            leaves.keys().any(|p| {
                let p = f64::from_bits(*p);
                p > 0.0 && p < 1.0
            }),
            "mixed leaves give fractions"
        );
        for (p, (n, positives)) in leaves {
            assert!((f64::from_bits(p) - positives / n).abs() < 1e-12);
        }
    }

    #[test]
    fn regressors_fit_a_line() {
        let x = Matrix {
            rows: 100,
            cols: 1,
            data: (0..100).map(|i| i as f64 / 10.0).collect(),
        };
        let y = Target::Values(x.data.iter().map(|v| 3.0 * v + 1.0).collect());
        // Predicting the mean has an MAE of 7.5; smartcore's elastic net (coordinate descent on
        // unscaled inputs) stops well short of the exact fit, so it only has to beat that clearly.
        for (algorithm, tolerance) in [
            ("linear", 1e-6),
            ("ridge", 0.5),
            ("gbm", 0.5),
            ("decision_tree", 0.5),
            ("knn", 0.5),
            ("lasso", 0.5),
            ("elastic_net", 4.0),
        ] {
            let p = match algorithm {
                "decision_tree" => serde_json::json!({"max_depth": 8}),
                "lasso" | "elastic_net" => serde_json::json!({"alpha": 0.01}),
                _ => serde_json::json!({}),
            };
            let model = Model::fit(algorithm, Task::Regression, &p, 1, &x, &y).unwrap();
            let Scores::Values(v) = model.predict(&x).unwrap() else {
                panic!()
            };
            let Target::Values(t) = &y else {
                unreachable!()
            };
            let mae = v.iter().zip(t).map(|(a, b)| (a - b).abs()).sum::<f64>() / v.len() as f64;
            assert!(mae < tolerance, "{algorithm}: mae {mae}");
        }
    }

    #[test]
    fn guards_reject_bad_input_before_smartcore_sees_it() {
        let (mut x, y) = blobs();
        let model =
            Model::fit("logistic_regression", Task::Binary, &Value::Null, 0, &x, &y).unwrap();
        let narrow = Matrix {
            rows: 1,
            cols: 1,
            data: vec![0.0],
        };
        assert!(matches!(
            model.predict(&narrow),
            Err(Error::ColumnCount {
                expected: 2,
                found: 1
            })
        ));
        x.data[5] = f64::NAN;
        assert!(matches!(
            Model::fit("logistic_regression", Task::Binary, &Value::Null, 0, &x, &y),
            Err(Error::NonFinite { row: 2, .. })
        ));
        let one = Target::Classes {
            index: vec![0; 200],
            classes: vec!["a".into(), "b".into()],
        };
        let (x, _) = blobs();
        assert!(matches!(
            Model::fit("gbm", Task::Binary, &Value::Null, 0, &x, &one),
            Err(Error::SingleClass { .. })
        ));
        assert!(matches!(
            check_params("gbm", Task::Binary, &serde_json::json!({"depth": 3})),
            Err(Error::Params { .. })
        ));
        assert!(matches!(
            check_params("svm", Task::Binary, &Value::Null),
            Err(Error::Params { .. })
        ));
        assert!(matches!(
            check_params("linear", Task::Binary, &Value::Null),
            Err(Error::UnsupportedTask { .. })
        ));
    }
}
