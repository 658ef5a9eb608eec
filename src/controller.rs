//! The Kubernetes edge of rules: watch DetectionRules, compile each into the running engine (swapped in through a
//! watch channel, never restarting anything), and — on the one vigil pod holding the Lease — write rule status
//! (Ready, matchCount and lastMatchTime derived from the alerts, so every pod's matches are counted once) and apply
//! alert retention.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::runtime::utils::Backoff;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::alert::writer::AlertingRule;
use crate::crd::{AlertRule, DetectionAlert, DetectionRule, Language};
use crate::ecs::{self, RawSource};
use crate::engine::{self, Input};
use crate::eql::CompiledQuery;
use crate::metrics::Metrics;

pub const FIELD_MANAGER: &str = "vigil";

/// A rule the engine evaluates.
pub struct ActiveRule {
    pub name: String,
    /// metadata.generation: a new one means a new query, so fresh sequence state.
    pub generation: i64,
    pub query: CompiledQuery,
    pub alerting: Arc<AlertingRule>,
    /// Where the suppression's groupBy fields live in the raw event.
    pub group_by: Vec<RawSource>,
}

/// Why a rule is not evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleProblem {
    /// `InvalidQuery` or `Unsupported`.
    pub reason: &'static str,
    pub message: String,
}

/// Everything the controller knows about the rules at one moment.
#[derive(Default)]
pub struct RuleBook {
    /// Enabled rules that compiled, by name.
    pub active: BTreeMap<String, Arc<ActiveRule>>,
    /// Per rule: its generation, and its problem if it has one.
    pub states: BTreeMap<String, (i64, Option<RuleProblem>)>,
    /// Whether the initial list of rules has been read.
    pub synced: bool,
}

/// Compiles one rule for the operator: EQL only, and only what can be evaluated on a stream.
pub fn activate(rule: &DetectionRule) -> Result<ActiveRule, RuleProblem> {
    let name = rule.name_any();
    let spec = &rule.spec;
    if spec.language != Language::Eql {
        return Err(RuleProblem {
            reason: "Unsupported",
            message: format!(
                "language {} is not supported yet (vigil evaluates eql)",
                spec.language.as_str()
            ),
        });
    }
    let query = engine::compile_query(&spec.query, Input::Audit).map_err(|error| RuleProblem {
        reason: "InvalidQuery",
        message: error.to_string(),
    })?;
    // An open sequence holds the checkpoint back (a restart must read its events again): maxspan bounds how far.
    if let Ok(ast) = crate::eql::parse(&spec.query)
        && let crate::eql::ast::QueryBody::Sequence(sequence) = &ast.body
        && sequence.maxspan.is_none()
    {
        return Err(RuleProblem {
            reason: "Unsupported",
            message: "a sequence needs `with maxspan=…` in vigil run: an open sequence holds the audit log \
                      checkpoint back, and maxspan bounds how far"
                .to_string(),
        });
    }
    if let Err(error) = query.streamer() {
        return Err(RuleProblem {
            reason: "Unsupported",
            message: format!(
                "{error}\n(a live audit stream has no end: `tail` and `sample` need one)"
            ),
        });
    }
    let suppression_window = match &spec.suppression {
        Some(suppression) => {
            Some(
                parse_duration(&suppression.window).ok_or_else(|| RuleProblem {
                    reason: "InvalidQuery",
                    message: format!(
                        "suppression.window {:?} is not a duration like 5m",
                        suppression.window
                    ),
                })?,
            )
        }
        None => None,
    };
    let mut group_by = Vec::new();
    for field in spec.suppression.iter().flat_map(|s| &s.group_by) {
        group_by.push(ecs::raw_source(field).ok_or_else(|| RuleProblem {
            reason: "InvalidQuery",
            message: format!(
                "suppression.groupBy field {field:?} is not a field of the audit document"
            ),
        })?);
    }
    Ok(ActiveRule {
        generation: rule.metadata.generation.unwrap_or_default(),
        alerting: Arc::new(AlertingRule {
            rule: AlertRule {
                name: name.clone(),
                rule_id: spec.rule_id.clone(),
                display_name: spec.display_name.clone(),
                severity: spec.severity,
                risk_score: spec.risk_score,
                threat: spec.threat.clone(),
            },
            suppression_window,
        }),
        name,
        query,
        group_by,
    })
}

