//! What training and inference must do identically, in one place so there is no
//! training-serving skew: point-in-time feature retrieval ([`pit`]), the fitted preprocessing
//! stored with every model ([`preprocess`]) and model fit/predict ([`model`]). [`spill`] splits
//! tables into local hash partitions for scoring more entities than fit in memory at once.

pub mod error;
pub mod matrix;
pub mod model;
pub mod pit;
pub mod preprocess;
pub mod spill;

pub use error::{Error, Result};
pub use matrix::Matrix;
