//! Elastic EQL engine: parses Elasticsearch EQL and evaluates it on JSON documents with Elasticsearch's
//! semantics (verified against ES' own EQL QA suite, see `tests/eql_conformance.rs`).
//!
//! ```text
//! parse(&str) -> Result<ast::Query, ParseError>
//! compile(&ast::Query, &CompileOptions) -> Result<CompiledQuery, CompileError>
//! CompileOptions { fields: &dyn FieldMapper, timestamp_field, tiebreaker_field, event_category_field }
//!     (CompileOptions::default(): PlainFields, "@timestamp", no tiebreaker, "event.category")
//! FieldMapper::access(&str) -> FieldAccess::{Path, NonEmptyPath, Constant, Computed { name, compute }}
//! Node: how documents are read (serde_json::Value implements it; callers may bring their own)
//! CompiledQuery::kind() -> QueryKind::{Event, Sequence, Sample}; has_pipes() -> bool
//! CompiledQuery::matches(&dyn Node) -> bool                      event queries: does one document match
//! CompiledQuery::search(&[Json], Option<usize>) -> Vec<Hit> batch search in ES result order, pipes applied
//! CompiledQuery::streamer() -> Result<Streamer, CompileError> (refuses `tail` and `sample`)
//! Streamer::push(u64, &dyn Node) -> Vec<StreamHit>            documents in arrival order
//! Streamer::holds_last() -> bool; held_events()              does an open sequence hold the last document; which ones
//! Streamer::oldest_held_event() -> Option<u64>                 earliest event an open sequence still holds
//! CompiledQuery::fields() -> &[String]                        every field the query reads (query names)
//! CompiledQuery::fields_streamed() -> &[String]               those a Streamer reads (no timestamp for event queries)
//! CompiledQuery::relevance() -> Option<Vec<Vec<RequiredValues>>> which documents can change a query's results
//! Hit { events: Vec<Option<usize>>, join_keys: Vec<Json> }    None = a missing-event (`![…]`) stage
//! ParseError / CompileError wrap a Diagnostic whose Display shows the line with a `^^^` caret.
//! ```
//!
//! Semantics in short: a field compared with constants behaves like the Lucene query ES generates (missing
//! field: `==` false, `!=` true; multi-values: any value), expressions with functions behave like ES scripts
//! (null propagates and never matches); dotted keys and nested objects are the same field.

pub mod ast;
mod error;
mod expr;
mod field;
mod functions;
mod lexer;
mod node;
mod parser;
mod pattern;
mod plan;
mod sequence;
mod time;
mod value;

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value as Json;

pub use error::{CompileError, Diagnostic, ParseError, Span};
pub use expr::fold_case;
pub use field::{ComputeField, FieldAccess, FieldMapper, PlainFields};
pub use node::{Kind, Node};
pub use plan::CompileOptions;

use ast::Pipe;
use field::ResolvedField;
use plan::{Body, JoinKey, KeyPart, Plan, SamplePlan};
use sequence::{Completed, SequenceMatcher};

/// Parses EQL query text.
pub fn parse(source: &str) -> Result<ast::Query, ParseError> {
    parser::parse_query(source)
}

/// Compiles a parsed query: resolves fields through `options.fields`, prebuilds matchers, checks functions.
pub fn compile(
    query: &ast::Query,
    options: &CompileOptions,
) -> Result<CompiledQuery, CompileError> {
    Ok(CompiledQuery {
        plan: Arc::new(plan::compile_plan(query, options)?),
        source: query.source.clone(),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    Event,
    Sequence,
    Sample,
}

/// One search result: the matching document indexes (one for an event query, one per stage otherwise).
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// `None` stands for a missing-event stage (ES returns a placeholder there).
    pub events: Vec<Option<usize>>,
    /// The join key values of a sequence or sample (empty for event queries).
    pub join_keys: Vec<Json>,
}

/// A hit found while streaming; event ids are the caller's.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamHit {
    pub events: Vec<Option<u64>>,
    pub join_keys: Vec<Json>,
}

/// A condition every document an event query matches meets, for skipping queries without evaluating them: some
/// leaf of `field` is not a string, or is a string that is one of `values` (after [`fold_case`] when
/// `case_insensitive`; `values` are folded already).
#[derive(Debug, Clone)]
pub struct RequiredValues {
    pub field: FieldReader,
    pub values: Vec<String>,
    pub case_insensitive: bool,
}