/// `30s`, `5m`, `1h`, `2d`, `500ms`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let seconds = match unit {
        "ms" => return Some(Duration::from_millis(number)),
        "s" => number,
        "m" => number.checked_mul(60)?,
        "h" => number.checked_mul(3600)?,
        "d" => number.checked_mul(86_400)?,
        _ => return None,
    };
    Some(Duration::from_secs(seconds))
}

/// Backoff of vigil's watches: from 0.5 s doubling to at most 5 s, so that after an API server outage rules,
/// alerts and status catch up within seconds (kube's default follows client-go up to 30 s plus jitter).
pub struct WatchBackoff {
    next: Duration,
}

impl WatchBackoff {
    const FIRST: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(5);
}

impl Default for WatchBackoff {
    fn default() -> Self {
        WatchBackoff { next: Self::FIRST }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        Some(delay)
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

/// Watches DetectionRules and publishes a new RuleBook on every change; reuses compiled rules whose generation did
/// not change (so their sequence state survives other rules' edits).
pub async fn watch_rules(
    client: Client,
    rule_book: watch::Sender<Arc<RuleBook>>,
    metrics: Metrics,
) {
    let api: Api<DetectionRule> = Api::all(client);
    let mut rules: HashMap<String, DetectionRule> = HashMap::new();
    let mut initial: HashMap<String, DetectionRule> = HashMap::new();
    let mut synced = false;
    let mut stream = watcher(api, watcher::Config::default())
        .backoff(WatchBackoff::default())
        .boxed();
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Apply(rule)) => {
                rules.insert(rule.name_any(), rule);
            }
            Ok(watcher::Event::Delete(rule)) => {
                rules.remove(&rule.name_any());
            }
            Ok(watcher::Event::Init) => {
                initial.clear();
                continue;
            }
            Ok(watcher::Event::InitApply(rule)) => {
                initial.insert(rule.name_any(), rule);
                continue;
            }
            Ok(watcher::Event::InitDone) => {
                rules = std::mem::take(&mut initial);
                synced = true;
            }
            Err(error) => {
                metrics.api_error("watch_rules");
                warn!(%error, "watching DetectionRules failed; retrying");
                continue;
            }
        }
        let previous = rule_book.borrow().clone();
        let book = build_rule_book(&rules, &previous, synced);
        metrics
            .invalid_rules
            .set(book.states.values().filter(|(_, p)| p.is_some()).count() as i64);
        rule_book.send_replace(Arc::new(book));
    }
}

fn build_rule_book(
    rules: &HashMap<String, DetectionRule>,
    previous: &RuleBook,
    synced: bool,
) -> RuleBook {
    let mut book = RuleBook {
        synced,
        ..RuleBook::default()
    };
    for (name, rule) in rules {
        let generation = rule.metadata.generation.unwrap_or_default();
        if let Some(active) = previous
            .active
            .get(name)
            .filter(|a| a.generation == generation)
        {
            book.active.insert(name.clone(), active.clone());
            book.states.insert(name.clone(), (generation, None));
            continue;
        }
        match activate(rule) {
            Ok(active) => {
                info!(rule = %name, generation, enabled = rule.spec.enabled, "rule compiled");
                if rule.spec.enabled {
                    book.active.insert(name.clone(), Arc::new(active));
                }
                book.states.insert(name.clone(), (generation, None));
            }
            Err(problem) => {
                warn!(rule = %name, reason = problem.reason, "rule not evaluated: {}", problem.message);
                book.states
                    .insert(name.clone(), (generation, Some(problem)));
            }
        }
    }
    // A disabled rule is compiled (so its status says whether it would work) but not evaluated.
    book.active
        .retain(|name, _| rules.get(name).is_some_and(|rule| rule.spec.enabled));
    book
}

/// What the leader last wrote to a rule's status, to write only changes.
#[derive(PartialEq)]
struct WrittenStatus {
    generation: i64,
    problem: Option<RuleProblem>,
    match_count: u64,
    last_match: Option<Timestamp>,
}

