//! `silver/bookings_fact`: bookings joined with their payments in event time, one row per seat.

pub mod checkpoint;
pub mod input;
pub mod join;
pub mod rows;
