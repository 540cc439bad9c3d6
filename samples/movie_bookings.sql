-- The Snowflake CDC demo's sample (reference: "Movie bookings real-time CDC with medallion
-- architecture in Snowflake"), as statements on ops.raw_movie_bookings. Replay it with
--   boxoffice cdc apply samples/movie_bookings.sql && boxoffice job run cdc
-- Expected gold.movie_booking_insights, whatever the schedule of the cdc job:
--   M001 1 booking, 2 tickets,  30.00 | M002 1, 3,  36.00 | M003 1, 3, 60.00
--   M004 1 booking, 4 tickets, 100.00 | M005 1, 1,  10.00 | no cancellations

INSERT INTO raw_movie_bookings
    (booking_id, customer_id, movie_id, booking_date, status, ticket_count, ticket_price)
VALUES
    ('B001', 'C001', 'M001', '2024-12-29 10:00:00', 'BOOKED', 2, 15.00),
    ('B002', 'C002', 'M002', '2024-12-29 10:10:00', 'BOOKED', 1, 12.00),
    ('B003', 'C003', 'M003', '2024-12-29 10:15:00', 'BOOKED', 3, 20.00),
    ('B004', 'C004', 'M004', '2024-12-29 10:20:00', 'BOOKED', 4, 25.00),
    ('B005', 'C005', 'M005', '2024-12-29 10:25:00', 'BOOKED', 1, 10.00);

UPDATE raw_movie_bookings SET status = 'COMPLETED' WHERE booking_id IN ('B001', 'B003');

UPDATE raw_movie_bookings SET ticket_count = 3 WHERE booking_id = 'B002';