/// On the leader: writes rule status (batched, every `interval`) and applies retention.
pub async fn lead(
    client: Client,
    rule_book: watch::Receiver<Arc<RuleBook>>,
    alerts: Store<DetectionAlert>,
    metrics: Metrics,
    retention: Retention,
    interval: Duration,
) {
    let rules: Api<DetectionRule> = Api::all(client.clone());
    let alert_api: Api<DetectionAlert> = Api::all(client);
    let mut written: HashMap<String, WrittenStatus> = HashMap::new();
    let mut ticker = tokio::time::interval(interval);
    loop {
        ticker.tick().await;
        let book = rule_book.borrow().clone();
        if !book.synced {
            continue;
        }
        let listed = alerts.state();
        let mut totals: HashMap<&str, (u64, Option<Timestamp>)> = HashMap::new();
        for alert in &listed {
            let total = totals.entry(alert.spec.rule.name.as_str()).or_default();
            total.0 += alert.spec.count;
            total.1 = total.1.max(Some(alert.spec.last_seen.0));
        }
        for (name, (generation, problem)) in &book.states {
            let (match_count, last_match) = totals.get(name.as_str()).copied().unwrap_or_default();
            let status = WrittenStatus {
                generation: *generation,
                problem: problem.clone(),
                match_count,
                last_match,
            };
            if written.get(name) == Some(&status) {
                continue;
            }
            match write_status(&rules, name, &status).await {
                Ok(()) => {
                    written.insert(name.clone(), status);
                }
                Err(error) => {
                    metrics.api_error("patch_rule_status");
                    warn!(rule = %name, %error, "writing rule status failed; will retry");
                }
            }
        }
        written.retain(|name, _| book.states.contains_key(name));
        retention.apply(&alert_api, &listed, &metrics).await;
    }
}

async fn write_status(
    rules: &Api<DetectionRule>,
    name: &str,
    status: &WrittenStatus,
) -> Result<(), kube::Error> {
    let (condition_status, reason, message) = match &status.problem {
        None => (
            "True",
            "Compiled",
            "the query compiled and is evaluated on every audit event".to_string(),
        ),
        Some(problem) => ("False", problem.reason, problem.message.clone()),
    };
    // Keep the transition time when the condition's status did not change.
    let current = rules.get_opt(name).await?;
    let Some(current) = current else {
        return Ok(());
    };
    let previous = current
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .filter(|c| c.status == condition_status)
        .map(|c| c.last_transition_time.clone());
    let condition = Condition {
        type_: "Ready".to_string(),
        status: condition_status.to_string(),
        reason: reason.to_string(),
        message,
        observed_generation: Some(status.generation),
        last_transition_time: previous.unwrap_or(Time(Timestamp::now())),
    };
    let mut body = json!({
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "DetectionRule",
        "status": {
            "conditions": [condition],
            "observedGeneration": status.generation,
            "matchCount": status.match_count,
        }
    });
    if let Some(last) = status.last_match {
        body["status"]["lastMatchTime"] = json!(Time(last));
    }
    rules
        .patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await?;
    Ok(())
}

/// Alerts by creation. Creation times have a resolution of one second: alerts created within one are ordered by
/// their first event.
fn oldest_first(alerts: &[Arc<DetectionAlert>]) -> Vec<Arc<DetectionAlert>> {
    let mut alerts = alerts.to_vec();
    alerts.sort_by_key(|alert| {
        (
            alert.metadata.creation_timestamp.as_ref().map(|t| t.0),
            alert.spec.first_seen.0,
        )
    });
    alerts
}

/// `--alert-max-count` and `--alert-max-age`: the oldest alerts are removed first.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub max_count: usize,
    pub max_age: Duration,
}