/// A field of a compiled query, readable on its own.
#[derive(Debug, Clone)]
pub struct FieldReader(ResolvedField);

impl FieldReader {
    /// Calls `visit` on each non-null leaf value (arrays flattened) as the query reads them, until it returns
    /// true; returns whether any call did.
    pub fn any_value<F: FnMut(&dyn Node) -> bool>(&self, doc: &dyn Node, visit: F) -> bool {
        self.0.any_value(doc, visit)
    }

    /// Whether both read the same values from every document.
    pub fn same_as(&self, other: &FieldReader) -> bool {
        self.0.same_as(&other.0)
    }

    /// Whether it reads the same value from every document.
    pub fn is_constant(&self) -> bool {
        self.0.is_constant()
    }

    /// Whether its values are computed from the document rather than read from it.
    pub fn is_computed(&self) -> bool {
        self.0.is_computed()
    }
}

#[derive(Debug, Clone)]
pub struct CompiledQuery {
    plan: Arc<Plan>,
    source: Arc<str>,
}

/// Sort key of a document: timestamp, then tiebreaker, then input position (missing values sort last).
#[derive(Debug, Clone, PartialEq, PartialOrd)]
struct EventOrder {
    timestamp: Option<i64>,
    tiebreaker: Option<KeyPart>,
}

