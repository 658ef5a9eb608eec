//! The ES EQL function library, with ES' null behaviour: a null input yields null.

use std::borrow::Cow;
use std::net::IpAddr;

use super::value::Value;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Function {
    Add,
    Subtract,
    Multiply,
    Divide,
    Modulo,
    Between { case_insensitive: bool },
    CidrMatch(Vec<Cidr>),
    Concat,
    EndsWith { case_insensitive: bool },
    IndexOf { case_insensitive: bool },
    Length,
    Number,
    StartsWith { case_insensitive: bool },
    String,
    StringContains { case_insensitive: bool },
    Substring,
}

/// Arity and whether a `~` variant exists, by ES name.
pub(crate) struct Signature {
    pub min_args: usize,
    pub max_args: Option<usize>,
    pub has_insensitive_variant: bool,
}

/// Function names are case-insensitive in ES (`CONCAT` is `concat`); `name` must be lowercased.
pub(crate) fn signature(name: &str) -> Option<Signature> {
    let sig = |min_args, max_args, has_insensitive_variant| Signature {
        min_args,
        max_args,
        has_insensitive_variant,
    };
    Some(match name {
        "add" | "subtract" | "multiply" | "divide" | "modulo" => sig(2, Some(2), false),
        "between" => sig(3, Some(4), true),
        "cidrmatch" => sig(2, None, false),
        "concat" => sig(1, None, false),
        "endswith" | "startswith" | "stringcontains" => sig(2, Some(2), true),
        "indexof" => sig(2, Some(3), true),
        "length" | "string" => sig(1, Some(1), false),
        "number" => sig(1, Some(2), false),
        "substring" => sig(2, Some(3), false),
        _ => return None,
    })
}

/// An IPv4 or IPv6 network.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cidr {
    network: IpAddr,
    prefix: u32,
}

impl Cidr {
    pub fn parse(text: &str) -> Option<Cidr> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address.trim().parse().ok()?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse().ok().filter(|p| *p <= max)?,
            None => max,
        };
        Some(Cidr { network, prefix })
    }

    pub fn contains(&self, ip: &IpAddr) -> bool {
        let mask = |bits: u32, width: u32| {
            if bits == 0 {
                0u128
            } else {
                (!0u128) << (width - bits)
            }
        };
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let m = mask(self.prefix, 32) as u32;
                u32::from(net) & m == u32::from(*ip) & m
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let m = mask(self.prefix, 128);
                u128::from(net) & m == u128::from(*ip) & m
            }
            _ => false,
        }
    }
}

pub(crate) fn cidr_match(cidrs: &[Cidr], text: &str) -> bool {
    text.trim()
        .parse::<IpAddr>()
        .is_ok_and(|ip| cidrs.iter().any(|c| c.contains(&ip)))
}

impl Function {
    /// Applies the function to scalar arguments (multi-values are expanded by the caller).
    pub fn apply<'a>(&self, args: &[Value<'a>]) -> Value<'a> {
        let arg = |i: usize| args.get(i).unwrap_or(&Value::Null);
        match self {
            Function::Add => arithmetic(arg(0), arg(1), i64::checked_add, |a, b| a + b),
            Function::Subtract => arithmetic(arg(0), arg(1), i64::checked_sub, |a, b| a - b),
            Function::Multiply => arithmetic(arg(0), arg(1), i64::checked_mul, |a, b| a * b),
            Function::Divide => divide(arg(0), arg(1)),
            Function::Modulo => modulo(arg(0), arg(1)),
            Function::Between { case_insensitive } => {
                let greedy = match arg(3) {
                    Value::Bool(b) => *b,
                    _ => false,
                };
                match (text(arg(0)), text(arg(1)), text(arg(2))) {
                    (Some(s), Some(left), Some(right)) => Value::Str(Cow::Owned(between(
                        &s,
                        &left,
                        &right,
                        greedy,
                        *case_insensitive,
                    ))),
                    _ => Value::Null,
                }
            }
            Function::CidrMatch(cidrs) => match arg(0) {
                Value::Str(s) => Value::Bool(cidr_match(cidrs, s)),
                _ => Value::Null,
            },
            Function::Concat => {
                let mut out = String::new();
                for value in args {
                    match value.to_text() {
                        Some(t) => out.push_str(&t),
                        None => return Value::Null,
                    }
                }
                Value::Str(Cow::Owned(out))
            }
            Function::EndsWith { case_insensitive } => {
                string_test(arg(0), arg(1), *case_insensitive, |s, p| s.ends_with(p))
            }
            Function::StartsWith { case_insensitive } => {
                string_test(arg(0), arg(1), *case_insensitive, |s, p| s.starts_with(p))
            }
            Function::StringContains { case_insensitive } => {
                string_test(arg(0), arg(1), *case_insensitive, |s, p| s.contains(p))
            }
            Function::IndexOf { case_insensitive } => {
                index_of(arg(0), arg(1), arg(2), *case_insensitive)
            }
            Function::Length => match arg(0) {
                Value::Str(s) => Value::Int(s.chars().count() as i64),
                _ => Value::Null,
            },
            Function::Number => to_number(arg(0), arg(1)),
            Function::String => arg(0).to_text().map_or(Value::Null, Value::Str),
            Function::Substring => substring(arg(0), arg(1), arg(2)),
        }
    }
}