impl Retention {
    async fn apply(
        &self,
        alerts: &Api<DetectionAlert>,
        listed: &[Arc<DetectionAlert>],
        metrics: &Metrics,
    ) {
        let listed = oldest_first(listed);
        let cutoff = SignedDuration::try_from(self.max_age)
            .ok()
            .and_then(|age| Timestamp::now().checked_sub(age).ok());
        let excess = listed.len().saturating_sub(self.max_count);
        for (index, alert) in listed.iter().enumerate() {
            let created = alert.metadata.creation_timestamp.as_ref().map(|t| t.0);
            let too_old =
                matches!((created, cutoff), (Some(created), Some(cutoff)) if created < cutoff);
            if index >= excess && !too_old {
                continue;
            }
            match alerts
                .delete(&alert.name_any(), &DeleteParams::default())
                .await
            {
                Ok(_) => {
                    metrics.alerts_deleted.inc();
                }
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => {
                    metrics.api_error("delete_alert");
                    warn!(alert = %alert.name_any(), %error, "retention could not delete an alert");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::DetectionRuleSpec;

    fn rule(name: &str, query: &str, generation: i64) -> DetectionRule {
        let spec: DetectionRuleSpec = serde_json::from_value(json!({ "query": query })).unwrap();
        let mut rule = DetectionRule::new(name, spec);
        rule.metadata.generation = Some(generation);
        rule
    }

    #[test]
    fn watches_back_off_up_to_five_seconds_and_reset() {
        let mut backoff = WatchBackoff::default();
        let delays: Vec<u64> = backoff
            .by_ref()
            .take(6)
            .map(|d| d.as_millis() as u64)
            .collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 5000, 5000]);
        backoff.reset();
        assert_eq!(backoff.next(), Some(Duration::from_millis(500)));
    }

    #[test]
    fn alerts_created_in_one_second_are_ordered_by_their_first_event() {
        let alert = |name: &str, created: &str, first_seen: &str| {
            let alert: DetectionAlert = serde_json::from_value(json!({
                "apiVersion": "vigil.dev/v1alpha1", "kind": "DetectionAlert",
                "metadata": {"name": name, "creationTimestamp": created},
                "spec": {
                    "rule": {"name": "r", "severity": "low"}, "events": [{"auditID": name}],
                    "firstSeen": first_seen, "lastSeen": first_seen, "count": 1, "message": "m"
                }
            }))
            .unwrap();
            Arc::new(alert)
        };
        let listed = [
            alert("c", "2026-12-04T10:00:01Z", "2026-12-04T10:00:00.100Z"),
            alert("b", "2026-12-04T10:00:00Z", "2026-12-04T09:59:59.900Z"),
            alert("a", "2026-12-04T10:00:00Z", "2026-12-04T09:59:59.950Z"),
        ];
        let names: Vec<String> = oldest_first(&listed)
            .iter()
            .map(|alert| alert.name_any())
            .collect();
        assert_eq!(names, ["b", "a", "c"]);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2d"), Some(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("m"), None);
    }

    #[test]
    fn invalid_and_unsupported_rules_say_why_without_affecting_others() {
        let rules: HashMap<String, DetectionRule> = [
            rule("good", r#"any where event.action == "create""#, 1),
            rule("broken", "any where event.action ==", 1),
            rule("tail", "any where true | tail 1", 1),
            rule("unbounded", "sequence [any where true] [any where true]", 1),
        ]
        .into_iter()
        .map(|r| (r.name_any(), r))
        .collect();
        let book = build_rule_book(&rules, &RuleBook::default(), true);
        assert_eq!(book.active.keys().collect::<Vec<_>>(), ["good"]);
        let broken = book.states["broken"].1.as_ref().unwrap();
        assert_eq!(broken.reason, "InvalidQuery");
        assert!(
            broken.message.contains("line 1, column"),
            "{}",
            broken.message
        );
        assert_eq!(
            book.states["tail"].1.as_ref().unwrap().reason,
            "Unsupported"
        );
    }

    #[test]
    fn unchanged_rules_are_reused_and_disabled_rules_not_evaluated() {
        let mut rules: HashMap<String, DetectionRule> =
            [("a".to_string(), rule("a", "any where true", 1))].into();
        let first = build_rule_book(&rules, &RuleBook::default(), true);
        let second = build_rule_book(&rules, &first, true);
        assert!(
            Arc::ptr_eq(&first.active["a"], &second.active["a"]),
            "same generation, same compiled rule"
        );
        let mut disabled = rule("a", "any where true", 2);
        disabled.spec.enabled = false;
        rules.insert("a".into(), disabled);
        let third = build_rule_book(&rules, &second, true);
        assert!(third.active.is_empty());
        assert_eq!(third.states["a"], (2, None));
    }
}
