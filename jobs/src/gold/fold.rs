//! Silver's seat rows folded into the `orders` and `attempts` parts with compact keys.
//!
//! Both parts count distinct things (bookings, payments) per booking key, so folding them needs
//! a table with an entry per booking or per payment: about a million over the benchmark's lake.
//! As a DataFusion aggregation, each entry held its 36-character `event_uid` and every key column,
//! strings included, and that was most of Gold's peak memory. Here an entry is the `event_uid` as
//! 16 bytes ([`uid_key`]) and the index of its key among the few thousand distinct keys, which
//! are held once. The counts and sums are those of the SQL that defines the parts, NULLs
//! included: `parts_tests.rs` keeps that SQL and checks the folds against it.

use std::sync::Arc;

use boxoffice_events::uid::uid_key;
use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Decimal128Array, Int64Array, RecordBatch,
};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Decimal128Type, Field, Schema, SchemaRef};
use deltalake::arrow::error::ArrowError;
use deltalake::arrow::row::{RowConverter, Rows, SortField};
use deltalake::datafusion::prelude::SessionContext;
use foldhash::{HashMap, HashSet};
use futures::StreamExt;

/// The distinct values of some key columns, each numbered in order of appearance.
struct Keys {
    converter: RowConverter,
    fields: Vec<Field>,
    seen: Rows,
    numbers: HashMap<Box<[u8]>, u32>,
}

impl Keys {
    fn new(fields: Vec<Field>) -> Result<Keys, ArrowError> {
        let sort = fields
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        let converter = RowConverter::new(sort)?;
        Ok(Keys {
            seen: converter.empty_rows(0, 0),
            converter,
            fields,
            numbers: HashMap::default(),
        })
    }

    /// The number of each row's key, numbering the keys not seen before.
    fn number(&mut self, columns: &[ArrayRef]) -> Result<Vec<u32>, String> {
        let rows = self
            .converter
            .convert_columns(columns)
            .map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(rows.num_rows());
        for row in rows.iter() {
            let number = match self.numbers.get(row.as_ref()) {
                Some(n) => *n,
                None => {
                    let n = u32::try_from(self.numbers.len())
                        .map_err(|_| "more than 2^32 distinct keys".to_string())?;
                    self.seen.push(row);
                    self.numbers.insert(row.as_ref().into(), n);
                    n
                }
            };
            out.push(number);
        }
        Ok(out)
    }

    /// How many distinct keys there are.
    fn len(&self) -> usize {
        self.numbers.len()
    }

    /// The keys' columns, in their numbers' order.
    fn columns(&self) -> Result<Vec<ArrayRef>, String> {
        self.converter
            .convert_rows(self.seen.iter())
            .map_err(|e| e.to_string())
    }
}

/// A row's `event_uid` as 16 bytes; `None` for a NULL.
fn uids(column: &ArrayRef) -> Result<Vec<Option<u128>>, String> {
    if let Some(views) = column.as_string_view_opt() {
        return Ok(views.iter().map(|uid| uid.map(uid_key)).collect());
    }
    let text = cast(column, &DataType::Utf8).map_err(|e| e.to_string())?;
    Ok(text
        .as_string::<i32>()
        .iter()
        .map(|uid| uid.map(uid_key))
        .collect())
}

fn flags(column: &ArrayRef) -> Result<&BooleanArray, String> {
    column
        .as_boolean_opt()
        .ok_or_else(|| format!("a flag column is {}", column.data_type()))
}

fn cents(column: &ArrayRef) -> Result<&Decimal128Array, String> {
    column
        .as_primitive_opt::<Decimal128Type>()
        .ok_or_else(|| format!("an amount column is {}", column.data_type()))
}

/// A running sum of amounts that stays NULL until a value is added, as SQL's `sum`.
#[derive(Debug, Default, Clone, Copy)]
struct Sum(Option<i128>);

impl Sum {
    fn add(&mut self, value: Option<i128>) {
        if let Some(v) = value {
            self.0 = Some(self.0.unwrap_or(0) + v);
        }
    }
}

fn sums(values: impl Iterator<Item = Sum>) -> Result<ArrayRef, String> {
    // As DataFusion types a sum of `DECIMAL(18,2)` sums.
    let array = Decimal128Array::from_iter(values.map(|s| s.0))
        .with_precision_and_scale(38, 2)
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(array))
}

/// The part: the keys' columns, then the counts and sums.
fn part(keys: &Keys, measures: Vec<(&str, ArrayRef)>) -> Result<(SchemaRef, RecordBatch), String> {
    let mut fields = keys.fields.clone();
    let mut columns = keys.columns()?;
    for (name, column) in measures {
        fields.push(Field::new(name, column.data_type().clone(), true));
        columns.push(column);
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())?;
    Ok((schema, batch))
}

