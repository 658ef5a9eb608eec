//! The detection engine: EQL rules compiled against raw audit events (ECS fields resolved at compile time to where
//! they live in the raw event, so no ECS document is built per event), and a `Detector` that feeds every event to
//! every rule and says which matched. Pure: no Kubernetes client, no async runtime, no clock.

use std::collections::VecDeque;
use std::sync::Arc;

use serde_json::Value;

use crate::ecs::{self, RawSource};
use crate::eql::{
    self, CompileOptions, CompiledQuery, FieldAccess, FieldMapper, FieldReader, Node, PlainFields,
    QueryKind, Streamer,
};

/// What the documents handed to the engine are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// Raw `audit.k8s.io/v1` events as the API server writes them; queries name ECS fields.
    Audit,
    /// Documents already in Elastic's `kubernetes.audit_logs` shape; queries read them as they are.
    Ecs,
}

/// Resolves ECS field names onto a raw audit event, reading values exactly as Elasticsearch would read them from
/// the document Elastic's integration makes of that event (empty values are missing, dotted keys, arrays).
struct AuditFields;

impl FieldMapper for AuditFields {
    fn access(&self, field: &str) -> FieldAccess {
        match ecs::raw_source(field) {
            Some(RawSource::Path(path)) => FieldAccess::NonEmptyPath(path),
            Some(RawSource::Constant(value)) => FieldAccess::Constant(value),
            Some(RawSource::Computed(compute)) => FieldAccess::Computed {
                name: field.to_owned(),
                compute,
            },
            // `event.ingested` is the indexing time, which matching never reads (it would make results depend on
            // the clock); like fields the document never has, it reads as missing.
            Some(RawSource::Missing | RawSource::IngestTime) | None => {
                FieldAccess::Constant(Value::Null)
            }
        }
    }
}

/// A query that did not parse or compile; `Display` shows the offending line with a caret.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    Parse(#[from] eql::ParseError),
    #[error("{0}")]
    Compile(#[from] eql::CompileError),
}

/// Parses and compiles one EQL query for documents of `input`.
pub fn compile_query(query: &str, input: Input) -> Result<CompiledQuery, QueryError> {
    let ast = eql::parse(query)?;
    let fields: &dyn FieldMapper = match input {
        Input::Audit => &AuditFields,
        Input::Ecs => &PlainFields,
    };
    let options = CompileOptions {
        fields,
        ..CompileOptions::default()
    };
    Ok(eql::compile(&ast, &options)?)
}

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: Arc<str>,
    pub query: CompiledQuery,
}

/// A rule matched: its index in the detector, and the ids of the matched events (one per sequence stage; `None`
/// for a missing-event stage).
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    pub rule: usize,
    pub events: Vec<Option<u64>>,
}

/// Tells, from a few fields read at most once per event, which rules the event cannot matter to, so that they are
/// not fed it: a rule is skipped only when, for each alternative of its [`CompiledQuery::relevance`] (its filter;
/// each stage of a sequence), some condition (`f == "x"`, `f in (…)`, `f in~ (…)`) is false for the event.
///
/// Only the fields of each alternative's first condition are read for every event; the alternatives whose first
/// condition holds check the rest in order, reading a field when first needed, so a computed field (an annotation,
/// `event.outcome`) is only read for events that got that far, and rules an event cannot start cost nothing.
#[derive(Default)]
pub struct Prefilter {
    fields: Vec<IndexedField>,
    /// The alternatives of every rule that has conditions for each of them.
    alternatives: Vec<Alternative>,
    /// Per rule, whether it is fed every event (no alternative or an alternative without conditions).
    unconditional: Vec<bool>,
    /// Per condition (index into `holds`): its field, and the alternative it is the first condition of.
    conditions: Vec<Condition>,
    /// The fields of first conditions, read for every event.
    first_fields: Vec<usize>,
    /// Which conditions the observed event meets, on the fields read so far.
    holds: Vec<bool>,
    /// Which fields have been read for the observed event.
    read: Vec<bool>,
    /// Which rules the observed event may matter to.
    candidates: Vec<bool>,
}

