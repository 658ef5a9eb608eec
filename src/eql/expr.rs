//! Conditions compiled from the AST. Following how ES translates EQL, a field compared with constants becomes a
//! two-valued Lucene-style predicate (a missing field makes `f == x` false and `f != x` true; multi-valued
//! fields match if any value does), while anything involving functions or several fields is evaluated like an
//! ES script: three-valued, where null never selects a document.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashSet;

use super::node::{Kind, Node};

use super::ast::{ArithOp, CompareOp, Expr, ExprKind, Literal, MatchKind};
use super::error::{CompileError, Diagnostic, Span};
use super::field::{FieldMapper, FieldValues, ResolvedField};
use super::functions::{Cidr, Function, cidr_match, signature};
use super::pattern::{LiteralMatch, StringMatcher};
use super::time::{node_to_nanos, parse_timestamp};
use super::value::{Value, values_equal, values_order};

#[derive(Debug, Clone)]
pub(crate) enum Predicate {
    Const(bool),
    And(Vec<Predicate>),
    Or(Vec<Predicate>),
    Not(Box<Predicate>),
    /// The field has at least one non-null value.
    Exists(ResolvedField),
    /// Some value of the field passes the test.
    Leaf(ResolvedField, LeafTest),
    /// Selects the document when the script evaluates to true.
    Script(Script),
}

impl Predicate {
    pub fn matches(&self, doc: &dyn Node) -> bool {
        match self {
            Predicate::Const(b) => *b,
            Predicate::And(parts) => parts.iter().all(|p| p.matches(doc)),
            Predicate::Or(parts) => parts.iter().any(|p| p.matches(doc)),
            Predicate::Not(inner) => !inner.matches(doc),
            Predicate::Exists(field) => field.any_value(doc, |_| true),
            Predicate::Leaf(field, test) => field.any_value(doc, |value| test.matches(value)),
            Predicate::Script(script) => script.eval(doc).is_true(),
        }
    }

