//! Silver: cleaned, joined, deduplicated tables.

pub mod bookings_fact;
pub mod derive;
pub mod shows_sold;
pub mod tables;
