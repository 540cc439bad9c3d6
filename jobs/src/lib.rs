//! The lakehouse jobs: Bronze to Silver, Silver to Gold.

pub mod silver;
