//! `a || b || ...` over string views, built in the view when the result is short.
//!
//! DataFusion evaluates `origin || '-' || destination` as two binary concatenations: each
//! expands a literal into a column and copies every row's bytes through a view builder. On the
//! flights run (the labels' `route` of 3M rows, the route grid of 622k) that was about 5% of
//! the CPU. [`StringConcatRule`] replaces a chain of `||` whose result is `Utf8View` by
//! [`ShortConcat`]. For a batch whose every input is a string view or a string literal of at
//! most 12 bytes and whose every result fits in 12 bytes (an Arrow view holds such a string
//! inline, in its own 16 bytes), it assembles each result's view from the inputs' views with
//! shifts; any other batch goes through Arrow's `concat_elements`, as before. The values are
//! the same, NULL where an input is NULL, and so are the type, the nullability and the output
//! column's name.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringViewArray, new_null_array};
use arrow::buffer::NullBuffer;
use arrow::compute::kernels::concat_elements::concat_elements_dyn;
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, Result, exec_err};
use datafusion::logical_expr::expr::{BinaryExpr, ScalarFunction};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator, ReturnFieldArgs, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

/// Bytes a string view holds inline.
const INLINE_BYTES: u32 = 12;

/// Rewrites chains of `||` whose result is `Utf8View` into [`ShortConcat`].
#[derive(Debug, Default)]
pub struct StringConcatRule;

impl OptimizerRule for StringConcatRule {
    fn name(&self) -> &str {
        "fti_string_concat"
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
        crate::timestamp_parts::rewrite_subexpressions(plan, rewrite)
    }
}

fn rewrite(expr: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let Expr::BinaryExpr(BinaryExpr {
        left,
        op: Operator::StringConcat,
        right,
    }) = &expr
    else {
        return Ok(Transformed::no(expr));
    };
    if !matches!(expr.get_type(schema), Ok(DataType::Utf8View)) {
        return Ok(Transformed::no(expr));
    }
    // Bottom up, the left side of `a || b || c` is already `fti_concat(a, b)`: splice it.
    let mut operands = Vec::new();
    for side in [left, right] {
        match side.as_ref() {
            Expr::ScalarFunction(ScalarFunction { func, args })
                if func.name() == ShortConcat::NAME =>
            {
                operands.extend(args.iter().cloned())
            }
            other => operands.push(other.clone()),
        }
    }
    let udf = ScalarUDF::new_from_impl(ShortConcat::default());
    Ok(Transformed::yes(udf.call(operands)))
}

/// `a || b || ...` of strings into a `Utf8View` (see the module documentation).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ShortConcat {
    signature: Signature,
}

impl ShortConcat {
    const NAME: &str = "fti_concat";
}

