//! Sliding `SUM`, `AVG` and `COUNT` over short `ROWS` frames, computed from the frame's rows.
//!
//! DataFusion evaluates a sliding aggregate row by row through its accumulator: for every row
//! it slices the entering and the leaving rows into new arrays, updates, retracts and evaluates.
//! On the flights `route_28d` group (two 28-row sums over 622k rows) that was the largest single
//! operator, about a seventh of the run's CPU. [`RowsWindowRule`] hands such a window to
//! [`FramedAggregate`], which reads the frame's rows straight from the input column.
//!
//! Rewritten: `sum`, `avg` and `count` of one argument, without `FILTER` or `DISTINCT`, over a
//! `ROWS` frame whose two ends are fixed offsets from the row and at most [`MAX_FRAME_ROWS`]
//! apart; `sum` and `avg` of `Int64`, `UInt64` or `Float64` (what DataFusion's type coercion
//! leaves for integer and float columns), and `avg` of `Decimal128` (the flights airport
//! windows: four 7-row averages over 42k rows in each of two groups, about 5% of the run's
//! CPU through DataFusion's accumulator). Anything else (decimal sums, `RANGE` frames,
//! unbounded ends) keeps DataFusion's evaluation. Results:
//! - counts and integer sums are the same (integer sums wrap on overflow, as DataFusion's);
//! - a decimal average is the same: DataFusion's exact sum, scaled to the result's scale and
//!   divided by the count, truncating; a result beyond its precision is the same error;
//! - a float sum is the sum of the frame's rows in row order. DataFusion's running
//!   add-and-retract carries its history along the partition: rounding error (last bits), a
//!   NaN or infinity that stays in the sum after its row left the frame, small values lost
//!   after a huge one leaves. A float result may therefore differ, always towards the frame's
//!   own sum;
//! - an empty or all-null frame gives NULL for `sum` and `avg` and 0 for `count`, as before;
//! - output names, types and nullability are those of the expression replaced.
//!
//! Windows whose frames end at the current row or before it are then computed a batch at a
//! time by [`crate::framed_window`]'s operator, with the same functions; the others stay in
//! DataFusion's window operator, one evaluator call per row.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, ArrowNativeTypeOp, AsArray, PrimitiveArray};
use arrow::datatypes::UInt64Type;
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Decimal128Type, Decimal256Type, DecimalType, Field, FieldRef,
    Float64Type, Int64Type, i256,
};
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, Result, ScalarValue, exec_err};
use datafusion::logical_expr::expr::{Alias, WindowFunction, WindowFunctionParams};
use datafusion::logical_expr::function::{PartitionEvaluatorArgs, WindowUDFFieldArgs};
use datafusion::logical_expr::{
    Expr, ExprSchemable, LogicalPlan, PartitionEvaluator, Signature, Volatility, WindowFrame,
    WindowFrameBound, WindowFrameUnits, WindowFunctionDefinition, WindowUDF, WindowUDFImpl,
};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

/// The longest frame rewritten. Each row's frame is read whole, so the work per row grows
/// with the frame; longer frames keep DataFusion's running accumulator.
pub const MAX_FRAME_ROWS: u64 = 1024;

/// Rewrites sliding `sum`/`avg`/`count` over short `ROWS` frames into [`FramedAggregate`].
#[derive(Debug, Default)]
pub struct RowsWindowRule;

impl OptimizerRule for RowsWindowRule {
    fn name(&self) -> &str {
        "fti_framed_aggregate"
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
        let LogicalPlan::Window(window) = &plan else {
            return Ok(Transformed::no(plan));
        };
        let schema = Arc::clone(window.input.schema());
        crate::timestamp_parts::map_keeping_names(plan, |expr| rewrite(expr, &schema))
    }
}

