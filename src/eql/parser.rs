//! Recursive-descent parser for Elasticsearch EQL.

use std::sync::Arc;

use super::ast::*;
use super::error::{Diagnostic, ParseError, Span};
use super::lexer::{Token, TokenKind, tokenize};

/// Words that cannot be used as bare field names.
const RESERVED: &[&str] = &[
    "and", "or", "not", "in", "in~", "like", "like~", "regex", "regex~", "where", "sequence",
    "sample", "by", "with", "until", "true", "false", "null", "any", "join", "of",
];

pub(crate) fn parse_query(source: &str) -> Result<Query, ParseError> {
    let tokens = tokenize(source)?;
    let mut parser = Parser {
        source,
        tokens,
        pos: 0,
    };
    let body = if parser.peek().is_keyword("sequence") {
        QueryBody::Sequence(parser.sequence()?)
    } else if parser.peek().is_keyword("sample") {
        QueryBody::Sample(parser.sample()?)
    } else {
        QueryBody::Event(parser.event_query("`|` or the end of the query")?)
    };
    let pipes = parser.pipes()?;
    if parser.peek().kind != TokenKind::Eof {
        return Err(parser.unexpected("`|` or the end of the query"));
    }
    Ok(Query {
        source: Arc::from(source),
        body,
        pipes,
    })
}