impl Default for ShortConcat {
    fn default() -> Self {
        ShortConcat {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for ShortConcat {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8View)
    }

    /// NULL where any input is, as `||`.
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let nullable = args.arg_fields.iter().any(|f| f.is_nullable());
        Ok(Arc::new(Field::new(
            self.name(),
            DataType::Utf8View,
            nullable,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        if let Some(short) = inline_concat(&args.args, rows) {
            return Ok(ColumnarValue::Array(short));
        }
        // DataFusion's own evaluation of the chain: left to right, pairwise.
        let mut arrays = args.args.iter().map(|arg| arg.to_array(rows));
        let Some(first) = arrays.next() else {
            return exec_err!("{} takes at least one argument", self.name());
        };
        let mut out = first?;
        for array in arrays {
            out = concat_elements_dyn(&out, &array?)?;
        }
        Ok(ColumnarValue::Array(out))
    }
}

/// One input of [`inline_concat`]: a view column, or a literal's bytes (little-endian, as in
/// a view) and length.
enum Piece<'a> {
    Views(&'a [u128]),
    Literal(u128, u32),
}

/// The concatenation of `args` over `rows` rows when every input is a string view or a
/// string literal of at most [`INLINE_BYTES`] and so is every non-null result; `None`
/// otherwise (the caller then concatenates as DataFusion does).
fn inline_concat(args: &[ColumnarValue], rows: usize) -> Option<ArrayRef> {
    let mut pieces = Vec::with_capacity(args.len());
    let mut nulls: Option<NullBuffer> = None;
    for arg in args {
        match arg {
            ColumnarValue::Array(array) if array.data_type() == &DataType::Utf8View => {
                let views = array.as_string_view();
                nulls = NullBuffer::union(nulls.as_ref(), views.logical_nulls().as_ref());
                pieces.push(Piece::Views(views.views()));
            }
            ColumnarValue::Scalar(scalar) => match scalar.try_as_str() {
                Some(None) => return Some(new_null_array(&DataType::Utf8View, rows)),
                Some(Some(text)) if text.len() <= INLINE_BYTES as usize => {
                    let mut bytes = [0u8; 16];
                    bytes[..text.len()].copy_from_slice(text.as_bytes());
                    pieces.push(Piece::Literal(
                        u128::from_le_bytes(bytes),
                        text.len() as u32,
                    ));
                }
                _ => return None,
            },
            ColumnarValue::Array(_) => return None,
        }
    }
    if pieces
        .iter()
        .any(|p| matches!(p, Piece::Views(v) if v.len() < rows))
    {
        return None;
    }
    // The result's views are built in place, one piece at a time over all rows (a tight loop
    // each): a view is its length in the low 32 bits, then its bytes, so a piece's bytes go
    // in at 32 + 8 * (the length so far) and its length is added. Null rows are concatenated
    // too (their views are whatever the inputs hold there): the result's null buffer hides them.
    let mut views = vec![0u128; rows];
    // The length every row has so far, while they all have the same (airport codes, a
    // literal): the next piece of one length then goes in at the same place in every row,
    // with masks and shifts constant over the loop (half the general loop's instructions).
    let mut uniform = Some(0u32);
    for piece in &pieces {
        let piece_len = match piece {
            Piece::Literal(_, len) => Some(*len),
            Piece::Views(pieces) => pieces.first().map(|&v| v as u32).filter(|&first| {
                first <= INLINE_BYTES && pieces.iter().all(|&v| v as u32 == first)
            }),
        };
        if let (Some(len), Some(piece_len)) = (uniform, piece_len) {
            if len + piece_len > INLINE_BYTES {
                return None;
            }
            let shift = 32 + 8 * len;
            let add_len = u128::from(piece_len);
            match piece {
                Piece::Literal(bytes, _) => {
                    let add = (bytes << shift) + add_len;
                    views.iter_mut().for_each(|view| *view += add);
                }
                Piece::Views(pieces) => {
                    let mask = (1u128 << (8 * piece_len)) - 1;
                    for (view, &piece) in views.iter_mut().zip(*pieces) {
                        *view += (((piece >> 32) & mask) << shift) + add_len;
                    }
                }
            }
            uniform = Some(len + piece_len);
            continue;
        }
        uniform = None;
        // Every length so far is at most INLINE_BYTES (checked after each piece), so no
        // shift below reaches 128 bits; a row that outgrows a view fails the batch.
        let mut longest = 0u32;
        match piece {
            Piece::Views(pieces) => {
                for (view, &piece) in views.iter_mut().zip(*pieces) {
                    // The bytes past a view's length should be zero but need not be (a
                    // view longer than INLINE_BYTES holds a prefix and a buffer offset
                    // there), hence the mask.
                    let (len, piece_len) = (*view as u32, (piece as u32).min(INLINE_BYTES + 1));
                    let mask = (1u128 << (8 * piece_len.min(INLINE_BYTES))) - 1;
                    *view = (*view | ((((piece >> 32) & mask) << (8 * len)) << 32))
                        + u128::from(piece_len);
                    longest = longest.max(len + piece_len);
                }
            }
            Piece::Literal(bytes, piece_len) => {
                for view in &mut views {
                    let len = *view as u32;
                    *view = (*view | ((bytes << (8 * len)) << 32)) + u128::from(*piece_len);
                    longest = longest.max(len + piece_len);
                }
            }
        }
        if longest > INLINE_BYTES {
            return None;
        }
    }
    // Concatenated UTF-8 is UTF-8; `try_new` checks it all the same, and the views.
    let array = StringViewArray::try_new(views.into(), Vec::new(), nulls).ok()?;
    Some(Arc::new(array))
}

#[cfg(test)]
mod tests {
    use arrow::array::RecordBatch;
    use arrow::datatypes::Schema;
    use datafusion::prelude::{SessionConfig, SessionContext};

    use super::*;

    /// Columns `a` and `b` of string views: short codes, the empty string, multi-byte
    /// characters and NULLs in the first 64 rows, then also strings past 12 bytes; `c` and
    /// `d`: 3-byte codes.
    fn table() -> RecordBatch {
        // At most 5 bytes: `a || '-' || b` fits in a view, longer chains may not.
        let short = ["ATL", "SFO", "", "é", "日", "ABCDE", "x"];
        let long = ["a string past twelve bytes", "ABCDEFGHIJKLM"];
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as usize
        };
        let mut column = |rows: usize, with_long: bool| -> Vec<Option<String>> {
            (0..rows)
                .map(|_| match next() % 10 {
                    0 => None,
                    1 if with_long => Some(long[next() % long.len()].to_string()),
                    _ => Some(short[next() % short.len()].to_string()),
                })
                .collect()
        };
        let (mut a, mut b) = (column(64, false), column(64, false));
        a.extend(column(64, true));
        b.extend(column(64, true));
        let views = |values: Vec<Option<String>>| -> ArrayRef {
            Arc::new(StringViewArray::from_iter(values))
        };
        // Codes of 3 bytes each, multi-byte characters among them, no NULLs: every row has
        // the same length, as airport codes do.
        let codes = ["ATL", "SFO", "日", "aé", "JFK"];
        let mut code = |rows: usize| -> Vec<Option<String>> {
            (0..rows)
                .map(|_| Some(codes[next() % codes.len()].to_string()))
                .collect()
        };
        let (c, d) = (code(128), code(128));
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Utf8View, true),
            Field::new("b", DataType::Utf8View, true),
            Field::new("c", DataType::Utf8View, true),
            Field::new("d", DataType::Utf8View, true),
        ]));
        let columns = vec![views(a), views(b), views(c), views(d)];
        RecordBatch::try_new(schema, columns).unwrap()
    }

    /// Each chain of `||`, with the rule and without, in 16-row batches (some all short, some
    /// not): the rule's plan calls `fti_concat`, and the output (names, types, nullability,
    /// values, NULLs) is DataFusion's.
    #[tokio::test]
    async fn concatenations_give_datafusions_results() {
        for select in [
            "a || '-' || b AS route",
            "a || b",
            "'<' || a",
            "a || b || a || '|' || b",
            "a || NULL",
            "a || 'a literal past twelve bytes'",
            "CAST(a AS VARCHAR) || '-'",
            // Rows of one length throughout, then not: the uniform and the general loops.
            "c || '-' || d",
            "c || d || c || d",
            "c || d || c || d || '!'",
            "'<' || c || a",
            "c || a || d",
        ] {
            let sql = format!("SELECT {select} FROM t");
            let mut runs = Vec::new();
            for with_rule in [false, true] {
                let config = SessionConfig::new().with_batch_size(16);
                let ctx = SessionContext::new_with_config(config);
                if with_rule {
                    ctx.add_optimizer_rule(Arc::new(StringConcatRule));
                }
                ctx.register_batch("t", table()).unwrap();
                let df = ctx.sql(&sql).await.unwrap();
                let plan = format!(
                    "{}",
                    df.clone().into_optimized_plan().unwrap().display_indent()
                );
                let batches = df.collect().await.unwrap();
                let out = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
                runs.push((plan, out));
            }
            let [(plain_plan, plain), (plan, rewritten)] = <[_; 2]>::try_from(runs).unwrap();
            assert!(!plain_plan.contains("fti_concat"), "{select}: {plain_plan}");
            if !select.contains("NULL") {
                assert!(plan.contains("fti_concat"), "{select}: {plan}");
            }
            assert_eq!(plain.schema(), rewritten.schema(), "{select}");
            assert_eq!(plain.num_rows(), 128);
            assert_eq!(plain, rewritten, "{select}");
        }
    }

    /// A batch whose results all fit in a view is built inline; one long input sends the
    /// whole batch to Arrow's kernel, with the same values.
    #[test]
    fn short_results_are_built_inline_and_long_ones_are_not() {
        let array = |values: &[Option<&str>]| -> ColumnarValue {
            ColumnarValue::Array(Arc::new(StringViewArray::from_iter(values.iter().copied())))
        };
        let dash =
            ColumnarValue::Scalar(datafusion::common::ScalarValue::Utf8View(Some("-".into())));
        let short = [
            array(&[Some("LAX"), None, Some("日本")]),
            dash.clone(),
            array(&[Some("SFO"), Some("JFK"), Some("ABCDE")]),
        ];
        let built = inline_concat(&short, 3).unwrap();
        let expected: ArrayRef = Arc::new(StringViewArray::from_iter([
            Some("LAX-SFO"),
            None,
            Some("日本-ABCDE"),
        ]));
        assert_eq!(&built, &expected);
        // Every row of one length at each step (the uniform loop), up to a full view.
        let codes = array(&[Some("LAX"), Some("日"), Some("aé")]);
        let others = array(&[Some("SFO"), Some("JFK"), Some("xyz")]);
        let uniform = [codes.clone(), dash.clone(), others.clone(), codes, others];
        let built = inline_concat(&uniform[..3], 3).unwrap();
        let expected: ArrayRef = Arc::new(StringViewArray::from_iter_values([
            "LAX-SFO", "日-JFK", "aé-xyz",
        ]));
        assert_eq!(&built, &expected);
        let built = inline_concat(&uniform[2..], 3).unwrap();
        let expected: ArrayRef = Arc::new(StringViewArray::from_iter_values([
            "SFOLAXSFO",
            "JFK日JFK",
            "xyzaéxyz",
        ]));
        assert_eq!(&built, &expected);
        let long = [array(&[Some("LAX")]), dash, array(&[Some("ABCDEFGHIJ")])];
        assert!(inline_concat(&long, 1).is_none(), "14 bytes do not fit");
        assert!(inline_concat(&uniform, 3).is_none(), "13 bytes do not fit");
    }
}
