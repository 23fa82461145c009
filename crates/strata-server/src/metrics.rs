//! `GET /metrics`: Prometheus text exposition (format 0.0.4), written by hand — a few counters and
//! histograms do not need a metrics framework.

use crate::state::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;
use strata_storage::stats::{HistogramSnapshot, LATENCY_BUCKETS_US, LatencyHistogram};

/// What the HTTP layer counts.
#[derive(Debug, Default)]
pub struct Metrics {
    appends_committed: AtomicU64,
    appends_conflict: AtomicU64,
    appends_failed: AtomicU64,
    events_appended: AtomicU64,
    bytes_appended: AtomicU64,
    append_latency: LatencyHistogram,
    subscriptions_open: AtomicI64,
    /// Requests refused by browser safety (`browser`), by rule.
    browser_refused_host: AtomicU64,
    browser_refused_origin: AtomicU64,
    browser_refused_content_type: AtomicU64,
}

/// The rule of browser safety that refused a request.
#[derive(Debug, Clone, Copy)]
pub enum BrowserRefusal {
    Host,
    Origin,
    ContentType,
}

/// How an append request ended.
#[derive(Debug, Clone, Copy)]
pub enum AppendResult {
    Committed,
    /// A failed expectation or condition (409).
    Conflict,
    Failed,
}

/// Counts an open subscription until dropped.
#[derive(Debug)]
pub struct SubscriptionGuard(Arc<Metrics>);

