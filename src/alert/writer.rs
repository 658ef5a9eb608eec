//! Writes matches as DetectionAlerts (and a Kubernetes Event for each new alert) without flooding etcd, and without
//! losing or repeating an alert:
//! - an alert's name is derived from its rule and its audit events' IDs (or, with suppression, from the group values
//!   and the time window), so a replay, a second vigil pod, or the two stages of one request land on the same alert;
//!   the alert keeps the most complete stage;
//! - a global budget of writes per second; beyond it, matches are counted into one overflow alert per rule per
//!   window, flushed at most once per second;
//! - API errors are retried with backoff for as long as it takes: the caller's queue fills, the reader pauses, and
//!   the log on disk is the buffer.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use tracing::{info, warn};

use crate::crd::{
    AlertEvent, AlertRule, DetectionAlert, DetectionAlertSpec, RULE_LABEL, SEVERITY_LABEL,
    rule_label_value,
};
use crate::metrics::Metrics;

/// The audit IDs an alert holds, so a replay never counts one twice (capped: beyond it, a replay of a very old
/// suppressed match could count again).
const AUDIT_IDS_ANNOTATION: &str = "vigil.dev/audit-ids";
const AUDIT_IDS_KEPT: usize = 200;
const OVERFLOW_WINDOW_SECONDS: i64 = 300;
const OVERFLOW_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// A rule as alerts show it.
#[derive(Debug, Clone)]
pub struct AlertingRule {
    pub rule: AlertRule,
    /// Window of the rule's suppression, if it has one.
    pub suppression_window: Option<Duration>,
}

/// One match, ready to be written.
#[derive(Debug, Clone)]
pub struct PendingAlert {
    pub rule: Arc<AlertingRule>,
    /// The matched events, one per sequence step.
    pub events: Vec<AlertEvent>,
    /// When it happened: the last event's stageTimestamp.
    pub seen: Timestamp,
    /// The suppression group values (only for rules with suppression).
    pub group: Option<Vec<String>>,
}

impl PendingAlert {
    fn audit_ids(&self) -> Vec<String> {
        self.events
            .iter()
            .map(|event| event.audit_id.clone())
            .collect()
    }

    /// Deterministic alert name: the same match always maps to the same alert.
    pub fn alert_name(&self) -> String {
        let rule = &self.rule.rule.name;
        let key = match (&self.group, self.rule.suppression_window) {
            (Some(group), Some(window)) => {
                let bucket = self
                    .seen
                    .as_second()
                    .div_euclid(window.as_secs().max(1) as i64);
                format!("{rule}\nsuppressed\n{}\n{bucket}", group.join("\u{1f}"))
            }
            _ => format!("{rule}\n{}", self.audit_ids().join("\n")),
        };
        format!("{}-{:016x}", name_prefix(rule), fnv1a_64(key.as_bytes()))
    }

    fn overflow_name(&self) -> String {
        let rule = &self.rule.rule.name;
        let bucket = self.seen.as_second().div_euclid(OVERFLOW_WINDOW_SECONDS);
        let key = format!("{rule}\noverflow\n{bucket}");
        format!(
            "{}-overflow-{:016x}",
            name_prefix(rule),
            fnv1a_64(key.as_bytes())
        )
    }
}

/// Rule names are DNS subdomains already; cut them so the suffixes fit in 253 characters.
fn name_prefix(rule: &str) -> &str {
    let mut end = rule.len().min(200);
    while !rule.is_char_boundary(end) {
        end -= 1;
    }
    rule[..end].trim_end_matches(['-', '.'])
}

fn fnv1a_64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A stage's completeness: an alert keeps the most complete one.
fn stage_rank(stage: Option<&str>) -> u8 {
    match stage {
        Some("ResponseComplete") => 3,
        Some("ResponseStarted") => 2,
        Some("Panic") => 1,
        _ => 0,
    }
}

