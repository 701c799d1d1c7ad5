//! Counters for `/metrics`, in the Prometheus text format.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency histogram, seconds.
const BUCKETS: [f64; 8] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// Server-wide counters.
#[derive(Debug, Default)]
pub struct Metrics {
    syncs: AtomicU64,
    sync_errors: AtomicU64,
    documents_merged: AtomicU64,
    documents_sent: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    quarantined: AtomicU64,
    joins: AtomicU64,
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_sum_micros: AtomicU64,
}

impl Metrics {
    /// Records a successful sync.
    pub fn sync(
        &self,
        bytes_in: usize,
        bytes_out: usize,
        merged: usize,
        sent: usize,
        took: Duration,
    ) {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes_in as u64, Ordering::Relaxed);
        self.bytes_out
            .fetch_add(bytes_out as u64, Ordering::Relaxed);
        self.documents_merged
            .fetch_add(merged as u64, Ordering::Relaxed);
        self.documents_sent
            .fetch_add(sent as u64, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        for (bound, bucket) in BUCKETS.iter().zip(&self.latency_buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_sum_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// Records a refused sync.
    pub fn sync_error(&self) {
        self.sync_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a quarantined upload.
    pub fn quarantined(&self) {
        self.quarantined.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a device joining.
    pub fn join(&self) {
        self.joins.fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, v: u64| {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
            ));
        };
        counter(
            "fieldsync_syncs_total",
            "Sync requests answered.",
            get(&self.syncs),
        );
        counter(
            "fieldsync_sync_errors_total",
            "Sync requests refused.",
            get(&self.sync_errors),
        );
        counter(
            "fieldsync_documents_merged_total",
            "Documents that gained changes from devices.",
            get(&self.documents_merged),
        );
        counter(
            "fieldsync_documents_sent_total",
            "Documents sent to devices.",
            get(&self.documents_sent),
        );
        counter(
            "fieldsync_bytes_received_total",
            "Sync request bytes.",
            get(&self.bytes_in),
        );
        counter(
            "fieldsync_bytes_sent_total",
            "Sync response bytes.",
            get(&self.bytes_out),
        );
        counter(
            "fieldsync_quarantined_uploads_total",
            "Uploads held for review.",
            get(&self.quarantined),
        );
        counter("fieldsync_joins_total", "Devices joined.", get(&self.joins));
        let name = "fieldsync_sync_duration_seconds";
        out.push_str(&format!(
            "# HELP {name} Sync request latency.\n# TYPE {name} histogram\n"
        ));
        for (bound, bucket) in BUCKETS.iter().zip(&self.latency_buckets) {
            out.push_str(&format!(
                "{name}_bucket{{le=\"{bound}\"}} {}\n",
                get(bucket)
            ));
        }
        let count = get(&self.syncs);
        out.push_str(&format!("{name}_bucket{{le=\"+Inf\"}} {count}\n"));
        out.push_str(&format!(
            "{name}_sum {}\n{name}_count {count}\n",
            get(&self.latency_sum_micros) as f64 / 1e6
        ));
        out
    }
}