fn compare_order(a: &EventOrder, b: &EventOrder) -> Ordering {
    fn last_if_missing<T: Ord>(a: &Option<T>, b: &Option<T>) -> Ordering {
        match (a, b) {
            (Some(x), Some(y)) => x.cmp(y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        }
    }
    last_if_missing(&a.timestamp, &b.timestamp)
        .then_with(|| last_if_missing(&a.tiebreaker, &b.tiebreaker))
}

impl CompiledQuery {
    pub fn kind(&self) -> QueryKind {
        match self.plan.body {
            Body::Event(_) => QueryKind::Event,
            Body::Sequence(_) => QueryKind::Sequence,
            Body::Sample(_) => QueryKind::Sample,
        }
    }

    /// Whether both are clones of one compilation (so stream state of one is valid for the other).
    pub fn is_same_compilation(&self, other: &CompiledQuery) -> bool {
        Arc::ptr_eq(&self.plan, &other.plan)
    }

    /// Whether the query ends in `head`/`tail` pipes.
    pub fn has_pipes(&self) -> bool {
        !self.plan.pipes.is_empty()
    }

    /// Every field the query reads, by query name (before mapping), including the timestamp/tiebreaker/category.
    pub fn fields(&self) -> &[String] {
        &self.plan.fields_read
    }

    /// The fields its [`Streamer`] (and [`matches`](Self::matches)) read: [`fields`](Self::fields) without the
    /// timestamp and tiebreaker for event queries, which only [`search`](Self::search) orders by.
    pub fn fields_streamed(&self) -> &[String] {
        &self.plan.fields_streamed
    }

    /// Whether one document matches an event query (always false for sequences and samples).
    pub fn matches(&self, doc: &dyn Node) -> bool {
        match &self.plan.body {
            Body::Event(filter) => filter.matches(doc),
            _ => false,
        }
    }

    /// Which documents can change the query's results, as alternatives of conditions (`f == "x"`,
    /// `f in ("x", "y")`, `f in~ (…)` from the top-level `and` chain of a filter): a document that meets no
    /// alternative in full is neither matched nor remembered, so feeding it to the query can be skipped. `None`
    /// when any document may matter. Event queries have one alternative; sequences one per stage (`until` and
    /// missing-event stages included), unless a trailing missing-event stage makes every event's timestamp
    /// matter; samples need every document.
    pub fn relevance(&self) -> Option<Vec<Vec<RequiredValues>>> {
        let conditions = |filter: &plan::EventFilter| {
            let required: Vec<RequiredValues> = filter
                .required_values()
                .into_iter()
                .map(|(field, values, case_insensitive)| RequiredValues {
                    field: FieldReader(field),
                    values,
                    case_insensitive,
                })
                .collect();
            (!required.is_empty()).then_some(required)
        };
        match &self.plan.body {
            Body::Event(filter) => Some(vec![conditions(filter)?]),
            Body::Sequence(sequence) if sequence.trailing_missing.is_empty() => sequence
                .stages
                .iter()
                .chain(&sequence.until)
                .map(|stage| conditions(&stage.filter))
                .collect(),
            Body::Sequence(_) | Body::Sample(_) => None,
        }
    }

    fn order_of(&self, doc: &dyn Node) -> EventOrder {
        let mut tiebreaker = None;
        if let Some(field) = &self.plan.tiebreaker {
            field.any_value(doc, |v| {
                tiebreaker = Some(KeyPart::from_node(v));
                true
            });
        }
        let mut timestamp = None;
        self.plan.timestamp.any_value(doc, |v| {
            timestamp = time::node_to_nanos(v);
            true
        });
        EventOrder {
            timestamp,
            tiebreaker,
        }
    }

    /// Searches `docs` as Elasticsearch does and returns hits in ES result order, after `head`/`tail` pipes,
    /// truncated to `limit` (ES `size`, 50 by default there; None = unlimited).
    pub fn search(&self, docs: &[Json], limit: Option<usize>) -> Vec<Hit> {
        let hits = match &self.plan.body {
            Body::Event(filter) => {
                let mut matched: Vec<(EventOrder, usize)> = docs
                    .iter()
                    .enumerate()
                    .filter(|(_, doc)| filter.matches(*doc))
                    .map(|(i, doc)| (self.order_of(doc), i))
                    .collect();
                matched.sort_by(|a, b| compare_order(&a.0, &b.0).then(a.1.cmp(&b.1)));
                matched
                    .into_iter()
                    .map(|(_, i)| Hit {
                        events: vec![Some(i)],
                        join_keys: Vec::new(),
                    })
                    .collect()
            }
            Body::Sequence(sequence) => {
                let mut ordered: Vec<(EventOrder, usize)> = docs
                    .iter()
                    .enumerate()
                    .map(|(i, doc)| (self.order_of(doc), i))
                    .filter(|(order, _)| order.timestamp.is_some())
                    .collect();
                ordered.sort_by(|a, b| compare_order(&a.0, &b.0).then(a.1.cmp(&b.1)));
                let mut matcher = SequenceMatcher::new(sequence);
                let mut completed = Vec::new();
                for (order, index) in &ordered {
                    let ts = order.timestamp.unwrap_or_default();
                    completed.extend(matcher.push(sequence, *index, &docs[*index], ts));
                }
                completed.extend(matcher.finish(sequence));
                completed.sort_by_key(|c| c.ordinal);
                completed.into_iter().map(completed_hit).collect()
            }
            Body::Sample(sample) => sample_hits(sample, docs),
        };
        let mut hits = apply_pipes(hits, &self.plan.pipes);
        if let Some(limit) = limit
            && hits.len() > limit
        {
            if matches!(self.plan.pipes.last(), Some(Pipe::Tail { .. })) {
                hits.drain(..hits.len() - limit);
            } else {
                hits.truncate(limit);
            }
        }
        hits
    }

    /// A stateful matcher for documents arriving in time order. Refuses `tail` (needs the end of input) and
    /// samples; sequences without maxspan keep state for as long as their keys stay pending.
    pub fn streamer(&self) -> Result<Streamer, CompileError> {
        let refuse =
            |span: Span, message: &str| CompileError(Diagnostic::new(&self.source, span, message));
        for pipe in &self.plan.pipes {
            if let Pipe::Tail { span, .. } = pipe {
                return Err(refuse(*span, "`tail` cannot be evaluated on a stream"));
            }
        }
        if let Body::Sample(_) = self.plan.body {
            return Err(refuse(
                Span::new(0, 6),
                "`sample` cannot be evaluated on a stream",
            ));
        }
        let head = self
            .plan
            .pipes
            .iter()
            .fold(None, |limit: Option<usize>, pipe| match pipe {
                Pipe::Head { count, .. } => Some(limit.map_or(*count, |l| l.min(*count))),
                Pipe::Tail { .. } => limit,
            });
        let matcher = match &self.plan.body {
            Body::Sequence(sequence) => Some(SequenceMatcher::new(sequence)),
            _ => None,
        };
        Ok(Streamer {
            plan: self.plan.clone(),
            matcher,
            remaining: head,
            holds_last: false,
        })
    }
}

fn completed_hit(completed: Completed<usize>) -> Hit {
    Hit {
        events: completed.events,
        join_keys: completed.key.iter().map(KeyPart::to_json).collect(),
    }
}

fn apply_pipes<T>(mut hits: Vec<T>, pipes: &[Pipe]) -> Vec<T> {
    for pipe in pipes {
        match pipe {
            Pipe::Head { count, .. } => hits.truncate(*count),
            Pipe::Tail { count, .. } => {
                let excess = hits.len().saturating_sub(*count);
                hits.drain(..excess);
            }
        }
    }
    hits
}

/// `sample by …`: for each join key (ascending), one distinct event per stage, taking the first candidates in
/// input order (samples have no time order).
fn sample_hits(sample: &SamplePlan, docs: &[Json]) -> Vec<Hit> {
    let mut candidates: BTreeMap<JoinKey, Vec<Vec<usize>>> = BTreeMap::new();
    for (index, doc) in docs.iter().enumerate() {
        for (stage_index, stage) in sample.stages.iter().enumerate() {
            for key in sequence::stage_keys(stage, doc) {
                let per_stage = candidates
                    .entry(key)
                    .or_insert_with(|| vec![Vec::new(); sample.stages.len()]);
                per_stage[stage_index].push(index);
            }
        }
    }
    let mut hits = Vec::new();
    for (key, per_stage) in candidates {
        let mut chosen: Vec<usize> = Vec::with_capacity(per_stage.len());
        for stage_candidates in &per_stage {
            match stage_candidates.iter().find(|c| !chosen.contains(c)) {
                Some(c) => chosen.push(*c),
                None => break,
            }
        }
        if chosen.len() == per_stage.len() {
            hits.push(Hit {
                events: chosen.into_iter().map(Some).collect(),
                join_keys: key.iter().map(KeyPart::to_json).collect(),
            });
        }
    }
    hits
}

/// Streaming evaluation state of one query.
pub struct Streamer {
    plan: Arc<Plan>,
    matcher: Option<SequenceMatcher<u64>>,
    /// Hits still allowed by `head` pipes.
    remaining: Option<usize>,
    /// Whether an open sequence holds the document last pushed.
    holds_last: bool,
}

impl Streamer {
    /// The smallest id of an event held by a still-open sequence; `None` when no sequence is open (always for
    /// event queries). Missing-event windows (`![…]`) remember timestamps of events no sequence holds; those are
    /// not counted here.
    pub fn oldest_held_event(&self) -> Option<u64> {
        self.matcher
            .as_ref()
            .and_then(SequenceMatcher::oldest_held_event)
    }

    /// Whether an open sequence holds the document last pushed (a later hit may name it).
    pub fn holds_last(&self) -> bool {
        self.holds_last
    }

    /// Every event an open sequence holds, in no order (an event may come more than once).
    pub fn held_events(&self) -> impl Iterator<Item = u64> + '_ {
        self.matcher.iter().flat_map(SequenceMatcher::held_events)
    }

    /// Feeds one document (in arrival order, which should be timestamp order); returns the hits it completes.
    /// Sequence documents without a parsable timestamp are ignored.
    pub fn push(&mut self, id: u64, doc: &dyn Node) -> Vec<StreamHit> {
        self.holds_last = false;
        if self.remaining == Some(0) {
            return Vec::new();
        }
        let mut hits = match (&self.plan.body, &mut self.matcher) {
            (Body::Event(filter), _) => {
                if filter.matches(doc) {
                    vec![StreamHit {
                        events: vec![Some(id)],
                        join_keys: Vec::new(),
                    }]
                } else {
                    Vec::new()
                }
            }
            (Body::Sequence(sequence), Some(matcher)) => {
                let mut timestamp = None;
                self.plan.timestamp.any_value(doc, |v| {
                    timestamp = time::node_to_nanos(v);
                    true
                });
                let Some(ts) = timestamp else {
                    return Vec::new();
                };
                let completed = matcher.push(sequence, id, doc, ts);
                self.holds_last = matcher.holds_last();
                completed
                    .into_iter()
                    .map(|c| StreamHit {
                        events: c.events,
                        join_keys: c.key.iter().map(KeyPart::to_json).collect(),
                    })
                    .collect()
            }
            _ => Vec::new(),
        };
        if let Some(remaining) = &mut self.remaining {
            hits.truncate(*remaining);
            *remaining -= hits.len();
        }
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn matches(query: &str, doc: Json) -> bool {
        compile(&parse(query).unwrap(), &CompileOptions::default())
            .unwrap()
            .matches(&doc)
    }

    #[test]
    fn missing_fields_follow_lucene_must_not() {
        let doc = json!({"event": {"category": "process"}});
        assert!(matches(r#"process where f != "x""#, doc.clone()));
        assert!(matches(r#"process where not f == "x""#, doc.clone()));
        assert!(!matches(r#"process where f == "x""#, doc.clone()));
        assert!(matches("process where f == null", doc.clone()));
        assert!(!matches("process where length(f) > 0", doc.clone()));
        assert!(!matches("process where not length(f) > 0", doc.clone()));
        assert!(matches("process where null == (f > 1)", doc));
    }

    #[test]
    fn comparing_two_fields_is_refused_as_elasticsearch_does() {
        let query = parse("process where pid < ppid").unwrap();
        let error = compile(&query, &CompileOptions::default()).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("cannot compare a field to another field"),
            "{error}"
        );
        assert!(error.to_string().contains("^^^"), "{error}");
    }

    #[test]
    fn not_is_pushed_through_and_or_like_es_optimizer() {
        // ES rewrites `not (a < 1 and b == "x")` to `a >= 1 or b != "x"`: a missing `a` fails `a >= 1`.
        let doc = json!({"b": "x"});
        assert!(!matches(
            r#"any where not (a < 1 and b == "x")"#,
            doc.clone()
        ));
        assert!(matches(
            r#"any where not (a < 1 and b == "y")"#,
            doc.clone()
        ));
        assert!(!matches(
            r#"any where not (a < 1 or b == "y")"#,
            doc.clone()
        ));
        assert!(matches(
            r#"any where not (not (a < 1) or b == "y")"#,
            json!({"a": 0})
        ));
        // A script comparison with a null input fails both ways: `not (length(a) > 1 and true)`.
        assert!(!matches("any where not (length(a) > 1 and true)", doc));
    }

    #[test]
    fn multi_values_and_dotted_keys() {
        let doc = json!({"event.category": ["network", "process"], "a": {"b.c": ["x", "Y"]}});
        assert!(matches(r#"process where a.b.c == "Y""#, doc.clone()));
        assert!(matches(r#"network where a.b.c : "y""#, doc.clone()));
        assert!(!matches(r#"process where a.b.c == "y""#, doc.clone()));
        assert!(matches(r#"any where a.b.c in ("z", "x")"#, doc.clone()));
        assert!(matches(r#"any where startsWith~(a.b.c, "y")"#, doc));
    }

    #[test]
    fn compile_errors_point_at_the_function() {
        let error = compile(
            &parse("any where lenght(x) > 1").unwrap(),
            &CompileOptions::default(),
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "line 1, column 11: unknown function `lenght`\n  any where lenght(x) > 1\n            ^^^^^^"
        );
        assert!(
            compile(
                &parse("any where length(x, 1) > 1").unwrap(),
                &CompileOptions::default()
            )
            .is_err()
        );
        assert!(
            compile(
                &parse("any where string~(x) == \"a\"").unwrap(),
                &CompileOptions::default()
            )
            .is_err()
        );
    }

    #[test]
    fn streams_sequences() {
        let query = compile(
            &parse("sequence by user with maxspan=1s [a where true] [b where true]").unwrap(),
            &CompileOptions::default(),
        )
        .unwrap();
        let mut streamer = query.streamer().unwrap();
        let event =
            |cat: &str, ts: i64| json!({"event": {"category": cat}, "user": "u", "@timestamp": ts});
        assert!(streamer.push(1, &event("a", 0)).is_empty());
        assert!(streamer.push(2, &event("b", 5000)).is_empty());
        assert!(streamer.push(3, &event("a", 6000)).is_empty());
        let hits = streamer.push(4, &event("b", 6500));
        assert_eq!(
            hits,
            vec![StreamHit {
                events: vec![Some(3), Some(4)],
                join_keys: vec![json!("u")]
            }]
        );
        let tail = compile(
            &parse("any where true | tail 1").unwrap(),
            &CompileOptions::default(),
        )
        .unwrap();
        assert!(tail.streamer().is_err());
    }
}