/// A token bucket: `rate` writes per second, bursts up to `rate`.
struct WriteBudget {
    rate: f64,
    tokens: f64,
    refilled: Instant,
}

impl WriteBudget {
    fn new(rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        WriteBudget {
            rate,
            tokens: rate,
            refilled: Instant::now(),
        }
    }

    fn try_take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.refilled).as_secs_f64() * self.rate)
            .min(self.rate);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Matches beyond the budget, waiting to be counted into their overflow alert.
struct Overflow {
    first: PendingAlert,
    audit_ids: Vec<String>,
    last_seen: Timestamp,
}

/// The API side of writing alerts: cheap to clone into concurrent writes.
#[derive(Clone)]
struct AlertApi {
    alerts: Api<DetectionAlert>,
    recorder: Recorder,
    metrics: Metrics,
}

/// Decides, in match order, what each match becomes (a new alert, a completion of a known one, or an overflow
/// count); the API writes it hands out may run concurrently.
pub struct AlertWriter {
    api: AlertApi,
    metrics: Metrics,
    budget: WriteBudget,
    overflow: BTreeMap<String, Overflow>,
    overflow_flushed: Instant,
    known: RecentNames,
    /// Every alert in the cluster (from a watch): a replay after a restart, or a match another vigil pod already
    /// wrote, is recognised without a request.
    existing: Store<DetectionAlert>,
}

/// Names of the alerts written (or found existing) most recently.
#[derive(Default)]
struct RecentNames {
    order: VecDeque<String>,
    names: HashSet<String>,
}

impl RecentNames {
    const KEPT: usize = 100_000;

    fn contains(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    fn insert(&mut self, name: String) {
        if self.names.insert(name.clone()) {
            self.order.push_back(name);
            if self.order.len() > Self::KEPT
                && let Some(oldest) = self.order.pop_front()
            {
                self.names.remove(&oldest);
            }
        }
    }
}

/// Runs `attempt` until it succeeds, retrying with backoff while the API server is away, overloaded or raced us
/// (409); an error it will not get over (e.g. an invalid object) is logged and the write dropped.
async fn retrying<F, Fut>(metrics: &Metrics, operation: &str, alert: &str, mut attempt: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), kube::Error>>,
{
    let mut backoff = Duration::from_millis(100);
    loop {
        match attempt().await {
            Ok(()) => return,
            Err(error) if is_transient(&error) || is_code(&error, 409) => {
                metrics.api_error(operation);
                warn!(%alert, %error, "{operation} failed; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(error) => {
                metrics.api_error(operation);
                warn!(%alert, %error, "{operation}: the API server refused it; dropping it");
                return;
            }
        }
    }
}

/// Whether an API error is worth retrying (the API server is down, overloaded, or raced us).
fn is_transient(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => status.code == 429 || status.code >= 500,
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::HttpError(_) => true,
        _ => false,
    }
}

fn is_code(error: &kube::Error, code: u16) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == code)
}

impl AlertWriter {
    pub fn new(
        client: Client,
        recorder: Recorder,
        metrics: Metrics,
        write_budget: u32,
        existing: Store<DetectionAlert>,
    ) -> Self {
        AlertWriter {
            api: AlertApi {
                alerts: Api::all(client),
                recorder,
                metrics: metrics.clone(),
            },
            metrics,
            budget: WriteBudget::new(write_budget),
            overflow: BTreeMap::new(),
            overflow_flushed: Instant::now(),
            known: RecentNames::default(),
            existing,
        }
    }

