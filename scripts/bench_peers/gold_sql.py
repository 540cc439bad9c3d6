"""The Gold models for a full rebuild, in the SQL DuckDB and Spark both read: each table straight
from the Silver tables `fact`, `unpaid` and `orphans`, as someone writing these models in either
engine would. (boxoffice's models, jobs/src/gold/*.rs, first reduce Silver to shared parts so an
incremental refresh can fold new rows into the rows a table holds; the results are the same.)

`avg_seat_price` rounds as DataFusion's `round(x, 2)` does, half away from zero of `x * 100` in
floating point: DuckDB's and Spark's own `round(x, 2)` round the exact binary value, so
35958.00 / 400 = 89.895 would be 89.89 there and 89.90 in boxoffice (and Polars)."""

GOLD = {
    "event_performance": """
SELECT event_id, event_name, event_category,
       CAST(sum(orders) AS BIGINT) AS orders,
       CAST(sum(seats_sold) AS BIGINT) AS seats_sold,
       CAST(sum(revenue) AS DECIMAL(18,2)) AS revenue,
       CAST(CASE WHEN sum(seats_sold) > 0
                 THEN round(CAST(sum(seats_value) AS DOUBLE) / sum(seats_sold) * 100) / 100 END
            AS DECIMAL(18,2)) AS avg_seat_price,
       CAST(sum(failed_payments) AS BIGINT) AS failed_payments,
       CAST(sum(seats_value) AS DECIMAL(18,2)) AS seats_value,
       current_timestamp AS refreshed_at
FROM (
    SELECT event_id, event_name, event_category,
           count(DISTINCT booking_event_uid) AS orders, CAST(0 AS BIGINT) AS seats_sold,
           CAST(0 AS DECIMAL(18,2)) AS revenue, CAST(0 AS BIGINT) AS failed_payments,
           CAST(0 AS DECIMAL(18,2)) AS seats_value
    FROM fact WHERE is_first_booking_match GROUP BY event_id, event_name, event_category
  UNION ALL
    SELECT event_id, event_name, event_category, count(*), 0, CAST(0 AS DECIMAL(18,2)), 0,
           CAST(0 AS DECIMAL(18,2))
    FROM unpaid GROUP BY event_id, event_name, event_category
  UNION ALL
    SELECT event_id, event_name, event_category, 0, count(*), CAST(0 AS DECIMAL(18,2)), 0,
           sum(CAST(seat_price AS DECIMAL(18,2)))
    FROM fact WHERE is_sale GROUP BY event_id, event_name, event_category
  UNION ALL
    SELECT event_id, event_name, event_category, 0, 0,
           sum(CASE WHEN payment_status = 'Success' THEN amount ELSE CAST(0 AS DECIMAL(18,2)) END),
           sum(CASE WHEN payment_status = 'Failed' THEN 1 ELSE 0 END), CAST(0 AS DECIMAL(18,2))
    FROM (SELECT DISTINCT payment_event_uid, event_id, event_name, event_category, payment_status,
                 CAST(amount AS DECIMAL(18,2)) AS amount
          FROM fact WHERE is_first_payment_match)
    GROUP BY event_id, event_name, event_category
)
GROUP BY event_id, event_name, event_category""",
    "sales_by_category_hour": """
SELECT booking_date, booking_hour, booking_day_of_week, event_category,
       CAST(sum(orders) AS BIGINT) AS orders,
       CAST(sum(seats) AS BIGINT) AS seats,
       CAST(sum(revenue) AS DECIMAL(18,2)) AS revenue,
       current_timestamp AS refreshed_at
FROM (
    SELECT booking_date, booking_hour, booking_day_of_week, event_category,
           count(DISTINCT booking_event_uid) AS orders, count(*) AS seats,
           CAST(0 AS DECIMAL(18,2)) AS revenue
    FROM fact WHERE is_sale
    GROUP BY booking_date, booking_hour, booking_day_of_week, event_category
  UNION ALL
    SELECT booking_date, booking_hour, booking_day_of_week, event_category, 0, 0, sum(amount)
    FROM (SELECT DISTINCT payment_event_uid, booking_date, booking_hour, booking_day_of_week,
                 event_category, CAST(amount AS DECIMAL(18,2)) AS amount
          FROM fact WHERE is_first_payment_match AND payment_status = 'Success')
    GROUP BY booking_date, booking_hour, booking_day_of_week, event_category
)
GROUP BY booking_date, booking_hour, booking_day_of_week, event_category""",
    "payment_mix": """
SELECT payment_method, payment_type,
       CAST(sum(attempts) AS BIGINT) AS attempts,
       CAST(sum(succeeded) AS BIGINT) AS succeeded,
       CAST(sum(failed) AS BIGINT) AS failed,
       CASE WHEN sum(attempts) > 0
            THEN CAST(sum(succeeded) AS DOUBLE) / sum(attempts) END AS success_rate,
       CAST(sum(amount) AS DECIMAL(18,2)) AS amount,
       current_timestamp AS refreshed_at
FROM (
    SELECT payment_method, payment_type, count(*) AS attempts,
           sum(CASE WHEN payment_status = 'Success' THEN 1 ELSE 0 END) AS succeeded,
           sum(CASE WHEN payment_status = 'Failed' THEN 1 ELSE 0 END) AS failed,
           sum(CASE WHEN payment_status = 'Success' THEN amount
                    ELSE CAST(0 AS DECIMAL(18,2)) END) AS amount
    FROM (SELECT DISTINCT payment_event_uid, payment_method, payment_type, payment_status,
                 CAST(amount AS DECIMAL(18,2)) AS amount
          FROM fact WHERE is_first_payment_match
          UNION ALL
          SELECT payment_event_uid, payment_method, payment_type, payment_status,
                 CAST(amount AS DECIMAL(18,2))
          FROM orphans)
    GROUP BY payment_method, payment_type
)
GROUP BY payment_method, payment_type""",
    "conversion": """
SELECT booking_date, booking_hour,
       CAST(sum(bookings) AS BIGINT) AS bookings,
       CAST(sum(paid) AS BIGINT) AS paid,
       CAST(sum(bookings) - sum(paid) AS BIGINT) AS unpaid,
       CASE WHEN sum(bookings) > 0
            THEN CAST(sum(paid) AS DOUBLE) / sum(bookings) END AS conversion_rate,
       current_timestamp AS refreshed_at
FROM (
    SELECT booking_date, booking_hour, count(DISTINCT booking_event_uid) AS bookings,
           CAST(0 AS BIGINT) AS paid
    FROM fact WHERE is_first_booking_match GROUP BY booking_date, booking_hour
  UNION ALL
    SELECT booking_date, booking_hour, count(*), 0 FROM unpaid
    GROUP BY booking_date, booking_hour
  UNION ALL
    SELECT booking_date, booking_hour, 0, count(DISTINCT booking_event_uid)
    FROM fact WHERE is_sale GROUP BY booking_date, booking_hour
)
GROUP BY booking_date, booking_hour""",
    "booking_funnel": """
SELECT booking_date, booking_hour, event_category,
       CAST(sum(bookings) AS BIGINT) AS bookings,
       CAST(sum(paid) AS BIGINT) AS paid,
       CAST(sum(seats_sold) AS BIGINT) AS seats_sold,
       CAST(sum(revenue) AS DECIMAL(18,2)) AS revenue,
       CAST(sum(payment_attempts) AS BIGINT) AS payment_attempts,
       CAST(sum(failed_payments) AS BIGINT) AS failed_payments,
       current_timestamp AS refreshed_at
FROM (
    SELECT booking_date, booking_hour, event_category,
           count(DISTINCT booking_event_uid) AS bookings, CAST(0 AS BIGINT) AS paid,
           CAST(0 AS BIGINT) AS seats_sold, CAST(0 AS DECIMAL(18,2)) AS revenue,
           CAST(0 AS BIGINT) AS payment_attempts, CAST(0 AS BIGINT) AS failed_payments
    FROM fact WHERE is_first_booking_match
    GROUP BY booking_date, booking_hour, event_category
  UNION ALL
    SELECT booking_date, booking_hour, event_category, count(*), 0, 0,
           CAST(0 AS DECIMAL(18,2)), 0, 0
    FROM unpaid GROUP BY booking_date, booking_hour, event_category
  UNION ALL
    SELECT booking_date, booking_hour, event_category, 0,
           count(DISTINCT booking_event_uid), count(*), CAST(0 AS DECIMAL(18,2)), 0, 0
    FROM fact WHERE is_sale GROUP BY booking_date, booking_hour, event_category
  UNION ALL
    SELECT booking_date, booking_hour, event_category, 0, 0, 0,
           sum(CASE WHEN payment_status = 'Success' THEN amount ELSE CAST(0 AS DECIMAL(18,2)) END),
           count(*), sum(CASE WHEN payment_status = 'Failed' THEN 1 ELSE 0 END)
    FROM (SELECT DISTINCT payment_event_uid, booking_date, booking_hour, event_category,
                 payment_status, CAST(amount AS DECIMAL(18,2)) AS amount
          FROM fact WHERE is_first_payment_match)
    GROUP BY booking_date, booking_hour, event_category
)
GROUP BY booking_date, booking_hour, event_category""",
}


