//! A window operator for trailing [`FramedAggregate`]s: each batch's results in one pass.
//!
//! DataFusion's `BoundedWindowAggExec` evaluates a window function one row at a time: for every
//! row it finds the partition, computes the frame, calls the evaluator for a `ScalarValue` and
//! builds the output column from those values, and it keeps each partition's rows in buffers
//! it concatenates and prunes. With [`FramedAggregate`] doing the arithmetic, that bookkeeping
//! was what remained: on flights it cost 70 ms for the 622k rows of `route_28d` (two 28-row
//! sums) and 13 ms for each airport group (four 7-row averages over 42k rows).
//!
//! [`FramedWindowRule`] replaces such an operator when every window it computes is a
//! [`FramedAggregate`] over a frame that ends at the current row or before it (a point-in-time
//! feature never looks ahead) and its input is sorted on the partition keys. [`FramedWindowExec`]
//! then finds a batch's partitions with one comparison pass over the key columns and computes
//! each result column for the whole batch. A partition that continues into the next batch
//! carries its last rows (as many as the longest frame reaches back) into it, so memory stays
//! one batch plus those rows, as before. The values are those of the same evaluator
//! ([`crate::rows_window`]), so a plan gives the same output with or without this rule; the
//! operator's requirements (input order, distribution) and properties are those of the
//! operator it replaces, which it keeps to delegate to.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, ArrowNativeTypeOp, AsArray, Decimal128Array, Int64Array, PrimitiveArray,
    RecordBatch,
};
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Decimal128Type, Float64Type, Int64Type, SchemaRef, UInt64Type,
};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Result, ScalarValue, internal_err};
use datafusion::config::ConfigOptions;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::WindowFrameUnits;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr_common::sort_expr::OrderingRequirements;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::windows::{BoundedWindowAggExec, StandardWindowExpr, WindowUDFExpr};
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan,
    InputDistributionRequirements, InputOrderMode, PlanProperties, ReplaceChildrenOptions,
    SendableRecordBatchStream, WindowExpr,
};
use futures::StreamExt;

use crate::rows_window::{FramedAggregate, Kind, decimal_avg, frame_sum};

/// Replaces a sorted `BoundedWindowAggExec` of trailing [`FramedAggregate`]s with a
/// [`FramedWindowExec`].
#[derive(Debug, Default)]
pub struct FramedWindowRule;

impl PhysicalOptimizerRule for FramedWindowRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| match FramedWindowExec::try_replace(&node)? {
            Some(exec) => Ok(Transformed::yes(Arc::new(exec) as Arc<dyn ExecutionPlan>)),
            None => Ok(Transformed::no(node)),
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "fti_framed_window"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// One window column: what it computes over which rows before the current one.
#[derive(Debug, Clone)]
struct Column {
    kind: Kind,
    argument: Arc<dyn PhysicalExpr>,
    /// Offsets of the frame's first and last rows from the current row, `start <= end <= 0`.
    start: i64,
    end: i64,
    /// The result's type, as the replaced expression declares it.
    data_type: DataType,
}

impl Column {
    /// The column `expr` computes, when it is a trailing framed aggregate this operator
    /// evaluates to the type the expression declares.
    fn of(expr: &Arc<dyn WindowExpr>) -> Option<Column> {
        let standard = expr.as_any().downcast_ref::<StandardWindowExpr>()?;
        let udwf = standard
            .get_standard_func_expr()
            .as_any()
            .downcast_ref::<WindowUDFExpr>()?;
        let framed = (udwf.fun().inner().as_ref() as &dyn std::any::Any)
            .downcast_ref::<FramedAggregate>()?;
        let frame = expr.get_window_frame();
        let start = crate::rows_window::offset(&frame.start_bound)?;
        let end = crate::rows_window::offset(&frame.end_bound)?;
        if frame.units != WindowFrameUnits::Rows || start > end || end > 0 {
            return None;
        }
        let [argument] = <[_; 1]>::try_from(expr.expressions()).ok()?;
        let data_type = expr.field().ok()?.data_type().clone();
        let column = Column {
            kind: framed.kind(),
            argument,
            start: i64::try_from(start).ok()?,
            end: i64::try_from(end).ok()?,
            data_type,
        };
        Some(column)
    }