fn rewrite(expr: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    // The optimizer may have named a window expression with an alias (a simplified argument
    // keeps the original name): the window inside is rewritten, the alias kept.
    if let Expr::Alias(alias) = expr {
        let Alias {
            expr: inner,
            relation,
            name,
            metadata,
        } = alias;
        return Ok(rewrite(*inner, schema)?.update_data(|inner| {
            Expr::Alias(Alias {
                expr: Box::new(inner),
                relation,
                name,
                metadata,
            })
        }));
    }
    let Some(kind) = framed_kind(&expr, schema) else {
        return Ok(Transformed::no(expr));
    };
    // The replacement declares the replaced expression's own field, so the plan's schema
    // (types and nullability) does not change.
    let (_, field) = expr.to_field(schema)?;
    let Expr::WindowFunction(window) = expr else {
        return Ok(Transformed::no(expr));
    };
    let WindowFunction { params, .. } = *window;
    let udwf = WindowUDF::new_from_impl(FramedAggregate::new(
        kind,
        field.data_type().clone(),
        field.is_nullable(),
    ));
    Ok(Transformed::yes(Expr::from(WindowFunction {
        fun: WindowFunctionDefinition::WindowUDF(Arc::new(udwf)),
        params,
    })))
}

/// What `expr` computes when it is a window this module evaluates, `None` otherwise.
fn framed_kind(expr: &Expr, schema: &DFSchema) -> Option<Kind> {
    let Expr::WindowFunction(window) = expr else {
        return None;
    };
    let WindowFunctionDefinition::AggregateUDF(udaf) = &window.fun else {
        return None;
    };
    let WindowFunctionParams {
        args,
        window_frame,
        filter,
        null_treatment,
        distinct,
        ..
    } = &window.params;
    let [arg] = args.as_slice() else {
        return None;
    };
    if filter.is_some()
        || null_treatment.is_some()
        || *distinct
        || !is_short_rows_frame(window_frame)
    {
        return None;
    }
    let arg_type = arg.get_type(schema).ok()?;
    let summable = matches!(
        arg_type,
        DataType::Int64 | DataType::UInt64 | DataType::Float64
    );
    let averageable = match (&arg_type, expr.get_type(schema).ok()?) {
        (DataType::Float64, _) => true,
        // DataFusion scales the average up (`Decimal128(p, s)` -> `(p + 4, s + 4)`, capped).
        // A negative scale is left to DataFusion (its scale-up factor wraps there).
        (DataType::Decimal128(_, scale), DataType::Decimal128(_, result)) => {
            *scale >= 0 && result >= *scale
        }
        _ => false,
    };
    match udaf.name() {
        "sum" if summable => Some(Kind::Sum),
        "avg" if averageable => Some(Kind::Avg),
        // Types whose physical nulls are not their logical ones keep DataFusion's count.
        "count"
            if !matches!(
                arg_type,
                DataType::Null
                    | DataType::Dictionary(..)
                    | DataType::RunEndEncoded(..)
                    | DataType::Union(..)
            ) =>
        {
            Some(Kind::Count)
        }
        _ => None,
    }
}

/// A `ROWS` frame with both ends at fixed offsets, at most [`MAX_FRAME_ROWS`] rows long.
fn is_short_rows_frame(frame: &WindowFrame) -> bool {
    let (Some(start), Some(end)) = (offset(&frame.start_bound), offset(&frame.end_bound)) else {
        return false;
    };
    frame.units == WindowFrameUnits::Rows
        && start <= end
        && end - start < i128::from(MAX_FRAME_ROWS)
}

/// A bound's offset from the current row (negative before it); `None` when unbounded.
pub(crate) fn offset(bound: &WindowFrameBound) -> Option<i128> {
    let rows = |value: &ScalarValue| match value {
        ScalarValue::UInt64(Some(n)) => Some(i128::from(*n)),
        ScalarValue::Int64(Some(n)) if *n >= 0 => Some(i128::from(*n)),
        _ => None,
    };
    match bound {
        WindowFrameBound::Preceding(value) => rows(value).map(|n| -n),
        WindowFrameBound::CurrentRow => Some(0),
        WindowFrameBound::Following(value) => rows(value),
    }
}

