//! String matchers for `:`, `like` (wildcards `*` `?`) and `regex` (Lucene regular expressions), built once at
//! compile time. Wildcard patterns of the common shapes avoid the regex engine entirely.

use regex::Regex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LiteralMatch {
    Prefix,
    Suffix,
    Contains,
}

#[derive(Debug, Clone)]
pub(crate) enum StringMatcher {
    Exact {
        text: String,
        case_insensitive: bool,
    },
    Prefix {
        text: String,
        case_insensitive: bool,
    },
    Suffix {
        text: String,
        case_insensitive: bool,
    },
    Contains {
        text: String,
        case_insensitive: bool,
    },
    /// `*` alone: any string.
    Any,
    Regex(Regex),
}

impl StringMatcher {
    pub fn is_match(&self, value: &str) -> bool {
        match self {
            StringMatcher::Exact {
                text,
                case_insensitive,
            } => {
                if *case_insensitive {
                    value.eq_ignore_ascii_case(text)
                } else {
                    value == text
                }
            }
            StringMatcher::Prefix {
                text,
                case_insensitive,
            } => value.get(..text.len()).is_some_and(|head| {
                if *case_insensitive {
                    head.eq_ignore_ascii_case(text)
                } else {
                    head == text
                }
            }),
            StringMatcher::Suffix {
                text,
                case_insensitive,
            } => value
                .len()
                .checked_sub(text.len())
                .and_then(|start| value.get(start..))
                .is_some_and(|tail| {
                    if *case_insensitive {
                        tail.eq_ignore_ascii_case(text)
                    } else {
                        tail == text
                    }
                }),
            StringMatcher::Contains {
                text,
                case_insensitive,
            } => {
                if *case_insensitive {
                    contains_ignore_ascii_case(value, text)
                } else {
                    value.contains(text.as_str())
                }
            }
            StringMatcher::Any => true,
            StringMatcher::Regex(regex) => regex.is_match(value),
        }
    }

    /// A literal prefix, suffix or substring test (`startsWith`, `endsWith`, `stringContains`).
    pub fn literal(kind: LiteralMatch, text: &str, case_insensitive: bool) -> StringMatcher {
        if case_insensitive && !text.is_ascii() {
            let mut buffer = String::new();
            for c in text.chars() {
                push_literal(&mut buffer, c);
            }
            let regex = match kind {
                LiteralMatch::Prefix => format!("(?is)^{buffer}"),
                LiteralMatch::Suffix => format!("(?is){buffer}$"),
                LiteralMatch::Contains => format!("(?is){buffer}"),
            };
            if let Ok(compiled) = Regex::new(&regex) {
                return StringMatcher::Regex(compiled);
            }
        }
        let text = text.to_string();
        match kind {
            LiteralMatch::Prefix => StringMatcher::Prefix {
                text,
                case_insensitive,
            },
            LiteralMatch::Suffix => StringMatcher::Suffix {
                text,
                case_insensitive,
            },
            LiteralMatch::Contains => StringMatcher::Contains {
                text,
                case_insensitive,
            },
        }
    }

    /// A wildcard pattern: `*` matches any run, `?` one character; everything else (including `\`) is literal.
    pub fn wildcard(pattern: &str, case_insensitive: bool) -> StringMatcher {
        // non-ASCII case folding needs the regex engine's Unicode tables
        let fast_ok = !case_insensitive || pattern.is_ascii();
        if fast_ok && !pattern.contains('?') {
            let inner = pattern.trim_matches('*');
            if !inner.contains('*') {
                let text = inner.to_string();
                return match (pattern.starts_with('*'), pattern.ends_with('*')) {
                    _ if inner.is_empty() && !pattern.is_empty() => StringMatcher::Any,
                    (false, false) => StringMatcher::Exact {
                        text,
                        case_insensitive,
                    },
                    (true, false) => StringMatcher::Suffix {
                        text,
                        case_insensitive,
                    },
                    (false, true) => StringMatcher::Prefix {
                        text,
                        case_insensitive,
                    },
                    (true, true) => StringMatcher::Contains {
                        text,
                        case_insensitive,
                    },
                };
            }
        }
        let mut regex = String::with_capacity(pattern.len() + 16);
        regex.push_str(if case_insensitive {
            "(?is)^(?:"
        } else {
            "(?s)^(?:"
        });
        for c in pattern.chars() {
            match c {
                '*' => regex.push_str(".*"),
                '?' => regex.push('.'),
                c => push_literal(&mut regex, c),
            }
        }
        regex.push_str(")$");
        match Regex::new(&regex) {
            Ok(compiled) => StringMatcher::Regex(compiled),
            // only escaped literals and `.`/`.*` are emitted, so this cannot fail; fall back to exact text
            Err(_) => StringMatcher::Exact {
                text: pattern.to_string(),
                case_insensitive,
            },
        }
    }

