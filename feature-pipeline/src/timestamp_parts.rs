//! Calendar parts of zone-less time stamps in integer arithmetic.
//!
//! Arrow's kernels turn each time stamp into a chrono date-time, through calendar arithmetic,
//! to take its day (`CAST(x AS DATE)`) or its hour or weekday (`date_part`). On the 3M-row
//! flights source the cast alone was about a tenth of a feature run's CPU (the flights views
//! cast `date` to a day in every group). [`TimestampPartsRule`] replaces, for time stamps
//! without a time zone:
//! - `CAST(x AS DATE)` by [`TimestampToDate`]: the same dates, and an error for the same
//!   out-of-range values;
//! - `date_part(p, x)` (and `EXTRACT`) for `p` one of `hour`, `minute`, `dow`, `isodow` by
//!   [`TimestampPart`]: the same values, NULL for the same out-of-range values.
//!
//! Both floor the value to whole days and take the rest from the remainder. The output column
//! names are kept (the rule keeps each rewritten expression's name), and so are types and
//! nullability.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Date32Array, Int32Array, Int64Array};
use arrow::datatypes::{DataType, Field, FieldRef, Int64Type, TimeUnit};
use arrow::error::ArrowError;
use chrono::NaiveDate;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result, ScalarValue, exec_err};
use datafusion::logical_expr::expr::{Cast, ScalarFunction};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, LogicalPlan, ReturnFieldArgs, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

/// Rewrites `CAST(x AS DATE)` and `date_part('hour' | 'minute' | 'dow' | 'isodow', x)` for a
/// zone-less time stamp `x` into [`TimestampToDate`] and [`TimestampPart`].
#[derive(Debug, Default)]
pub struct TimestampPartsRule;

impl OptimizerRule for TimestampPartsRule {
    fn name(&self) -> &str {
        "fti_timestamp_parts"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        rewrite_subexpressions(plan, rewrite)
    }
}

/// Applies `rewrite` to every subexpression of `plan`'s expressions, bottom up, with the
/// schema their columns come from; a rewritten expression keeps its name. Shared by this
/// crate's expression-rewriting optimizer rules.
pub(crate) fn rewrite_subexpressions(
    plan: LogicalPlan,
    rewrite: impl Fn(Expr, &DFSchema) -> Result<Transformed<Expr>>,
) -> Result<Transformed<LogicalPlan>> {
    // The columns a node's expressions may name: its inputs' (a leaf's own for a scan).
    let inputs = plan.inputs();
    let mut schema = DFSchema::empty();
    if inputs.is_empty() {
        schema.merge(plan.schema());
    }
    for input in inputs {
        schema.merge(input.schema());
    }
    map_keeping_names(plan, |expr| expr.transform_up(|e| rewrite(e, &schema)))
}

/// Applies `rewrite` to each of `plan`'s expressions; a rewritten expression keeps the name
/// (and so the output column) of the one it replaces. Shared by this crate's optimizer rules.
pub(crate) fn map_keeping_names(
    plan: LogicalPlan,
    mut rewrite: impl FnMut(Expr) -> Result<Transformed<Expr>>,
) -> Result<Transformed<LogicalPlan>> {
    let names = NamePreserver::new(&plan);
    plan.map_expressions(|expr| {
        let name = names.save(&expr);
        let rewritten = rewrite(expr)?;
        Ok(if rewritten.transformed {
            rewritten.update_data(|e| name.restore(e))
        } else {
            rewritten
        })
    })
}

/// A UDF's output field of `data_type`, nullable exactly when its first input is, as the
/// cast or `date_part` it replaces: plans compare logical and physical schemas, nullability
/// included.
fn input_nullable_field(name: &str, data_type: DataType, args: &ReturnFieldArgs) -> FieldRef {
    let nullable = args.arg_fields.first().is_none_or(|f| f.is_nullable());
    Arc::new(Field::new(name, data_type, nullable))
}

