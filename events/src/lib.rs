//! Booking and payment events: the shared language of every boxoffice stage.
//!
//! - [`model`]: the typed events (v0, v1 and v2 shapes all become one superset type).
//! - [`validate`]: turns a raw body into a typed event or every reason it is invalid.
//! - [`canonical`]: a parsed event written back as JSON that validates to the same event.
//! - [`uid`]: the stable `event_uid` that duplicates are dropped by.
//! - [`generator`]: a deterministic, realistic producer for demos, tests and benchmarks.
//!
//! This crate does no I/O, so the producer, the archiver and the jobs can all depend on it.

pub mod canonical;
pub mod generator;
pub mod model;
pub mod uid;
pub mod validate;

pub use generator::{GeneratedEvent, Generator, GeneratorConfig, Shares};
pub use model::{Event, Hub, SchemaVersion};
pub use validate::{Identity, Invalid, MAX_EVENT_BYTES, ValidEvent, identify, sniff, validate};
