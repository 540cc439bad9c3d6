//! `gold/conversion`: one row per booking date and hour.

use super::Model;
use super::tables::CONVERSION;

/// Bookings are those Silver has resolved (matched at least once, or released unpaid); paid are
/// those with a successful payment; unpaid is the rest, failed attempts included.
pub const MODEL: Model = Model {
    table: &CONVERSION,
    sql: "
SELECT booking_date, booking_hour,
       CAST(sum(bookings) AS BIGINT) AS bookings,
       CAST(sum(paid) AS BIGINT) AS paid,
       CAST(sum(bookings) - sum(paid) AS BIGINT) AS unpaid,
       CASE WHEN sum(bookings) > 0
            THEN CAST(sum(paid) AS DOUBLE) / sum(bookings) END AS conversion_rate
FROM (
    SELECT booking_date, booking_hour, orders AS bookings, paid FROM orders
  UNION ALL
    SELECT booking_date, booking_hour, bookings, 0 FROM unpaid_orders
  UNION ALL
    SELECT booking_date, booking_hour, bookings, paid FROM current
)
GROUP BY booking_date, booking_hour
",
};