/// The aggregate computed over each frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Sum,
    Avg,
    Count,
}

/// A window function computing [`Kind`] over each row's frame from the frame's rows.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct FramedAggregate {
    kind: Kind,
    data_type: DataType,
    nullable: bool,
    signature: Signature,
}

impl FramedAggregate {
    /// `data_type` and `nullable` are those of the result, as declared by the replaced
    /// aggregate.
    pub fn new(kind: Kind, data_type: DataType, nullable: bool) -> Self {
        FramedAggregate {
            kind,
            data_type,
            nullable,
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl FramedAggregate {
    /// What it computes over each frame.
    pub fn kind(&self) -> Kind {
        self.kind
    }
}

impl WindowUDFImpl for FramedAggregate {
    fn name(&self) -> &str {
        match self.kind {
            Kind::Sum => "fti_framed_sum",
            Kind::Avg => "fti_framed_avg",
            Kind::Count => "fti_framed_count",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn partition_evaluator(
        &self,
        _args: PartitionEvaluatorArgs,
    ) -> Result<Box<dyn PartitionEvaluator>> {
        Ok(Box::new(FrameEvaluator {
            kind: self.kind,
            data_type: self.data_type.clone(),
        }))
    }

    fn field(&self, field_args: WindowUDFFieldArgs) -> Result<FieldRef> {
        Ok(Arc::new(Field::new(
            field_args.name(),
            self.data_type.clone(),
            self.nullable,
        )))
    }
}

/// Evaluates one partition, one frame at a time. It keeps no state between rows: the frame's
/// range is relative to the rows DataFusion still holds, which it prunes as it goes.
#[derive(Debug)]
struct FrameEvaluator {
    kind: Kind,
    data_type: DataType,
}

impl PartitionEvaluator for FrameEvaluator {
    fn uses_window_frame(&self) -> bool {
        true
    }

    fn supports_bounded_execution(&self) -> bool {
        true
    }

    fn evaluate(&mut self, values: &[ArrayRef], range: &Range<usize>) -> Result<ScalarValue> {
        let Some(column) = values.first() else {
            return exec_err!("a framed aggregate takes one argument");
        };
        if self.kind == Kind::Count {
            let nulls = column
                .nulls()
                .map_or(0, |n| range.clone().filter(|&i| n.is_null(i)).count());
            return Ok(ScalarValue::Int64(Some((range.len() - nulls) as i64)));
        }
        if let DataType::Decimal128(_, scale) = column.data_type() {
            return decimal_avg(
                column.as_primitive::<Decimal128Type>(),
                range,
                *scale,
                &self.data_type,
            );
        }
        let summed = match column.data_type() {
            DataType::Int64 => frame_sum(column.as_primitive::<Int64Type>(), range)
                .map(|(sum, n)| (ScalarValue::Int64(Some(sum)), sum as f64, n)),
            DataType::UInt64 => frame_sum(column.as_primitive::<UInt64Type>(), range)
                .map(|(sum, n)| (ScalarValue::UInt64(Some(sum)), sum as f64, n)),
            DataType::Float64 => frame_sum(column.as_primitive::<Float64Type>(), range)
                .map(|(sum, n)| (ScalarValue::Float64(Some(sum)), sum, n)),
            other => return exec_err!("a framed aggregate cannot sum {other}"),
        };
        Ok(match summed {
            // An empty or all-null frame.
            None => ScalarValue::try_from(&self.data_type)?,
            Some((_, sum, n)) if self.kind == Kind::Avg => {
                ScalarValue::Float64(Some(sum / n as f64))
            }
            Some((sum, ..)) => sum,
        })
    }
}

/// DataFusion's `avg` of a `Decimal128` column over the non-null rows of `range`, into
/// `result` (a `Decimal128`): their sum, exact in 256 bits (DataFusion sums a
/// `Decimal128(p, _)` in `Decimal256` from p = 26 up, and a narrower one in 128 bits that a
/// frame of at most [`MAX_FRAME_ROWS`] rows cannot overflow), times 10^(result scale - input
/// scale), divided by their number truncating toward zero; an average beyond the result's
/// precision is an error, as in DataFusion.
pub(crate) fn decimal_avg(
    array: &PrimitiveArray<Decimal128Type>,
    range: &Range<usize>,
    scale: i8,
    result: &DataType,
) -> Result<ScalarValue> {
    let &DataType::Decimal128(precision, result_scale) = result else {
        return exec_err!("a framed decimal average gives {result}");
    };
    if let Some(average) = decimal_avg_narrow(array, range, scale, precision, result_scale) {
        return Ok(ScalarValue::Decimal128(average, precision, result_scale));
    }
    let (sum, count) = range
        .clone()
        .filter(|&i| array.is_valid(i))
        .fold((i256::ZERO, 0i128), |(sum, n), i| {
            (sum.wrapping_add(i256::from_i128(array.value(i))), n + 1)
        });
    if count == 0 {
        return Ok(ScalarValue::Decimal128(None, precision, result_scale));
    }
    let average = u32::try_from(result_scale - scale)
        .ok()
        .and_then(|up| i256::from_i128(10).checked_pow(up))
        .and_then(|multiplier| sum.checked_mul(multiplier))
        .map(|scaled| scaled.wrapping_div(i256::from_i128(count)))
        .filter(|&average| {
            Decimal256Type::validate_decimal_precision(average, precision, result_scale).is_ok()
        })
        .and_then(i256::to_i128);
    match average {
        Some(average) => Ok(ScalarValue::Decimal128(
            Some(average),
            precision,
            result_scale,
        )),
        None => exec_err!("Arithmetic Overflow in AvgAccumulator"),
    }
}

/// [`decimal_avg`] in 128 bits, which gives the same average whenever the sum, its scaling
/// and the result fit (the flights' daily means: always): `Some(None)` for an empty frame,
/// `None` when a step would overflow or the result is beyond its precision (the caller then
/// takes the 256-bit way, to the same value or the same error). The 256-bit multiply and
/// divide dominate a 7-row frame: the evaluator runs 30% fewer instructions on the flights.
fn decimal_avg_narrow(
    array: &PrimitiveArray<Decimal128Type>,
    range: &Range<usize>,
    scale: i8,
    precision: u8,
    result_scale: i8,
) -> Option<Option<i128>> {
    let mut sum = 0i128;
    let mut count = 0i128;
    for i in range.clone().filter(|&i| array.is_valid(i)) {
        sum = sum.checked_add(array.value(i))?;
        count += 1;
    }
    if count == 0 {
        return Some(None);
    }
    let multiplier = 10i128.checked_pow(u32::try_from(result_scale - scale).ok()?)?;
    let average = sum.checked_mul(multiplier)? / count;
    Decimal128Type::validate_decimal_precision(average, precision, result_scale).ok()?;
    Some(Some(average))
}

/// The wrapping sum of the non-null rows of `range` and their number; `None` when there are
/// none.
pub(crate) fn frame_sum<T: ArrowPrimitiveType>(
    array: &PrimitiveArray<T>,
    range: &Range<usize>,
) -> Option<(T::Native, usize)> {
    let values = &array.values()[range.clone()];
    let (sum, count) = match array.nulls().filter(|n| n.null_count() > 0) {
        None => (
            values
                .iter()
                .fold(T::Native::ZERO, |acc, &x| acc.add_wrapping(x)),
            values.len(),
        ),
        Some(nulls) => range
            .clone()
            .filter(|&i| nulls.is_valid(i))
            .fold((T::Native::ZERO, 0), |(acc, n), i| {
                (acc.add_wrapping(array.values()[i]), n + 1)
            }),
    };
    (count > 0).then_some((sum, count))
}

#[cfg(test)]
pub(crate) mod tests {
    use arrow::array::{Decimal128Array, Float64Array, Int64Array, RecordBatch, UInt64Array};
    use arrow::datatypes::Schema;
    use datafusion::prelude::{SessionConfig, SessionContext};

    use super::*;

    /// Partitions of 1, 2, 17, 40 and 103 rows, inserted out of order, with a null in every
    /// seventh row of the integer and float columns.
    pub(crate) fn table() -> RecordBatch {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut rows = Vec::new();
        for (key, len) in [1i64, 2, 17, 40, 103].into_iter().enumerate() {
            for pos in 0..len {
                rows.push((key as i64, pos, next()));
            }
        }
        rows.sort_by_key(|r| r.2);
        let nth = |i: usize| i % 7 == 3;
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("o", DataType::Int64, false),
            Field::new("i", DataType::Int64, true),
            Field::new("u", DataType::UInt64, false),
            Field::new("f", DataType::Float64, true),
            Field::new("d", DataType::Decimal128(38, 18), true),
            Field::new("e", DataType::Decimal128(10, 2), false),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(Int64Array::from_iter(
                rows.iter()
                    .enumerate()
                    .map(|(i, r)| (!nth(i)).then_some((r.2 % 2001) as i64 - 1000)),
            )),
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.2 % 97))),
            Arc::new(Float64Array::from_iter(rows.iter().enumerate().map(
                |(i, r)| (!nth(i)).then_some((r.2 % 1_000_003) as f64 / 7.0 - 5e4),
            ))),
            // Up to +-1000 with 18 decimals, and up to +-1000 with 2.
            Arc::new(
                Decimal128Array::from_iter(rows.iter().enumerate().map(|(i, r)| {
                    (!nth(i))
                        .then_some(i128::from(r.2 % 2_000_001) * 10i128.pow(15) - 10i128.pow(21))
                }))
                .with_precision_and_scale(38, 18)
                .unwrap(),
            ),
            Arc::new(
                Decimal128Array::from_iter_values(
                    rows.iter().map(|r| i128::from(r.2 % 200_001) - 100_000),
                )
                .with_precision_and_scale(10, 2)
                .unwrap(),
            ),
        ];
        RecordBatch::try_new(schema, columns).unwrap()
    }

    /// `sql` over `t` without the rule, then with it, in 5-row batches so that the bounded
    /// window operator prunes rows between batches: each run's optimized plan and output.
    async fn with_and_without_rule(sql: &str) -> [(String, RecordBatch); 2] {
        let batch = table();
        let mut runs = Vec::new();
        for with_rule in [false, true] {
            let ctx = SessionContext::new_with_config(SessionConfig::new().with_batch_size(5));
            if with_rule {
                ctx.add_optimizer_rule(Arc::new(RowsWindowRule));
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

    /// Every frame shape the rule takes, over every type it takes: the same names, types,
    /// nullability and values as DataFusion's accumulators (floats to within rounding).
    #[tokio::test]
    async fn rewritten_windows_give_datafusions_results() {
        for frame in [
            "ROWS BETWEEN 3 PRECEDING AND 1 PRECEDING",
            "ROWS BETWEEN 2 PRECEDING AND 2 FOLLOWING",
            "ROWS BETWEEN CURRENT ROW AND 3 FOLLOWING",
            "ROWS BETWEEN 5 FOLLOWING AND 6 FOLLOWING",
            "ROWS BETWEEN 28 PRECEDING AND CURRENT ROW",
        ] {
            let sql = format!(
                "SELECT k, o, SUM(i) OVER w, SUM(u) OVER w AS su, SUM(f) OVER w AS sf, \
                        AVG(i) OVER w AS ai, AVG(f) OVER w AS af, AVG(u) OVER w AS au, \
                        COUNT(i) OVER w AS ci, COUNT(*) OVER w AS n, \
                        AVG(d) OVER w AS ad, AVG(e) OVER w AS ae \
                 FROM t WINDOW w AS (PARTITION BY k ORDER BY o {frame}) ORDER BY k, o"
            );
            let [(plain_plan, plain), (plan, rewritten)] = with_and_without_rule(&sql).await;
            assert!(!plain_plan.contains("fti_framed"), "{plain_plan}");
            for name in ["fti_framed_sum", "fti_framed_count"] {
                assert!(plan.contains(name), "{frame}: {plan}");
            }
            for column in ["f", "d", "e"] {
                let avg = format!("fti_framed_avg(t.{column})");
                assert!(plan.contains(&avg), "{frame}: {avg}: {plan}");
            }
            assert_eq!(plain.schema(), rewritten.schema(), "{frame}");
            assert_eq!(plain.num_rows(), 163);
            for (c, field) in plain.schema().fields().iter().enumerate() {
                let (a, b) = (plain.column(c), rewritten.column(c));
                if field.data_type() == &DataType::Float64 {
                    let (a, b) = (
                        a.as_primitive::<Float64Type>(),
                        b.as_primitive::<Float64Type>(),
                    );
                    assert_eq!(a.nulls(), b.nulls(), "{frame}: {}", field.name());
                    for (x, y) in a.values().iter().zip(b.values()) {
                        let close = (x - y).abs() <= 1e-9 * x.abs().max(1.0);
                        assert!(close, "{frame}: {}: {x} vs {y}", field.name());
                    }
                } else {
                    assert_eq!(a, b, "{frame}: {}", field.name());
                }
            }
        }
    }

    /// A decimal average beyond its result's precision fails with the rule as without it.
    #[tokio::test]
    async fn decimal_average_overflow_is_an_error_as_without_the_rule() {
        // Up to 96 * 9e33, scaled up by 10^4 for the result's scale: past 38 digits.
        let sql = "SELECT AVG(CAST(CAST(u AS DECIMAL(38, 0)) * CAST(9e33 AS DECIMAL(38, 0)) \
                                   AS DECIMAL(38, 0))) \
                   OVER (PARTITION BY k ORDER BY o ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) \
                   FROM t WHERE u > 0";
        for with_rule in [false, true] {
            let ctx = SessionContext::new();
            if with_rule {
                ctx.add_optimizer_rule(Arc::new(RowsWindowRule));
            }
            ctx.register_batch("t", table()).unwrap();
            let df = ctx.sql(sql).await.unwrap();
            let plan = format!(
                "{}",
                df.clone().into_optimized_plan().unwrap().display_indent()
            );
            assert_eq!(plan.contains("fti_framed_avg"), with_rule, "{plan}");
            let err = df.collect().await.unwrap_err().to_string();
            assert!(err.contains("Overflow"), "with rule {with_rule}: {err}");
        }
    }

    /// Frames and arguments outside the rule keep DataFusion's evaluation.
    #[tokio::test]
    async fn other_windows_are_left_alone() {
        for window in [
            "SUM(i) OVER (PARTITION BY k ORDER BY o ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)",
            "SUM(i) OVER (PARTITION BY k ORDER BY o RANGE BETWEEN 3 PRECEDING AND 1 PRECEDING)",
            "SUM(i) OVER (PARTITION BY k ORDER BY o ROWS BETWEEN 2000 PRECEDING AND 1 PRECEDING)",
            "SUM(CAST(i AS DECIMAL(20, 2))) OVER (PARTITION BY k ORDER BY o ROWS BETWEEN 3 PRECEDING AND 1 PRECEDING)",
            "SUM(i) FILTER (WHERE u > 3) OVER (PARTITION BY k ORDER BY o ROWS BETWEEN 3 PRECEDING AND 1 PRECEDING)",
            "MAX(i) OVER (PARTITION BY k ORDER BY o ROWS BETWEEN 3 PRECEDING AND 1 PRECEDING)",
        ] {
            let sql = format!("SELECT k, o, {window} AS x FROM t ORDER BY k, o");
            let [(_, plain), (plan, rewritten)] = with_and_without_rule(&sql).await;
            assert!(!plan.contains("fti_framed"), "{window}: {plan}");
            assert_eq!(plain, rewritten, "{window}");
        }
    }
}