struct Alternative {
    rule: usize,
    /// Conditions (indexes into `holds`) the event must meet in full, in the order they are checked.
    conditions: Vec<usize>,
}

struct Condition {
    /// Index into `fields`.
    field: usize,
    /// The alternative (index into `alternatives`) this is the first condition of.
    starts: Option<usize>,
}

/// One field read per event, with the conditions on it by the string value that makes them hold.
struct IndexedField {
    field: FieldReader,
    exact: ValueIndex,
    /// Keys folded with `eql::fold_case`, for case-insensitive conditions.
    folded: ValueIndex,
    /// Every condition on the field: all may hold when the field has a non-string value.
    conditions: Vec<usize>,
}

impl Prefilter {
    pub fn new<'a>(queries: impl IntoIterator<Item = &'a CompiledQuery>) -> Self {
        let relevance: Vec<Option<Vec<Vec<eql::RequiredValues>>>> =
            queries.into_iter().map(CompiledQuery::relevance).collect();
        // Prefer the fields most rules test, so that few fields are read per event.
        let mut distinct: Vec<(&FieldReader, usize)> = Vec::new();
        for condition in relevance.iter().flatten().flatten().flatten() {
            match distinct
                .iter_mut()
                .find(|(f, _)| f.same_as(&condition.field))
            {
                Some((_, rules)) => *rules += 1,
                None => distinct.push((&condition.field, 1)),
            }
        }
        let shared = |field: &FieldReader| {
            distinct
                .iter()
                .find(|(f, _)| f.same_as(field))
                .map_or(0, |(_, rules)| *rules)
        };
        let mut prefilter = Prefilter::default();
        for (rule, alternatives) in relevance.iter().enumerate() {
            let alternatives: Vec<Vec<&eql::RequiredValues>> = alternatives
                .iter()
                .flatten()
                .map(|conditions| {
                    // A constant field tells nothing about the event. The others are checked in this order:
                    // fields read by a path before computed ones (dearer), fields other rules test too (likely
                    // read already), then the conditions fewest values meet (likeliest to end the check).
                    let mut chosen: Vec<&eql::RequiredValues> = conditions
                        .iter()
                        .filter(|condition| !condition.field.is_constant())
                        .collect();
                    chosen.sort_by_key(|condition| {
                        (
                            condition.field.is_computed(),
                            std::cmp::Reverse(shared(&condition.field)),
                            condition.values.len(),
                        )
                    });
                    chosen
                })
                .collect();
            let unconditional = alternatives.is_empty() || alternatives.iter().any(Vec::is_empty);
            prefilter.unconditional.push(unconditional);
            if unconditional {
                continue;
            }
            for conditions in alternatives {
                let alternative = prefilter.alternatives.len();
                let ids: Vec<usize> = conditions
                    .into_iter()
                    .map(|condition| prefilter.add(condition))
                    .collect();
                let first = &mut prefilter.conditions[ids[0]];
                first.starts = Some(alternative);
                if !prefilter.first_fields.contains(&first.field) {
                    prefilter.first_fields.push(first.field);
                }
                prefilter.alternatives.push(Alternative {
                    rule,
                    conditions: ids,
                });
            }
        }
        prefilter
    }

    fn add(&mut self, condition: &eql::RequiredValues) -> usize {
        let id = self.holds.len();
        self.holds.push(false);
        let field = match self
            .fields
            .iter()
            .position(|indexed| indexed.field.same_as(&condition.field))
        {
            Some(index) => index,
            None => {
                self.fields.push(IndexedField {
                    field: condition.field.clone(),
                    exact: ValueIndex::default(),
                    folded: ValueIndex::default(),
                    conditions: Vec::new(),
                });
                self.read.push(false);
                self.fields.len() - 1
            }
        };
        self.conditions.push(Condition {
            field,
            starts: None,
        });
        let indexed = &mut self.fields[field];
        indexed.conditions.push(id);
        let by_value = if condition.case_insensitive {
            &mut indexed.folded
        } else {
            &mut indexed.exact
        };
        for value in &condition.values {
            by_value.insert(value, id);
        }
        id
    }

    /// Finds the rules `event` may matter to; [`may_match`](Self::may_match) then answers for it.
    pub fn observe(&mut self, event: &dyn Node) {
        self.read.fill(false);
        self.candidates.clone_from(&self.unconditional);
        for &first_field in &self.first_fields {
            if !self.read[first_field] {
                self.fields[first_field].read(event, &mut self.holds);
                self.read[first_field] = true;
            }
            for &id in &self.fields[first_field].conditions {
                let Some(alternative) = self.conditions[id].starts else {
                    continue;
                };
                let Alternative { rule, conditions } = &self.alternatives[alternative];
                if !self.holds[id] || self.candidates[*rule] {
                    continue;
                }
                let rest_holds = conditions[1..].iter().all(|&id| {
                    let field = self.conditions[id].field;
                    if !self.read[field] {
                        self.fields[field].read(event, &mut self.holds);
                        self.read[field] = true;
                    }
                    self.holds[id]
                });
                self.candidates[*rule] |= rest_holds;
            }
        }
    }

    /// Whether the observed event may matter to rule `index`.
    pub fn may_match(&self, index: usize) -> bool {
        self.candidates
            .get(index)
            .is_none_or(|candidate| *candidate)
    }
}

