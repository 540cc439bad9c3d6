//! `gold/event_performance`: one row per event.

use super::Model;
use super::tables::EVENT_PERFORMANCE;

/// Orders count each booking once (its first match, or its unpaid row); seats sold and their
/// value come from each booking's first successful payment; revenue and failed attempts from
/// each payment's first match.
pub const MODEL: Model = Model {
    table: &EVENT_PERFORMANCE,
    sql: "
SELECT event_id, event_name, event_category,
       CAST(sum(orders) AS BIGINT) AS orders,
       CAST(sum(seats_sold) AS BIGINT) AS seats_sold,
       CAST(sum(revenue) AS DECIMAL(18,2)) AS revenue,
       CAST(CASE WHEN sum(seats_sold) > 0
                 THEN round(CAST(sum(seats_value) AS DOUBLE) / sum(seats_sold), 2) END
            AS DECIMAL(18,2)) AS avg_seat_price,
       CAST(sum(failed_payments) AS BIGINT) AS failed_payments,
       CAST(sum(seats_value) AS DECIMAL(18,2)) AS seats_value
FROM (
    SELECT event_id, event_name, event_category, orders, seats AS seats_sold,
           CAST(0 AS DECIMAL(18,2)) AS revenue, CAST(0 AS BIGINT) AS failed_payments,
           seats_value
    FROM orders
  UNION ALL
    SELECT event_id, event_name, event_category, bookings, 0, CAST(0 AS DECIMAL(18,2)), 0,
           CAST(0 AS DECIMAL(18,2))
    FROM unpaid_orders
  UNION ALL
    SELECT event_id, event_name, event_category, 0, 0,
           CASE WHEN payment_status = 'Success' THEN amount ELSE CAST(0 AS DECIMAL(18,2)) END,
           CASE WHEN payment_status = 'Failed' THEN attempts ELSE 0 END, CAST(0 AS DECIMAL(18,2))
    FROM attempts
  UNION ALL
    SELECT event_id, event_name, event_category, orders, seats_sold, revenue, failed_payments,
           seats_value
    FROM current
)
GROUP BY event_id, event_name, event_category
",
};