    /// How many rows before the current one the frame reaches.
    fn reach(&self) -> usize {
        self.start.unsigned_abs() as usize
    }

    /// The frame of the row at `row` in a partition whose rows start at `first`.
    fn frame(&self, first: usize, row: usize) -> Range<usize> {
        let row = row as i64;
        let lo = (row + self.start).max(first as i64);
        let hi = row + self.end + 1;
        lo as usize..(hi.max(lo)) as usize
    }

    /// The results for `rows` of `values`, each row's partition starting at its segment's
    /// `first` row.
    fn evaluate(&self, values: &ArrayRef, segments: &[Segment]) -> Result<ArrayRef> {
        let frames = segments
            .iter()
            .flat_map(|s| s.rows.clone().map(move |row| self.frame(s.first, row)));
        let result: ArrayRef = match (self.kind, values.data_type()) {
            (Kind::Count, _) => {
                let nulls = values.nulls();
                Arc::new(Int64Array::from_iter_values(frames.map(|frame| {
                    let invalid =
                        nulls.map_or(0, |n| frame.clone().filter(|&i| n.is_null(i)).count());
                    (frame.len() - invalid) as i64
                })))
            }
            (Kind::Sum, DataType::Int64) => integer_sums::<Int64Type>(values, frames),
            (Kind::Sum, DataType::UInt64) => integer_sums::<UInt64Type>(values, frames),
            (Kind::Sum, DataType::Float64) => sums::<Float64Type>(values, frames),
            (Kind::Avg, DataType::Float64) => {
                let values = values.as_primitive::<Float64Type>();
                Arc::new(
                    frames
                        .map(|frame| frame_sum(values, &frame).map(|(sum, n)| sum / n as f64))
                        .collect::<PrimitiveArray<Float64Type>>(),
                )
            }
            (Kind::Avg, &DataType::Decimal128(_, scale)) => {
                let DataType::Decimal128(precision, result_scale) = self.data_type else {
                    return internal_err!("a framed decimal average gives {}", self.data_type);
                };
                let values = values.as_primitive::<Decimal128Type>();
                let averages = frames
                    .map(
                        |frame| match decimal_avg(values, &frame, scale, &self.data_type)? {
                            ScalarValue::Decimal128(average, ..) => Ok(average),
                            other => internal_err!("a decimal average gave {other:?}"),
                        },
                    )
                    .collect::<Result<Decimal128Array>>()?;
                Arc::new(averages.with_precision_and_scale(precision, result_scale)?)
            }
            (kind, other) => return internal_err!("no framed {kind:?} of {other}"),
        };
        if result.data_type() != &self.data_type {
            return internal_err!(
                "a framed {:?} gave {} for {}",
                self.kind,
                result.data_type(),
                self.data_type
            );
        }
        Ok(result)
    }
}

/// The wrapping sum of each frame's non-null values; null for an empty or all-null frame.
fn sums<T: ArrowPrimitiveType>(
    values: &ArrayRef,
    frames: impl Iterator<Item = Range<usize>>,
) -> ArrayRef {
    let values = values.as_primitive::<T>();
    Arc::new(
        frames
            .map(|frame| frame_sum(values, &frame).map(|(sum, _)| sum))
            .collect::<PrimitiveArray<T>>(),
    )
}

/// [`sums`] of integers: without nulls, each frame's sum is the difference of two running
/// sums, in wrapping arithmetic (exact modulo 2^64, as the frame's own wrapping sum), so a
/// row costs one subtraction instead of a pass over its frame.
fn integer_sums<T: ArrowPrimitiveType>(
    values: &ArrayRef,
    frames: impl Iterator<Item = Range<usize>>,
) -> ArrayRef {
    if values.null_count() > 0 {
        return sums::<T>(values, frames);
    }
    let mut running = Vec::with_capacity(values.len() + 1);
    running.push(T::Native::ZERO);
    let mut total = T::Native::ZERO;
    for &v in values.as_primitive::<T>().values() {
        total = total.add_wrapping(v);
        running.push(total);
    }
    Arc::new(
        frames
            .map(|frame| {
                (!frame.is_empty()).then(|| running[frame.end].sub_wrapping(running[frame.start]))
            })
            .collect::<PrimitiveArray<T>>(),
    )
}

/// Rows of one partition within a batch's (possibly history-extended) columns.
#[derive(Debug, Clone)]
struct Segment {
    /// The partition's first row present: its start, or the first row carried over.
    first: usize,
    /// The rows to compute.
    rows: Range<usize>,
}

/// Computes trailing [`FramedAggregate`] windows batch by batch; see the module docs.
#[derive(Debug)]
pub struct FramedWindowExec {
    /// The operator replaced, for its schema, properties and requirements.
    window: Arc<BoundedWindowAggExec>,
    columns: Vec<Column>,
    metrics: ExecutionPlanMetricsSet,
}

impl FramedWindowExec {
    /// The replacement of `plan`, when it is a window operator this one computes.
    fn try_replace(plan: &Arc<dyn ExecutionPlan>) -> Result<Option<FramedWindowExec>> {
        let Some(window) = plan.downcast_ref::<BoundedWindowAggExec>() else {
            return Ok(None);
        };
        if window.input_order_mode != InputOrderMode::Sorted {
            return Ok(None);
        }
        let Some(columns) = window
            .window_expr()
            .iter()
            .map(Column::of)
            .collect::<Option<Vec<_>>>()
        else {
            return Ok(None);
        };
        Ok(Some(FramedWindowExec {
            window: Arc::new(window.clone()),
            columns,
            metrics: ExecutionPlanMetricsSet::new(),
        }))
    }