struct Parser<'a> {
    source: &'a str,
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn peek_at(&self, offset: usize) -> &Token {
        &self.tokens[(self.pos + offset).min(self.tokens.len() - 1)]
    }

    fn advance(&mut self) -> Token {
        let token = self.peek().clone();
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        token
    }

    fn error(&self, span: Span, message: impl Into<String>) -> ParseError {
        ParseError(Diagnostic::new(self.source, span, message))
    }

    fn unexpected(&self, expected: &str) -> ParseError {
        let token = self.peek();
        let found = if token.kind == TokenKind::Eof {
            "the end of the query".to_string()
        } else {
            format!("`{}`", &self.source[token.span.start..token.span.end])
        };
        self.error(token.span, format!("expected {expected} but found {found}"))
    }

    fn eat(&mut self, kind: &TokenKind) -> bool {
        if &self.peek().kind == kind {
            self.advance();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, kind: &TokenKind, expected: &str) -> Result<Token, ParseError> {
        if &self.peek().kind == kind {
            Ok(self.advance())
        } else {
            Err(self.unexpected(expected))
        }
    }

    fn eat_keyword(&mut self, word: &str) -> bool {
        if self.peek().is_keyword(word) {
            self.advance();
            true
        } else {
            false
        }
    }

    fn expect_keyword(&mut self, word: &str) -> Result<Token, ParseError> {
        if self.peek().is_keyword(word) {
            Ok(self.advance())
        } else {
            Err(self.unexpected(&format!("`{word}`")))
        }
    }

    /// `<category> where <condition>`; `follow` names what may come after, for error messages.
    fn event_query(&mut self, follow: &str) -> Result<EventQuery, ParseError> {
        let start = self.peek().span;
        let token = self.advance();
        let category = match &token.kind {
            TokenKind::Ident(name) if name.eq_ignore_ascii_case("any") => None,
            TokenKind::Ident(name) if !is_reserved(name) => Some(name.clone()),
            TokenKind::Str(name) => Some(name.clone()),
            _ => {
                self.pos -= 1;
                return Err(self.unexpected(
                    "an event category (e.g. `process`, `any`, `sequence` or `sample`)",
                ));
            }
        };
        self.expect_keyword("where")?;
        let condition = self.expression(follow)?;
        Ok(EventQuery {
            category,
            span: start.to(condition.span),
            condition,
        })
    }

    fn sequence(&mut self) -> Result<Sequence, ParseError> {
        self.expect_keyword("sequence")?;
        let mut by = Vec::new();
        let mut maxspan = None;
        if self.eat_keyword("by") {
            by = self.join_keys()?;
            if self.eat_keyword("with") {
                maxspan = Some(self.maxspan()?);
            }
        } else if self.eat_keyword("with") {
            maxspan = Some(self.maxspan()?);
            if self.eat_keyword("by") {
                by = self.join_keys()?;
            }
        }
        let mut stages = Vec::new();
        while matches!(self.peek().kind, TokenKind::LBracket | TokenKind::Bang) {
            stages.push(self.stage(true)?);
        }
        if stages.len() < 2 {
            return Err(self.unexpected("a sequence term `[ … ]` (a sequence needs at least two)"));
        }
        let until = if self.eat_keyword("until") {
            Some(self.stage(false)?)
        } else {
            None
        };
        if stages.iter().all(|s| s.missing) {
            return Err(self.error(
                stages[0].span,
                "a sequence needs at least one non-missing event term",
            ));
        }
        Ok(Sequence {
            by,
            maxspan,
            stages,
            until,
        })
    }

    fn sample(&mut self) -> Result<Sample, ParseError> {
        self.expect_keyword("sample")?;
        let by = if self.eat_keyword("by") {
            self.join_keys()?
        } else {
            Vec::new()
        };
        let mut stages = Vec::new();
        while self.peek().kind == TokenKind::LBracket {
            stages.push(self.stage(false)?);
        }
        if stages.is_empty() {
            return Err(self.unexpected("a sample term `[ … ]`"));
        }
        Ok(Sample { by, stages })
    }

    fn maxspan(&mut self) -> Result<MaxSpan, ParseError> {
        let start = self.expect_keyword("maxspan")?.span;
        self.expect(&TokenKind::Assign, "`=`")?;
        let number = self.advance();
        let value = match number.kind {
            TokenKind::Int(n) => n as f64,
            TokenKind::Float(f) => f,
            _ => {
                self.pos -= 1;
                return Err(self.unexpected("a time span such as `10s`"));
            }
        };
        let unit_token = self.peek().clone();
        let nanos_per_unit: f64 = match unit_token.keyword() {
            Some("ms") => 1e6,
            Some("s") => 1e9,
            Some("m") => 60e9,
            Some("h") => 3600e9,
            Some("d") => 86400e9,
            _ => {
                return Err(self.error(
                    number.span.to(unit_token.span),
                    "expected a time unit (ms, s, m, h or d) after the maxspan number, e.g. `10s`",
                ));
            }
        };
        self.advance();
        Ok(MaxSpan {
            nanos: (value * nanos_per_unit) as i64,
            span: start.to(unit_token.span),
        })
    }

    fn join_keys(&mut self) -> Result<Vec<Expr>, ParseError> {
        let mut keys = vec![self.expression("`,`, `with` or `[`")?];
        while self.eat(&TokenKind::Comma) {
            keys.push(self.expression("`,`, `with` or `[`")?);
        }
        Ok(keys)
    }

    fn stage(&mut self, allow_sequence_options: bool) -> Result<Stage, ParseError> {
        let start = self.peek().span;
        let missing = allow_sequence_options && self.eat(&TokenKind::Bang);
        self.expect(&TokenKind::LBracket, "`[`")?;
        let query = self.event_query("`]`")?;
        let close = self.expect(&TokenKind::RBracket, "an operator or `]`")?;
        let by = if self.eat_keyword("by") {
            self.join_keys()?
        } else {
            Vec::new()
        };
        let mut runs = 1;
        if allow_sequence_options
            && self.peek().is_keyword("with")
            && self.peek_at(1).is_keyword("runs")
        {
            self.advance();
            self.advance();
            self.expect(&TokenKind::Assign, "`=`")?;
            let count = self.advance();
            match count.kind {
                TokenKind::Int(n) if (1..=100).contains(&n) => runs = n as u32,
                _ => {
                    return Err(
                        self.error(count.span, "expected a number of runs between 1 and 100")
                    );
                }
            }
        }
        Ok(Stage {
            query,
            by,
            runs,
            missing,
            span: start.to(close.span),
        })
    }

    fn pipes(&mut self) -> Result<Vec<Pipe>, ParseError> {
        let mut pipes = Vec::new();
        while self.eat(&TokenKind::Pipe) {
            let name = self.advance();
            let is_head = name.is_keyword("head");
            if !is_head && !name.is_keyword("tail") {
                self.pos -= 1;
                return Err(
                    self.unexpected("`head` or `tail` (the only pipes Elasticsearch supports)")
                );
            }
            let mut span = name.span;
            // ES defaults to 10 when the count is omitted
            let mut count = 10;
            if let TokenKind::Int(n) = self.peek().kind {
                let token = self.advance();
                span = span.to(token.span);
                count = usize::try_from(n)
                    .map_err(|_| self.error(token.span, "expected a non-negative count"))?;
            }
            pipes.push(if is_head {
                Pipe::Head { count, span }
            } else {
                Pipe::Tail { count, span }
            });
        }
        Ok(pipes)
    }

    fn expression(&mut self, follow: &str) -> Result<Expr, ParseError> {
        let expr = self.or()?;
        // a dangling token that cannot continue the expression gets a precise message here
        if matches!(
            self.peek().kind,
            TokenKind::Ident(_) | TokenKind::QuotedIdent(_) | TokenKind::Str(_)
        ) && !self.peek().keyword().is_some_and(|k| {
            ["by", "with", "until", "where"]
                .iter()
                .any(|w| k.eq_ignore_ascii_case(w))
        }) || matches!(
            self.peek().kind,
            TokenKind::Int(_) | TokenKind::Float(_) | TokenKind::LParen | TokenKind::Question
        ) {
            let expected = if follow.contains(" or ") {
                format!("an operator, {follow}")
            } else {
                format!("an operator or {follow}")
            };
            return Err(self.unexpected(&expected));
        }
        Ok(expr)
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.and()?;
        while self.eat_keyword("or") {
            let right = self.and()?;
            let span = left.span.to(right.span);
            left = Expr {
                kind: ExprKind::Or(Box::new(left), Box::new(right)),
                span,
            };
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.not()?;
        while self.eat_keyword("and") {
            let right = self.not()?;
            let span = left.span.to(right.span);
            left = Expr {
                kind: ExprKind::And(Box::new(left), Box::new(right)),
                span,
            };
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, ParseError> {
        if self.peek().is_keyword("not") {
            let start = self.advance().span;
            let inner = self.not()?;
            let span = start.to(inner.span);
            return Ok(Expr {
                kind: ExprKind::Not(Box::new(inner)),
                span,
            });
        }
        self.predicate()
    }

    fn predicate(&mut self) -> Result<Expr, ParseError> {
        let left = self.additive()?;
        let op = match self.peek().kind {
            TokenKind::Eq => Some(CompareOp::Eq),
            TokenKind::NotEq => Some(CompareOp::NotEq),
            TokenKind::Lt => Some(CompareOp::Lt),
            TokenKind::Le => Some(CompareOp::Le),
            TokenKind::Gt => Some(CompareOp::Gt),
            TokenKind::Ge => Some(CompareOp::Ge),
            _ => None,
        };
        if let Some(op) = op {
            self.advance();
            let right = self.additive()?;
            let span = left.span.to(right.span);
            return Ok(Expr {
                kind: ExprKind::Compare {
                    op,
                    left: Box::new(left),
                    right: Box::new(right),
                },
                span,
            });
        }
        if self.peek().kind == TokenKind::Colon {
            self.advance();
            return self.match_predicate(left, MatchKind::Colon, true);
        }
        let negated = self.peek().is_keyword("not")
            && (self.peek_at(1).is_keyword("in") || self.peek_at(1).is_keyword("in~"));
        if negated {
            self.advance();
        }
        let keyword = self.peek().keyword().map(str::to_ascii_lowercase);
        match keyword.as_deref() {
            Some(kw @ ("in" | "in~")) => {
                self.advance();
                let case_insensitive = kw == "in~";
                self.expect(&TokenKind::LParen, "`(` to start the list")?;
                let mut list = vec![self.expression("`,` or `)`")?];
                while self.eat(&TokenKind::Comma) {
                    list.push(self.expression("`,` or `)`")?);
                }
                let close = self.expect(&TokenKind::RParen, "`,` or `)`")?;
                let span = left.span.to(close.span);
                let kind = ExprKind::In {
                    value: Box::new(left),
                    list,
                    negated,
                    case_insensitive,
                };
                Ok(Expr { kind, span })
            }
            Some("like") => {
                self.advance();
                self.match_predicate(left, MatchKind::Like, false)
            }
            Some("like~") => {
                self.advance();
                self.match_predicate(left, MatchKind::Like, true)
            }
            Some("regex") => {
                self.advance();
                self.match_predicate(left, MatchKind::Regex, false)
            }
            Some("regex~") => {
                self.advance();
                self.match_predicate(left, MatchKind::Regex, true)
            }
            _ => Ok(left),
        }
    }

    /// Patterns after `:`, `like` or `regex`: one constant, or a parenthesized list of constants.
    fn match_predicate(
        &mut self,
        value: Expr,
        kind: MatchKind,
        case_insensitive: bool,
    ) -> Result<Expr, ParseError> {
        let mut patterns = Vec::new();
        let end = if self.eat(&TokenKind::LParen) {
            patterns.push(self.constant()?);
            while self.eat(&TokenKind::Comma) {
                patterns.push(self.constant()?);
            }
            self.expect(&TokenKind::RParen, "`,` or `)`")?.span
        } else {
            let constant = self.constant()?;
            let span = constant.span;
            patterns.push(constant);
            span
        };
        let span = value.span.to(end);
        Ok(Expr {
            kind: ExprKind::Match {
                kind,
                case_insensitive,
                value: Box::new(value),
                patterns,
            },
            span,
        })
    }

    fn constant(&mut self) -> Result<Expr, ParseError> {
        let negative = self.peek().kind == TokenKind::Minus;
        let start = self.peek().span;
        if negative {
            self.advance();
        }
        let token = self.advance();
        let literal = match (token.kind, negative) {
            (TokenKind::Str(s), false) => Literal::String(s),
            (TokenKind::Int(n), _) => Literal::Int(if negative { -n } else { n }),
            (TokenKind::Float(f), _) => Literal::Float(if negative { -f } else { f }),
            (TokenKind::Ident(word), false) if word.eq_ignore_ascii_case("true") => {
                Literal::Bool(true)
            }
            (TokenKind::Ident(word), false) if word.eq_ignore_ascii_case("false") => {
                Literal::Bool(false)
            }
            (TokenKind::Ident(word), false) if word.eq_ignore_ascii_case("null") => Literal::Null,
            _ => {
                self.pos -= 1;
                return Err(self.unexpected("a constant (string, number, boolean or null)"));
            }
        };
        Ok(Expr {
            kind: ExprKind::Literal(literal),
            span: start.to(token.span),
        })
    }

    fn additive(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.multiplicative()?;
        loop {
            let op = match self.peek().kind {
                TokenKind::Plus => ArithOp::Add,
                TokenKind::Minus => ArithOp::Sub,
                _ => return Ok(left),
            };
            self.advance();
            let right = self.multiplicative()?;
            let span = left.span.to(right.span);
            left = Expr {
                kind: ExprKind::Arithmetic {
                    op,
                    left: Box::new(left),
                    right: Box::new(right),
                },
                span,
            };
        }
    }

    fn multiplicative(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.unary()?;
        loop {
            let op = match self.peek().kind {
                TokenKind::Star => ArithOp::Mul,
                TokenKind::Slash => ArithOp::Div,
                TokenKind::Percent => ArithOp::Mod,
                _ => return Ok(left),
            };
            self.advance();
            let right = self.unary()?;
            let span = left.span.to(right.span);
            left = Expr {
                kind: ExprKind::Arithmetic {
                    op,
                    left: Box::new(left),
                    right: Box::new(right),
                },
                span,
            };
        }
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        match self.peek().kind {
            TokenKind::Minus => {
                let start = self.advance().span;
                let inner = self.unary()?;
                let span = start.to(inner.span);
                // fold negative number literals so `x > -1` stays a field-vs-constant comparison
                let kind = match inner.kind {
                    ExprKind::Literal(Literal::Int(n)) => ExprKind::Literal(Literal::Int(-n)),
                    ExprKind::Literal(Literal::Float(f)) => ExprKind::Literal(Literal::Float(-f)),
                    other => ExprKind::Negate(Box::new(Expr {
                        kind: other,
                        span: inner.span,
                    })),
                };
                Ok(Expr { kind, span })
            }
            TokenKind::Plus => {
                self.advance();
                self.unary()
            }
            _ => self.primary(),
        }
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        let token = self.peek().clone();
        match &token.kind {
            TokenKind::Int(_) | TokenKind::Float(_) | TokenKind::Str(_) => self.constant(),
            TokenKind::LParen => {
                self.advance();
                let inner = self.expression("`)`")?;
                let close = self.expect(&TokenKind::RParen, "an operator or `)`")?;
                Ok(Expr {
                    kind: inner.kind,
                    span: token.span.to(close.span),
                })
            }
            TokenKind::Question => {
                self.advance();
                let field = self.advance();
                let name = match field.kind {
                    TokenKind::Ident(name) if !is_reserved(&name) && !name.ends_with('~') => name,
                    TokenKind::QuotedIdent(name) => name,
                    _ => {
                        self.pos -= 1;
                        return Err(self.unexpected("a field name after `?`"));
                    }
                };
                Ok(Expr {
                    kind: ExprKind::Field {
                        name,
                        optional: true,
                    },
                    span: token.span.to(field.span),
                })
            }
            TokenKind::QuotedIdent(name) => {
                self.advance();
                Ok(Expr {
                    kind: ExprKind::Field {
                        name: name.clone(),
                        optional: false,
                    },
                    span: token.span,
                })
            }
            TokenKind::Ident(name) => {
                let lower = name.to_ascii_lowercase();
                if matches!(lower.as_str(), "true" | "false" | "null") {
                    return self.constant();
                }
                if self.peek_at(1).kind == TokenKind::LParen && !is_reserved(name) {
                    return self.call();
                }
                if is_reserved(name) || name.ends_with('~') {
                    return Err(self.unexpected("an expression"));
                }
                self.advance();
                Ok(Expr {
                    kind: ExprKind::Field {
                        name: name.clone(),
                        optional: false,
                    },
                    span: token.span,
                })
            }
            _ => Err(self.unexpected("an expression")),
        }
    }

    fn call(&mut self) -> Result<Expr, ParseError> {
        let name_token = self.advance();
        let TokenKind::Ident(raw_name) = name_token.kind else {
            return Err(self.error(name_token.span, "expected a function name"));
        };
        let (name, case_insensitive) = match raw_name.strip_suffix('~') {
            Some(base) => (base.to_string(), true),
            None => (raw_name, false),
        };
        self.expect(&TokenKind::LParen, "`(`")?;
        let mut args = Vec::new();
        if self.peek().kind != TokenKind::RParen {
            args.push(self.expression("`,` or `)`")?);
            while self.eat(&TokenKind::Comma) {
                args.push(self.expression("`,` or `)`")?);
            }
        }
        let close = self.expect(&TokenKind::RParen, "an operator, `,` or `)`")?;
        let span = name_token.span.to(close.span);
        Ok(Expr {
            kind: ExprKind::Call {
                name,
                case_insensitive,
                args,
                name_span: name_token.span,
            },
            span,
        })
    }
}

fn is_reserved(word: &str) -> bool {
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_renders_line_and_caret() {
        let error = parse_query("any where\n  kubernetes.audit.verb foo \"create\"").unwrap_err();
        assert_eq!(error.0.line, 2);
        assert_eq!(error.0.column, 25);
        assert_eq!(
            error.to_string(),
            concat!(
                "line 2, column 25: expected an operator, `|` or the end of the query but found `foo`\n",
                "    kubernetes.audit.verb foo \"create\"\n",
                "                          ^^^"
            )
        );
        let error = parse_query("process where (a == 1 b)").unwrap_err();
        assert!(
            error
                .to_string()
                .contains("expected an operator or `)` but found `b`"),
            "{error}"
        );
    }

    #[test]
    fn an_unfinished_query_points_after_its_last_token() {
        let error = parse_query("any where\n  verb ==\n\n").unwrap_err();
        assert_eq!((error.0.line, error.0.column), (2, 10));
        assert!(
            error.to_string().ends_with("    verb ==\n           ^"),
            "{error}"
        );
    }

    #[test]
    fn rejects_single_quotes_and_bad_escapes() {
        assert!(
            parse_query("process where a == 'x'")
                .unwrap_err()
                .to_string()
                .contains("double quotes")
        );
        assert!(parse_query(r#"process where a == "\q""#).is_err());
        assert!(parse_query("sequence with maxspan=10 [a where true] [b where true]").is_err());
    }

    #[test]
    fn parses_strings_and_sequences() {
        let query =
            parse_query(r#"process where a == "\u{41}\t" and b : """raw\n""" // comment"#).unwrap();
        let QueryBody::Event(event) = query.body else {
            panic!("event query expected")
        };
        let ExprKind::And(left, right) = event.condition.kind else {
            panic!("and expected")
        };
        let ExprKind::Compare { right: value, .. } = left.kind else {
            panic!("compare expected")
        };
        assert_eq!(value.kind, ExprKind::Literal(Literal::String("A\t".into())));
        let ExprKind::Match { patterns, .. } = right.kind else {
            panic!("match expected")
        };
        assert_eq!(
            patterns[0].kind,
            ExprKind::Literal(Literal::String("raw\\n".into()))
        );
        let query = parse_query("sequence by user.name with maxspan=5m [any where true] ![any where false] with runs=2 [any where true] until [any where true] | head 3").unwrap();
        let QueryBody::Sequence(sequence) = query.body else {
            panic!("sequence expected")
        };
        assert_eq!(sequence.maxspan.map(|m| m.nanos), Some(300_000_000_000));
        assert!(
            sequence.stages[1].missing && sequence.stages[1].runs == 2 && sequence.until.is_some()
        );
    }
}