    /// Adds the `field in (strings)` tests of the top-level AND chain: conditions every matching document meets.
    pub fn required_values(&self, out: &mut Vec<(ResolvedField, Vec<String>, bool)>) {
        match self {
            Predicate::And(parts) => parts.iter().for_each(|part| part.required_values(out)),
            Predicate::Leaf(field, test) => {
                if let Some((values, case_insensitive)) = test.required_strings() {
                    out.push((field.clone(), values, case_insensitive));
                }
            }
            _ => {}
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum LeafTest {
    Equals(Value<'static>),
    Order(CompareOp, Value<'static>),
    /// Comparison on the timestamp field, in epoch nanoseconds (date semantics, any input format).
    Time(CompareOp, i64),
    Terms(TermSet),
    /// `:`, `like`, `regex`, `startsWith`, … : any matcher accepts the value.
    Strings(Vec<StringMatcher>),
    Cidr(Vec<Cidr>),
}

impl LeafTest {
    fn matches(&self, leaf: &dyn Node) -> bool {
        match self {
            LeafTest::Equals(expected) => match (leaf.kind(), expected) {
                (Kind::Str(s), Value::Str(t)) => s == t,
                (Kind::Int(n), Value::Int(i)) => n == *i,
                _ => values_equal(&Value::from_node(leaf), expected, false),
            },
            LeafTest::Order(op, bound) => values_order(&Value::from_node(leaf), bound)
                .is_some_and(|ordering| ordering_satisfies(*op, ordering)),
            LeafTest::Time(op, bound) => {
                node_to_nanos(leaf).is_some_and(|t| ordering_satisfies(*op, t.cmp(bound)))
            }
            LeafTest::Terms(terms) => terms.contains(leaf),
            LeafTest::Strings(matchers) => match leaf.kind() {
                Kind::Str(s) => matchers.iter().any(|m| m.is_match(s)),
                Kind::Int(_) | Kind::Float(_) | Kind::Bool(_) => Value::from_node(leaf)
                    .to_text()
                    .is_some_and(|text| matchers.iter().any(|m| m.is_match(&text))),
                _ => false,
            },
            LeafTest::Cidr(cidrs) => leaf.as_str().is_some_and(|s| cidr_match(cidrs, s)),
        }
    }
}

impl LeafTest {
    /// For tests that a string leaf passes only by being one of a few strings (folded with [`fold_case`] when
    /// case-insensitive): those strings. Non-string leaves may still pass them (`1 == "1"`).
    fn required_strings(&self) -> Option<(Vec<String>, bool)> {
        match self {
            LeafTest::Equals(Value::Str(expected)) => Some((vec![expected.to_string()], false)),
            LeafTest::Terms(terms) if terms.others.is_empty() => Some((
                terms.strings.iter().cloned().collect(),
                terms.case_insensitive,
            )),
            _ => None,
        }
    }
}

/// How `in~` compares strings: lowercased, without allocating for the usual already-lowercase value.
pub fn fold_case(s: &str) -> Cow<'_, str> {
    if s.chars().any(char::is_uppercase) {
        Cow::Owned(s.to_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

fn ordering_satisfies(op: CompareOp, ordering: Ordering) -> bool {
    match op {
        CompareOp::Eq => ordering == Ordering::Equal,
        CompareOp::NotEq => ordering != Ordering::Equal,
        CompareOp::Lt => ordering == Ordering::Less,
        CompareOp::Le => ordering != Ordering::Greater,
        CompareOp::Gt => ordering == Ordering::Greater,
        CompareOp::Ge => ordering != Ordering::Less,
    }
}

/// Constants of an `in` list; strings are hashed (lowercased for `in~`), other constants compared one by one.
#[derive(Debug, Clone)]
pub(crate) struct TermSet {
    case_insensitive: bool,
    /// Hashed with a fast, non-cryptographic hash: looked up for most events.
    strings: HashSet<String, foldhash::fast::RandomState>,
    others: Vec<Value<'static>>,
}

impl TermSet {
    fn new(values: Vec<Value<'static>>, case_insensitive: bool) -> Self {
        let mut strings = HashSet::default();
        let mut others = Vec::new();
        for value in values {
            match value {
                Value::Str(s) => {
                    strings.insert(if case_insensitive {
                        s.to_lowercase()
                    } else {
                        s.into_owned()
                    });
                }
                Value::Null => {}
                other => others.push(other),
            }
        }
        TermSet {
            case_insensitive,
            strings,
            others,
        }
    }

    fn contains(&self, leaf: &dyn Node) -> bool {
        let value = Value::from_node(leaf);
        if let Value::Str(s) = &value {
            let key = if self.case_insensitive {
                fold_case(s)
            } else {
                Cow::Borrowed(s.as_ref())
            };
            if self.strings.contains(key.as_ref()) {
                return true;
            }
        } else if self
            .strings
            .iter()
            .any(|t| values_equal(&value, &Value::Str(Cow::Borrowed(t)), self.case_insensitive))
        {
            return true;
        }
        self.others
            .iter()
            .any(|other| values_equal(&value, other, self.case_insensitive))
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Script {
    Literal(Value<'static>),
    Field(ResolvedField),
    Not(Box<Script>),
    And(Box<Script>, Box<Script>),
    Or(Box<Script>, Box<Script>),
    Compare(CompareOp, Box<Script>, Box<Script>),
    /// `x == null` (`negated`: `x != null`); ES rewrites these to IsNull / IsNotNull, which are never null.
    IsNull(Box<Script>, bool),
    In {
        value: Box<Script>,
        list: Vec<Script>,
        case_insensitive: bool,
        negated: bool,
    },
    Matches(Box<Script>, Vec<StringMatcher>),
    Call(Function, Vec<Script>),
}

impl Script {
    pub fn eval<'a>(&'a self, doc: &'a dyn Node) -> Value<'a> {
        match self {
            Script::Literal(value) => value.clone(),
            Script::Field(field) => match field.values(doc) {
                FieldValues::Borrowed(values) => {
                    Value::from_values(values.into_iter().map(Value::from_node).collect())
                }
                FieldValues::Owned(values) => Value::from_values(
                    values
                        .iter()
                        .map(|v| Value::from_node(v).into_owned())
                        .collect(),
                ),
            },
            Script::Not(inner) => match truth(&inner.eval(doc)) {
                Some(b) => Value::Bool(!b),
                None => Value::Null,
            },
            Script::And(left, right) => match (truth(&left.eval(doc)), truth(&right.eval(doc))) {
                (Some(false), _) | (_, Some(false)) => Value::Bool(false),
                (Some(true), Some(true)) => Value::Bool(true),
                _ => Value::Null,
            },
            Script::Or(left, right) => match (truth(&left.eval(doc)), truth(&right.eval(doc))) {
                (Some(true), _) | (_, Some(true)) => Value::Bool(true),
                (Some(false), Some(false)) => Value::Bool(false),
                _ => Value::Null,
            },
            Script::Compare(op, left, right) => {
                let args = [left.eval(doc), right.eval(doc)];
                lift(&args, &mut |pair| {
                    if pair[0].is_null() || pair[1].is_null() {
                        return Value::Null;
                    }
                    let holds = match op {
                        CompareOp::Eq => values_equal(&pair[0], &pair[1], false),
                        CompareOp::NotEq => !values_equal(&pair[0], &pair[1], false),
                        _ => match values_order(&pair[0], &pair[1]) {
                            Some(ordering) => ordering_satisfies(*op, ordering),
                            None => return Value::Null,
                        },
                    };
                    Value::Bool(holds)
                })
            }
            Script::IsNull(inner, negated) => Value::Bool(inner.eval(doc).is_null() != *negated),
            Script::In {
                value,
                list,
                case_insensitive,
                negated,
            } => {
                let value = value.eval(doc);
                if value.is_null() {
                    return Value::Null;
                }
                let candidates: Vec<Value<'a>> = list.iter().map(|item| item.eval(doc)).collect();
                let found =
                    lift(&[value], &mut |single| {
                        Value::Bool(candidates.iter().any(|c| {
                            any_value(c, |c| values_equal(&single[0], c, *case_insensitive))
                        }))
                    });
                match truth(&found) {
                    Some(b) => Value::Bool(b != *negated),
                    None => Value::Null,
                }
            }
            Script::Matches(value, matchers) => lift(
                &[value.eval(doc)],
                &mut |single| match single[0].to_text() {
                    Some(text) if !matches!(single[0], Value::Null) => {
                        Value::Bool(matchers.iter().any(|m| m.is_match(&text)))
                    }
                    _ => Value::Null,
                },
            ),
            Script::Call(function, args) => {
                let values: Vec<Value<'a>> = args.iter().map(|arg| arg.eval(doc)).collect();
                lift(&values, &mut |scalars| function.apply(scalars))
            }
        }
    }
}

fn any_value(value: &Value<'_>, mut test: impl FnMut(&Value<'_>) -> bool) -> bool {
    match value {
        Value::Many(values) => values.iter().any(test),
        other => test(other),
    }
}

/// Three-valued truth: a multi-value is true if any element is, false if some element is false.
fn truth(value: &Value<'_>) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Many(values) => {
            let truths: Vec<Option<bool>> = values.iter().map(truth).collect();
            if truths.contains(&Some(true)) {
                Some(true)
            } else if truths.contains(&Some(false)) {
                Some(false)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// Applies `f` to every combination of the values of multi-valued arguments (ES multi-value aware scripts):
/// boolean results combine as "any", other results form a multi-value.
fn lift<'a>(args: &[Value<'a>], f: &mut dyn FnMut(&[Value<'a>]) -> Value<'a>) -> Value<'a> {
    let Some(position) = args.iter().position(|a| matches!(a, Value::Many(_))) else {
        return f(args);
    };
    let Value::Many(values) = &args[position] else {
        return f(args);
    };
    let mut results = Vec::with_capacity(values.len());
    for value in values {
        let mut expanded = args.to_vec();
        expanded[position] = value.clone();
        results.push(lift(&expanded, f));
    }
    if results
        .iter()
        .all(|r| matches!(r, Value::Bool(_) | Value::Null))
    {
        return truth(&Value::Many(results)).map_or(Value::Null, Value::Bool);
    }
    Value::from_values(results.into_iter().filter(|r| !r.is_null()).collect())
}

/// Turns AST conditions into predicates, resolving fields through the caller's mapper.
pub(crate) struct ExprCompiler<'a> {
    pub source: &'a str,
    pub mapper: &'a dyn FieldMapper,
    pub timestamp_field: &'a str,
    /// Names of every field read, in first-use order.
    pub fields_read: Vec<String>,
}

impl ExprCompiler<'_> {
    fn error(&self, span: Span, message: impl Into<String>) -> CompileError {
        CompileError(Diagnostic::new(self.source, span, message))
    }

    pub fn field(&mut self, name: &str) -> ResolvedField {
        if !self.fields_read.iter().any(|f| f == name) {
            self.fields_read.push(name.to_string());
        }
        ResolvedField::new(self.mapper.access(name))
    }

    pub fn predicate(&mut self, expr: &Expr) -> Result<Predicate, CompileError> {
        Ok(match &expr.kind {
            ExprKind::Literal(Literal::Bool(b)) => Predicate::Const(*b),
            ExprKind::Literal(Literal::Null) => Predicate::Const(false),
            ExprKind::Literal(_) | ExprKind::Arithmetic { .. } | ExprKind::Negate(_) => {
                return Err(self.error(expr.span, "a condition must be boolean"));
            }
            ExprKind::And(left, right) => {
                Predicate::And(vec![self.predicate(left)?, self.predicate(right)?])
            }
            ExprKind::Or(left, right) => {
                Predicate::Or(vec![self.predicate(left)?, self.predicate(right)?])
            }
            ExprKind::Not(inner) => self.negated_predicate(inner)?,
            ExprKind::Compare { op, left, right } => self.comparison(*op, left, right)?,
            ExprKind::In {
                value,
                list,
                negated,
                case_insensitive,
            } => match (&value.kind, literals(list)) {
                (ExprKind::Field { name, .. }, Some(constants)) => {
                    let test = LeafTest::Terms(TermSet::new(constants, *case_insensitive));
                    let leaf = Predicate::Leaf(self.field(name), test);
                    if *negated {
                        Predicate::Not(Box::new(leaf))
                    } else {
                        leaf
                    }
                }
                _ => Predicate::Script(self.script(expr)?),
            },
            ExprKind::Match {
                kind,
                case_insensitive,
                value,
                patterns,
            } => {
                let matchers = self.matchers(*kind, *case_insensitive, patterns)?;
                match &value.kind {
                    ExprKind::Field { name, .. } => {
                        Predicate::Leaf(self.field(name), LeafTest::Strings(matchers))
                    }
                    _ => {
                        Predicate::Script(Script::Matches(Box::new(self.script(value)?), matchers))
                    }
                }
            }
            ExprKind::Call {
                name,
                case_insensitive,
                args,
                ..
            } => match self.lucene_function(name, *case_insensitive, args)? {
                Some(predicate) => predicate,
                None => Predicate::Script(self.script(expr)?),
            },
            ExprKind::Field { .. } => Predicate::Script(self.script(expr)?),
        })
    }

    /// `not x` as ES' optimizer (BooleanSimplification) rewrites it: pushed through `and`/`or` (De Morgan) and
    /// comparisons negated (`not a < b` is `a >= b`, which a missing `a` fails).
    fn negated_predicate(&mut self, inner: &Expr) -> Result<Predicate, CompileError> {
        match &inner.kind {
            ExprKind::Compare { op, left, right } => {
                return self.comparison(op.negated(), left, right);
            }
            ExprKind::And(left, right) => {
                return Ok(Predicate::Or(vec![
                    self.negated_predicate(left)?,
                    self.negated_predicate(right)?,
                ]));
            }
            ExprKind::Or(left, right) => {
                return Ok(Predicate::And(vec![
                    self.negated_predicate(left)?,
                    self.negated_predicate(right)?,
                ]));
            }
            _ => {}
        }
        if let ExprKind::Not(twice) = &inner.kind {
            return self.predicate(twice);
        }
        Ok(match self.predicate(inner)? {
            Predicate::Const(b) => Predicate::Const(!b),
            Predicate::Script(script) => Predicate::Script(Script::Not(Box::new(script))),
            other => Predicate::Not(Box::new(other)),
        })
    }

    fn comparison(
        &mut self,
        op: CompareOp,
        left: &Expr,
        right: &Expr,
    ) -> Result<Predicate, CompileError> {
        let (name, literal, op) = match (&left.kind, &right.kind) {
            (ExprKind::Field { name, .. }, ExprKind::Literal(literal)) => (name, literal, op),
            (ExprKind::Literal(literal), ExprKind::Field { name, .. }) => {
                (name, literal, op.flipped())
            }
            // Elasticsearch's verifier refuses these (queries compile to term queries, not scripts, there).
            (ExprKind::Field { .. }, ExprKind::Field { .. }) => {
                return Err(CompileError(Diagnostic::new(
                    self.source,
                    left.span.to(right.span),
                    "cannot compare a field to another field",
                )));
            }
            _ => {
                let expr = Expr {
                    kind: ExprKind::Compare {
                        op,
                        left: Box::new(left.clone()),
                        right: Box::new(right.clone()),
                    },
                    span: left.span.to(right.span),
                };
                return Ok(Predicate::Script(self.script(&expr)?));
            }
        };
        let field = self.field(name);
        if *literal == Literal::Null {
            return Ok(match op {
                CompareOp::Eq => Predicate::Not(Box::new(Predicate::Exists(field))),
                CompareOp::NotEq => Predicate::Exists(field),
                _ => Predicate::Const(false),
            });
        }
        let (test_op, test) = if name == self.timestamp_field {
            let literal_span = if matches!(left.kind, ExprKind::Literal(_)) {
                left.span
            } else {
                right.span
            };
            let nanos = match literal {
                Literal::String(s) => parse_timestamp(s),
                Literal::Int(millis) => millis.checked_mul(1_000_000),
                Literal::Float(millis) => Some((millis * 1e6) as i64),
                _ => None,
            }
            .ok_or_else(|| self.error(literal_span, "cannot compare the timestamp field with this value (expected a date or epoch milliseconds)"))?;
            let test_op = if op == CompareOp::NotEq {
                CompareOp::Eq
            } else {
                op
            };
            (test_op, LeafTest::Time(test_op, nanos))
        } else {
            let value = Value::from_literal(literal);
            match op {
                CompareOp::Eq | CompareOp::NotEq => (CompareOp::Eq, LeafTest::Equals(value)),
                _ => (op, LeafTest::Order(op, value)),
            }
        };
        let leaf = Predicate::Leaf(field, test);
        Ok(if op == CompareOp::NotEq && test_op == CompareOp::Eq {
            Predicate::Not(Box::new(leaf))
        } else {
            leaf
        })
    }

    fn matchers(
        &self,
        kind: MatchKind,
        case_insensitive: bool,
        patterns: &[Expr],
    ) -> Result<Vec<StringMatcher>, CompileError> {
        patterns
            .iter()
            .map(|pattern| {
                let text = match &pattern.kind {
                    ExprKind::Literal(Literal::String(s)) => s.clone(),
                    // `:` also compares non-string constants, by their text
                    ExprKind::Literal(other)
                        if kind == MatchKind::Colon && *other != Literal::Null =>
                    {
                        Value::from_literal(other)
                            .to_text()
                            .map(Cow::into_owned)
                            .unwrap_or_default()
                    }
                    _ => return Err(self.error(pattern.span, "expected a string pattern")),
                };
                match kind {
                    MatchKind::Colon | MatchKind::Like => {
                        Ok(StringMatcher::wildcard(&text, case_insensitive))
                    }
                    MatchKind::Regex => StringMatcher::lucene_regex(&text, case_insensitive)
                        .map_err(|message| self.error(pattern.span, message)),
                }
            })
            .collect()
    }

    /// String tests ES pushes down to Lucene when applied to a field with constant arguments.
    fn lucene_function(
        &mut self,
        name: &str,
        case_insensitive: bool,
        args: &[Expr],
    ) -> Result<Option<Predicate>, CompileError> {
        let [first, rest @ ..] = args else {
            return Ok(None);
        };
        let ExprKind::Field {
            name: field_name, ..
        } = &first.kind
        else {
            return Ok(None);
        };
        let texts: Option<Vec<(String, Span)>> = rest
            .iter()
            .map(|e| match &e.kind {
                ExprKind::Literal(Literal::String(s)) => Some((s.clone(), e.span)),
                _ => None,
            })
            .collect();
        let Some(texts) = texts else {
            return Ok(None);
        };
        let test = match (name.to_ascii_lowercase().as_str(), texts.as_slice()) {
            ("startswith", [(text, _)]) => {
                StringMatcher::literal(LiteralMatch::Prefix, text, case_insensitive)
            }
            ("endswith", [(text, _)]) => {
                StringMatcher::literal(LiteralMatch::Suffix, text, case_insensitive)
            }
            ("stringcontains", [(text, _)]) => {
                StringMatcher::literal(LiteralMatch::Contains, text, case_insensitive)
            }
            ("cidrmatch", blocks) if !case_insensitive && !blocks.is_empty() => {
                let mut cidrs = Vec::new();
                for (text, span) in blocks {
                    cidrs.push(Cidr::parse(text).ok_or_else(|| {
                        self.error(*span, "expected an IP address or CIDR block")
                    })?);
                }
                return Ok(Some(Predicate::Leaf(
                    self.field(field_name),
                    LeafTest::Cidr(cidrs),
                )));
            }
            _ => return Ok(None),
        };
        Ok(Some(Predicate::Leaf(
            self.field(field_name),
            LeafTest::Strings(vec![test]),
        )))
    }

    pub fn script(&mut self, expr: &Expr) -> Result<Script, CompileError> {
        Ok(match &expr.kind {
            ExprKind::Literal(literal) => Script::Literal(Value::from_literal(literal)),
            ExprKind::Field { name, .. } => Script::Field(self.field(name)),
            ExprKind::Not(inner) => Script::Not(Box::new(self.script(inner)?)),
            ExprKind::And(left, right) => {
                Script::And(Box::new(self.script(left)?), Box::new(self.script(right)?))
            }
            ExprKind::Or(left, right) => {
                Script::Or(Box::new(self.script(left)?), Box::new(self.script(right)?))
            }
            ExprKind::Compare { op, left, right } => {
                let null_side = match (&left.kind, &right.kind) {
                    (ExprKind::Literal(Literal::Null), _) => Some(right),
                    (_, ExprKind::Literal(Literal::Null)) => Some(left),
                    _ => None,
                };
                match (null_side, op) {
                    (Some(other), CompareOp::Eq) => {
                        Script::IsNull(Box::new(self.script(other)?), false)
                    }
                    (Some(other), CompareOp::NotEq) => {
                        Script::IsNull(Box::new(self.script(other)?), true)
                    }
                    (Some(_), _) => Script::Literal(Value::Null),
                    (None, _) => Script::Compare(
                        *op,
                        Box::new(self.script(left)?),
                        Box::new(self.script(right)?),
                    ),
                }
            }
            ExprKind::In {
                value,
                list,
                negated,
                case_insensitive,
            } => Script::In {
                value: Box::new(self.script(value)?),
                list: list
                    .iter()
                    .map(|item| self.script(item))
                    .collect::<Result<_, _>>()?,
                case_insensitive: *case_insensitive,
                negated: *negated,
            },
            ExprKind::Match {
                kind,
                case_insensitive,
                value,
                patterns,
            } => {
                let matchers = self.matchers(*kind, *case_insensitive, patterns)?;
                Script::Matches(Box::new(self.script(value)?), matchers)
            }
            ExprKind::Arithmetic { op, left, right } => {
                for operand in [left, right] {
                    if let ExprKind::Literal(Literal::String(_) | Literal::Bool(_)) = operand.kind {
                        return Err(self.error(operand.span, "arithmetic needs numeric operands"));
                    }
                }
                let function = match op {
                    ArithOp::Add => Function::Add,
                    ArithOp::Sub => Function::Subtract,
                    ArithOp::Mul => Function::Multiply,
                    ArithOp::Div => Function::Divide,
                    ArithOp::Mod => Function::Modulo,
                };
                Script::Call(function, vec![self.script(left)?, self.script(right)?])
            }
            ExprKind::Negate(inner) => Script::Call(
                Function::Subtract,
                vec![Script::Literal(Value::Int(0)), self.script(inner)?],
            ),
            ExprKind::Call {
                name,
                case_insensitive,
                args,
                name_span,
            } => self.call(name, *case_insensitive, args, *name_span)?,
        })
    }

    fn call(
        &mut self,
        name: &str,
        case_insensitive: bool,
        args: &[Expr],
        name_span: Span,
    ) -> Result<Script, CompileError> {
        let lower = name.to_ascii_lowercase();
        let Some(sig) = signature(&lower) else {
            return Err(self.error(name_span, format!("unknown function `{name}`")));
        };
        if case_insensitive && !sig.has_insensitive_variant {
            return Err(self.error(
                name_span,
                format!("function `{name}` has no case-insensitive (`~`) variant"),
            ));
        }
        if args.len() < sig.min_args || sig.max_args.is_some_and(|max| args.len() > max) {
            let expected = match sig.max_args {
                Some(max) if max == sig.min_args => format!("{max}"),
                Some(max) => format!("{} to {max}", sig.min_args),
                None => format!("at least {}", sig.min_args),
            };
            return Err(self.error(
                name_span,
                format!(
                    "function `{name}` takes {expected} arguments but was given {}",
                    args.len()
                ),
            ));
        }
        let function = match lower.as_str() {
            "add" => Function::Add,
            "subtract" => Function::Subtract,
            "multiply" => Function::Multiply,
            "divide" => Function::Divide,
            "modulo" => Function::Modulo,
            "between" => Function::Between { case_insensitive },
            "cidrmatch" => {
                let mut cidrs = Vec::new();
                for arg in &args[1..] {
                    match &arg.kind {
                        ExprKind::Literal(Literal::String(s)) => match Cidr::parse(s) {
                            Some(cidr) => cidrs.push(cidr),
                            None => {
                                return Err(
                                    self.error(arg.span, "expected an IP address or CIDR block")
                                );
                            }
                        },
                        _ => {
                            return Err(
                                self.error(arg.span, "cidrMatch takes constant CIDR strings")
                            );
                        }
                    }
                }
                return Ok(Script::Call(
                    Function::CidrMatch(cidrs),
                    vec![self.script(&args[0])?],
                ));
            }
            "concat" => Function::Concat,
            "endswith" => Function::EndsWith { case_insensitive },
            "indexof" => Function::IndexOf { case_insensitive },
            "length" => Function::Length,
            "number" => Function::Number,
            "startswith" => Function::StartsWith { case_insensitive },
            "string" => Function::String,
            "stringcontains" => Function::StringContains { case_insensitive },
            _ => Function::Substring,
        };
        let compiled = args
            .iter()
            .map(|arg| self.script(arg))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Script::Call(function, compiled))
    }
}

fn literals(exprs: &[Expr]) -> Option<Vec<Value<'static>>> {
    exprs
        .iter()
        .map(|e| match &e.kind {
            ExprKind::Literal(literal) => Some(Value::from_literal(literal)),
            _ => None,
        })
        .collect()
}
