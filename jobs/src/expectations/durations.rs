//! Conditions that compare a difference of two times with an interval, evaluated as durations.
//!
//! Subtracting two UTC timestamps gives a duration, and DataFusion compares a duration with an
//! `INTERVAL` literal by casting the whole column to 128-bit intervals first: over a batch of fact
//! rows that cast was half the time of all expectations. It also compares intervals field by
//! field (months, then days, then nanoseconds), so a cast duration of 25 hours counts as shorter
//! than `INTERVAL '1 day'`. Between two UTC times a day is exactly 86,400 seconds, so a
//! comparison with an interval of days and (sub)seconds is rewritten to compare the duration
//! itself with a duration literal: faster, and a day means a day. Intervals with months are left
//! as written: a month has no fixed length.

use std::sync::Arc;

use deltalake::arrow::datatypes::{DataType, IntervalUnit, Schema, TimeUnit};
use deltalake::datafusion::common::ScalarValue;
use deltalake::datafusion::common::tree_node::{Transformed, TreeNode};
use deltalake::datafusion::error::Result;
use deltalake::datafusion::logical_expr::Operator;
use deltalake::datafusion::physical_expr::expressions::{BinaryExpr, CastExpr, Literal};
use deltalake::datafusion::physical_plan::PhysicalExpr;

/// `expr` with every `CAST(duration AS INTERVAL) <op> INTERVAL '…'` whose interval has no months
/// and whole microseconds rewritten as `duration <op> DURATION '…'`.
pub(super) fn compared_as_durations(
    expr: Arc<dyn PhysicalExpr>,
    schema: &Schema,
) -> Result<Arc<dyn PhysicalExpr>> {
    expr.transform_up(|e| {
        let rewritten = e
            .downcast_ref::<BinaryExpr>()
            .and_then(|b| as_durations(b, schema));
        Ok(match rewritten {
            Some(r) => Transformed::yes(r),
            None => Transformed::no(e),
        })
    })
    .map(|t| t.data)
}

/// The comparison rewritten, when it has the shape above (with the literal on either side).
fn as_durations(b: &BinaryExpr, schema: &Schema) -> Option<Arc<dyn PhysicalExpr>> {
    use Operator::{Eq, Gt, GtEq, Lt, LtEq, NotEq};
    if !matches!(b.op(), Eq | NotEq | Lt | LtEq | Gt | GtEq) {
        return None;
    }
    let (cast, literal, op) = match (cast_duration(b.left(), schema), micros(b.right())) {
        (Some(cast), Some(us)) => (cast, us, *b.op()),
        _ => (
            cast_duration(b.right(), schema)?,
            micros(b.left())?,
            b.op().swap()?,
        ),
    };
    let duration = Arc::new(Literal::new(ScalarValue::DurationMicrosecond(Some(
        literal,
    ))));
    Some(Arc::new(BinaryExpr::new(Arc::clone(cast), op, duration)))
}

/// The microsecond duration under `CAST(… AS INTERVAL)`, if `e` is that.
fn cast_duration<'a>(
    e: &'a Arc<dyn PhysicalExpr>,
    schema: &Schema,
) -> Option<&'a Arc<dyn PhysicalExpr>> {
    let cast = e.downcast_ref::<CastExpr>()?;
    let to_interval = cast.cast_type() == &DataType::Interval(IntervalUnit::MonthDayNano);
    let from = cast.expr().data_type(schema).ok()?;
    (to_interval && from == DataType::Duration(TimeUnit::Microsecond)).then_some(cast.expr())
}

