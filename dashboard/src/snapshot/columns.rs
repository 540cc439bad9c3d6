//! Typed access to a Delta table's columns by name, with errors that name the column.

use chrono::{DateTime, NaiveDate, Utc};
use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float64Type, Int32Type, Int64Type,
    TimestampMicrosecondType,
};

use crate::DashboardError;

/// Money in hundredths (cents), exact: Gold keeps money as `decimal(18,2)`.
pub type Cents = i128;

/// One batch's columns, looked up by name.
pub struct Columns<'a> {
    table: &'static str,
    batch: &'a RecordBatch,
}

impl<'a> Columns<'a> {
    pub fn new(table: &'static str, batch: &'a RecordBatch) -> Columns<'a> {
        Columns { table, batch }
    }

    fn column(&self, name: &str) -> Result<&'a dyn Array, DashboardError> {
        self.batch
            .column_by_name(name)
            .map(|c| c.as_ref())
            .ok_or_else(|| self.bad(name, "is missing"))
    }

    fn bad(&self, name: &str, what: &str) -> DashboardError {
        DashboardError::Schema(format!("{}: column {name} {what}", self.table))
    }

    fn wrong<T>(&self, name: &str, array: &dyn Array, want: &str) -> Result<T, DashboardError> {
        Err(self.bad(name, &format!("is {} (expected {want})", array.data_type())))
    }

    /// Text values (null as `None`).
    pub fn text(&self, name: &str) -> Result<Vec<Option<String>>, DashboardError> {
        let a = self.column(name)?;
        match a.data_type() {
            DataType::Utf8 => Ok(a
                .as_string::<i32>()
                .iter()
                .map(|v| v.map(str::to_string))
                .collect()),
            DataType::Utf8View => Ok(a
                .as_string_view()
                .iter()
                .map(|v| v.map(str::to_string))
                .collect()),
            _ => self.wrong(name, a, "a string"),
        }
    }

    /// Whole numbers, widened to i64 (null as 0: Gold's counts are not nullable).
    pub fn int(&self, name: &str) -> Result<Vec<i64>, DashboardError> {
        Ok(self
            .int_or_null(name)?
            .into_iter()
            .map(|v| v.unwrap_or(0))
            .collect())
    }

    /// Whole numbers, widened to i64.
    pub fn int_or_null(&self, name: &str) -> Result<Vec<Option<i64>>, DashboardError> {
        let a = self.column(name)?;
        match a.data_type() {
            DataType::Int64 => Ok(a.as_primitive::<Int64Type>().iter().collect()),
            DataType::Int32 => Ok(a
                .as_primitive::<Int32Type>()
                .iter()
                .map(|v| v.map(i64::from))
                .collect()),
            _ => self.wrong(name, a, "an integer"),
        }
    }

    /// Floating-point numbers.
    pub fn float(&self, name: &str) -> Result<Vec<Option<f64>>, DashboardError> {
        let a = self.column(name)?;
        match a.data_type() {
            DataType::Float64 => Ok(a.as_primitive::<Float64Type>().iter().collect()),
            _ => self.wrong(name, a, "a double"),
        }
    }

    /// Decimals as cents (rescaled from the column's scale; null as 0).
    pub fn cents(&self, name: &str) -> Result<Vec<Cents>, DashboardError> {
        let a = self.column(name)?;
        let DataType::Decimal128(_, scale) = a.data_type() else {
            return self.wrong(name, a, "a decimal");
        };
        let scale = i32::from(*scale);
        let rescale = |v: i128| {
            if scale >= 2 {
                v / 10i128.pow((scale - 2) as u32)
            } else {
                v * 10i128.pow((2 - scale) as u32)
            }
        };
        Ok(a.as_primitive::<Decimal128Type>()
            .iter()
            .map(|v| v.map_or(0, rescale))
            .collect())
    }

    /// Dates.
    pub fn date(&self, name: &str) -> Result<Vec<Option<NaiveDate>>, DashboardError> {
        let a = self.column(name)?;
        if *a.data_type() != DataType::Date32 {
            return self.wrong(name, a, "a date");
        }
        Ok(a.as_primitive::<Date32Type>()
            .iter()
            .map(|v| v.and_then(from_epoch_days))
            .collect())
    }

    /// UTC timestamps (microseconds).
    pub fn time(&self, name: &str) -> Result<Vec<Option<DateTime<Utc>>>, DashboardError> {
        let a = self.column(name)?;
        if !matches!(a.data_type(), DataType::Timestamp(_, _)) {
            return self.wrong(name, a, "a timestamp");
        }
        let Some(values) = a.as_primitive_opt::<TimestampMicrosecondType>() else {
            return self.wrong(name, a, "a microsecond timestamp");
        };
        Ok(values
            .iter()
            .map(|v| v.and_then(DateTime::from_timestamp_micros))
            .collect())
    }
}

fn from_epoch_days(days: i32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(1970, 1, 1)?.checked_add_signed(chrono::Duration::days(days.into()))
}
