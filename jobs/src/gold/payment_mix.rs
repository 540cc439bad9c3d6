//! `gold/payment_mix`: one row per payment method and type.

use super::Model;
use super::tables::PAYMENT_MIX;

/// Every distinct payment counts once: matched ones at their first match, orphans as released.
pub const MODEL: Model = Model {
    table: &PAYMENT_MIX,
    sql: "
SELECT payment_method, payment_type,
       CAST(sum(attempts) AS BIGINT) AS attempts,
       CAST(sum(succeeded) AS BIGINT) AS succeeded,
       CAST(sum(failed) AS BIGINT) AS failed,
       CASE WHEN sum(attempts) > 0
            THEN CAST(sum(succeeded) AS DOUBLE) / sum(attempts) END AS success_rate,
       CAST(sum(amount) AS DECIMAL(18,2)) AS amount
FROM (
    SELECT payment_method, payment_type, attempts,
           CASE WHEN payment_status = 'Success' THEN attempts ELSE 0 END AS succeeded,
           CASE WHEN payment_status = 'Failed' THEN attempts ELSE 0 END AS failed,
           CASE WHEN payment_status = 'Success' THEN amount
                ELSE CAST(0 AS DECIMAL(18,2)) END AS amount
    FROM (SELECT payment_method, payment_type, payment_status, attempts, amount FROM attempts
          UNION ALL
          SELECT payment_method, payment_type, payment_status, attempts, amount
          FROM orphan_attempts)
  UNION ALL
    SELECT payment_method, payment_type, attempts, succeeded, failed, amount FROM current
)
GROUP BY payment_method, payment_type
",
};