fn rewrite(expr: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    // An expression whose type cannot be told from the node's inputs is left as is.
    let zone_less = |e: &Expr| matches!(e.get_type(schema), Ok(DataType::Timestamp(_, None)));
    match &expr {
        Expr::Cast(Cast { expr: inner, field })
            if field.data_type() == &DataType::Date32 && zone_less(inner) =>
        {
            let udf = ScalarUDF::new_from_impl(TimestampToDate::default());
            Ok(Transformed::yes(udf.call(vec![inner.as_ref().clone()])))
        }
        Expr::ScalarFunction(ScalarFunction { func, args }) if func.name() == "date_part" => {
            let [part, inner] = args.as_slice() else {
                return Ok(Transformed::no(expr));
            };
            let part = part
                .as_literal()
                .and_then(|p| p.try_as_str().flatten())
                .and_then(Part::parse);
            match part {
                Some(part) if zone_less(inner) => {
                    let udf = ScalarUDF::new_from_impl(TimestampPart::new(part));
                    Ok(Transformed::yes(udf.call(vec![inner.clone()])))
                }
                _ => Ok(Transformed::no(expr)),
            }
        }
        _ => Ok(Transformed::no(expr)),
    }
}

/// The day of a zone-less time stamp, as `CAST(x AS DATE)`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TimestampToDate {
    signature: Signature,
}