    /// Takes one match: counts it into an overflow alert (`None`), or returns the write that stores it, which
    /// retries transient errors for as long as needed.
    pub fn admit(
        &mut self,
        pending: PendingAlert,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        let rule = pending.rule.rule.name.clone();
        let name = pending.alert_name();
        // Another stage of a request already alerted is not a new match: it may complete its alert, outside the
        // budget (so at most one more write per request), and is never counted into an overflow alert.
        let completes_known_alert = pending.group.is_none()
            && (self.known.contains(&name) || self.existing.get(&ObjectRef::new(&name)).is_some());
        if !completes_known_alert && !self.budget.try_take() {
            self.metrics.rule(&self.metrics.alerts_folded, &rule).inc();
            let name = pending.overflow_name();
            let ids = pending.audit_ids();
            match self.overflow.get_mut(&name) {
                Some(overflow) => {
                    overflow.audit_ids.extend(ids);
                    overflow.last_seen = overflow.last_seen.max(pending.seen);
                }
                None => {
                    let last_seen = pending.seen;
                    self.overflow.insert(
                        name,
                        Overflow {
                            first: pending,
                            audit_ids: ids,
                            last_seen,
                        },
                    );
                }
            }
            return None;
        }
        self.known.insert(name.clone());
        let api = self.api.clone();
        Some(async move { api.store(&name, &pending).await })
    }

    /// Writes pending overflow counts when due (`force`: now, e.g. before acknowledging a checkpoint or stopping).
    /// Returns whether nothing is left pending.
    pub async fn flush_overflow(&mut self, force: bool) -> bool {
        if self.overflow.is_empty() {
            return true;
        }
        if !force && self.overflow_flushed.elapsed() < OVERFLOW_FLUSH_INTERVAL {
            return false;
        }
        self.overflow_flushed = Instant::now();
        let names: Vec<String> = self.overflow.keys().cloned().collect();
        for name in names {
            let Some(overflow) = self.overflow.remove(&name) else {
                continue;
            };
            let api = &self.api;
            retrying(&self.metrics, "write_overflow_alert", &name, || {
                api.write_overflow(&name, &overflow)
            })
            .await;
        }
        true
    }
}

impl AlertApi {
    /// Creates the alert, or merges the match into the existing one.
    async fn store(&self, name: &str, pending: &PendingAlert) {
        retrying(&self.metrics, "write_alert", name, || {
            self.create_or_merge(name, pending)
        })
        .await;
    }

    async fn create_or_merge(&self, name: &str, pending: &PendingAlert) -> Result<(), kube::Error> {
        match self
            .alerts
            .create(&PostParams::default(), &new_alert(name, pending, 1))
            .await
        {
            Ok(created) => {
                self.metrics
                    .rule(&self.metrics.alerts_written, &pending.rule.rule.name)
                    .inc();
                if !awaits_later_stage(&created) {
                    self.publish_event(&created).await;
                }
                Ok(())
            }
            Err(error) if is_code(&error, 409) => self.merge_into(name, pending).await,
            Err(error) => Err(error),
        }
    }

    /// The alert exists: a replay, another vigil pod, the other stage of the request, or a suppressed repeat.
    async fn merge_into(&self, name: &str, pending: &PendingAlert) -> Result<(), kube::Error> {
        let mut existing = self.alerts.get(name).await?;
        let mut ids = audit_ids_of(&existing);
        let new_ids: Vec<String> = pending
            .audit_ids()
            .into_iter()
            .filter(|id| !ids.contains(id))
            .collect();
        let mut changed = false;
        if pending.group.is_some() && !new_ids.is_empty() {
            existing.spec.count += 1;
            existing.spec.last_seen = Time(existing.spec.last_seen.0.max(pending.seen));
            ids.extend(new_ids);
            self.metrics
                .rule(&self.metrics.alerts_suppressed, &pending.rule.rule.name)
                .inc();
            changed = true;
        }
        let stored_rank = existing
            .spec
            .events
            .iter()
            .map(|e| stage_rank(e.stage.as_deref()))
            .min();
        let new_rank = pending
            .events
            .iter()
            .map(|e| stage_rank(e.stage.as_deref()))
            .min();
        let event_was_deferred = awaits_later_stage(&existing);
        let mut upgraded = false;
        if new_rank > stored_rank && pending.audit_ids() == existing_audit_ids(&existing) {
            existing.spec.events = pending.events.clone();
            existing.spec.message = pending_message(pending);
            upgraded = true;
        }
        if !changed && !upgraded {
            return Ok(());
        }
        set_audit_ids(&mut existing.metadata, &ids);
        let replaced = patch_if_unchanged(&self.alerts, name, &existing).await?;
        if upgraded && event_was_deferred {
            self.publish_event(&replaced).await;
        }
        Ok(())
    }