fn text<'a>(value: &Value<'a>) -> Option<Cow<'a, str>> {
    match value {
        Value::Str(s) => Some(s.clone()),
        _ => None,
    }
}

fn fold_case(s: &str, case_insensitive: bool) -> Cow<'_, str> {
    if case_insensitive {
        Cow::Owned(s.to_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

fn string_test(
    value: &Value<'_>,
    pattern: &Value<'_>,
    case_insensitive: bool,
    test: fn(&str, &str) -> bool,
) -> Value<'static> {
    match (value, pattern) {
        (Value::Str(s), Value::Str(p)) => Value::Bool(test(
            &fold_case(s, case_insensitive),
            &fold_case(p, case_insensitive),
        )),
        _ => Value::Null,
    }
}

fn arithmetic<'a>(
    a: &Value<'_>,
    b: &Value<'_>,
    ints: fn(i64, i64) -> Option<i64>,
    floats: fn(f64, f64) -> f64,
) -> Value<'a> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => ints(*x, *y).map_or(Value::Null, Value::Int),
        _ => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => Value::Float(floats(x, y)),
            _ => Value::Null,
        },
    }
}

fn divide<'a>(a: &Value<'_>, b: &Value<'_>) -> Value<'a> {
    match (a, b) {
        // integer division truncates, as in Java; division by zero is an error in ES, null here
        (Value::Int(x), Value::Int(y)) => x.checked_div(*y).map_or(Value::Null, Value::Int),
        _ => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => Value::Float(x / y),
            _ => Value::Null,
        },
    }
}

fn modulo<'a>(a: &Value<'_>, b: &Value<'_>) -> Value<'a> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => x.checked_rem(*y).map_or(Value::Null, Value::Int),
        _ => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => Value::Float(x % y),
            _ => Value::Null,
        },
    }
}

/// Port of ES `StringUtils.between`.
fn between(s: &str, left: &str, right: &str, greedy: bool, case_insensitive: bool) -> String {
    if s.is_empty() || left.is_empty() || right.is_empty() {
        return s.to_string();
    }
    // ASCII folding keeps byte offsets valid in the original string
    let fold = |t: &str| {
        if case_insensitive {
            t.to_ascii_lowercase()
        } else {
            t.to_string()
        }
    };
    let (haystack, left, right) = (fold(s), fold(left), fold(right));
    let Some(found) = haystack.find(&left) else {
        return String::new();
    };
    let start = found + left.len();
    let end = if greedy {
        haystack.rfind(&right)
    } else {
        haystack[start..].find(&right).map(|i| i + start)
    };
    match end {
        Some(end) if end >= start => s.get(start..end).unwrap_or_default().to_string(),
        _ => String::new(),
    }
}

fn index_of<'a>(
    value: &Value<'_>,
    needle: &Value<'_>,
    start: &Value<'_>,
    case_insensitive: bool,
) -> Value<'a> {
    let (Value::Str(s), Value::Str(needle)) = (value, needle) else {
        return Value::Null;
    };
    let start = match start {
        Value::Int(i) => (*i).max(0) as usize,
        Value::Null => 0,
        _ => return Value::Null,
    };
    let (haystack, needle) = (
        fold_case(s, case_insensitive),
        fold_case(needle, case_insensitive),
    );
    // indexes are in characters, like Java's (for BMP text)
    let Some(byte_start) = haystack
        .char_indices()
        .map(|(i, _)| i)
        .chain([haystack.len()])
        .nth(start)
    else {
        return Value::Null;
    };
    match haystack[byte_start..].find(needle.as_ref()) {
        Some(i) => Value::Int(haystack[..byte_start + i].chars().count() as i64),
        None => Value::Null,
    }
}

