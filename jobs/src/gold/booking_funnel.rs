//! `gold/booking_funnel`: one row per booking date, hour and event category.

use super::Model;
use super::tables::BOOKING_FUNNEL;

/// Every step of the funnel under the same keys, so the dashboard's KPI cards and Power BI's
/// measures filter by date and category alike: bookings as `gold/conversion` counts them, paid
/// bookings, seats and revenue as `gold/sales_by_category_hour` counts them, and the payment
/// attempts matched to a booking (each at its first match), failed ones apart. Orphan payments
/// have no booking, so no category: `gold/payment_mix` counts them.
pub const MODEL: Model = Model {
    table: &BOOKING_FUNNEL,
    sql: "
SELECT booking_date, booking_hour, event_category,
       CAST(sum(bookings) AS BIGINT) AS bookings,
       CAST(sum(paid) AS BIGINT) AS paid,
       CAST(sum(seats_sold) AS BIGINT) AS seats_sold,
       CAST(sum(revenue) AS DECIMAL(18,2)) AS revenue,
       CAST(sum(payment_attempts) AS BIGINT) AS payment_attempts,
       CAST(sum(failed_payments) AS BIGINT) AS failed_payments
FROM (
    SELECT booking_date, booking_hour, event_category, orders AS bookings, paid,
           seats AS seats_sold, CAST(0 AS DECIMAL(18,2)) AS revenue,
           CAST(0 AS BIGINT) AS payment_attempts, CAST(0 AS BIGINT) AS failed_payments
    FROM orders
  UNION ALL
    SELECT booking_date, booking_hour, event_category, bookings, 0, 0,
           CAST(0 AS DECIMAL(18,2)), 0, 0
    FROM unpaid_orders
  UNION ALL
    SELECT booking_date, booking_hour, event_category, 0, 0, 0,
           CASE WHEN payment_status = 'Success' THEN amount ELSE CAST(0 AS DECIMAL(18,2)) END,
           attempts, CASE WHEN payment_status = 'Failed' THEN attempts ELSE 0 END
    FROM attempts
  UNION ALL
    SELECT booking_date, booking_hour, event_category, bookings, paid, seats_sold, revenue,
           payment_attempts, failed_payments
    FROM current
)
GROUP BY booking_date, booking_hour, event_category
",
};