    async fn write_overflow(&self, name: &str, overflow: &Overflow) -> Result<(), kube::Error> {
        match self.alerts.get_opt(name).await? {
            None => {
                let ids = distinct_new(&[], &overflow.audit_ids);
                let count = ids.len().max(1) as u64;
                let mut alert = new_alert(name, &overflow.first, count);
                alert.spec.last_seen = Time(overflow.last_seen);
                alert.spec.message = format!(
                    "{} (flood control: {count} matches of rule {} folded into this alert)",
                    alert.spec.message, overflow.first.rule.rule.name
                );
                set_audit_ids(&mut alert.metadata, &ids);
                let created = self.alerts.create(&PostParams::default(), &alert).await?;
                info!(alert = %name, count, "flood control: matches folded into an overflow alert");
                self.publish_event(&created).await;
            }
            Some(mut existing) => {
                let mut ids = audit_ids_of(&existing);
                let added = distinct_new(&ids, &overflow.audit_ids);
                if added.is_empty() {
                    return Ok(());
                }
                existing.spec.count += added.len() as u64;
                ids.extend(added);
                existing.spec.last_seen = Time(existing.spec.last_seen.0.max(overflow.last_seen));
                set_audit_ids(&mut existing.metadata, &ids);
                patch_if_unchanged(&self.alerts, name, &existing).await?;
            }
        }
        Ok(())
    }

    async fn publish_event(&self, alert: &DetectionAlert) {
        let event = Event {
            type_: EventType::Warning,
            reason: event_reason(&alert.spec.rule.name),
            note: Some(truncate(&alert.spec.message, 1000)),
            action: "Detected".to_string(),
            secondary: Some(alert.object_ref(&())),
        };
        let regarding = alert
            .spec
            .events
            .first()
            .and_then(audited_object)
            .unwrap_or_else(|| alert.object_ref(&()));
        if let Err(error) = self.recorder.publish(&event, &regarding).await {
            // The alert is written; a lost Event is worth a warning, not a retry loop.
            self.metrics.api_error("publish_event");
            warn!(alert = %alert.name_any(), %error, "publishing the Kubernetes Event failed");
        }
    }
}

/// An alert seen only at RequestReceived does not know its object yet (a create names it in the body): its Event
/// waits for the later stage, so that it can regard the object. (An audit policy that omits every later stage
/// gets no Event; the alert is written all the same.)
fn awaits_later_stage(alert: &DetectionAlert) -> bool {
    alert.spec.events.iter().any(|event| {
        event.stage.as_deref() == Some("RequestReceived") && audited_object(event).is_none()
    })
}

/// Writes `alert` back with a merge patch that carries the resourceVersion it was read at: a concurrent writer
/// makes it fail with 409 Conflict, and the caller reads again and retries.
async fn patch_if_unchanged(
    alerts: &Api<DetectionAlert>,
    name: &str,
    alert: &DetectionAlert,
) -> Result<DetectionAlert, kube::Error> {
    let body = serde_json::json!({
        "metadata": {
            "resourceVersion": alert.metadata.resource_version,
            "annotations": alert.metadata.annotations,
        },
        "spec": alert.spec,
    });
    alerts
        .patch(name, &PatchParams::default(), &Patch::Merge(&body))
        .await
}

