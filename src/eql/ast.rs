//! Syntax tree of a parsed EQL query. Every node keeps its span so compile errors can point into the text.

use std::sync::Arc;

use super::error::Span;

#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// The query text the spans refer to.
    pub source: Arc<str>,
    pub body: QueryBody,
    pub pipes: Vec<Pipe>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum QueryBody {
    Event(EventQuery),
    Sequence(Sequence),
    Sample(Sample),
}

/// `<category> where <condition>`.
#[derive(Debug, Clone, PartialEq)]
pub struct EventQuery {
    /// `None` for `any`.
    pub category: Option<String>,
    pub condition: Expr,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sequence {
    /// Sequence-level `by` keys, prepended to every stage's keys.
    pub by: Vec<Expr>,
    pub maxspan: Option<MaxSpan>,
    pub stages: Vec<Stage>,
    pub until: Option<Stage>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxSpan {
    pub nanos: i64,
    pub span: Span,
}

/// One bracketed term of a sequence or sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub query: EventQuery,
    pub by: Vec<Expr>,
    /// `with runs=N`: the term repeats N times (1 when absent).
    pub runs: u32,
    /// `![ … ]`: no matching event may occur at this position.
    pub missing: bool,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub by: Vec<Expr>,
    pub stages: Vec<Stage>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pipe {
    Head { count: usize, span: Span },
    Tail { count: usize, span: Span },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    Literal(Literal),
    /// A field; `optional` when written `?name` (missing from the mapping is not an error, null joins null).
    Field {
        name: String,
        optional: bool,
    },
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Compare {
        op: CompareOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    /// `in`, `in~`, `not in`, `not in~`.
    In {
        value: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
        case_insensitive: bool,
    },
    /// `:`, `like`, `like~`, `regex`, `regex~` with one or more constant patterns.
    Match {
        kind: MatchKind,
        case_insensitive: bool,
        value: Box<Expr>,
        patterns: Vec<Expr>,
    },
    Arithmetic {
        op: ArithOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    Negate(Box<Expr>),
    Call {
        name: String,
        case_insensitive: bool,
        args: Vec<Expr>,
        name_span: Span,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    NotEq,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CompareOp {
    /// The operator with its operands swapped (`1 < x` is `x > 1`).
    pub fn flipped(self) -> CompareOp {
        match self {
            CompareOp::Lt => CompareOp::Gt,
            CompareOp::Le => CompareOp::Ge,
            CompareOp::Gt => CompareOp::Lt,
            CompareOp::Ge => CompareOp::Le,
            other => other,
        }
    }

    /// The logical negation (`not x < 1` is `x >= 1`), as ES' optimizer rewrites it.
    pub fn negated(self) -> CompareOp {
        match self {
            CompareOp::Eq => CompareOp::NotEq,
            CompareOp::NotEq => CompareOp::Eq,
            CompareOp::Lt => CompareOp::Ge,
            CompareOp::Le => CompareOp::Gt,
            CompareOp::Gt => CompareOp::Le,
            CompareOp::Ge => CompareOp::Lt,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKind {
    /// `:` — case-insensitive with wildcards.
    Colon,
    Like,
    Regex,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}
