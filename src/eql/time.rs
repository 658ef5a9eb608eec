//! Timestamp parsing into epoch nanoseconds, for the formats ES accepts in date / date_nanos fields.

use super::node::{Kind, Node};

const NANOS_PER_MILLI: i64 = 1_000_000;

/// Epoch nanoseconds of a JSON timestamp: epoch millis as a number or a numeric string (optionally with a
/// fractional part, as ES' date_nanos index stores `"131509374294.365140"`), or an ISO-8601 / RFC 3339 string.
pub(crate) fn node_to_nanos(value: &dyn Node) -> Option<i64> {
    match value.kind() {
        Kind::Int(millis) => millis.checked_mul(NANOS_PER_MILLI),
        Kind::Float(millis) => Some((millis * NANOS_PER_MILLI as f64) as i64),
        Kind::Str(s) => parse_timestamp(s),
        Kind::Array => {
            let mut nanos = None;
            value.any_item(&mut |item| {
                nanos = node_to_nanos(item);
                nanos.is_some()
            });
            nanos
        }
        Kind::Null | Kind::Bool(_) | Kind::Object => None,
    }
}

pub(crate) fn parse_timestamp(text: &str) -> Option<i64> {
    let text = text.trim();
    parse_epoch_millis(text).or_else(|| parse_iso8601(text))
}

fn parse_epoch_millis(text: &str) -> Option<i64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let millis: i64 = whole.parse().ok()?;
    let sub_millis = fraction_to_units(fraction, 6);
    let nanos = millis
        .checked_mul(NANOS_PER_MILLI)?
        .checked_add(sub_millis)?;
    Some(if negative { -nanos } else { nanos })
}

/// `digits` as a fraction scaled to `scale` decimal places (extra digits truncated).
fn fraction_to_units(digits: &str, scale: usize) -> i64 {
    let mut value = 0i64;
    for i in 0..scale {
        let digit = digits.as_bytes().get(i).map_or(0, |b| i64::from(b - b'0'));
        value = value * 10 + digit;
    }
    value
}

/// `YYYY-MM-DD[(T| )hh:mm[:ss[.fraction]]][Z|±hh[:mm]]`; no zone means UTC, as in ES.
fn parse_iso8601(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        if part.bytes().all(|b| b.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    if bytes.len() < 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let mut seconds_of_day = 0;
    let mut nanos = 0;
    let mut rest = &text[10..];
    if let Some(time) = rest.strip_prefix('T').or_else(|| rest.strip_prefix(' ')) {
        let tb = time.as_bytes();
        if tb.len() < 5 || tb[2] != b':' {
            return None;
        }
        let hour: i64 = time[0..2].parse().ok()?;
        let minute: i64 = time[3..5].parse().ok()?;
        let mut second = 0;
        rest = &time[5..];
        if let Some(after) = rest.strip_prefix(':') {
            second = after.get(0..2)?.parse().ok()?;
            rest = &after[2..];
            if let Some(fraction) = rest.strip_prefix('.').or_else(|| rest.strip_prefix(',')) {
                let len = fraction.bytes().take_while(u8::is_ascii_digit).count();
                nanos = fraction_to_units(&fraction[..len], 9);
                rest = &fraction[len..];
            }
        }
        if hour > 23 || minute > 59 || second > 60 {
            return None;
        }
        seconds_of_day = hour * 3600 + minute * 60 + second;
    }
    let offset_seconds = match rest {
        "" | "Z" | "z" => 0,
        zone => {
            let sign = match zone.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let digits: String = zone[1..].chars().filter(|c| *c != ':').collect();
            if digits.len() != 2 && digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            let hours: i64 = digits[0..2].parse().ok()?;
            let minutes: i64 = digits.get(2..4).map_or(Some(0), |m| m.parse().ok())?;
            sign * (hours * 3600 + minutes * 60)
        }
    };
    let seconds = days_from_civil(year, month, day) * 86_400 + seconds_of_day - offset_seconds;
    seconds.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_supported_formats() {
        assert_eq!(node_to_nanos(&serde_json::json!(1)), Some(1_000_000));
        assert_eq!(
            parse_timestamp("131509374294.365140"),
            Some(131_509_374_294_365_140)
        );
        assert_eq!(
            parse_timestamp("1970-01-01T00:00:01.5Z"),
            Some(1_500_000_000)
        );
        assert_eq!(
            parse_timestamp("1974-03-03T02:22:54.294365140Z"),
            Some(131_509_374_294_365_140)
        );
        assert_eq!(
            parse_timestamp("2026-12-04T20:09:43.123456Z"),
            parse_timestamp("2026-12-04T21:09:43.123456+01:00")
        );
        assert_eq!(
            parse_timestamp("2017-08-30"),
            Some(1_504_051_200_000_000_000)
        );
        assert_eq!(parse_timestamp("not a date"), None);
    }
}