impl Drop for SubscriptionGuard {
    fn drop(&mut self) {
        self.0.subscriptions_open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    pub fn count_append(&self, result: AppendResult, events: usize, bytes: usize, started: Instant) {
        let counter = match result {
            AppendResult::Committed => &self.appends_committed,
            AppendResult::Conflict => &self.appends_conflict,
            AppendResult::Failed => &self.appends_failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.events_appended.fetch_add(events as u64, Ordering::Relaxed);
        self.bytes_appended.fetch_add(bytes as u64, Ordering::Relaxed);
        self.append_latency.record(started.elapsed());
    }

    pub fn subscription_opened(self: &Arc<Self>) -> SubscriptionGuard {
        self.subscriptions_open.fetch_add(1, Ordering::Relaxed);
        SubscriptionGuard(self.clone())
    }

    pub fn count_browser_refusal(&self, refusal: BrowserRefusal) {
        let counter = match refusal {
            BrowserRefusal::Host => &self.browser_refused_host,
            BrowserRefusal::Origin => &self.browser_refused_origin,
            BrowserRefusal::ContentType => &self.browser_refused_content_type,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn subscriptions_open(&self) -> i64 {
        self.subscriptions_open.load(Ordering::Relaxed)
    }
}

/// Prometheus metrics of the server and the engine.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, content_type = "text/plain", body = String, description = "Prometheus text format 0.0.4")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let metrics = &state.metrics;
    let stats = state.store.stats();
    let mut out = String::with_capacity(4096);
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    family(&mut out, "strata_appends_total", "counter", "Append requests (single- and multi-stream), by result.");
    for (result, counter) in [
        ("committed", &metrics.appends_committed),
        ("conflict", &metrics.appends_conflict),
        ("failed", &metrics.appends_failed),
    ] {
        let _ = writeln!(out, "strata_appends_total{{result=\"{result}\"}} {}", load(counter));
    }
    family(
        &mut out,
        "strata_browser_refusals_total",
        "counter",
        "Requests refused by browser safety, by rule: host (not loopback, an IP address or --allowed-hosts), origin (a foreign page), content_type (a form's or text/plain).",
    );
    for (rule, counter) in [
        ("host", &metrics.browser_refused_host),
        ("origin", &metrics.browser_refused_origin),
        ("content_type", &metrics.browser_refused_content_type),
    ] {
        let _ = writeln!(out, "strata_browser_refusals_total{{rule=\"{rule}\"}} {}", load(counter));
    }
    family(&mut out, "strata_events_appended_total", "counter", "Events committed by append requests.");
    let _ = writeln!(out, "strata_events_appended_total {}", load(&metrics.events_appended));
    family(&mut out, "strata_appended_bytes_total", "counter", "Bytes of events committed by append requests.");
    let _ = writeln!(out, "strata_appended_bytes_total {}", load(&metrics.bytes_appended));
    family(&mut out, "strata_append_latency_seconds", "histogram", "Append request latency, from request to answer.");
    histogram(&mut out, "strata_append_latency_seconds", &metrics.append_latency.snapshot());
    family(&mut out, "strata_commits_total", "counter", "Commit groups (frames) written and synced by the engine.");
    let _ = writeln!(out, "strata_commits_total {}", stats.commits);
    family(
        &mut out,
        "strata_committed_events_total",
        "counter",
        "Events committed by the engine, system events included.",
    );
    let _ = writeln!(out, "strata_committed_events_total {}", stats.events);
    family(&mut out, "strata_committed_bytes_total", "counter", "Bytes of frames written to segments.");
    let _ = writeln!(out, "strata_committed_bytes_total {}", stats.bytes);
    family(&mut out, "strata_fsync_latency_seconds", "histogram", "Latency of the fdatasync of each commit group.");
    histogram(&mut out, "strata_fsync_latency_seconds", &stats.fsync);
    family(&mut out, "strata_subscriptions_open", "gauge", "Open Server-Sent Events subscriptions.");
    let _ = writeln!(out, "strata_subscriptions_open {}", metrics.subscriptions_open());
    family(&mut out, "strata_head_position", "gauge", "The last committed position (-1 for an empty store).");
    let head = state.store.head_position().map_or(-1, |position| position.value() as i128);
    let _ = writeln!(out, "strata_head_position {head}");
    family(&mut out, "strata_writes_poisoned", "gauge", "1 when the store refuses writes after a storage failure.");
    let _ = writeln!(out, "strata_writes_poisoned {}", u8::from(state.store.poison_reason().is_some()));
    family(&mut out, "strata_index_runs_written_total", "counter", "Index runs written from the in-memory tail.");
    let _ = writeln!(out, "strata_index_runs_written_total {}", stats.index_runs_written);
    family(&mut out, "strata_index_merges_total", "counter", "Merges of index runs.");
    let _ = writeln!(out, "strata_index_merges_total {}", stats.index_merges);
    family(&mut out, "strata_index_failures_total", "counter", "Failed index run writes or merges (retried).");
    let _ = writeln!(out, "strata_index_failures_total {}", stats.index_failures);
    if let Some(cluster) = state.cluster.as_ref() {
        let info = cluster.info();
        family(&mut out, "strata_cluster_leader", "gauge", "Cluster mode: 1 on the node that leads.");
        let _ = writeln!(out, "strata_cluster_leader {}", u8::from(info.role == "leader"));
        family(
            &mut out,
            "strata_cluster_lease_revision",
            "gauge",
            "Cluster mode: the lease key's revision as this node last read it.",
        );
        let _ = writeln!(out, "strata_cluster_lease_revision {}", info.lease_revision);
        family(
            &mut out,
            "strata_cluster_applied_sequence",
            "gauge",
            "Cluster mode: the last message of the log applied here.",
        );
        let _ = writeln!(out, "strata_cluster_applied_sequence {}", info.applied_sequence);
        family(
            &mut out,
            "strata_cluster_lag_frames",
            "gauge",
            "Cluster mode: messages of the log not yet applied here.",
        );
        let _ = writeln!(out, "strata_cluster_lag_frames {}", info.lag_frames);
        family(&mut out, "strata_cluster_lag_seconds", "gauge", "Cluster mode: how far behind the replica is.");
        let _ = writeln!(out, "strata_cluster_lag_seconds {}", info.lag_seconds);
        family(
            &mut out,
            "strata_cluster_last_contact_seconds",
            "gauge",
            "Cluster mode: time since this node last heard from NATS.",
        );
        let _ = writeln!(out, "strata_cluster_last_contact_seconds {}", info.last_contact_ms as f64 / 1000.0);
        family(
            &mut out,
            "strata_cluster_writes_halted",
            "gauge",
            "Cluster mode: 1 when writes are halted on this node.",
        );
        let _ = writeln!(out, "strata_cluster_writes_halted {}", u8::from(info.writes_halted.is_some()));
        family(
            &mut out,
            "strata_cluster_frames_skipped_total",
            "counter",
            "Cluster mode: messages of the log that were not frames continuing the chain.",
        );
        let _ = writeln!(out, "strata_cluster_frames_skipped_total {}", stats.frames_skipped);
    }
    // Consumer groups, once loaded (by any group request); a name is ASCII letters, digits, -_. only.
    if let Some(groups) = state.loaded_groups() {
        let mut infos = Vec::new();
        for name in groups.names() {
            if let Ok(info) = groups.info(&name).await {
                infos.push(info);
            }
        }
        for (metric, help, value) in [
            ("strata_group_lag_events", "Events (positions or revisions) of a group's source after its checkpoint.", 0),
            ("strata_group_lag_seconds", "Age of the oldest event a group has not handled.", 1),
            ("strata_group_in_flight", "Deliveries of a group not yet acked.", 2),
            ("strata_group_parked", "Parked events of a group.", 3),
        ] {
            family(&mut out, metric, "gauge", help);
            for info in &infos {
                let number = match value {
                    0 => info.lag_events as f64,
                    1 => info.lag_seconds,
                    2 => info.in_flight as f64,
                    _ => info.parked as f64,
                };
                let _ = writeln!(out, "{metric}{{group=\"{}\"}} {number}", info.spec.name);
            }
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out)
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn histogram(out: &mut String, name: &str, snapshot: &HistogramSnapshot) {
    for (bound_us, count) in LATENCY_BUCKETS_US.iter().zip(&snapshot.cumulative_counts) {
        let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {count}", *bound_us as f64 / 1e6);
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", snapshot.count());
    let _ = writeln!(out, "{name}_sum {}", snapshot.sum_us as f64 / 1e6);
    let _ = writeln!(out, "{name}_count {}", snapshot.count());
}
