//! Lock-free publication of whole routing tables.
//!
//! The control thread builds a complete new [`RouteTable`] off the datapath and publishes it
//! with one atomic pointer swap. Each core reads through its own [`TableReader`], an
//! `arc_swap::Cache`: while the table is unchanged a read is one atomic load and a compare (no
//! lock, no read-modify-write); after a swap the first read takes the new table. A call keeps
//! the `Arc` it started with, so a swap never changes a call in progress.

use std::sync::Arc;

use arc_swap::{ArcSwap, Cache};

use super::RouteTable;
use crate::config::{Config, Diagnostic};

/// The table in force, shared by every core.
#[derive(Clone)]
pub struct LiveTable {
    current: Arc<ArcSwap<RouteTable>>,
}

impl LiveTable {
    pub fn new(table: Arc<RouteTable>) -> Self {
        LiveTable {
            current: Arc::new(ArcSwap::new(table)),
        }
    }

    /// Makes `table` the one every core uses from its next read.
    pub fn publish(&self, table: Arc<RouteTable>) {
        self.current.store(table);
    }

    /// The table in force now.
    pub fn load(&self) -> Arc<RouteTable> {
        self.current.load_full()
    }

    /// Validates and compiles `config`, then publishes it. On any problem nothing changes
    /// and every diagnostic is returned.
    pub fn apply(&self, config: Config) -> Result<Arc<RouteTable>, Vec<Diagnostic>> {
        let table = Arc::new(RouteTable::build(Arc::new(config))?);
        self.publish(Arc::clone(&table));
        Ok(table)
    }

    /// A reader for one core.
    pub fn reader(&self) -> TableReader {
        TableReader {
            cache: Cache::new(Arc::clone(&self.current)),
        }
    }
}

/// One core's view of the [`LiveTable`].
#[derive(Clone)]
pub struct TableReader {
    cache: Cache<Arc<ArcSwap<RouteTable>>, Arc<RouteTable>>,
}

impl TableReader {
    /// The table in force (clone the `Arc` to keep it for a call).
    pub fn current(&mut self) -> &Arc<RouteTable> {
        self.cache.load()
    }
}