impl Default for TimestampToDate {
    fn default() -> Self {
        TimestampToDate {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for TimestampToDate {
    fn name(&self) -> &str {
        "fti_timestamp_to_date"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Date32)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        Ok(input_nullable_field(self.name(), DataType::Date32, &args))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        invoke_unary(self.name(), args, to_date)
    }

    /// Flooring to days keeps the input's order (ties may appear, never inversions).
    fn output_ordering(&self, inputs: &[ExprProperties]) -> Result<SortProperties> {
        Ok(inputs
            .first()
            .map_or(SortProperties::Unordered, |i| i.sort_properties))
    }
}

/// A calendar part [`TimestampPart`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    /// 0-23.
    Hour,
    /// 0-59.
    Minute,
    /// Sunday = 0 .. Saturday = 6.
    Dow,
    /// Monday = 1 .. Sunday = 7.
    IsoDow,
}

impl Part {
    /// The part `date_part` names `part`; `None` for other parts and other spellings, which
    /// keep DataFusion's `date_part`.
    fn parse(part: &str) -> Option<Part> {
        match part.to_ascii_lowercase().as_str() {
            "hour" => Some(Part::Hour),
            "minute" => Some(Part::Minute),
            "dow" => Some(Part::Dow),
            "isodow" => Some(Part::IsoDow),
            _ => None,
        }
    }
}

/// `date_part(part, x)` of a zone-less time stamp, for the parts of [`Part`].
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TimestampPart {
    part: Part,
    signature: Signature,
}

impl TimestampPart {
    pub fn new(part: Part) -> Self {
        TimestampPart {
            part,
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for TimestampPart {
    fn name(&self) -> &str {
        match self.part {
            Part::Hour => "fti_timestamp_hour",
            Part::Minute => "fti_timestamp_minute",
            Part::Dow => "fti_timestamp_dow",
            Part::IsoDow => "fti_timestamp_isodow",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int32)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        Ok(input_nullable_field(self.name(), DataType::Int32, &args))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        invoke_unary(self.name(), args, |array| date_part(array, self.part))
    }
}

/// Runs `kernel` on the one argument of `args`, array or scalar.
fn invoke_unary(
    name: &str,
    args: ScalarFunctionArgs,
    kernel: impl Fn(&ArrayRef) -> Result<ArrayRef>,
) -> Result<ColumnarValue> {
    let [arg] = args.args.as_slice() else {
        return exec_err!("{name} takes one argument");
    };
    Ok(match arg {
        ColumnarValue::Array(array) => ColumnarValue::Array(kernel(array)?),
        ColumnarValue::Scalar(scalar) => {
            let out = kernel(&scalar.to_array()?)?;
            ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
        }
    })
}

/// Days since 1970-01-01 of chrono's first and last dates, the range Arrow's kernels accept.
fn day_range() -> (i64, i64) {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("a valid date");
    (
        NaiveDate::MIN.signed_duration_since(epoch).num_days(),
        NaiveDate::MAX.signed_duration_since(epoch).num_days(),
    )
}

/// Calls `$f::<TICKS_PER_DAY>($args)` for the ticks of `$unit` in a day: a constant, so the
/// divisions by it in the per-value loops compile to multiplications.
macro_rules! with_ticks_per_day {
    ($unit:expr, $f:ident($($arg:expr),*)) => {
        match $unit {
            TimeUnit::Second => $f::<86_400>($($arg),*),
            TimeUnit::Millisecond => $f::<86_400_000>($($arg),*),
            TimeUnit::Microsecond => $f::<86_400_000_000>($($arg),*),
            TimeUnit::Nanosecond => $f::<86_400_000_000_000>($($arg),*),
        }
    };
}

/// Whether every day of the time stamps `raw` (ticks, `PER_DAY` a day) is in chrono's range:
/// days grow with ticks, so the smallest and largest tick decide. The slots under nulls are
/// looked at too (one branch-free pass over the values): a false "no" only costs the
/// per-value check.
fn days_in_range<const PER_DAY: i64>(raw: &Int64Array) -> bool {
    let (first, last) = day_range();
    let (lo, hi) = raw
        .values()
        .iter()
        .fold((i64::MAX, i64::MIN), |(lo, hi), &t| (lo.min(t), hi.max(t)));
    raw.is_empty()
        || [lo, hi]
            .iter()
            .all(|t| (first..=last).contains(&t.div_euclid(PER_DAY)))
}

/// `CAST(array AS DATE)` for a zone-less time stamp array, in integer arithmetic.
pub fn to_date(array: &ArrayRef) -> Result<ArrayRef> {
    let DataType::Timestamp(unit, None) = array.data_type() else {
        return Ok(arrow::compute::cast(array, &DataType::Date32)?);
    };
    let raw = arrow::compute::cast(array, &DataType::Int64)?;
    let raw = raw.as_primitive::<Int64Type>();
    Ok(Arc::new(with_ticks_per_day!(unit, dates(raw, unit))?))
}

fn dates<const PER_DAY: i64>(raw: &Int64Array, unit: &TimeUnit) -> Result<Date32Array> {
    if days_in_range::<PER_DAY>(raw) {
        return Ok(raw.unary(|x| x.div_euclid(PER_DAY) as i32));
    }
    let (first, last) = day_range();
    Ok(raw.try_unary(|x| {
        let day = x.div_euclid(PER_DAY);
        if (first..=last).contains(&day) {
            Ok(day as i32)
        } else {
            Err(ArrowError::CastError(format!(
                "cannot cast time stamp {x} ({unit:?}) to a date: outside the supported range"
            )))
        }
    })?)
}

/// `date_part(part, array)` for a zone-less time stamp array, in integer arithmetic: NULL
/// where the day is outside chrono's range, as Arrow's kernel.
pub fn date_part(array: &ArrayRef, part: Part) -> Result<ArrayRef> {
    let DataType::Timestamp(unit, None) = array.data_type() else {
        return exec_err!(
            "{part:?} of {}: not a zone-less time stamp",
            array.data_type()
        );
    };
    let raw = arrow::compute::cast(array, &DataType::Int64)?;
    let raw = raw.as_primitive::<Int64Type>();
    Ok(Arc::new(with_ticks_per_day!(unit, parts(raw, part))))
}

fn parts<const PER_DAY: i64>(raw: &Int64Array, part: Part) -> Int32Array {
    // One loop per part, each computing only what its part needs (1970-01-01 was a
    // Thursday); the divisions are by constants.
    match part {
        Part::Hour => {
            part_values::<PER_DAY>(raw, |x| (x.rem_euclid(PER_DAY) / (PER_DAY / 24)) as i32)
        }
        Part::Minute => part_values::<PER_DAY>(raw, |x| {
            (x.rem_euclid(PER_DAY) / (PER_DAY / 1_440) % 60) as i32
        }),
        Part::Dow => {
            part_values::<PER_DAY>(raw, |x| (x.div_euclid(PER_DAY) + 4).rem_euclid(7) as i32)
        }
        Part::IsoDow => part_values::<PER_DAY>(raw, |x| {
            ((x.div_euclid(PER_DAY) + 3).rem_euclid(7) + 1) as i32
        }),
    }
}

/// `value` of every time stamp of `raw`; NULL where the day is outside chrono's range.
fn part_values<const PER_DAY: i64>(raw: &Int64Array, value: impl Fn(i64) -> i32) -> Int32Array {
    if days_in_range::<PER_DAY>(raw) {
        return raw.unary(value);
    }
    let (first, last) = day_range();
    raw.unary_opt(|x| {
        (first..=last)
            .contains(&x.div_euclid(PER_DAY))
            .then(|| value(x))
    })
}

#[cfg(test)]
mod tests {
    use arrow::array::RecordBatch;
    use arrow::datatypes::Schema;
    use datafusion::prelude::SessionContext;

    use super::*;

    fn timestamps(unit: TimeUnit) -> ArrayRef {
        let scale = match unit {
            TimeUnit::Second => 1,
            TimeUnit::Millisecond => 1_000,
            TimeUnit::Microsecond => 1_000_000,
            TimeUnit::Nanosecond => 1_000_000_000,
        };
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut values: Vec<Option<i64>> = vec![None, Some(0), Some(-1), Some(1)];
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Seconds within about ±250 years of 1970, then scaled to the unit.
            let seconds = (x % 15_000_000_000) as i64 - 7_500_000_000;
            values.push(Some(seconds * scale + (x % scale as u64) as i64));
        }
        for day in [-1i64, 0, 1, 11_323] {
            for offset in [-1i64, 0, 1] {
                values.push(Some(day * 86_400 * scale + offset));
            }
        }
        let array: ArrayRef = Arc::new(arrow::array::Int64Array::from(values));
        arrow::compute::cast(&array, &DataType::Timestamp(unit, None)).unwrap()
    }

    /// `sql` over table `t` (= `batch`) in a session without the rule, then with it: each
    /// run's optimized plan and output.
    async fn with_and_without_rule(batch: &RecordBatch, sql: &str) -> [(String, RecordBatch); 2] {
        let mut runs = Vec::new();
        for with_rule in [false, true] {
            let ctx = SessionContext::new();
            if with_rule {
                ctx.add_optimizer_rule(Arc::new(TimestampPartsRule));
            }
            ctx.register_batch("t", batch.clone()).unwrap();
            let df = ctx.sql(sql).await.unwrap();
            let plan = df.clone().into_optimized_plan().unwrap();
            let batches = df.collect().await.unwrap();
            let output = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
            runs.push((format!("{}", plan.display_indent()), output));
        }
        runs.try_into().unwrap()
    }

    #[test]
    fn same_dates_as_the_arrow_cast_in_every_unit() {
        for unit in [
            TimeUnit::Second,
            TimeUnit::Millisecond,
            TimeUnit::Microsecond,
            TimeUnit::Nanosecond,
        ] {
            let input = timestamps(unit);
            let expected = arrow::compute::cast(&input, &DataType::Date32).unwrap();
            assert_eq!(
                to_date(&input).unwrap().as_ref(),
                expected.as_ref(),
                "{unit:?}"
            );
        }
    }

    #[test]
    fn out_of_range_fails_like_the_arrow_cast() {
        let input: ArrayRef = Arc::new(arrow::array::TimestampSecondArray::from(vec![i64::MAX]));
        assert!(arrow::compute::cast(&input, &DataType::Date32).is_err());
        assert!(to_date(&input).is_err());
    }

    /// Every part in every unit is the value of Arrow's own kernel, NULL included (for days
    /// outside chrono's range, at both ends of `i64`).
    #[test]
    fn same_parts_as_the_arrow_kernel_in_every_unit() {
        use arrow::compute::kernels::temporal::{self, DatePart};
        for unit in [
            TimeUnit::Second,
            TimeUnit::Millisecond,
            TimeUnit::Microsecond,
            TimeUnit::Nanosecond,
        ] {
            let extremes: ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![
                i64::MIN,
                i64::MAX,
                i64::MIN + 1,
            ]));
            let extremes =
                arrow::compute::cast(&extremes, &DataType::Timestamp(unit, None)).unwrap();
            // With the extremes, the per-value range check; without, the all-in-range path.
            let mixed = arrow::compute::concat(&[&timestamps(unit), &extremes]).unwrap();
            for (input, (part, arrow_part)) in [mixed, timestamps(unit)].iter().flat_map(|input| {
                [
                    (Part::Hour, DatePart::Hour),
                    (Part::Minute, DatePart::Minute),
                    (Part::Dow, DatePart::DayOfWeekSunday0),
                    (Part::IsoDow, DatePart::DayOfWeekMonday1),
                ]
                .map(|parts| (input, parts))
            }) {
                let expected = temporal::date_part(input, arrow_part).unwrap();
                assert_eq!(
                    date_part(input, part).unwrap().as_ref(),
                    expected.as_ref(),
                    "{unit:?} {part:?}"
                );
            }
        }
    }