fn pending_message(pending: &PendingAlert) -> String {
    super::message(
        &pending.rule.rule.name,
        pending.rule.rule.display_name.as_deref(),
        &pending.events,
    )
}

fn new_alert(name: &str, pending: &PendingAlert, count: u64) -> DetectionAlert {
    let rule = &pending.rule.rule;
    let first_seen = pending.seen;
    let mut metadata = ObjectMeta {
        name: Some(name.to_string()),
        labels: Some(
            [
                (RULE_LABEL.to_string(), rule_label_value(&rule.name)),
                (
                    SEVERITY_LABEL.to_string(),
                    rule.severity.as_str().to_string(),
                ),
            ]
            .into(),
        ),
        ..ObjectMeta::default()
    };
    set_audit_ids(&mut metadata, &pending.audit_ids());
    DetectionAlert {
        metadata,
        spec: DetectionAlertSpec {
            rule: rule.clone(),
            events: pending.events.clone(),
            first_seen: Time(first_seen),
            last_seen: Time(pending.seen),
            count,
            message: pending_message(pending),
        },
    }
}

/// The IDs of `candidates` not in `known`, each once, in order.
fn distinct_new(known: &[String], candidates: &[String]) -> Vec<String> {
    let mut seen: HashSet<&str> = known.iter().map(String::as_str).collect();
    candidates
        .iter()
        .filter(|id| seen.insert(id.as_str()))
        .cloned()
        .collect()
}

fn audit_ids_of(alert: &DetectionAlert) -> Vec<String> {
    alert
        .metadata
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(AUDIT_IDS_ANNOTATION))
        .and_then(|ids| serde_json::from_str(ids).ok())
        .unwrap_or_else(|| existing_audit_ids(alert))
}

fn existing_audit_ids(alert: &DetectionAlert) -> Vec<String> {
    alert
        .spec
        .events
        .iter()
        .map(|event| event.audit_id.clone())
        .collect()
}

fn set_audit_ids(metadata: &mut ObjectMeta, ids: &[String]) {
    let kept = &ids[ids.len().saturating_sub(AUDIT_IDS_KEPT)..];
    if let Ok(json) = serde_json::to_string(kept) {
        metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(AUDIT_IDS_ANNOTATION.to_string(), json);
    }
}

/// `anonymous-pod-write` → `AnonymousPodWrite`: the Event reason names the detection.
fn event_reason(rule: &str) -> String {
    let reason: String = rule
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    truncate(&reason, 128)
}

