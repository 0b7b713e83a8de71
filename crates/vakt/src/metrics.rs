//! Prometheus metrics: one registry per server (no process-global recorder), served at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabels {
    pub channel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    pub channel: String,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CategoryLabels {
    pub category: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransitionLabels {
    pub transition: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    pub kind: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    pub policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

/// Every metric vakt exports.
pub struct Metrics {
    registry: Registry,
    pub events_received: Family<ChannelLabels, Counter>,
    pub bytes_received: Family<ChannelLabels, Counter>,
    pub parse_errors: Family<ChannelLabels, Counter>,
    pub frames_truncated: Family<ChannelLabels, Counter>,
    pub udp_kernel_drops: Family<ChannelLabels, Gauge>,
    pub events_rejected: Family<RejectLabels, Counter>,
    pub events_stored: Family<CategoryLabels, Counter>,
    pub events_dropped: Counter,
    pub events_duplicate: Counter,
    pub alert_transitions: Family<TransitionLabels, Counter>,
    pub actions_decided: Counter,
    pub action_attempts: Family<AttemptLabels, Counter>,
    pub action_latency_seconds: Histogram,
    pub rule_errors: Counter,
    pub pipeline_seconds: Histogram,
    pub commit_seconds: Histogram,
    pub commit_batch_events: Histogram,
    pub journal_behind_bytes: Gauge,
    pub journal_behind_max_bytes: Gauge,
    pub journal_waits: Counter,
    pub journal_wait_seconds: Counter<f64, std::sync::atomic::AtomicU64>,
    pub journal_sync_seconds: Histogram,
    pub journal_hurried: Counter,
    pub journal_background_applies: Counter,
    pub journal_background_stops: Counter,
    pub queue_events: Gauge,
    pub queue_events_max: Gauge,
    /// HTTP requests being handled, read from the listener's count when scraped.
    pub http_requests_in_flight: Gauge,
    pub alerts: Family<StatusLabels, Gauge>,
    pub reloads: Family<ResultLabels, Counter>,
    pub rules_loaded: Gauge,
    pub escalation_steps: Family<PolicyLabels, Counter>,
    pub retention_pruned: Family<KindLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("vakt");
        let m = Metrics {
            events_received: Family::default(),
            bytes_received: Family::default(),
            parse_errors: Family::default(),
            frames_truncated: Family::default(),
            udp_kernel_drops: Family::default(),
            events_rejected: Family::default(),
            events_stored: Family::default(),
            events_dropped: Counter::default(),
            events_duplicate: Counter::default(),
            alert_transitions: Family::default(),
            actions_decided: Counter::default(),
            action_attempts: Family::default(),
            action_latency_seconds: Histogram::new(exponential_buckets(1e-3, 2.0, 20)),
            rule_errors: Counter::default(),
            // 1 µs .. ~1 s per event through the stateless stages.
            pipeline_seconds: Histogram::new(exponential_buckets(1e-6, 4.0, 11)),
            // 100 µs .. ~26 s per transaction.
            commit_seconds: Histogram::new(exponential_buckets(1e-4, 2.0, 18)),
            commit_batch_events: Histogram::new(exponential_buckets(1.0, 4.0, 9)),
            journal_behind_bytes: Gauge::default(),
            journal_behind_max_bytes: Gauge::default(),
            journal_waits: Counter::default(),
            journal_wait_seconds: Counter::default(),
            // From 10 µs: a disk with a power-loss-protected cache syncs that fast.
            journal_sync_seconds: Histogram::new(exponential_buckets(1e-5, 2.0, 20)),
            journal_hurried: Counter::default(),
            journal_background_applies: Counter::default(),
            journal_background_stops: Counter::default(),
            queue_events: Gauge::default(),
            queue_events_max: Gauge::default(),
            http_requests_in_flight: Gauge::default(),
            alerts: Family::default(),
            reloads: Family::default(),
            rules_loaded: Gauge::default(),
            escalation_steps: Family::default(),
            retention_pruned: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "escalation_steps",
            "Escalation steps fired, per policy",
            m.escalation_steps.clone(),
        );
        registry.register(
            "events_received",
            "Events received per ingest channel, valid or not",
            m.events_received.clone(),
        );
        registry.register(
            "bytes_received",
            "Bytes received per ingest channel",
            m.bytes_received.clone(),
        );
        registry.register(
            "parse_errors",
            "Messages per channel that were not in the channel's format (kept as parse-error events)",
            m.parse_errors.clone(),
        );
        registry.register(
            "frames_truncated",
            "Messages per channel cut to the channel's size limit",
            m.frames_truncated.clone(),
        );
        registry.register(
            "udp_kernel_drops",
            "Datagrams the kernel dropped on a channel's UDP sockets because vakt read too slowly (Linux)",
            m.udp_kernel_drops.clone(),
        );
        registry.register(
            "events_rejected",
            "Events refused or dropped per channel and reason (invalid, too_large, queue_full, store_error)",
            m.events_rejected.clone(),
        );
        registry.register(
            "events_stored",
            "Events committed to storage, per ITIL category",
            m.events_stored.clone(),
        );
        registry.register(
            "events_dropped",
            "Events the filter stage dropped (stored, but no alert)",
            m.events_dropped.clone(),
        );
        registry.register(
            "events_duplicate",
            "Events whose idempotency key was already stored: answered with the stored id, not stored again",
            m.events_duplicate.clone(),
        );
        registry.register(
            "alert_transitions",
            "What events did to alerts (new_alert, updated, resolved, reopened, ...)",
            m.alert_transitions.clone(),
        );
        registry.register(
            "actions_decided",
            "Actions the decide stage asked for",
            m.actions_decided.clone(),
        );
        registry.register(
            "action_attempts",
            "Attempts at decided actions per kind and outcome (succeeded, retry, failed, skipped)",
            m.action_attempts.clone(),
        );
        registry.register(
            "action_latency_seconds",
            "Time from an action's decision to its successful attempt's end",
            m.action_latency_seconds.clone(),
        );
        registry.register(
            "rule_errors",
            "Rule conditions that failed to evaluate (counted as not matching)",
            m.rule_errors.clone(),
        );
        registry.register(
            "pipeline_seconds",
            "Time per event in the stateless stages (normalise, filter, categorise)",
            m.pipeline_seconds.clone(),
        );
        registry.register(
            "store_commit_seconds",
            "Time per ingest transaction: load alert state, correlate, decide, write, commit",
            m.commit_seconds.clone(),
        );
        registry.register(
            "store_commit_batch_events",
            "Events per ingest transaction",
            m.commit_batch_events.clone(),
        );
        registry.register(
            "http_requests_in_flight",
            "HTTP requests received and not yet answered (their responses not yet sent), the scrape itself included",
            m.http_requests_in_flight.clone(),
        );
        registry.register(
            "store_journal_behind_bytes",
            "Acknowledged ingest the database has not applied yet (SQLite's journal), after the last commit",
            m.journal_behind_bytes.clone(),
        );
        registry.register(
            "store_journal_behind_max_bytes",
            "How far the database may fall behind the journal before ingest waits for it",
            m.journal_behind_max_bytes.clone(),
        );
        registry.register(
            "store_journal_waits",
            "Ingest batches that waited for the database to catch up with the journal (back-pressure)",
            m.journal_waits.clone(),
        );
        registry.register(
            "store_journal_wait_seconds",
            "Seconds ingest batches waited for the database to catch up with the journal",
            m.journal_wait_seconds.clone(),
        );
        registry.register(
            "store_journal_sync_seconds",
            "Seconds each ingest journal record's write and sync took (SQLite; one per commit, but for commits that go to the database directly: the first, which loads the writer's cache, and those with idempotency keys, incidents or escalations): the time a durable answer waits on the disk",
            m.journal_sync_seconds.clone(),
        );
        registry.register(
            "store_journal_hurried",
            "Reads and writes that made the database apply the journaled records at once (each cuts a database transaction short; background work and authentication do not)",
            m.journal_hurried.clone(),
        );
        registry.register(
            "store_journal_background_applies",
            "Database transactions of journaled records run at the lowest CPU priority, in the time requests leave idle",
            m.journal_background_applies.clone(),
        );
        registry.register(
            "store_journal_background_stops",
            "Database transactions of journaled records stopped at the lowest priority and done again at normal priority (someone waited for them, or the database fell behind)",
            m.journal_background_stops.clone(),
        );
        registry.register(
            "ingest_queue_events",
            "Events accepted and waiting for their commit",
            m.queue_events.clone(),
        );
        registry.register(
            "ingest_queue_events_max",
            "Capacity of the ingest queue, in events",
            m.queue_events_max.clone(),
        );
        registry.register("alerts", "Alerts per status", m.alerts.clone());
        registry.register(
            "retention_pruned",
            "Records removed by retention, per kind (events, alerts, silences, incidents, audit, sessions)",
            m.retention_pruned.clone(),
        );
        registry.register(
            "config_reloads",
            "Configuration reloads per result (success, failure)",
            m.reloads.clone(),
        );
        registry.register(
            "rules",
            "Rules in the running configuration",
            m.rules_loaded.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The registry in Prometheus' text exposition format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