impl IndexedField {
    /// Sets `holds` for the conditions on this field.
    fn read(&self, event: &dyn Node, holds: &mut [bool]) {
        self.conditions.iter().for_each(|id| holds[*id] = false);
        self.field.any_value(event, |leaf| {
            let Some(text) = leaf.as_str() else {
                self.conditions.iter().for_each(|id| holds[*id] = true);
                return false;
            };
            let exact = self.exact.get(text);
            let folded = match self.folded.is_empty() {
                true => None,
                false => self.folded.get(eql::fold_case(text).as_ref()),
            };
            for id in exact.into_iter().chain(folded).flatten() {
                holds[*id] = true;
            }
            false
        });
    }
}

/// Conditions by value, sorted: a few dozen short strings, searched faster than hashed.
#[derive(Default)]
struct ValueIndex(Vec<(String, Vec<usize>)>);

/// Orders by length first: most comparisons of a search end there, without comparing bytes.
fn by_length_then_bytes(key: &str, value: &str) -> std::cmp::Ordering {
    key.len().cmp(&value.len()).then_with(|| key.cmp(value))
}

impl ValueIndex {
    fn insert(&mut self, value: &str, condition: usize) {
        match self
            .0
            .binary_search_by(|(key, _)| by_length_then_bytes(key, value))
        {
            Ok(at) => self.0[at].1.push(condition),
            Err(at) => self.0.insert(at, (value.to_owned(), vec![condition])),
        }
    }

