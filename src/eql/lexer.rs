//! Tokenizer for EQL query text.

use super::error::{Diagnostic, ParseError, Span};

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TokenKind {
    /// Identifier or keyword; a trailing `~` (e.g. `in~`, `startsWith~`) is part of the name.
    Ident(String),
    /// Backtick-quoted field name.
    QuotedIdent(String),
    Str(String),
    Int(i64),
    Float(f64),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Pipe,
    Eq,
    NotEq,
    Lt,
    Le,
    Gt,
    Ge,
    Colon,
    Assign,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Bang,
    Question,
    Eof,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub kind: TokenKind,
    pub span: Span,
}

impl Token {
    /// The keyword this token spells (case-insensitive, as in ES), if it is a plain identifier.
    pub fn keyword(&self) -> Option<&str> {
        match &self.kind {
            TokenKind::Ident(name) => Some(name),
            _ => None,
        }
    }

    pub fn is_keyword(&self, word: &str) -> bool {
        self.keyword().is_some_and(|k| k.eq_ignore_ascii_case(word))
    }
}

pub(crate) fn tokenize(source: &str) -> Result<Vec<Token>, ParseError> {
    let mut lexer = Lexer {
        source,
        bytes: source.as_bytes(),
        pos: 0,
    };
    let mut tokens = Vec::new();
    loop {
        let token = lexer.next_token()?;
        let done = token.kind == TokenKind::Eof;
        tokens.push(token);
        if done {
            return Ok(tokens);
        }
    }
}

