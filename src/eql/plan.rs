//! Compilation of a parsed query into an executable plan.

use serde_json::Value as Json;

use super::node::{Kind, Node};

use super::ast::{self, Expr, ExprKind, Pipe, QueryBody};
use super::error::{CompileError, Diagnostic};
use super::expr::{ExprCompiler, Predicate};
use super::field::{FieldMapper, ResolvedField};

/// Compile-time settings: field mapping and the special fields of the search request.
pub struct CompileOptions<'a> {
    pub fields: &'a dyn FieldMapper,
    /// Orders events and bounds `maxspan`; ES default `@timestamp`.
    pub timestamp_field: String,
    /// Orders events sharing a timestamp (ES request `tiebreaker_field`).
    pub tiebreaker_field: Option<String>,
    /// Holds the event category `process where …` filters on; ES default `event.category`.
    pub event_category_field: String,
}

impl Default for CompileOptions<'static> {
    fn default() -> Self {
        CompileOptions {
            fields: &super::field::PlainFields,
            timestamp_field: "@timestamp".to_string(),
            tiebreaker_field: None,
            event_category_field: "event.category".to_string(),
        }
    }
}

/// A join key value, hashable (integral floats are normalized to integers so `1.0` joins `1`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum KeyPart {
    Null,
    Bool(bool),
    Int(i64),
    Float(u64),
    Str(String),
}

pub(crate) type JoinKey = Vec<KeyPart>;

impl KeyPart {
    pub fn from_node(value: &dyn Node) -> KeyPart {
        match value.kind() {
            Kind::Null => KeyPart::Null,
            Kind::Bool(b) => KeyPart::Bool(b),
            Kind::Int(i) => KeyPart::Int(i),
            Kind::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => KeyPart::Int(f as i64),
            Kind::Float(f) => KeyPart::Float(f.to_bits()),
            Kind::Str(s) => KeyPart::Str(s.to_owned()),
            Kind::Array | Kind::Object => KeyPart::Str(value.to_json().to_string()),
        }
    }

