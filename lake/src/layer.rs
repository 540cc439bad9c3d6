//! The lake's layers: the medallion folders (or containers) every table lives in.

use std::fmt;

/// A top-level area of the lake (docs/lake.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Layer {
    /// Raw events exactly as received, plus quarantine.
    Bronze,
    /// Cleaned, joined, deduplicated tables.
    Silver,
    /// Aggregates for dashboards and Power BI.
    Gold,
    /// Operational source tables (the booking service's own table for CDC).
    Ops,
    /// Files dropped for batch loading.
    Landing,
    /// boxoffice's own bookkeeping: job runs, expectations, the local queue.
    System,
}

impl Layer {
    /// Every layer, in data-flow order.
    pub const ALL: [Layer; 6] = [
        Layer::Bronze,
        Layer::Silver,
        Layer::Gold,
        Layer::Ops,
        Layer::Landing,
        Layer::System,
    ];

    /// Folder name under a lake root, and the prefix in `layer.table` names.
    pub fn dir_name(self) -> &'static str {
        match self {
            Layer::Bronze => "bronze",
            Layer::Silver => "silver",
            Layer::Gold => "gold",
            Layer::Ops => "ops",
            Layer::Landing => "landing",
            Layer::System => "_system",
        }
    }

    /// Container name when each layer has its own container (names cannot start with `_`).
    pub fn container_name(self) -> &'static str {
        match self {
            Layer::System => "system",
            other => other.dir_name(),
        }
    }

    /// Parses a layer by folder or container name.
    pub fn parse(s: &str) -> Option<Layer> {
        Layer::ALL
            .into_iter()
            .find(|l| l.dir_name() == s || l.container_name() == s)
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dir_name())
    }
}
