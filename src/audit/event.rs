//! One line of an audit log: an `audit.k8s.io/v1` `Event`, or an `EventList` of them (as the webhook and batch
//! backends write). A line that is neither is reported with a reason, never fatal.

use serde_json::Value;

use crate::eql::{Kind, Node};

pub const AUDIT_API_VERSION: &str = "audit.k8s.io/v1";

/// Why a line was skipped; `as_str` is the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum MalformedReason {
    #[error("empty line")]
    Empty,
    #[error("not valid JSON")]
    InvalidJson,
    #[error("JSON, but not an audit.k8s.io/v1 Event or EventList")]
    NotAuditEvent,
    #[error("line longer than the configured maximum")]
    Oversized,
}

impl MalformedReason {
    pub fn as_str(self) -> &'static str {
        match self {
            MalformedReason::Empty => "empty",
            MalformedReason::InvalidJson => "invalid_json",
            MalformedReason::NotAuditEvent => "not_audit_event",
            MalformedReason::Oversized => "oversized",
        }
    }
}

/// The audit events held by one line, in order.
pub fn parse_audit_line(line: &[u8]) -> Result<Vec<Value>, MalformedReason> {
    audit_events(parse_json_line(line)?)
}

/// The audit events a line's JSON value holds, in order.
pub fn audit_events(line: Value) -> Result<Vec<Value>, MalformedReason> {
    match (line_shape(&line)?, line) {
        (LineShape::Event, event) => Ok(vec![event]),
        (LineShape::EventList, Value::Object(mut list)) => match list.remove("items") {
            Some(Value::Array(items)) => Ok(items),
            _ => Err(MalformedReason::NotAuditEvent),
        },
        (LineShape::EventList, _) => Err(MalformedReason::NotAuditEvent),
    }
}

/// What an audit log line holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineShape {
    /// One audit event: the line itself.
    Event,
    /// An `EventList`: its `items` are the events.
    EventList,
}

/// Tells an audit event or event list from any other JSON value, whatever represents the line.
pub fn line_shape(line: &dyn Node) -> Result<LineShape, MalformedReason> {
    let envelope = Envelope::of(line).ok_or(MalformedReason::NotAuditEvent)?;
    match envelope.kind.and_then(|kind| kind.as_str()) {
        Some("Event") if envelope.is_audit_event() => Ok(LineShape::Event),
        Some("EventList") if envelope.api_version() == Some(AUDIT_API_VERSION) => {
            let items = envelope
                .items
                .filter(|items| items.kind() == Kind::Array)
                .ok_or(MalformedReason::NotAuditEvent)?;
            let all_events = !items.any_item(&mut |item| {
                !Envelope::of(item).is_some_and(|item| item.is_audit_event())
            });
            if all_events {
                Ok(LineShape::EventList)
            } else {
                Err(MalformedReason::NotAuditEvent)
            }
        }
        _ => Err(MalformedReason::NotAuditEvent),
    }
}

/// The members of an object that tell an audit event (or event list) from other JSON, found in one pass.
#[derive(Default)]
struct Envelope<'n> {
    kind: Option<&'n dyn Node>,
    api_version: Option<&'n dyn Node>,
    audit_id: Option<&'n dyn Node>,
    items: Option<&'n dyn Node>,
}

impl<'n> Envelope<'n> {
    /// `None` when `object` is not an object.
    fn of(object: &'n dyn Node) -> Option<Self> {
        if object.kind() != Kind::Object {
            return None;
        }
        let mut envelope = Envelope::default();
        object.any_entry(&mut |key, value| {
            match key {
                "kind" => envelope.kind = Some(value),
                "apiVersion" => envelope.api_version = Some(value),
                "auditID" => envelope.audit_id = Some(value),
                "items" => envelope.items = Some(value),
                _ => {}
            }
            false
        });
        Some(envelope)
    }

    fn api_version(&self) -> Option<&'n str> {
        self.api_version.and_then(|version| version.as_str())
    }

    // Items of an EventList carry no kind/apiVersion of their own on every server version; an auditID is what
    // every audit event has.
    fn is_audit_event(&self) -> bool {
        let kind_ok = self.kind.is_none_or(|kind| kind.as_str() == Some("Event"));
        let version_ok = self
            .api_version()
            .is_none_or(|version| version == AUDIT_API_VERSION);
        kind_ok
            && version_ok
            && self
                .audit_id
                .is_some_and(|id| matches!(id.kind(), Kind::Str(_)))
    }
}

/// A line holding one already-normalised ECS document (`vigil scan --input ecs`).
pub fn parse_ecs_line(line: &[u8]) -> Result<Value, MalformedReason> {
    ecs_document(parse_json_line(line)?)
}

/// The ECS document a line's JSON value is, if it is one.
pub fn ecs_document(line: Value) -> Result<Value, MalformedReason> {
    match line {
        document @ Value::Object(_) => Ok(document),
        _ => Err(MalformedReason::NotAuditEvent),
    }
}

fn parse_json_line(line: &[u8]) -> Result<Value, MalformedReason> {
    let line = non_empty_line(line)?;
    serde_json::from_slice(line).map_err(|_| MalformedReason::InvalidJson)
}

/// The line without surrounding whitespace, unless nothing else is left.
pub fn non_empty_line(line: &[u8]) -> Result<&[u8], MalformedReason> {
    let line = line.trim_ascii();
    if line.is_empty() {
        Err(MalformedReason::Empty)
    } else {
        Ok(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a1","stage":"ResponseComplete","verb":"get"}"#;

    #[test]
    fn single_events_and_lists() {
        assert_eq!(parse_audit_line(EVENT.as_bytes()).unwrap().len(), 1);
        let list = format!(
            r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{EVENT},{EVENT}]}}"#
        );
        let events = parse_audit_line(list.as_bytes()).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1]["auditID"], "a1");
    }

    #[test]
    fn malformed_lines_say_why() {
        let cases: [(&[u8], MalformedReason); 7] = [
            (b"", MalformedReason::Empty),
            (b"   \r", MalformedReason::Empty),
            (
                br#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"#,
                MalformedReason::InvalidJson,
            ),
            (b"\x00\xff\xfe garbage", MalformedReason::InvalidJson),
            (
                br#"{"kind":"Pod","apiVersion":"v1"}"#,
                MalformedReason::NotAuditEvent,
            ),
            (
                br#"{"kind":"Event","apiVersion":"audit.k8s.io/v1"}"#,
                MalformedReason::NotAuditEvent,
            ),
            (b"[1,2]", MalformedReason::NotAuditEvent),
        ];
        for (line, reason) in cases {
            assert_eq!(
                parse_audit_line(line),
                Err(reason),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn a_list_with_one_bad_item_is_rejected_whole() {
        let list = format!(
            r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{EVENT},{{"x":1}}]}}"#
        );
        assert_eq!(
            parse_audit_line(list.as_bytes()),
            Err(MalformedReason::NotAuditEvent)
        );
    }
}
