//! Diagnostics shared by parse and compile errors: a message pinned to a span of the query text.

use std::fmt;

/// Byte range in the query source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }
}

/// A message about a place in the query, rendered with the query line and a caret underline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub message: String,
    /// 1-based line of the span start.
    pub line: usize,
    /// 1-based column (in characters) of the span start.
    pub column: usize,
    /// The source line containing the span start, without its line break.
    pub source_line: String,
    /// Width of the underline in characters (at least 1).
    pub width: usize,
}

impl Diagnostic {
    pub fn new(source: &str, span: Span, message: impl Into<String>) -> Self {
        let mut start = floor_char_boundary(source, span.start.min(source.len()));
        // An error at the end of the query ("expected an expression") points just past its last token, not at
        // the blank lines after it.
        if start >= source.trim_end().len() {
            start = source.trim_end().len();
        }
        let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = source[start..]
            .find('\n')
            .map_or(source.len(), |i| start + i);
        let line = source[..start].matches('\n').count() + 1;
        let column = source[line_start..start].chars().count() + 1;
        let end = floor_char_boundary(source, span.end.clamp(start, line_end));
        let width = source[start..end].chars().count().max(1);
        Diagnostic {
            message: message.into(),
            line,
            column,
            source_line: source[line_start..line_end]
                .trim_end_matches('\r')
                .to_string(),
            width,
        }
    }
}

fn floor_char_boundary(s: &str, mut index: usize) -> usize {
    while index > 0 && !s.is_char_boundary(index) {
        index -= 1;
    }
    index
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}\n  {}\n  {}{}",
            self.line,
            self.column,
            self.message,
            self.source_line,
            " ".repeat(self.column - 1),
            "^".repeat(self.width)
        )
    }
}

/// The query text is not valid EQL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub Diagnostic);

/// The query parses but Elasticsearch would reject it at verification time (unknown function, arity, types),
/// or it cannot run in the requested mode (e.g. streaming a `tail` pipe).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CompileError(pub Diagnostic);