struct Lexer<'a> {
    source: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl Lexer<'_> {
    fn error(&self, span: Span, message: impl Into<String>) -> ParseError {
        ParseError(Diagnostic::new(self.source, span, message))
    }

    fn peek(&self, offset: usize) -> u8 {
        self.bytes.get(self.pos + offset).copied().unwrap_or(0)
    }

    fn skip_trivia(&mut self) -> Result<(), ParseError> {
        loop {
            match (self.peek(0), self.peek(1)) {
                (b' ' | b'\t' | b'\r' | b'\n', _) => self.pos += 1,
                (b'/', b'/') => {
                    while self.pos < self.bytes.len() && self.bytes[self.pos] != b'\n' {
                        self.pos += 1;
                    }
                }
                (b'/', b'*') => {
                    let start = self.pos;
                    match self.source[self.pos + 2..].find("*/") {
                        Some(end) => self.pos += end + 4,
                        None => {
                            return Err(
                                self.error(Span::new(start, start + 2), "unterminated comment")
                            );
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn next_token(&mut self) -> Result<Token, ParseError> {
        self.skip_trivia()?;
        let start = self.pos;
        let c = self.peek(0);
        let single = |kind| (kind, 1);
        let (kind, len) = match c {
            0 if self.pos >= self.bytes.len() => (TokenKind::Eof, 0),
            b'(' => single(TokenKind::LParen),
            b')' => single(TokenKind::RParen),
            b'[' => single(TokenKind::LBracket),
            b']' => single(TokenKind::RBracket),
            b',' => single(TokenKind::Comma),
            b'|' => single(TokenKind::Pipe),
            b':' => single(TokenKind::Colon),
            b'+' => single(TokenKind::Plus),
            b'-' => single(TokenKind::Minus),
            b'*' => single(TokenKind::Star),
            b'/' => single(TokenKind::Slash),
            b'%' => single(TokenKind::Percent),
            b'?' => single(TokenKind::Question),
            b'=' if self.peek(1) == b'=' => (TokenKind::Eq, 2),
            b'=' => single(TokenKind::Assign),
            b'!' if self.peek(1) == b'=' => (TokenKind::NotEq, 2),
            b'!' => single(TokenKind::Bang),
            b'<' if self.peek(1) == b'=' => (TokenKind::Le, 2),
            b'<' => single(TokenKind::Lt),
            b'>' if self.peek(1) == b'=' => (TokenKind::Ge, 2),
            b'>' => single(TokenKind::Gt),
            b'"' => return self.string(),
            b'\'' => {
                return Err(self.error(
                    Span::new(start, start + 1),
                    "single quotes are not supported for strings, use double quotes",
                ));
            }
            b'`' => return self.quoted_ident(),
            b'0'..=b'9' => return self.number(),
            c if c == b'_' || c == b'@' || c.is_ascii_alphabetic() => return Ok(self.ident()),
            _ => {
                let ch = self.source[start..]
                    .chars()
                    .next()
                    .map_or(1, char::len_utf8);
                return Err(self.error(Span::new(start, start + ch), "unexpected character"));
            }
        };
        self.pos += len;
        Ok(Token {
            kind,
            span: Span::new(start, self.pos),
        })
    }

    fn ident(&mut self) -> Token {
        let start = self.pos;
        while matches!(self.peek(0), b'_' | b'@' | b'.' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z') {
            self.pos += 1;
        }
        if self.peek(0) == b'~' {
            self.pos += 1;
        }
        let name = self.source[start..self.pos].to_string();
        Token {
            kind: TokenKind::Ident(name),
            span: Span::new(start, self.pos),
        }
    }

    fn quoted_ident(&mut self) -> Result<Token, ParseError> {
        let start = self.pos;
        let mut name = String::new();
        self.pos += 1;
        loop {
            match self.source[self.pos..].find('`') {
                // `` inside a quoted identifier is an escaped backtick
                Some(i) if self.peek(i + 1) == b'`' => {
                    name.push_str(&self.source[self.pos..self.pos + i + 1]);
                    self.pos += i + 2;
                }
                Some(i) => {
                    name.push_str(&self.source[self.pos..self.pos + i]);
                    self.pos += i + 1;
                    return Ok(Token {
                        kind: TokenKind::QuotedIdent(name),
                        span: Span::new(start, self.pos),
                    });
                }
                None => {
                    return Err(self.error(
                        Span::new(start, start + 1),
                        "unterminated quoted field name",
                    ));
                }
            }
        }
    }

    fn number(&mut self) -> Result<Token, ParseError> {
        let start = self.pos;
        while self.peek(0).is_ascii_digit() {
            self.pos += 1;
        }
        let mut is_float = false;
        if self.peek(0) == b'.' && self.peek(1).is_ascii_digit() {
            is_float = true;
            self.pos += 1;
            while self.peek(0).is_ascii_digit() {
                self.pos += 1;
            }
        }
        if matches!(self.peek(0), b'e' | b'E')
            && (self.peek(1).is_ascii_digit()
                || (matches!(self.peek(1), b'+' | b'-') && self.peek(2).is_ascii_digit()))
        {
            is_float = true;
            self.pos += 2;
            while self.peek(0).is_ascii_digit() {
                self.pos += 1;
            }
        }
        let text = &self.source[start..self.pos];
        let span = Span::new(start, self.pos);
        let kind = if is_float {
            TokenKind::Float(
                text.parse()
                    .map_err(|_| self.error(span, "invalid number"))?,
            )
        } else {
            match text.parse::<i64>() {
                Ok(n) => TokenKind::Int(n),
                Err(_) => TokenKind::Float(
                    text.parse()
                        .map_err(|_| self.error(span, "invalid number"))?,
                ),
            }
        };
        Ok(Token { kind, span })
    }

    fn string(&mut self) -> Result<Token, ParseError> {
        let start = self.pos;
        if self.source[start..].starts_with("\"\"\"") {
            // raw string: no escapes, ends at the first closing triple quote
            return match self.source[start + 3..].find("\"\"\"") {
                Some(end) => {
                    let value = self.source[start + 3..start + 3 + end].to_string();
                    self.pos = start + end + 6;
                    Ok(Token {
                        kind: TokenKind::Str(value),
                        span: Span::new(start, self.pos),
                    })
                }
                None => Err(self.error(Span::new(start, start + 3), "unterminated raw string")),
            };
        }
        self.pos += 1;
        let mut value = String::new();
        loop {
            let rest = &self.source[self.pos..];
            let Some(c) = rest.chars().next() else {
                return Err(self.error(Span::new(start, start + 1), "unterminated string"));
            };
            match c {
                '"' => {
                    self.pos += 1;
                    return Ok(Token {
                        kind: TokenKind::Str(value),
                        span: Span::new(start, self.pos),
                    });
                }
                '\n' | '\r' => {
                    return Err(self.error(Span::new(start, self.pos), "unterminated string"));
                }
                '\\' => {
                    let escape_start = self.pos;
                    let escaped = rest[1..].chars().next();
                    self.pos += 1 + escaped.map_or(0, char::len_utf8);
                    let decoded = match escaped {
                        Some('n') => '\n',
                        Some('r') => '\r',
                        Some('t') => '\t',
                        Some('b') => '\u{8}',
                        Some('f') => '\u{c}',
                        Some('"') => '"',
                        Some('\'') => '\'',
                        Some('\\') => '\\',
                        Some('u') => self.unicode_escape(escape_start)?,
                        _ => {
                            return Err(self.error(
                                Span::new(escape_start, self.pos),
                                "invalid escape sequence; valid ones are \\n \\r \\t \\b \\f \\\" \\' \\\\ and \\u{hex}",
                            ));
                        }
                    };
                    value.push(decoded);
                }
                c => {
                    value.push(c);
                    self.pos += c.len_utf8();
                }
            }
        }
    }

    /// `\u{XXXX}` with 2 to 8 hex digits (ES syntax); `self.pos` is just after the `u`.
    fn unicode_escape(&mut self, escape_start: usize) -> Result<char, ParseError> {
        let invalid = |lexer: &Self, end: usize| {
            lexer.error(
                Span::new(escape_start, end),
                "invalid unicode escape, expected \\u{XXXX} with 2-8 hex digits",
            )
        };
        if self.peek(0) != b'{' {
            return Err(invalid(self, self.pos));
        }
        let digits_start = self.pos + 1;
        let Some(close) = self.source[digits_start..].find('}') else {
            return Err(invalid(self, self.pos + 1));
        };
        let digits = &self.source[digits_start..digits_start + close];
        self.pos = digits_start + close + 1;
        if !(2..=8).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid(self, self.pos));
        }
        u32::from_str_radix(digits, 16)
            .ok()
            .and_then(char::from_u32)
            .ok_or_else(|| invalid(self, self.pos))
    }
}