    fn get(&self, value: &str) -> Option<&Vec<usize>> {
        self.0
            .binary_search_by(|(key, _)| by_length_then_bytes(key, value))
            .ok()
            .map(|at| &self.0[at].1)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Feeds events, in arrival order, to every rule; owns the sequence state.
#[derive(Default)]
pub struct Detector {
    rules: Vec<(Rule, Streamer)>,
    prefilter: Prefilter,
    holds_last_event: bool,
}

impl Detector {
    /// Fails with the first rule that cannot run on a stream (`| tail`, `sample`), naming it.
    pub fn new(rules: Vec<Rule>) -> Result<Self, (Arc<str>, eql::CompileError)> {
        let rules = rules
            .into_iter()
            .map(|rule| match rule.query.streamer() {
                Ok(streamer) => Ok((rule, streamer)),
                Err(error) => Err((rule.name.clone(), error)),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let prefilter = Prefilter::new(rules.iter().map(|(rule, _)| &rule.query));
        Ok(Detector {
            rules,
            prefilter,
            holds_last_event: false,
        })
    }

    /// Swaps in a new set of rules between two events. A rule whose compiled query is the same as before (same
    /// name, same compilation) keeps its sequence state; the others start afresh.
    pub fn replace_rules(&mut self, rules: Vec<Rule>) -> Result<(), (Arc<str>, eql::CompileError)> {
        let mut previous = std::mem::take(&mut self.rules);
        let mut replaced = Vec::with_capacity(rules.len());
        for rule in rules {
            let kept = previous.iter().position(|(old, _)| {
                old.name == rule.name && old.query.is_same_compilation(&rule.query)
            });
            let streamer = match kept {
                Some(at) => previous.swap_remove(at).1,
                None => rule
                    .query
                    .streamer()
                    .map_err(|error| (rule.name.clone(), error))?,
            };
            replaced.push((rule, streamer));
        }
        self.prefilter = Prefilter::new(replaced.iter().map(|(rule, _)| &rule.query));
        self.rules = replaced;
        Ok(())
    }

    /// Whether an open sequence holds the event last observed, so that a match found later may name it. Callers
    /// keeping per-event data for such matches need it for these events only.
    pub fn holds_last_event(&self) -> bool {
        self.holds_last_event
    }

    pub fn rule(&self, index: usize) -> &Rule {
        &self.rules[index].0
    }

    /// The smallest id of an event that a still-open sequence of any rule holds: state a restart must rebuild by
    /// reading again from that event. `None` when no sequence is open.
    pub fn oldest_held_event(&self) -> Option<u64> {
        self.rules
            .iter()
            .filter_map(|(_, streamer)| streamer.oldest_held_event())
            .min()
    }

    /// The events open sequences of any rule hold, sorted, each once: the only earlier events a later match can
    /// name.
    pub fn held_events(&self) -> Vec<u64> {
        let mut held: Vec<u64> = self
            .rules
            .iter()
            .flat_map(|(_, streamer)| streamer.held_events())
            .collect();
        held.sort_unstable();
        held.dedup();
        held
    }

    /// Evaluates one event against every rule.
    pub fn observe(&mut self, id: u64, event: &dyn Node) -> Vec<Match> {
        let mut matches = Vec::new();
        self.holds_last_event = false;
        self.prefilter.observe(event);
        for (index, (rule, streamer)) in self.rules.iter_mut().enumerate() {
            if !self.prefilter.may_match(index) {
                continue;
            }
            if rule.query.kind() == QueryKind::Event && !rule.query.has_pipes() {
                // The common case needs no state: a plain filter.
                if rule.query.matches(event) {
                    matches.push(Match {
                        rule: index,
                        events: vec![Some(id)],
                    });
                }
                continue;
            }
            matches.extend(streamer.push(id, event).into_iter().map(|hit| Match {
                rule: index,
                events: hit.events,
            }));
            self.holds_last_event |= streamer.holds_last();
        }
        matches
    }
}

/// Once this many events are kept, they are pruned to those open sequences still hold (then at twice what is left).
pub(crate) const PRUNE_AT_LEAST: usize = 4096;

/// What a caller keeps of the events open sequences hold (alert metadata, where they were read), so that a later
/// sequence match can name them: pruned of events no open sequence holds any more as it grows, and bounded.
pub struct HeldEvents<T> {
    /// Ascending by event id.
    events: VecDeque<(u64, T)>,
    prune_at: usize,
    limit: usize,
}

impl<T> HeldEvents<T> {
    /// Keeps at most `limit` events (the oldest go first), for sequences that hold more without a `maxspan`.
    pub fn new(limit: usize) -> Self {
        HeldEvents {
            events: VecDeque::new(),
            prune_at: PRUNE_AT_LEAST,
            limit,
        }
    }

    /// Keeps `data` for event `id`, which `detector` observed last and [holds](Detector::holds_last_event).
    pub fn keep(&mut self, detector: &Detector, id: u64, data: T) {
        self.events.push_back((id, data));
        if self.events.len() >= self.prune_at {
            // Asking the detector walks its open sequences: amortised over as many events as are left.
            let held = detector.held_events();
            self.events.retain(|(id, _)| held.binary_search(id).is_ok());
            self.prune_at = (2 * self.events.len()).max(PRUNE_AT_LEAST);
        }
        while self.events.len() > self.limit {
            self.events.pop_front();
        }
    }

    pub fn get(&self, id: u64) -> Option<&T> {
        // Ids grow with each event: kept in order.
        let at = self
            .events
            .binary_search_by_key(&id, |(kept, _)| *kept)
            .ok()?;
        self.events.get(at).map(|(_, data)| data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn audit(username: &str, verb: &str, resource: &str) -> Value {
        json!({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Request", "auditID": "x",
            "stage": "ResponseComplete", "verb": verb, "user": {"username": username},
            "objectRef": {"resource": resource, "namespace": "default", "apiGroup": ""},
            "sourceIPs": ["10.1.2.3"], "stageTimestamp": "2026-12-04T10:00:00.000000Z",
            "annotations": {"authorization.k8s.io/decision": "allow"}
        })
    }

    #[test]
    fn ecs_fields_read_the_raw_event() {
        let query = compile_query(
            r#"any where data_stream.dataset == "kubernetes.audit_logs" and event.action == "create"
               and user.name == "system:anonymous" and kubernetes.audit.objectRef.resource == "pods"
               and `kubernetes.audit.annotations.authorization_k8s_io/decision` == "allow"
               and event.outcome == "success" and source.ip == "10.1.2.3""#,
            Input::Audit,
        )
        .unwrap();
        assert!(query.matches(&audit("system:anonymous", "create", "pods")));
        assert!(!query.matches(&audit("alice", "create", "pods")));
    }

    #[test]
    fn empty_raw_values_are_missing_as_in_the_elastic_document() {
        // The integration drops "" values, so `== ""` never matches and `== null` does.
        let equals_empty = compile_query(
            r#"any where kubernetes.audit.user.username == """#,
            Input::Audit,
        )
        .unwrap();
        let is_null = compile_query(
            "any where kubernetes.audit.user.username == null",
            Input::Audit,
        )
        .unwrap();
        let not_empty = compile_query(
            r#"any where kubernetes.audit.user.username != """#,
            Input::Audit,
        )
        .unwrap();
        let empty_user = audit("", "create", "pods");
        assert!(!equals_empty.matches(&empty_user));
        assert!(is_null.matches(&empty_user));
        assert!(
            not_empty.matches(&empty_user),
            "missing fields satisfy != as Lucene's must_not does"
        );
        // The empty `objectRef.apiGroup` is missing too.
        let group = compile_query(
            "any where kubernetes.audit.objectRef.apiGroup == null",
            Input::Audit,
        )
        .unwrap();
        assert!(group.matches(&empty_user));
    }

    #[test]
    fn ecs_input_reads_documents_as_they_are() {
        let query = compile_query(r#"any where user.name == "bob""#, Input::Ecs).unwrap();
        assert!(query.matches(&json!({"user": {"name": "bob"}})));
        assert!(
            !query.matches(&audit("bob", "get", "pods")),
            "raw events have no user.name"
        );
    }

    /// A user's `get` followed within a minute by their `delete`.
    fn get_then_delete() -> Rule {
        Rule {
            name: "get-then-delete".into(),
            query: compile_query(
                r#"sequence by user.name with maxspan=1m
                     [any where event.action == "get"] [any where event.action == "delete"]"#,
                Input::Audit,
            )
            .unwrap(),
        }
    }

    #[test]
    fn detector_reports_event_and_sequence_matches() {
        let rules = vec![
            Rule {
                name: "exec".into(),
                query: compile_query(
                    r#"any where kubernetes.audit.verb == "create""#,
                    Input::Audit,
                )
                .unwrap(),
            },
            get_then_delete(),
        ];
        let mut detector = Detector::new(rules).unwrap();
        assert_eq!(
            detector.observe(1, &audit("alice", "create", "pods")),
            vec![Match {
                rule: 0,
                events: vec![Some(1)]
            }]
        );
        assert!(
            detector
                .observe(2, &audit("bob", "get", "secrets"))
                .is_empty()
        );
        assert!(
            detector
                .observe(3, &audit("alice", "delete", "secrets"))
                .is_empty(),
            "different user"
        );
        let matches = detector.observe(4, &audit("bob", "delete", "secrets"));
        assert_eq!(
            matches,
            vec![Match {
                rule: 1,
                events: vec![Some(2), Some(4)]
            }]
        );
        assert_eq!(&*detector.rule(1).name, "get-then-delete");
    }

    #[test]
    fn replacing_rules_keeps_the_state_of_unchanged_ones() {
        let sequence = get_then_delete();
        let creates = Rule {
            name: "creates".into(),
            query: compile_query(r#"any where event.action == "create""#, Input::Audit).unwrap(),
        };
        let mut detector = Detector::new(vec![sequence.clone()]).unwrap();
        detector.observe(1, &audit("bob", "get", "secrets"));
        // Another rule arrives: the open sequence survives, and the new rule is evaluated.
        detector
            .replace_rules(vec![creates.clone(), sequence.clone()])
            .unwrap();
        assert_eq!(detector.oldest_held_event(), Some(1));
        let matches = detector.observe(2, &audit("bob", "delete", "secrets"));
        assert_eq!(
            matches,
            vec![Match {
                rule: 1,
                events: vec![Some(1), Some(2)]
            }]
        );
        assert_eq!(
            detector.observe(3, &audit("bob", "create", "pods")).len(),
            1
        );
        // A recompiled (edited) rule starts afresh.
        detector.observe(4, &audit("bob", "get", "secrets"));
        // Compiled again: the same text, another compilation.
        let edited = get_then_delete();
        detector.replace_rules(vec![edited]).unwrap();
        assert_eq!(detector.oldest_held_event(), None);
    }

    #[test]
    fn open_sequences_hold_their_first_event() {
        let rules = vec![get_then_delete()];
        let mut detector = Detector::new(rules).unwrap();
        assert_eq!(detector.oldest_held_event(), None);
        detector.observe(7, &audit("bob", "get", "secrets"));
        assert!(detector.holds_last_event());
        detector.observe(8, &audit("alice", "get", "secrets"));
        assert_eq!(detector.oldest_held_event(), Some(7));
        assert_eq!(detector.held_events(), [7, 8]);
        assert_eq!(
            detector
                .observe(9, &audit("bob", "delete", "secrets"))
                .len(),
            1
        );
        assert_eq!(
            detector.oldest_held_event(),
            Some(8),
            "bob's sequence completed; alice's is still open"
        );
        assert_eq!(detector.held_events(), [8]);
        detector.observe(10, &audit("alice", "delete", "secrets"));
        assert_eq!(detector.oldest_held_event(), None);
        assert!(
            !detector.holds_last_event(),
            "a completed sequence no longer holds its events"
        );
        detector.observe(11, &audit("carol", "list", "secrets"));
        assert!(detector.held_events().is_empty(), "no stage passed");
        assert!(!detector.holds_last_event());
    }

    #[test]
    fn held_events_keep_what_open_sequences_hold_and_no_more_than_their_limit() {
        let mut detector = Detector::new(vec![get_then_delete()]).unwrap();
        let mut kept = HeldEvents::new(usize::MAX);
        // Each get by bob replaces his pending sequence: only the last one stays held.
        for id in 0..PRUNE_AT_LEAST as u64 + 10 {
            detector.observe(id, &audit("bob", "get", "secrets"));
            kept.keep(&detector, id, format!("bob {id}"));
        }
        let last = PRUNE_AT_LEAST as u64 + 9;
        assert_eq!(kept.get(last), Some(&format!("bob {last}")));
        assert_eq!(kept.get(0), None, "pruned once no sequence held it");
        // Pruned when 4096 were kept (one left), then 10 more.
        assert_eq!(kept.events.len(), 11);

        let mut bounded = HeldEvents::new(2);
        for id in 0..3 {
            detector.observe(100 + id, &audit(&format!("user-{id}"), "get", "secrets"));
            bounded.keep(&detector, 100 + id, id);
        }
        assert_eq!(
            [100, 101, 102].map(|id| bounded.get(id).copied()),
            [None, Some(1), Some(2)]
        );
    }

    #[test]
    fn the_prefilter_reads_computed_fields_only_for_events_that_get_that_far() {
        /// Plain fields, and `computed`, which counts its reads.
        struct Counting(Arc<std::sync::atomic::AtomicUsize>);
        impl FieldMapper for Counting {
            fn access(&self, field: &str) -> FieldAccess {
                if field != "computed" {
                    return PlainFields.access(field);
                }
                let reads = self.0.clone();
                FieldAccess::Computed {
                    name: field.to_owned(),
                    compute: Arc::new(move |doc: &dyn Node| {
                        reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        std::borrow::Cow::Owned(doc.get("c").map_or(Value::Null, Node::to_json))
                    }),
                }
            }
        }
        let reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mapper = Counting(reads.clone());
        let options = CompileOptions {
            fields: &mapper,
            ..CompileOptions::default()
        };
        let compile = |query: &str| eql::compile(&eql::parse(query).unwrap(), &options).unwrap();
        let queries = [
            compile(r#"any where computed == "x" and verb == "delete""#),
            compile(
                r#"sequence [any where verb == "get" and computed == "y"] [any where verb == "list"]"#,
            ),
            compile(r#"any where verb != "get""#),
        ];
        let mut prefilter = Prefilter::new(&queries);
        let mut fed = |event: Value| {
            prefilter.observe(&event);
            (0..queries.len())
                .map(|rule| prefilter.may_match(rule))
                .collect::<Vec<_>>()
        };
        // The path condition on `verb` is checked first: `computed` is read once, and only when a verb fits.
        assert_eq!(
            fed(json!({"verb": "watch", "c": "x"})),
            [false, false, true]
        );
        assert_eq!(reads.load(std::sync::atomic::Ordering::Relaxed), 0);
        assert_eq!(
            fed(json!({"verb": "delete", "c": "x"})),
            [true, false, true]
        );
        assert_eq!(fed(json!({"verb": "get", "c": "x"})), [false, false, true]);
        assert_eq!(fed(json!({"verb": "get", "c": "y"})), [false, true, true]);
        assert_eq!(fed(json!({"verb": "list"})), [false, true, true]);
        assert_eq!(reads.load(std::sync::atomic::Ordering::Relaxed), 3);
        // A non-string value may still meet a condition (`1 == "1"`): it rules nothing out.
        assert_eq!(fed(json!({"verb": 7, "c": 7})), [true, true, true]);
    }

    #[test]
    fn rules_that_cannot_stream_are_named() {
        let rules = vec![Rule {
            name: "last".into(),
            query: compile_query("any where true | tail 1", Input::Audit).unwrap(),
        }];
        let Err((name, error)) = Detector::new(rules) else {
            panic!("tail accepted on a stream");
        };
        assert_eq!(&*name, "last");
        assert!(error.to_string().contains("tail"), "{error}");
    }
}
