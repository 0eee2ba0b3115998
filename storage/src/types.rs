//! Arrow data types spelled the way pyarrow prints them, so that a declared schema in a
//! manifest reads the same in Rust and in Python.

use arrow::datatypes::{DataType, TimeUnit};

use crate::error::{Error, Result};

/// pyarrow's name for `data_type` (`str(pa.int64())` is `"int64"`, and so on).
///
/// ```
/// use arrow::datatypes::{DataType, TimeUnit};
/// use storage::types::type_name;
/// assert_eq!(type_name(&DataType::Float64), "double");
/// assert_eq!(type_name(&DataType::Timestamp(TimeUnit::Microsecond, None)), "timestamp[us]");
/// assert_eq!(type_name(&DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))), "timestamp[ms, tz=UTC]");
/// ```
pub fn type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Boolean => "bool".into(),
        DataType::Int8 => "int8".into(),
        DataType::Int16 => "int16".into(),
        DataType::Int32 => "int32".into(),
        DataType::Int64 => "int64".into(),
        DataType::UInt8 => "uint8".into(),
        DataType::UInt16 => "uint16".into(),
        DataType::UInt32 => "uint32".into(),
        DataType::UInt64 => "uint64".into(),
        DataType::Float16 => "halffloat".into(),
        DataType::Float32 => "float".into(),
        DataType::Float64 => "double".into(),
        DataType::Utf8 => "string".into(),
        DataType::LargeUtf8 => "large_string".into(),
        DataType::Utf8View => "string_view".into(),
        DataType::Date32 => "date32[day]".into(),
        DataType::Date64 => "date64[ms]".into(),
        DataType::Timestamp(unit, tz) => {
            let unit = unit_name(*unit);
            match tz {
                Some(tz) => format!("timestamp[{unit}, tz={tz}]"),
                None => format!("timestamp[{unit}]"),
            }
        }
        other => other.to_string(),
    }
}

fn unit_name(unit: TimeUnit) -> &'static str {
    match unit {
        TimeUnit::Second => "s",
        TimeUnit::Millisecond => "ms",
        TimeUnit::Microsecond => "us",
        TimeUnit::Nanosecond => "ns",
    }
}

/// Parses a name produced by [`type_name`].
///
/// ```
/// use storage::types::{parse_type, type_name};
/// for name in ["int64", "double", "string", "bool", "date32[day]", "timestamp[us]", "timestamp[ns, tz=UTC]"] {
///     assert_eq!(type_name(&parse_type(name).unwrap()), name);
/// }
/// assert!(parse_type("int63").is_err());
/// ```
pub fn parse_type(name: &str) -> Result<DataType> {
    let simple = match name {
        "bool" | "boolean" => Some(DataType::Boolean),
        "int8" => Some(DataType::Int8),
        "int16" => Some(DataType::Int16),
        "int32" => Some(DataType::Int32),
        "int64" => Some(DataType::Int64),
        "uint8" => Some(DataType::UInt8),
        "uint16" => Some(DataType::UInt16),
        "uint32" => Some(DataType::UInt32),
        "uint64" => Some(DataType::UInt64),
        "halffloat" | "float16" => Some(DataType::Float16),
        "float" | "float32" => Some(DataType::Float32),
        "double" | "float64" => Some(DataType::Float64),
        "string" | "utf8" => Some(DataType::Utf8),
        "large_string" | "large_utf8" => Some(DataType::LargeUtf8),
        "string_view" => Some(DataType::Utf8View),
        "date32[day]" | "date32" | "date" => Some(DataType::Date32),
        "date64[ms]" | "date64" => Some(DataType::Date64),
        _ => None,
    };
    if let Some(t) = simple {
        return Ok(t);
    }
    let invalid = || Error::InvalidArgument {
        what: format!("type {name:?}"),
        reason: "not a supported Arrow type (bool, int8..int64, uint8..uint64, float, double, \
                 string, large_string, date32[day], date64[ms], timestamp[s|ms|us|ns(, tz=ZONE)])"
            .into(),
    };
    let inner = name
        .strip_prefix("timestamp[")
        .and_then(|s| s.strip_suffix(']'))
        .ok_or_else(invalid)?;
    let (unit, tz) = match inner.split_once(',') {
        Some((unit, tz)) => {
            let tz = tz.trim().strip_prefix("tz=").ok_or_else(invalid)?;
            (unit.trim(), Some(tz.into()))
        }
        None => (inner.trim(), None),
    };
    let unit = match unit {
        "s" => TimeUnit::Second,
        "ms" => TimeUnit::Millisecond,
        "us" => TimeUnit::Microsecond,
        "ns" => TimeUnit::Nanosecond,
        _ => return Err(invalid()),
    };
    Ok(DataType::Timestamp(unit, tz))
}

/// Whether a column of this type can hold an event time.
pub fn is_temporal(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64
    )
}

/// Whether a column of type `actual` may be stored under a declared `declared`: the same
/// type, or both strings (`Utf8`, `LargeUtf8` and `Utf8View` hold the same values and are
/// written as the same Parquet strings).
pub fn storable_as(actual: &DataType, declared: &DataType) -> bool {
    actual == declared || (actual.is_string() && declared.is_string())
}