    fn input(&self) -> &Arc<dyn ExecutionPlan> {
        self.window.input()
    }
}

impl DisplayAs for FramedWindowExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let names: Vec<String> = self
            .window
            .window_expr()
            .iter()
            .map(|e| e.name().to_string())
            .collect();
        match t {
            DisplayFormatType::TreeRender => write!(f, "select_list={}", names.join(", ")),
            _ => write!(f, "FramedWindowExec: wdw=[{}]", names.join(", ")),
        }
    }
}

impl ExecutionPlan for FramedWindowExec {
    fn name(&self) -> &str {
        "FramedWindowExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.window.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![self.input()]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        self.window.apply_expressions(f)
    }

    fn required_input_ordering(&self) -> Vec<Option<OrderingRequirements>> {
        self.window.required_input_ordering()
    }

    fn input_distribution_requirements(&self) -> InputDistributionRequirements {
        self.window.input_distribution_requirements()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        self.window.maintains_input_order()
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let window = Arc::clone(&self.window).replace_children(children, options)?;
        match FramedWindowExec::try_replace(&window)? {
            Some(exec) => Ok(Arc::new(exec)),
            None => Ok(window),
        }
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input().execute(partition, context)?;
        let schema = self.schema();
        let mut state = Carry {
            schema: Arc::clone(&schema),
            partition_by: self.window.window_expr()[0].partition_by().to_vec(),
            columns: self.columns.clone(),
            reach: self.columns.iter().map(Column::reach).max().unwrap_or(0),
            last_key: None,
            history: Vec::new(),
            metrics: BaselineMetrics::new(&self.metrics, partition),
        };
        let stream = input.map(move |batch| batch.and_then(|b| state.next(&b)));
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// One partition stream's state between batches: the key of the last row and the last rows
/// of its partition's arguments.
struct Carry {
    schema: SchemaRef,
    partition_by: Vec<Arc<dyn PhysicalExpr>>,
    columns: Vec<Column>,
    /// The most rows any frame reaches back.
    reach: usize,
    /// The partition key of the previous batch's last row (one-row arrays).
    last_key: Option<Vec<ArrayRef>>,
    /// Per column: the argument's last `reach` rows (or fewer) of that row's partition.
    history: Vec<ArrayRef>,
    metrics: BaselineMetrics,
}

impl Carry {
    fn next(&mut self, batch: &RecordBatch) -> Result<RecordBatch> {
        let timer = self.metrics.elapsed_compute().timer();
        let n = batch.num_rows();
        let keys = self
            .partition_by
            .iter()
            .map(|e| e.evaluate(batch)?.into_array(n))
            .collect::<Result<Vec<_>>>()?;
        // Without partition keys the whole input is one partition.
        let ranges: Vec<Range<usize>> = match keys.is_empty() {
            true => std::iter::once(0..n).filter(|r| !r.is_empty()).collect(),
            false => arrow::compute::partition(&keys)?.ranges(),
        };
        let continues = match (&self.last_key, n) {
            (Some(last), 1..) => same_key(last, &keys)?,
            _ => false,
        };
        let carried = match continues {
            true => self.history.first().map_or(0, |h| h.len()),
            false => 0,
        };
        let segments: Vec<Segment> = ranges
            .iter()
            .enumerate()
            .map(|(i, r)| Segment {
                first: if i == 0 { 0 } else { r.start + carried },
                rows: r.start + carried..r.end + carried,
            })
            .collect();
        let mut output = batch.columns().to_vec();
        let mut history = Vec::with_capacity(self.columns.len());
        for (c, column) in self.columns.iter().enumerate() {
            let argument = column.argument.evaluate(batch)?.into_array(n)?;
            let values = match self.history.get(c).filter(|_| carried > 0) {
                Some(before) => arrow::compute::concat(&[before.as_ref(), argument.as_ref()])?,
                None => argument,
            };
            output.push(column.evaluate(&values, &segments)?);
            if let Some(last) = segments.last() {
                let kept = (last.rows.end - last.first).min(self.reach);
                history.push(values.slice(last.rows.end - kept, kept));
            }
        }
        if n > 0 {
            self.history = history;
            self.last_key = Some(keys.iter().map(|k| k.slice(n - 1, 1)).collect());
        }
        let result = RecordBatch::try_new(Arc::clone(&self.schema), output)?;
        timer.done();
        self.metrics.record_output(result.num_rows());
        Ok(result)
    }
}

/// Whether the first row of `keys` has the key `last` (one-row arrays); nulls are equal, as
/// in [`arrow::compute::partition`].
fn same_key(last: &[ArrayRef], keys: &[ArrayRef]) -> Result<bool> {
    for (a, b) in last.iter().zip(keys) {
        let distinct = arrow::compute::kernels::cmp::distinct(a, &b.slice(0, 1))?;
        if distinct.value(0) {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use datafusion::execution::session_state::SessionStateBuilder;
    use datafusion::physical_plan::displayable;
    use datafusion::prelude::{SessionConfig, SessionContext};

    use super::*;
    use crate::rows_window::RowsWindowRule;
    use crate::rows_window::tests::table;

    /// `sql` over the test table with [`RowsWindowRule`], in `batch` row batches on
    /// `partitions` partitions, with or without [`FramedWindowRule`]: the physical plan and the
    /// output.
    async fn run(
        sql: &str,
        with_rule: bool,
        batch: usize,
        partitions: usize,
    ) -> (String, RecordBatch) {
        let config = SessionConfig::new()
            .with_batch_size(batch)
            .with_target_partitions(partitions);
        let mut state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features();
        if with_rule {
            state = state.with_physical_optimizer_rule(Arc::new(FramedWindowRule));
        }
        let ctx = SessionContext::new_with_state(state.build());
        ctx.add_optimizer_rule(Arc::new(RowsWindowRule));
        // Several batches, so that partitions continue from one batch into the next.
        let table = table();
        let batches: Vec<RecordBatch> = (0..table.num_rows())
            .step_by(batch)
            .map(|start| table.slice(start, batch.min(table.num_rows() - start)))
            .collect();
        let provider =
            datafusion::datasource::MemTable::try_new(table.schema(), vec![batches]).unwrap();
        ctx.register_table("t", Arc::new(provider)).unwrap();
        let df = ctx.sql(sql).await.unwrap();
        let plan = df.clone().create_physical_plan().await.unwrap();
        let shown = displayable(plan.as_ref()).indent(true).to_string();
        let batches = df.collect().await.unwrap();
        let output = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
        (shown, output)
    }

    /// Trailing frames over every type and partitioning the rule takes, in batches that cut
    /// partitions anywhere and on one or several partitions: the operator is used, and the
    /// output (names, types, nullability, values) is exactly that of DataFusion's window
    /// operator running the same evaluator. Frames that look ahead keep DataFusion's operator.
    #[tokio::test]
    async fn trailing_windows_give_the_same_output_as_datafusions_operator() {
        let partitionings = [
            "PARTITION BY k ORDER BY o",
            // Partitions 0 and 1 merge into one null key.
            "PARTITION BY CASE WHEN k < 2 THEN NULL ELSE k END ORDER BY k, o",
            "PARTITION BY k % 2, k ORDER BY o",
            "ORDER BY k, o",
        ];
        let frames = [
            ("ROWS BETWEEN 3 PRECEDING AND 1 PRECEDING", true),
            ("ROWS BETWEEN 28 PRECEDING AND CURRENT ROW", true),
            ("ROWS BETWEEN CURRENT ROW AND CURRENT ROW", true),
            ("ROWS BETWEEN 7 PRECEDING AND 7 PRECEDING", true),
            ("ROWS BETWEEN 2 PRECEDING AND 2 FOLLOWING", false),
        ];
        for partitioning in partitionings {
            for (frame, trailing) in frames {
                let sql = format!(
                    "SELECT k, o, SUM(i) OVER w, SUM(o) OVER w AS so, SUM(u) OVER w AS su, \
                            SUM(f) OVER w AS sf, AVG(f) OVER w AS af, COUNT(i) OVER w AS ci, \
                            COUNT(*) OVER w AS n, AVG(d) OVER w AS ad, AVG(e) OVER w AS ae \
                     FROM t WINDOW w AS ({partitioning} {frame}) ORDER BY k, o"
                );
                for (batch, partitions) in [(5, 1), (1, 1), (64, 1), (7, 3)] {
                    let what = format!(
                        "{partitioning} {frame}, {batch}-row batches, {partitions} partitions"
                    );
                    let (plain_plan, plain) = run(&sql, false, batch, partitions).await;
                    let (plan, framed) = run(&sql, true, batch, partitions).await;
                    assert!(!plain_plan.contains("FramedWindowExec"), "{plain_plan}");
                    assert_eq!(
                        plan.contains("FramedWindowExec"),
                        trailing,
                        "{what}: {plan}"
                    );
                    assert_eq!(
                        plan.contains("BoundedWindowAggExec"),
                        !trailing,
                        "{what}: {plan}"
                    );
                    assert_eq!(plain.num_rows(), 163, "{what}");
                    assert_eq!(plain, framed, "{what}");
                }
            }
        }
    }

    /// A decimal average beyond its result's precision is the same error through the operator.
    #[tokio::test]
    async fn decimal_average_overflow_is_an_error() {
        let sql = "SELECT AVG(CAST(CAST(u AS DECIMAL(38, 0)) * CAST(9e33 AS DECIMAL(38, 0)) \
                                   AS DECIMAL(38, 0))) \
                   OVER (PARTITION BY k ORDER BY o ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) \
                   FROM t WHERE u > 0";
        let config = SessionConfig::new().with_target_partitions(1);
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(FramedWindowRule))
            .build();
        let ctx = SessionContext::new_with_state(state);
        ctx.add_optimizer_rule(Arc::new(RowsWindowRule));
        ctx.register_batch("t", table()).unwrap();
        let df = ctx.sql(sql).await.unwrap();
        let plan = df.clone().create_physical_plan().await.unwrap();
        let shown = displayable(plan.as_ref()).indent(true).to_string();
        assert!(shown.contains("FramedWindowExec"), "{shown}");
        let err = df.collect().await.unwrap_err().to_string();
        assert!(err.contains("Overflow"), "{err}");
    }
}
