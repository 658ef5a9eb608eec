//! Runtime values of script-evaluated expressions (functions, arithmetic, field-vs-field comparisons) and the
//! ES comparison rules shared with the Lucene-style field predicates.

use std::borrow::Cow;
use std::cmp::Ordering;

use super::node::{Kind, Node};

use super::ast::Literal;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    /// A multi-valued field: predicates hold if any value satisfies them.
    Many(Vec<Value<'a>>),
}

impl<'a> Value<'a> {
    pub fn from_node(node: &'a dyn Node) -> Value<'a> {
        match node.kind() {
            Kind::Bool(b) => Value::Bool(b),
            Kind::Int(i) => Value::Int(i),
            Kind::Float(f) => Value::Float(f),
            Kind::Str(s) => Value::Str(Cow::Borrowed(s)),
            // objects are not comparable values in ES EQL
            Kind::Null | Kind::Object | Kind::Array => Value::Null,
        }
    }

    pub fn into_owned(self) -> Value<'static> {
        match self {
            Value::Null => Value::Null,
            Value::Bool(b) => Value::Bool(b),
            Value::Int(i) => Value::Int(i),
            Value::Float(f) => Value::Float(f),
            Value::Str(s) => Value::Str(Cow::Owned(s.into_owned())),
            Value::Many(values) => Value::Many(values.into_iter().map(Value::into_owned).collect()),
        }
    }

    pub fn from_literal(literal: &Literal) -> Value<'static> {
        match literal {
            Literal::Null => Value::Null,
            Literal::Bool(b) => Value::Bool(*b),
            Literal::Int(i) => Value::Int(*i),
            Literal::Float(f) => Value::Float(*f),
            Literal::String(s) => Value::Str(Cow::Owned(s.clone())),
        }
    }

    /// Collapses a list of values: none → null, one → itself, more → many.
    pub fn from_values(mut values: Vec<Value<'a>>) -> Value<'a> {
        match values.len() {
            0 => Value::Null,
            1 => values.pop().unwrap_or(Value::Null),
            _ => Value::Many(values),
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Whether a condition evaluating to this value selects the document.
    pub fn is_true(&self) -> bool {
        match self {
            Value::Bool(b) => *b,
            Value::Many(values) => values.iter().any(Value::is_true),
            _ => false,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// Java `String.valueOf` rendering used by ES `string()` and `concat()`.
    pub fn to_text(&self) -> Option<Cow<'a, str>> {
        match self {
            Value::Null | Value::Many(_) => None,
            Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
            Value::Int(i) => Some(Cow::Owned(i.to_string())),
            Value::Float(f) => Some(Cow::Owned(java_double_text(*f))),
            Value::Str(s) => Some(s.clone()),
        }
    }
}

/// Java's `Double.toString` for the common range: integral values keep a `.0`.
pub(crate) fn java_double_text(f: f64) -> String {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e7 {
        format!("{f:.1}")
    } else {
        f.to_string()
    }
}

/// Canonical text of a scalar for cross-type equality (`"5" == 5`): integral floats print as integers.
pub(crate) fn canonical_text(value: &Value<'_>) -> Option<String> {
    match value {
        Value::Float(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15 => {
            Some((*f as i64).to_string())
        }
        other => other.to_text().map(Cow::into_owned),
    }
}

/// ES equality of two scalars; strings compare exactly (or ASCII case-insensitively), numbers numerically,
/// and mixed types through their canonical text.
pub(crate) fn values_equal(a: &Value<'_>, b: &Value<'_>, case_insensitive: bool) -> bool {
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => {
            if case_insensitive {
                x.eq_ignore_ascii_case(y)
            } else {
                x == y
            }
        }
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
            a.as_f64() == b.as_f64()
        }
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Null, _) | (_, Value::Null) | (Value::Many(_), _) | (_, Value::Many(_)) => false,
        _ => match (canonical_text(a), canonical_text(b)) {
            (Some(x), Some(y)) => {
                if case_insensitive {
                    x.eq_ignore_ascii_case(&y)
                } else {
                    x == y
                }
            }
            _ => false,
        },
    }
}

/// ES ordering of two scalars: strings by code point, otherwise numerically (numeric strings are parsed).
pub(crate) fn values_order(a: &Value<'_>, b: &Value<'_>) -> Option<Ordering> {
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => Some(x.as_ref().cmp(y.as_ref())),
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        _ => numeric(a)?.partial_cmp(&numeric(b)?),
    }
}

fn numeric(value: &Value<'_>) -> Option<f64> {
    match value {
        Value::Int(_) | Value::Float(_) => value.as_f64(),
        Value::Str(s) => s.trim().parse().ok(),
        _ => None,
    }
}