    pub fn to_json(&self) -> Json {
        match self {
            KeyPart::Null => Json::Null,
            KeyPart::Bool(b) => Json::Bool(*b),
            KeyPart::Int(i) => Json::from(*i),
            KeyPart::Float(bits) => Json::from(f64::from_bits(*bits)),
            KeyPart::Str(s) => Json::String(s.clone()),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct EventFilter {
    pub category_field: ResolvedField,
    /// `None` for `any`.
    pub category: Option<String>,
    pub predicate: Predicate,
}

impl EventFilter {
    pub fn matches(&self, doc: &dyn Node) -> bool {
        if let Some(category) = &self.category
            && !self
                .category_field
                .any_value(doc, |v| v.as_str() == Some(category))
        {
            return false;
        }
        self.predicate.matches(doc)
    }

    /// `(field, strings, case_insensitive)` conditions every matching document meets (see `RequiredValues`).
    pub fn required_values(&self) -> Vec<(ResolvedField, Vec<String>, bool)> {
        let mut out = Vec::new();
        if let Some(category) = &self.category {
            out.push((self.category_field.clone(), vec![category.clone()], false));
        }
        self.predicate.required_values(&mut out);
        out
    }
}

#[derive(Debug, Clone)]
pub(crate) struct KeyField {
    pub field: ResolvedField,
    pub optional: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct StagePlan {
    pub filter: EventFilter,
    pub keys: Vec<KeyField>,
}

impl StagePlan {
    pub fn filter_matches(&self, doc: &dyn Node) -> bool {
        self.filter.matches(doc)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct SequencePlan {
    /// Stages with `runs` expanded, missing-event stages included.
    pub stages: Vec<StagePlan>,
    /// Indexes into `stages` of the positive (non-missing) stages, in order.
    pub positive: Vec<usize>,
    /// Missing stages before the first positive stage.
    pub leading_missing: Vec<usize>,
    /// (missing stage, position in `positive` of the positive stage right before it).
    pub middle_missing: Vec<(usize, usize)>,
    /// Missing stages after the last positive stage.
    pub trailing_missing: Vec<usize>,
    pub until: Option<StagePlan>,
    pub maxspan: Option<i64>,
}

impl SequencePlan {
    pub fn missing_stages(&self) -> impl Iterator<Item = usize> + '_ {
        self.leading_missing
            .iter()
            .copied()
            .chain(self.middle_missing.iter().map(|(stage, _)| *stage))
            .chain(self.trailing_missing.iter().copied())
    }
}

#[derive(Debug, Clone)]
pub(crate) struct SamplePlan {
    pub stages: Vec<StagePlan>,
}

#[derive(Debug, Clone)]
pub(crate) enum Body {
    Event(EventFilter),
    Sequence(SequencePlan),
    Sample(SamplePlan),
}

#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub body: Body,
    pub pipes: Vec<Pipe>,
    pub timestamp: ResolvedField,
    pub tiebreaker: Option<ResolvedField>,
    pub fields_read: Vec<String>,
    /// What a `Streamer` reads: event queries never read the timestamp or tiebreaker on a stream.
    pub fields_streamed: Vec<String>,
}

pub(crate) fn compile_plan(
    query: &ast::Query,
    options: &CompileOptions,
) -> Result<Plan, CompileError> {
    let mut compiler = PlanCompiler {
        exprs: ExprCompiler {
            source: &query.source,
            mapper: options.fields,
            timestamp_field: &options.timestamp_field,
            fields_read: Vec::new(),
        },
        category_field: options.event_category_field.as_str(),
    };
    let body = match &query.body {
        QueryBody::Event(event) => Body::Event(compiler.filter(event)?),
        QueryBody::Sequence(sequence) => Body::Sequence(compiler.sequence(sequence)?),
        QueryBody::Sample(sample) => {
            let stages = sample
                .stages
                .iter()
                .map(|stage| compiler.stage(stage, &sample.by))
                .collect::<Result<Vec<_>, _>>()?;
            Body::Sample(SamplePlan { stages })
        }
    };
    let body_fields = compiler.exprs.fields_read.clone();
    let timestamp = compiler.exprs.field(&options.timestamp_field);
    let tiebreaker = options
        .tiebreaker_field
        .as_deref()
        .map(|name| compiler.exprs.field(name));
    Ok(Plan {
        pipes: query.pipes.clone(),
        timestamp,
        tiebreaker,
        fields_streamed: match body {
            Body::Event(_) => body_fields,
            Body::Sequence(_) | Body::Sample(_) => compiler.exprs.fields_read.clone(),
        },
        body,
        fields_read: compiler.exprs.fields_read,
    })
}

struct PlanCompiler<'a> {
    exprs: ExprCompiler<'a>,
    category_field: &'a str,
}

impl PlanCompiler<'_> {
    fn error(&self, span: ast::Expr, message: &str) -> CompileError {
        CompileError(Diagnostic::new(self.exprs.source, span.span, message))
    }

    fn filter(&mut self, event: &ast::EventQuery) -> Result<EventFilter, CompileError> {
        let predicate = self.exprs.predicate(&event.condition)?;
        let category_field = self.exprs.field(self.category_field);
        Ok(EventFilter {
            category_field,
            category: event.category.clone(),
            predicate,
        })
    }

    fn stage(
        &mut self,
        stage: &ast::Stage,
        shared_keys: &[Expr],
    ) -> Result<StagePlan, CompileError> {
        let filter = self.filter(&stage.query)?;
        let mut keys = Vec::new();
        for key in shared_keys.iter().chain(&stage.by) {
            match &key.kind {
                ExprKind::Field { name, optional } => {
                    keys.push(KeyField {
                        field: self.exprs.field(name),
                        optional: *optional,
                    });
                }
                _ => return Err(self.error(key.clone(), "join keys must be fields")),
            }
        }
        Ok(StagePlan { filter, keys })
    }

    fn sequence(&mut self, sequence: &ast::Sequence) -> Result<SequencePlan, CompileError> {
        let mut stages = Vec::new();
        let mut missing_flags = Vec::new();
        let mut key_count = None;
        for stage in &sequence.stages {
            let compiled = self.stage(stage, &sequence.by)?;
            if *key_count.get_or_insert(compiled.keys.len()) != compiled.keys.len() {
                let span = stage
                    .by
                    .first()
                    .cloned()
                    .unwrap_or_else(|| stage.query.condition.clone());
                return Err(self.error(
                    span,
                    "every sequence term needs the same number of join keys",
                ));
            }
            for _ in 0..stage.runs {
                stages.push(compiled.clone());
                missing_flags.push(stage.missing);
            }
        }
        let positive: Vec<usize> = (0..stages.len()).filter(|i| !missing_flags[*i]).collect();
        let (first, last) = match (positive.first(), positive.last()) {
            (Some(first), Some(last)) => (*first, *last),
            _ => {
                return Err(self.error(
                    sequence.stages[0].query.condition.clone(),
                    "a sequence needs a positive term",
                ));
            }
        };
        let mut leading_missing = Vec::new();
        let mut middle_missing = Vec::new();
        let mut trailing_missing = Vec::new();
        for (index, missing) in missing_flags.iter().enumerate() {
            if !missing {
                continue;
            }
            if index < first {
                leading_missing.push(index);
            } else if index > last {
                trailing_missing.push(index);
            } else {
                let before = positive.iter().rposition(|p| *p < index).unwrap_or(0);
                middle_missing.push((index, before));
            }
        }
        let until = match &sequence.until {
            Some(until) => Some(self.stage(until, &sequence.by)?),
            None => None,
        };
        Ok(SequencePlan {
            stages,
            positive,
            leading_missing,
            middle_missing,
            trailing_missing,
            until,
            maxspan: sequence.maxspan.map(|m| m.nanos),
        })
    }
}
