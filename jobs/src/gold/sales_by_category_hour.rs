//! `gold/sales_by_category_hour`: one row per booking date, hour, day of week and category.

use super::Model;
use super::tables::SALES_BY_CATEGORY_HOUR;

/// Orders and seats are the bookings' first successful payments; revenue is every distinct
/// successful payment, attributed to the booking it matched.
pub const MODEL: Model = Model {
    table: &SALES_BY_CATEGORY_HOUR,
    sql: "
SELECT booking_date, booking_hour, booking_day_of_week, event_category,
       CAST(sum(orders) AS BIGINT) AS orders,
       CAST(sum(seats) AS BIGINT) AS seats,
       CAST(sum(revenue) AS DECIMAL(18,2)) AS revenue
FROM (
    SELECT booking_date, booking_hour, booking_day_of_week, event_category, paid AS orders, seats,
           CAST(0 AS DECIMAL(18,2)) AS revenue
    FROM orders WHERE seats > 0
  UNION ALL
    SELECT booking_date, booking_hour, booking_day_of_week, event_category, 0, 0, amount
    FROM attempts WHERE payment_status = 'Success'
  UNION ALL
    SELECT booking_date, booking_hour, booking_day_of_week, event_category, orders, seats, revenue
    FROM current
)
GROUP BY booking_date, booking_hour, booking_day_of_week, event_category
",
};