    /// A Lucene regular expression matched against the whole value.
    pub fn lucene_regex(pattern: &str, case_insensitive: bool) -> Result<StringMatcher, String> {
        let translated = translate_lucene_regex(pattern)?;
        let flags = if case_insensitive { "(?is)" } else { "(?s)" };
        Regex::new(&format!("{flags}^(?:{translated})$"))
            .map(StringMatcher::Regex)
            .map_err(|e| format!("invalid regular expression: {e}"))
    }
}

fn contains_ignore_ascii_case(haystack: &str, needle: &str) -> bool {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    n.is_empty() || h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

fn push_literal(out: &mut String, c: char) {
    let mut buffer = [0u8; 4];
    out.push_str(&regex::escape(c.encode_utf8(&mut buffer)));
}

/// Lucene RegExp (ES `regexp` query, default flags) to regex-crate syntax. Lucene has no anchors or predefined
/// classes: `\x` is always the literal `x`, `^`/`$` are literals. `@` (any string) and `#` (empty) are mapped;
/// complement `~`, intersection `&` and numeric ranges `<n-m>` have no equivalent and are rejected.
fn translate_lucene_regex(pattern: &str) -> Result<String, String> {
    let mut out = String::with_capacity(pattern.len() * 2);
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped) => push_literal(&mut out, escaped),
                None => return Err("regular expression ends with a lone `\\`".into()),
            },
            '"' => {
                let mut closed = false;
                for quoted in chars.by_ref() {
                    if quoted == '"' {
                        closed = true;
                        break;
                    }
                    push_literal(&mut out, quoted);
                }
                if !closed {
                    return Err("unterminated `\"` in regular expression".into());
                }
            }
            '[' => {
                out.push('[');
                if chars.peek() == Some(&'^') {
                    chars.next();
                    out.push('^');
                }
                let mut closed = false;
                while let Some(member) = chars.next() {
                    match member {
                        ']' => {
                            closed = true;
                            break;
                        }
                        '\\' => match chars.next() {
                            Some(escaped) => push_literal(&mut out, escaped),
                            None => return Err("regular expression ends with a lone `\\`".into()),
                        },
                        '-' => out.push('-'),
                        other => push_literal(&mut out, other),
                    }
                }
                if !closed {
                    return Err("unterminated `[` in regular expression".into());
                }
                out.push(']');
            }
            '.' | '*' | '+' | '?' | '|' | '(' | ')' | '{' | '}' | ',' => out.push(c),
            '0'..='9' => out.push(c),
            '@' => out.push_str(".*"),
            '#' => out.push_str("(?:)"),
            '~' | '&' | '<' | '>' => {
                return Err(format!(
                    "the Lucene regular expression operator `{c}` is not supported"
                ));
            }
            other => push_literal(&mut out, other),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_shapes() {
        let m = |p: &str, v: &str| StringMatcher::wildcard(p, true).is_match(v);
        assert!(m("*", "anything"));
        assert!(m("abc", "ABC"));
        assert!(m("ab*", "ABcd"));
        assert!(m("*cd", "abCD"));
        assert!(m("*bc*", "aBCd"));
        assert!(m("a?c*e", "abcde"));
        assert!(m("*\\Sam\\*", "x\\SAM\\y"));
        assert!(!StringMatcher::wildcard("abc", false).is_match("ABC"));
    }

    #[test]
    fn lucene_regex_is_whole_value() {
        let r = StringMatcher::lucene_regex(".*?net1[ ]+localgroup.*?", false).unwrap();
        assert!(r.is_match("net1  localgroup admins"));
        assert!(
            !StringMatcher::lucene_regex("net", false)
                .unwrap()
                .is_match("xnetx")
        );
        assert!(
            StringMatcher::lucene_regex("a\\sb", false)
                .unwrap()
                .is_match("asb")
        );
        assert!(
            StringMatcher::lucene_regex("\"a.b\"", false)
                .unwrap()
                .is_match("a.b")
        );
        assert!(StringMatcher::lucene_regex("a~b", false).is_err());
    }
}