    /// In a query the rule replaces the cast, and the output (column names, types, values)
    /// is the one DataFusion's own cast gives.
    #[tokio::test]
    async fn the_rule_rewrites_casts_and_keeps_the_output() {
        let input = timestamps(TimeUnit::Microsecond);
        let schema = Arc::new(Schema::new(vec![Field::new(
            "ts",
            input.data_type().clone(),
            true,
        )]));
        let batch = RecordBatch::try_new(schema, vec![input]).unwrap();
        let sql = "SELECT CAST(ts AS DATE), CAST(ts AS DATE) AS d, ts AS raw FROM t \
                   WHERE CAST(ts AS DATE) >= DATE '1900-01-01' OR ts IS NULL ORDER BY raw";
        let [(plain_plan, plain), (plan, rewritten)] = with_and_without_rule(&batch, sql).await;
        assert!(
            !plain_plan.contains("fti_timestamp_to_date"),
            "{plain_plan}"
        );
        assert!(plan.contains("fti_timestamp_to_date"), "{plan}");
        let outputs = [plain, rewritten];
        assert!(outputs[0].num_rows() > 1000);
        assert_eq!(outputs[0], outputs[1]);
    }

    /// In a query the rule replaces `date_part` and `EXTRACT` for the parts it knows, and
    /// the output is DataFusion's own.
    #[tokio::test]
    async fn the_rule_rewrites_date_parts_and_keeps_the_output() {
        let input = timestamps(TimeUnit::Microsecond);
        let schema = Arc::new(Schema::new(vec![Field::new(
            "ts",
            input.data_type().clone(),
            true,
        )]));
        let batch = RecordBatch::try_new(schema, vec![input]).unwrap();
        let sql = "SELECT date_part('hour', ts), EXTRACT(minute FROM ts) AS m, \
                          date_part('dow', ts) AS dow, CAST(date_part('ISODOW', ts) AS INT) AS iso, \
                          date_part('day', ts) AS day, ts AS raw \
                   FROM t WHERE date_part('hour', ts) < 20 OR ts IS NULL ORDER BY raw";
        let [(plain_plan, plain), (plan, rewritten)] = with_and_without_rule(&batch, sql).await;
        assert!(!plain_plan.contains("fti_timestamp"), "{plain_plan}");
        for name in [
            "fti_timestamp_hour",
            "fti_timestamp_minute",
            "fti_timestamp_dow",
            "fti_timestamp_isodow",
        ] {
            assert!(plan.contains(name), "{name}: {plan}");
        }
        // A part the rule does not know stays DataFusion's.
        assert!(plan.contains("date_part(Utf8(\"day\")"), "{plan}");
        let outputs = [plain, rewritten];
        assert!(outputs[0].num_rows() > 1000);
        assert_eq!(outputs[0], outputs[1]);
    }

    /// A non-null time stamp column gives a non-null date, as the cast does: grouping on it
    /// plans and runs (the planner compares logical and physical nullability).
    #[tokio::test]
    async fn a_non_null_input_stays_non_null_through_a_group_by() {
        let input = timestamps(TimeUnit::Microsecond);
        let input =
            arrow::compute::filter(&input, &arrow::compute::is_not_null(&input).unwrap()).unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new(
            "ts",
            input.data_type().clone(),
            false,
        )]));
        let batch = RecordBatch::try_new(schema, vec![input]).unwrap();
        let sql = "SELECT d, COUNT(*) AS n FROM (SELECT CAST(ts AS DATE) AS d FROM t) AS x \
                   GROUP BY d ORDER BY d";
        let [(_, plain), (_, rewritten)] = with_and_without_rule(&batch, sql).await;
        for out in [&plain, &rewritten] {
            assert!(!out.schema().field(0).is_nullable());
        }
        let outputs = [plain, rewritten];
        assert_eq!(outputs[0], outputs[1]);
    }
}