/// Runs `sql` over Silver, numbering the first `key` columns of its rows as [`Keys`], and
/// hands each batch of rows with its keys' numbers to `fold`.
async fn fold_rows(
    silver: &SessionContext,
    sql: &str,
    key: usize,
    mut fold: impl FnMut(&RecordBatch, &[u32], usize) -> Result<(), String>,
) -> Result<Keys, String> {
    let frame = silver.sql(sql).await.map_err(|e| e.to_string())?;
    let fields = frame.schema().as_arrow().fields()[..key]
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut keys = Keys::new(fields).map_err(|e| e.to_string())?;
    let mut stream = frame.execute_stream().await.map_err(|e| e.to_string())?;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| e.to_string())?;
        let numbers = keys.number(&batch.columns()[..key])?;
        fold(&batch, &numbers, keys.len())?;
    }
    Ok(keys)
}

/// Per booking key (six columns, `booking_key` lists them): `orders` (distinct bookings at
/// their first match), `paid` (distinct bookings with a sale), `seats` (seat rows of sales) and
/// `seats_value` (their prices).
pub(crate) async fn orders(
    silver: &SessionContext,
    booking_key: &str,
) -> Result<(SchemaRef, Vec<RecordBatch>), String> {
    const KEY: usize = 6;
    let sql = format!(
        "SELECT {booking_key}, booking_event_uid, is_first_booking_match, is_sale,
                CAST(seat_price AS DECIMAL(18,2)) AS price
         FROM fact WHERE is_first_booking_match OR is_sale"
    );
    // Per (booking, key): bit 1 its first match is here, bit 2 its sale.
    let mut bookings: HashMap<(u128, u32), u8> = HashMap::default();
    let mut totals: Vec<(i64, Sum)> = Vec::new(); // seats and their value, per key
    let keys = fold_rows(silver, &sql, KEY, |batch, numbers, distinct| {
        totals.resize(distinct, (0, Sum::default()));
        let uid = uids(batch.column(KEY))?;
        let (first, sale) = (flags(batch.column(KEY + 1))?, flags(batch.column(KEY + 2))?);
        let price = cents(batch.column(KEY + 3))?;
        for (i, &k) in numbers.iter().enumerate() {
            let (first, sale) = (first.value(i), sale.value(i));
            let (seats, value) = &mut totals[k as usize];
            if sale {
                *seats += 1;
                value.add(price.is_valid(i).then(|| price.value(i)));
            } else {
                value.add(Some(0));
            }
            if let Some(uid) = uid[i] {
                *bookings.entry((uid, k)).or_default() |= u8::from(first) | (u8::from(sale) << 1);
            }
        }
        Ok(())
    })
    .await?;
    let mut counts = vec![(0i64, 0i64); totals.len()];
    for ((_, k), bits) in bookings {
        let (orders, paid) = &mut counts[k as usize];
        *orders += i64::from(bits & 1);
        *paid += i64::from(bits >> 1);
    }
    let (schema, batch) = part(
        &keys,
        vec![
            ("orders", int64(counts.iter().map(|c| c.0))),
            ("paid", int64(counts.iter().map(|c| c.1))),
            ("seats", int64(totals.iter().map(|t| t.0))),
            ("seats_value", sums(totals.iter().map(|t| t.1))?),
        ],
    )?;
    Ok((schema, vec![batch]))
}

/// Per booking key and payment method, type and status (nine columns): `attempts` (distinct
/// payments at their first match) and `amount` (their amounts). Distinct as SQL's `DISTINCT`
/// over the payment's uid, key and amount: rows without a uid count once per key and amount.
pub(crate) async fn attempts(
    silver: &SessionContext,
    booking_key: &str,
) -> Result<(SchemaRef, Vec<RecordBatch>), String> {
    const KEY: usize = 9;
    let sql = format!(
        "SELECT {booking_key}, payment_method, payment_type, payment_status, payment_event_uid,
                CAST(amount AS DECIMAL(18,2)) AS amount
         FROM fact WHERE is_first_payment_match"
    );
    // A DECIMAL(18,2) is below 10^18 cents, so i64::MIN is never one: it stands for NULL.
    const NULL: i64 = i64::MIN;
    let mut payments: HashSet<(u128, u32, i64)> = HashSet::default();
    let mut without_uid: HashSet<(u32, i64)> = HashSet::default();
    let keys = fold_rows(silver, &sql, KEY, |batch, numbers, _| {
        let uid = uids(batch.column(KEY))?;
        let amount = cents(batch.column(KEY + 1))?;
        for (i, &k) in numbers.iter().enumerate() {
            let cents = if amount.is_valid(i) {
                i64::try_from(amount.value(i)).map_err(|e| e.to_string())?
            } else {
                NULL
            };
            match uid[i] {
                Some(uid) => payments.insert((uid, k, cents)),
                None => without_uid.insert((k, cents)),
            };
        }
        Ok(())
    })
    .await?;
    let mut totals = vec![(0i64, Sum::default()); keys.len()];
    let all = payments.into_iter().map(|(_, k, c)| (k, c));
    for (k, cents) in all.chain(without_uid) {
        let (attempts, amount) = &mut totals[k as usize];
        *attempts += 1;
        amount.add((cents != NULL).then_some(i128::from(cents)));
    }
    let (schema, batch) = part(
        &keys,
        vec![
            ("attempts", int64(totals.iter().map(|t| t.0))),
            ("amount", sums(totals.iter().map(|t| t.1))?),
        ],
    )?;
    Ok((schema, vec![batch]))
}

fn int64(values: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values(values))
}
