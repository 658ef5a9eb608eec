//! Prometheus metrics of `vigil run`, served on `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabel {
    pub rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabel {
    pub operation: String,
}

/// Every metric vigil exports; cheap to clone (the metrics share their storage).
#[derive(Clone)]
pub struct Metrics {
    pub events_read: Counter,
    pub malformed_lines: Family<ReasonLabel, Counter>,
    pub gaps: Family<ReasonLabel, Counter>,
    pub matches: Family<RuleLabel, Counter>,
    pub alerts_written: Family<RuleLabel, Counter>,
    pub alerts_suppressed: Family<RuleLabel, Counter>,
    pub alerts_folded: Family<RuleLabel, Counter>,
    pub alerts_deleted: Counter,
    pub api_errors: Family<OperationLabel, Counter>,
    pub invalid_rules: Gauge,
    pub lag_seconds: Histogram,
    pub checkpoint_age_seconds: Gauge,
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Metrics {
            events_read: Counter::default(),
            malformed_lines: Family::default(),
            gaps: Family::default(),
            matches: Family::default(),
            alerts_written: Family::default(),
            alerts_suppressed: Family::default(),
            alerts_folded: Family::default(),
            alerts_deleted: Counter::default(),
            api_errors: Family::default(),
            invalid_rules: Gauge::default(),
            lag_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            checkpoint_age_seconds: Gauge::default(),
        };
        let vigil = registry.sub_registry_with_prefix("vigil");
        vigil.register(
            "audit_events_read",
            "Audit events read",
            metrics.events_read.clone(),
        );
        vigil.register(
            "audit_malformed_lines",
            "Audit lines skipped, by reason",
            metrics.malformed_lines.clone(),
        );
        vigil.register(
            "audit_gaps",
            "Audit data lost before it could be read, by reason",
            metrics.gaps.clone(),
        );
        vigil.register("rule_matches", "Matches, by rule", metrics.matches.clone());
        vigil.register(
            "alerts_written",
            "DetectionAlerts created, by rule",
            metrics.alerts_written.clone(),
        );
        vigil.register(
            "alerts_suppressed",
            "Matches folded into an existing alert by the rule's suppression, by rule",
            metrics.alerts_suppressed.clone(),
        );
        vigil.register(
            "alerts_folded",
            "Matches folded into an overflow alert by flood control, by rule",
            metrics.alerts_folded.clone(),
        );
        vigil.register(
            "alerts_deleted",
            "DetectionAlerts removed by retention",
            metrics.alerts_deleted.clone(),
        );
        vigil.register(
            "api_errors",
            "Kubernetes API errors, by operation",
            metrics.api_errors.clone(),
        );
        vigil.register(
            "invalid_rules",
            "DetectionRules whose query does not compile",
            metrics.invalid_rules.clone(),
        );
        vigil.register(
            "event_lag_seconds",
            "Time from an audit event's stageTimestamp to its evaluation",
            metrics.lag_seconds.clone(),
        );
        vigil.register(
            "checkpoint_age_seconds",
            "Seconds since the checkpoint last advanced",
            metrics.checkpoint_age_seconds.clone(),
        );
        metrics
    }

    pub fn rule(&self, family: &Family<RuleLabel, Counter>, rule: &str) -> Counter {
        family
            .get_or_create(&RuleLabel {
                rule: rule.to_string(),
            })
            .clone()
    }

    pub fn api_error(&self, operation: &str) {
        self.api_errors
            .get_or_create(&OperationLabel {
                operation: operation.to_string(),
            })
            .inc();
    }
}