fn truncate(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// The audited object, for Events that `kubectl get events -n NS` shows next to it (namespaced objects of
/// well-known kinds; others are referred to through their alert).
fn audited_object(event: &AlertEvent) -> Option<ObjectReference> {
    let object = event.object_ref.as_ref()?;
    let namespace = object.namespace.clone()?;
    let name = object.name.clone()?;
    if object.subresource.is_some() && object.resource.as_deref() != Some("pods") {
        return None;
    }
    let kind = match (
        object.api_group.as_deref().unwrap_or(""),
        object.resource.as_deref()?,
    ) {
        ("", "pods") => "Pod",
        ("", "secrets") => "Secret",
        ("", "configmaps") => "ConfigMap",
        ("", "services") => "Service",
        ("", "serviceaccounts") => "ServiceAccount",
        ("", "persistentvolumeclaims") => "PersistentVolumeClaim",
        ("apps", "deployments") => "Deployment",
        ("apps", "daemonsets") => "DaemonSet",
        ("apps", "statefulsets") => "StatefulSet",
        ("apps", "replicasets") => "ReplicaSet",
        ("batch", "jobs") => "Job",
        ("batch", "cronjobs") => "CronJob",
        ("rbac.authorization.k8s.io", "roles") => "Role",
        ("rbac.authorization.k8s.io", "rolebindings") => "RoleBinding",
        _ => return None,
    };
    let version = object
        .api_version
        .clone()
        .unwrap_or_else(|| "v1".to_string());
    let api_version = match object.api_group.as_deref() {
        Some(group) if !group.is_empty() => format!("{group}/{version}"),
        _ => version,
    };
    Some(ObjectReference {
        api_version: Some(api_version),
        kind: Some(kind.to_string()),
        name: Some(name),
        namespace: Some(namespace),
        uid: object.uid.clone(),
        ..ObjectReference::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{AlertObjectRef, Severity};

    fn pending(
        audit_id: &str,
        stage: &str,
        group: Option<Vec<String>>,
        window: Option<u64>,
    ) -> PendingAlert {
        PendingAlert {
            rule: Arc::new(AlertingRule {
                rule: AlertRule {
                    name: "anonymous-pod-write".into(),
                    rule_id: None,
                    display_name: None,
                    severity: Severity::Medium,
                    risk_score: Some(47),
                    threat: Vec::new(),
                },
                suppression_window: window.map(Duration::from_secs),
            }),
            events: vec![AlertEvent {
                audit_id: audit_id.into(),
                stage: Some(stage.into()),
                ..AlertEvent::default()
            }],
            seen: "2026-12-04T10:00:30Z".parse().unwrap(),
            group,
        }
    }

    #[test]
    fn names_are_deterministic_per_request_and_valid() {
        let received = pending("a1", "RequestReceived", None, None);
        let complete = pending("a1", "ResponseComplete", None, None);
        assert_eq!(
            received.alert_name(),
            complete.alert_name(),
            "both stages of a request share an alert"
        );
        assert_ne!(
            received.alert_name(),
            pending("a2", "RequestReceived", None, None).alert_name()
        );
        let name = received.alert_name();
        assert!(
            name.starts_with("anonymous-pod-write-")
                && name.len() == "anonymous-pod-write-".len() + 16
        );
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
    }

    #[test]
    fn suppressed_matches_share_an_alert_per_group_and_window() {
        let group = Some(vec!["system:anonymous".to_string()]);
        let a = pending("a1", "ResponseComplete", group.clone(), Some(300));
        let b = pending("a2", "ResponseComplete", group.clone(), Some(300));
        assert_eq!(a.alert_name(), b.alert_name());
        let other_group = pending(
            "a3",
            "ResponseComplete",
            Some(vec!["bob".into()]),
            Some(300),
        );
        assert_ne!(a.alert_name(), other_group.alert_name());
        let mut later = pending("a4", "ResponseComplete", group, Some(300));
        later.seen = "2026-12-04T10:05:30Z".parse().unwrap();
        assert_ne!(
            a.alert_name(),
            later.alert_name(),
            "the next window starts a new alert"
        );
    }

    #[test]
    fn the_budget_refuses_bursts_beyond_its_rate() {
        let mut budget = WriteBudget::new(5);
        let granted = (0..20).filter(|_| budget.try_take()).count();
        assert_eq!(granted, 5);
    }

    #[test]
    fn events_regard_the_audited_object() {
        let mut event = AlertEvent {
            object_ref: Some(AlertObjectRef {
                resource: Some("pods".into()),
                namespace: Some("default".into()),
                name: Some("evil".into()),
                api_version: Some("v1".into()),
                uid: Some("u-1".into()),
                ..AlertObjectRef::default()
            }),
            ..AlertEvent::default()
        };
        let reference = audited_object(&event).unwrap();
        assert_eq!(reference.kind.as_deref(), Some("Pod"));
        assert_eq!(reference.api_version.as_deref(), Some("v1"));
        assert_eq!(reference.uid.as_deref(), Some("u-1"));
        event.object_ref.as_mut().unwrap().resource = Some("widgets".into());
        assert!(
            audited_object(&event).is_none(),
            "unknown kinds are referred to through the alert"
        );
        assert_eq!(event_reason("anonymous-pod-write"), "AnonymousPodWrite");
    }
}