fn to_number<'a>(value: &Value<'_>, base: &Value<'_>) -> Value<'a> {
    let Value::Str(s) = value else {
        return Value::Null;
    };
    let has_hex_prefix = s.starts_with("0x");
    let radix = match base {
        Value::Null => {
            if has_hex_prefix {
                16
            } else {
                10
            }
        }
        Value::Int(r) if (2..=36).contains(r) => *r as u32,
        _ => return Value::Null,
    };
    let digits = if has_hex_prefix && radix == 16 {
        &s[2..]
    } else {
        s.as_ref()
    };
    if radix == 10 {
        if let Ok(i) = digits.parse::<i64>() {
            return Value::Int(i);
        }
        return digits.parse::<f64>().map_or(Value::Null, Value::Float);
    }
    i64::from_str_radix(digits, radix).map_or(Value::Null, Value::Int)
}

/// Python-style slice by character positions (negative counts from the end), as ES `substring`.
fn substring<'a>(value: &Value<'a>, start: &Value<'_>, end: &Value<'_>) -> Value<'a> {
    let Value::Str(s) = value else {
        return Value::Null;
    };
    let length = s.chars().count() as i64;
    let Value::Int(mut start) = *start else {
        return Value::Null;
    };
    let mut end = match end {
        Value::Int(e) => *e,
        Value::Null => length,
        _ => return Value::Null,
    };
    if start < 0 {
        start = (start + length).max(0);
    }
    if end < 0 {
        end = (end + length).max(0);
    }
    end = end.min(length);
    if start >= end {
        return Value::Str(Cow::Borrowed(""));
    }
    Value::Str(Cow::Owned(
        s.chars()
            .skip(start as usize)
            .take((end - start) as usize)
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Value<'static> {
        Value::Str(Cow::Owned(text.to_string()))
    }

    #[test]
    fn null_inputs_yield_null() {
        let functions = [
            Function::Add,
            Function::Divide,
            Function::Between {
                case_insensitive: false,
            },
            Function::CidrMatch(vec![]),
            Function::Concat,
            Function::EndsWith {
                case_insensitive: true,
            },
            Function::IndexOf {
                case_insensitive: false,
            },
            Function::Length,
            Function::Number,
            Function::StartsWith {
                case_insensitive: false,
            },
            Function::String,
            Function::StringContains {
                case_insensitive: false,
            },
            Function::Substring,
        ];
        for function in functions {
            assert_eq!(
                function.apply(&[Value::Null, s("a"), s("b")]),
                Value::Null,
                "{function:?}"
            );
        }
        assert_eq!(Function::Concat.apply(&[s("a"), Value::Null]), Value::Null);
        assert_eq!(
            Function::StartsWith {
                case_insensitive: false
            }
            .apply(&[s("a"), Value::Null]),
            Value::Null
        );
    }

    #[test]
    fn string_functions_follow_es() {
        let between = Function::Between {
            case_insensitive: true,
        };
        assert_eq!(
            between.apply(&[s("System Idle Process"), s("s"), s("E")]),
            s("yst")
        );
        assert_eq!(
            Function::Substring.apply(&[s("explorer.exe"), Value::Int(-4)]),
            s(".exe")
        );
        assert_eq!(
            Function::Substring.apply(&[s("explorer.exe"), Value::Int(1), Value::Int(3)]),
            s("xp")
        );
        let index_of = Function::IndexOf {
            case_insensitive: true,
        };
        assert_eq!(
            index_of.apply(&[s("Explorer.exe"), s("PLORE")]),
            Value::Int(2)
        );
        assert_eq!(
            index_of.apply(&[s("Explorer.exe"), s("plore"), Value::Int(4)]),
            Value::Null
        );
        assert_eq!(
            Function::Number.apply(&[s("0x32"), Value::Int(16)]),
            Value::Int(50)
        );
        assert_eq!(
            Function::Divide.apply(&[Value::Int(83), Value::Int(2)]),
            Value::Int(41)
        );
        assert_eq!(
            Function::Concat.apply(&[Value::Int(5), s(":"), Value::Bool(true)]),
            s("5:true")
        );
        let cidr = Function::CidrMatch(vec![Cidr::parse("10.6.48.157/8").unwrap()]);
        assert_eq!(cidr.apply(&[s("10.1.2.3")]), Value::Bool(true));
        assert_eq!(cidr.apply(&[s("11.1.2.3")]), Value::Bool(false));
    }
}