/// The interval literal `e` in microseconds, if it has no months and whole microseconds.
fn micros(e: &Arc<dyn PhysicalExpr>) -> Option<i64> {
    const DAY: i64 = 86_400_000_000;
    let literal = e.downcast_ref::<Literal>()?;
    match literal.value() {
        ScalarValue::IntervalMonthDayNano(Some(v))
            if v.months == 0 && v.nanoseconds % 1_000 == 0 =>
        {
            i64::from(v.days)
                .checked_mul(DAY)?
                .checked_add(v.nanoseconds / 1_000)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::{Array, BooleanArray, RecordBatch, TimestampMicrosecondArray};
    use deltalake::arrow::datatypes::Field;
    use deltalake::datafusion::common::DFSchema;
    use deltalake::datafusion::prelude::SessionContext;

    fn schema() -> Schema {
        let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        Schema::new(vec![
            Field::new("a", utc.clone(), true),
            Field::new("b", utc, true),
        ])
    }

    /// `a - b` around every bound below, to the microsecond (a last row has no `a`).
    const GAPS: [i64; 18] = [
        -1_000_001,
        -1_000_000,
        -1,
        0,
        1,
        499_999,
        500_000,
        500_001,
        1_000_000,
        119_999_999,
        120_000_000,
        120_000_001,
        300_000_000,
        300_000_001,
        86_399_999_999,
        86_400_000_000,
        90_000_000_000,
        2_000_000_000_000,
    ];

    fn batch() -> RecordBatch {
        let b = 1_700_000_000_000_000_i64;
        let a: Vec<Option<i64>> = GAPS.iter().map(|g| Some(b + g)).chain([None]).collect();
        let bs: Vec<Option<i64>> = GAPS.iter().map(|_| Some(b)).chain([Some(b)]).collect();
        let utc = |v: Vec<Option<i64>>| {
            Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC")) as Arc<dyn Array>
        };
        RecordBatch::try_new(Arc::new(schema()), vec![utc(a), utc(bs)]).expect("batch")
    }

    fn evaluate(expr: &Arc<dyn PhysicalExpr>, batch: &RecordBatch) -> BooleanArray {
        let value = expr.evaluate(batch).expect("evaluate");
        let array = value.into_array(batch.num_rows()).expect("array");
        array
            .as_any()
            .downcast_ref::<BooleanArray>()
            .expect("boolean")
            .clone()
    }

    /// A condition and, for a gap `a - b` in microseconds, whether it holds.
    type Case = (&'static str, fn(i64) -> bool);

    #[test]
    fn a_difference_of_times_compared_with_an_interval_is_compared_as_a_duration() {
        let ctx = SessionContext::new();
        let schema = DFSchema::try_from(schema()).expect("schema");
        let batch = batch();
        const S: i64 = 1_000_000;
        let cases: [Case; 7] = [
            ("a - b <= INTERVAL '300 seconds'", |g| g <= 300 * S),
            (
                "a - b BETWEEN INTERVAL '0 seconds' AND INTERVAL '120 seconds'",
                |g| (0..=120 * S).contains(&g),
            ),
            (
                "a - b NOT BETWEEN INTERVAL '0 seconds' AND INTERVAL '2 minutes'",
                |g| !(0..=120 * S).contains(&g),
            ),
            ("INTERVAL '2 minutes' >= a - b", |g| g <= 120 * S),
            (
                "a - b > INTERVAL '0.5 seconds' AND a - b <> INTERVAL '1 second'",
                |g| g > S / 2 && g != S,
            ),
            (
                "a - b = INTERVAL '-1 second' OR a - b < INTERVAL '0 seconds'",
                |g| g < 0,
            ),
            // DataFusion alone counts every duration as shorter than a day (days outrank
            // nanoseconds); compared as durations, a day is 86,400 seconds.
            ("a - b < INTERVAL '1 day'", |g| g < 86_400 * S),
        ];
        for (condition, holds) in cases {
            let direct = plan(&ctx, &schema, condition);
            assert!(
                !direct.to_string().contains("CAST"),
                "{condition}: {direct}"
            );
            let want: Vec<Option<bool>> =
                GAPS.iter().map(|g| Some(holds(*g))).chain([None]).collect();
            let got: Vec<Option<bool>> = evaluate(&direct, &batch).iter().collect();
            assert_eq!(got, want, "{condition}");
        }
    }

    #[test]
    fn an_interval_with_months_keeps_datafusions_comparison() {
        let ctx = SessionContext::new();
        let schema = DFSchema::try_from(schema()).expect("schema");
        let condition = "a - b >= INTERVAL '1 month'";
        let direct = plan(&ctx, &schema, condition);
        assert!(direct.to_string().contains("CAST"), "{condition}: {direct}");
    }

    fn plan(ctx: &SessionContext, schema: &DFSchema, condition: &str) -> Arc<dyn PhysicalExpr> {
        let planned = ctx
            .parse_sql_expr(condition, schema)
            .and_then(|e| ctx.create_physical_expr(e, schema))
            .expect("plan");
        compared_as_durations(planned, schema.as_arrow()).expect("rewrite")
    }
}
