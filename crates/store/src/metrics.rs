//! The store's own metrics (prometheus-client), registered into the server's registry.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Cheap to clone (every metric is an `Arc` inside).
#[derive(Clone)]
pub struct StoreMetrics {
    /// Rows per committed batch.
    pub batch_rows: Histogram,
    /// Seconds per batch commit.
    pub batch_seconds: Histogram,
    pub rows_written: Counter,
    pub rows_dropped: Counter,
    pub write_errors: Counter,
    pub pending_rows: Gauge,
    /// 1 while writes succeed, 0 after a failed write until the next success.
    pub healthy: Gauge,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        StoreMetrics {
            batch_rows: Histogram::new(exponential_buckets(1.0, 4.0, 8)),
            batch_seconds: Histogram::new(exponential_buckets(0.0005, 4.0, 9)),
            rows_written: Counter::default(),
            rows_dropped: Counter::default(),
            write_errors: Counter::default(),
            pending_rows: Gauge::default(),
            healthy: Gauge::default(),
        }
    }
}

impl StoreMetrics {
    /// Registers every metric under `portwarden_store_*`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("portwarden_store");
        r.register(
            "batch_rows",
            "Observations per committed write batch",
            self.batch_rows.clone(),
        );
        r.register(
            "batch_seconds",
            "Time to commit one write batch",
            self.batch_seconds.clone(),
        );
        r.register(
            "rows_written",
            "Observations committed",
            self.rows_written.clone(),
        );
        r.register(
            "rows_dropped",
            "Observations dropped because the writer backlog was full",
            self.rows_dropped.clone(),
        );
        r.register(
            "write_errors",
            "Failed write attempts (disk full, read-only...)",
            self.write_errors.clone(),
        );
        r.register(
            "pending_rows",
            "Observations waiting to be written",
            self.pending_rows.clone(),
        );
        r.register(
            "healthy",
            "1 when the last write succeeded, 0 otherwise",
            self.healthy.clone(),
        );
    }
}
