//! Reading only what the rules read. Parsing a whole audit event into a `serde_json::Value` costs more than
//! evaluating dozens of rules on it, and rules read a handful of fields. A [`Projection`], computed once from the
//! compiled rules, parses each line into a pruned [`Doc`] holding just those fields (everything else is skipped
//! without being built; strings and keys are borrowed from the line, objects and arrays live in an arena the caller
//! resets between lines, so reading a line allocates nothing once the arena has grown), on which the rules give the
//! same results as on the whole event; the whole event is parsed again only for the few events an alert is written
//! about ([`ProjectedEvent::whole`]).
//!
//! Lines that are not valid JSON in a part no rule reads are the one difference: skipping checks the syntax but not
//! that strings (and the keys of members not kept) are UTF-8, that numbers fit a double, that `\u` escapes pair their surrogates, or the 128-level
//! nesting limit, so such a line is evaluated instead of being skipped as invalid. The API server never writes one.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::fmt;

use bumpalo::Bump;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::audit::event::{
    LineShape, MalformedReason, audit_events, ecs_document, line_shape, non_empty_line,
};
use crate::ecs;
use crate::engine::Input;
use crate::eql::{CompiledQuery, Kind, Node};

/// Which parts of each line to materialise.
#[derive(Debug, Clone)]
pub struct Projection {
    input: Input,
    line: Selection,
    /// What [`ProjectedEvent::shown`] reads, if more than `line`.
    shown: Option<Selection>,
}

/// A tree of raw key segments; a path ending at a node keeps its whole value.
#[derive(Debug, Clone, Default)]
struct Selection {
    whole: bool,
    children: Vec<(String, Selection)>,
    /// Bit `n % 64` is set for a child of `n` bytes: every key of every line is looked up, and most are ruled
    /// out by their length alone.
    child_lengths: u64,
    /// Bit `b % 64` is set for a child whose name starts with byte `b`: a dotted key can only lead somewhere if
    /// its first part is a child, so most keys are never searched for dots.
    child_first_bytes: u64,
}

/// Where a kept key leads.
struct Member<'s> {
    selection: &'s Selection,
    /// The child's name when the key is exactly that (no dots, valid UTF-8: a child's name is a `String`).
    name: Option<&'s str>,
}

impl Selection {
    fn insert(&mut self, path: &[String]) {
        let Some((first, rest)) = path.split_first() else {
            self.whole = true;
            return;
        };
        self.child_mut(first).insert(rest);
    }

    fn child_mut(&mut self, segment: &str) -> &mut Selection {
        let index = match self.children.iter().position(|(name, _)| name == segment) {
            Some(index) => index,
            None => {
                self.children
                    .push((segment.to_owned(), Selection::default()));
                self.child_lengths |= 1 << (segment.len() % 64);
                // A key spelling an empty first segment starts with its dot.
                let first = segment.bytes().next().unwrap_or(b'.');
                self.child_first_bytes |= 1 << (first % 64);
                self.children.len() - 1
            }
        };
        &mut self.children[index].1
    }

    fn merge(&mut self, other: &Selection) {
        self.whole |= other.whole;
        for (segment, child) in &other.children {
            self.child_mut(segment).merge(child);
        }
    }

    /// Where a raw key leads, if anywhere. A key with dots stands for as many segments as it has parts, as field
    /// paths read it (`{"a.b": 1}` is `a.b`).
    fn member(&self, key: &[u8]) -> Option<Member<'_>> {
        // Segments never hold dots, so most keys are one segment and either match here or not at all.
        if let Some((name, selection)) = self.segment(key) {
            return Some(Member {
                selection,
                name: Some(name),
            });
        }
        let first = *key.first()?;
        if self.child_first_bytes & (1 << (first % 64)) == 0 || !key.contains(&b'.') {
            return None;
        }
        key.split(|byte| *byte == b'.')
            .try_fold(self, |node, segment| {
                node.segment(segment).map(|(_, child)| child)
            })
            .map(|selection| Member {
                selection,
                name: None,
            })
    }

    fn segment(&self, segment: &[u8]) -> Option<(&str, &Selection)> {
        if self.child_lengths & (1 << (segment.len() % 64)) == 0 {
            return None;
        }
        // Keys of one length often differ in their first byte: compared before calling memcmp.
        let first = segment.first();
        self.children
            .iter()
            .find(|(name, _)| name.as_bytes().first() == first && name.as_bytes() == segment)
            .map(|(name, child)| (name.as_str(), child))
    }
}

impl Projection {
    /// What `queries` (compiled for `input`) read when streamed (see [`CompiledQuery::fields_streamed`]), plus
    /// what telling audit events from other lines needs.
    pub fn new<'a>(queries: impl IntoIterator<Item = &'a CompiledQuery>, input: Input) -> Self {
        let paths = queries.into_iter().flat_map(|query| {
            query
                .fields_streamed()
                .iter()
                .flat_map(|field| raw_paths_read(field, input))
        });
        Projection {
            input,
            line: line_selection(paths, input),
            shown: None,
        }
    }

    /// Also reads `paths` of every event (raw-event paths, or document paths for ECS input), for the caller's own
    /// checks on the projected events (e.g. who made the request).
    pub fn reading(mut self, paths: impl IntoIterator<Item = Vec<String>>) -> Self {
        let extra = line_selection(paths, self.input);
        self.line.merge(&extra);
        self
    }

    /// Also reads `paths` of each event (raw-event paths, or document paths for ECS input), on demand, for the
    /// events shown to users ([`ProjectedEvent::shown`]): the whole event need not be parsed for them.
    pub fn showing(self, paths: impl IntoIterator<Item = Vec<String>>) -> Self {
        Projection {
            shown: Some(line_selection(paths, self.input)),
            ..self
        }
    }

    /// Reads whole lines: for rules that need whole events anyway, and as the reference projections must match.
    pub fn whole(input: Input) -> Self {
        Projection {
            input,
            line: Selection {
                whole: true,
                ..Selection::default()
            },
            shown: None,
        }
    }

    /// The events of one line as the rules see them, with the same validation as
    /// [`parse_audit_line`](crate::audit::event::parse_audit_line) and
    /// [`parse_ecs_line`](crate::audit::event::parse_ecs_line).
    ///
    /// The line's objects and arrays are allocated in `arena`; resetting it between lines keeps its memory
    /// bounded by the largest line.
    pub fn read_line<'a>(
        &'a self,
        line: &'a [u8],
        arena: &'a Bump,
    ) -> Result<ProjectedLine<'a>, MalformedReason> {
        let text = non_empty_line(line)?;
        Ok(ProjectedLine {
            projection: self,
            text,
            events: self.events(&self.line, text, arena)?,
            arena,
            shown_events: OnceCell::new(),
            whole_events: OnceCell::new(),
        })
    }

    /// The events of `text` as `selection` keeps them.
    fn events<'a>(
        &self,
        selection: &'a Selection,
        text: &'a [u8],
        arena: &'a Bump,
    ) -> Result<&'a [Doc<'a>], MalformedReason> {
        let mut deserializer = serde_json::Deserializer::from_slice(text);
        let value = Project { selection, arena }
            .deserialize(&mut deserializer)
            .and_then(|value| deserializer.end().map(|()| value))
            .map_err(|_| MalformedReason::InvalidJson)?;
        match self.input {
            Input::Audit => match line_shape(&value)? {
                LineShape::Event => Ok(std::slice::from_ref(arena.alloc(value))),
                LineShape::EventList => match value.get("items") {
                    Some(Doc::Array(items)) => Ok(items),
                    _ => Err(MalformedReason::NotAuditEvent),
                },
            },
            Input::Ecs if value.kind() == Kind::Object => {
                Ok(std::slice::from_ref(arena.alloc(value)))
            }
            Input::Ecs => Err(MalformedReason::NotAuditEvent),
        }
    }
}

/// What to keep of a line for events of which `paths` are read, plus what telling audit events from other lines
/// needs.
fn line_selection(paths: impl IntoIterator<Item = Vec<String>>, input: Input) -> Selection {
    let mut event = Selection::default();
    for path in paths {
        event.insert(&path);
    }
    match input {
        Input::Audit => {
            for key in ["kind", "apiVersion", "auditID"] {
                event.insert(&[key.to_owned()]);
            }
            // A line is an event or an EventList of them: `items` holds events, as well as being a field of an
            // event line that some rule might read.
            let mut line = event.clone();
            line.child_mut("items").merge(&event);
            line
        }
        Input::Ecs => event,
    }
}

/// Where the rules' fields are in the raw line.
fn raw_paths_read(field: &str, input: Input) -> Vec<Vec<String>> {
    match input {
        Input::Audit => ecs::raw_paths_read(field),
        Input::Ecs => vec![field.split('.').map(str::to_owned).collect()],
    }
}

/// One line read through a projection.
pub struct ProjectedLine<'a> {
    projection: &'a Projection,
    text: &'a [u8],
    events: &'a [Doc<'a>],
    arena: &'a Bump,
    shown_events: OnceCell<Option<&'a [Doc<'a>]>>,
    whole_events: OnceCell<Vec<Value>>,
}

impl<'a> ProjectedLine<'a> {
    /// The line's events, in order.
    pub fn events(&self) -> impl Iterator<Item = ProjectedEvent<'_, 'a>> {
        self.events
            .iter()
            .enumerate()
            .map(|(index, projected)| ProjectedEvent {
                line: self,
                index,
                projected,
            })
    }

    /// The `index`th event as [`Projection::showing`] reads it, parsing the line again the first time one is
    /// asked for.
    fn shown_event(&self, index: usize) -> Option<&'a Doc<'a>> {
        let shown = self.projection.shown.as_ref()?;
        let events = self
            .shown_events
            .get_or_init(|| self.projection.events(shown, self.text, self.arena).ok());
        events.and_then(|events| events.get(index))
    }

    /// The `index`th event in full, parsing the line again the first time one is asked for. A line only the
    /// projection accepts (see the module documentation) yields its projected events.
    fn whole_event(&self, index: usize) -> Option<&Value> {
        let whole = self.whole_events.get_or_init(|| {
            let projected = || self.events.iter().map(Doc::to_json).collect();
            if self.projection.line.whole {
                return projected();
            }
            let parsed =
                serde_json::from_slice(self.text).map_err(|_| MalformedReason::InvalidJson);
            match self.projection.input {
                Input::Audit => parsed.and_then(audit_events),
                Input::Ecs => parsed.and_then(ecs_document).map(|document| vec![document]),
            }
            .unwrap_or_else(|_| projected())
        });
        whole.get(index)
    }
}

/// One event of a line read through a projection.
#[derive(Clone, Copy)]
pub struct ProjectedEvent<'l, 'a> {
    line: &'l ProjectedLine<'a>,
    index: usize,
    projected: &'a Doc<'a>,
}

impl<'l, 'a> ProjectedEvent<'l, 'a> {
    /// The event pruned to what the rules read: what to evaluate them on.
    pub fn projected(&self) -> &'a Doc<'a> {
        self.projected
    }

    /// The event as [`Projection::showing`] reads it: what to show users (the projected one when no such paths
    /// were given, or if the line does not parse again with them).
    pub fn shown(&self) -> &'a Doc<'a> {
        self.line.shown_event(self.index).unwrap_or(self.projected)
    }

    /// The whole event, for alert metadata (the pruned one if the line cannot be parsed whole).
    pub fn whole(&self) -> &'l Value {
        self.line.whole_event(self.index).unwrap_or(&Value::Null)
    }
}

/// A JSON value holding what a projection keeps: strings and keys borrowed from the line (or, when they hold
/// escapes, copied into the arena), objects and arrays in the arena. Objects keep their members in line order, a
/// repeated key once (the last value, as `serde_json::Value` keeps it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Doc<'a> {
    Null,
    Bool(bool),
    /// Numbers that fit an `i64`.
    Int(i64),
    /// Other numbers, as `serde_json::Number::as_f64` reads them.
    Float(f64),
    Str(&'a str),
    Array(&'a [Doc<'a>]),
    Object {
        members: &'a [(&'a str, Doc<'a>)],
        /// Whether some key holds a dot.
        dotted_keys: bool,
    },
}

impl<'a> Doc<'a> {
    /// The member `key` of an object.
    fn get(&self, key: &str) -> Option<&'a Doc<'a>> {
        match self {
            Doc::Object { members, .. } => members
                .iter()
                .find(|(name, _)| same_key(name, key))
                .map(|(_, value)| value),
            _ => None,
        }
    }
}

/// Key equality, for keys that often share a length (`kind`, `verb`, `user`): their first bytes tell them apart
/// without calling memcmp.
fn same_key(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.as_bytes().first() == b.as_bytes().first() && a == b
}

impl Node for Doc<'_> {
    fn kind(&self) -> Kind<'_> {
        match self {
            Doc::Null => Kind::Null,
            Doc::Bool(b) => Kind::Bool(*b),
            Doc::Int(i) => Kind::Int(*i),
            Doc::Float(f) => Kind::Float(*f),
            Doc::Str(s) => Kind::Str(s),
            Doc::Array(_) => Kind::Array,
            Doc::Object { .. } => Kind::Object,
        }
    }

    fn get(&self, key: &str) -> Option<&dyn Node> {
        Doc::get(self, key).map(|value| value as &dyn Node)
    }

    fn any_item<'s>(&'s self, visit: &mut dyn FnMut(&'s dyn Node) -> bool) -> bool {
        match self {
            Doc::Array(items) => items.iter().any(|item| visit(item)),
            _ => false,
        }
    }

    fn any_entry<'s>(&'s self, visit: &mut dyn FnMut(&'s str, &'s dyn Node) -> bool) -> bool {
        match self {
            Doc::Object { members, .. } => members.iter().any(|(key, value)| visit(key, value)),
            _ => false,
        }
    }

    fn has_dotted_keys(&self) -> bool {
        matches!(
            self,
            Doc::Object {
                dotted_keys: true,
                ..
            }
        )
    }

    fn to_json(&self) -> Value {
        match self {
            Doc::Null => Value::Null,
            Doc::Bool(b) => Value::Bool(*b),
            Doc::Int(i) => Value::from(*i),
            Doc::Float(f) => Value::from(*f),
            Doc::Str(s) => Value::String((*s).to_owned()),
            Doc::Array(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Doc::Object { members, .. } => Value::Object(
                members
                    .iter()
                    .map(|(key, value)| ((*key).to_owned(), value.to_json()))
                    .collect::<Map<String, Value>>(),
            ),
        }
    }
}

/// Deserialises a value keeping only what a `Selection` selects; arrays are transparent, as they are to field paths.
#[derive(Clone, Copy)]
struct Project<'de> {
    selection: &'de Selection,
    arena: &'de Bump,
}

impl<'de> DeserializeSeed<'de> for Project<'de> {
    type Value = Doc<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Doc<'de>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Project<'de> {
    type Value = Doc<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Doc<'de>, A::Error> {
        // A selected object holds at most one member per selected key.
        let capacity = match self.selection.whole {
            true => 0,
            false => self.selection.children.len(),
        };
        let mut members = bumpalo::collections::Vec::with_capacity_in(capacity, self.arena);
        let mut dotted_keys = false;
        while let Some(RawKey(key)) = map.next_key()? {
            let member = match self.selection.whole {
                true => Some(Member {
                    selection: self.selection,
                    name: None,
                }),
                false => self.selection.member(&key),
            };
            let Some(Member { selection, name }) = member else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let value = map.next_value_seed(Project { selection, ..self })?;
            let key: &'de str = match name {
                Some(name) => name,
                None => {
                    // Only the keys kept are checked to be UTF-8, as only the values kept are.
                    let not_utf8 = |_| de::Error::custom("object key is not UTF-8");
                    let key = match key {
                        Cow::Borrowed(key) => std::str::from_utf8(key).map_err(not_utf8)?,
                        Cow::Owned(key) => self
                            .arena
                            .alloc_str(std::str::from_utf8(&key).map_err(not_utf8)?),
                    };
                    dotted_keys |= key.contains('.');
                    key
                }
            };
            // A repeated key keeps its last value.
            match members
                .iter_mut()
                .find(|(known, _): &&mut (&str, Doc)| same_key(known, key))
            {
                Some(member) => member.1 = value,
                None => members.push((key, value)),
            }
        }
        Ok(Doc::Object {
            members: members.into_bump_slice(),
            dotted_keys,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Doc<'de>, A::Error> {
        let mut items = bumpalo::collections::Vec::new_in(self.arena);
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Doc::Array(items.into_bump_slice()))
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Doc<'de>, E> {
        Ok(Doc::Bool(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Doc<'de>, E> {
        Ok(Doc::Int(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Doc<'de>, E> {
        Ok(i64::try_from(value).map_or(Doc::Float(value as f64), Doc::Int))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Doc<'de>, E> {
        Ok(Doc::Float(value))
    }

    fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<Doc<'de>, E> {
        Ok(Doc::Str(value))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Doc<'de>, E> {
        Ok(Doc::Str(self.arena.alloc_str(value)))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Doc<'de>, E> {
        Ok(Doc::Str(self.arena.alloc_str(&value)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Doc<'de>, E> {
        Ok(Doc::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Doc<'de>, E> {
        Ok(Doc::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Doc<'de>, D::Error> {
        self.deserialize(deserializer)
    }
}

/// An object key, borrowed from the line unless it holds escapes: most keys are looked at and dropped.
///
/// Read as bytes: serde_json then does not check that the key is UTF-8, which most keys, those of members no rule
/// reads, need not be.
struct RawKey<'de>(Cow<'de, [u8]>);

impl<'de> Deserialize<'de> for RawKey<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_bytes(RawKeyVisitor)
    }
}

struct RawKeyVisitor;

impl<'de> Visitor<'de> for RawKeyVisitor {
    type Value = RawKey<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an object key")
    }

    fn visit_borrowed_bytes<E: de::Error>(self, key: &'de [u8]) -> Result<RawKey<'de>, E> {
        Ok(RawKey(Cow::Borrowed(key)))
    }

    fn visit_bytes<E: de::Error>(self, key: &[u8]) -> Result<RawKey<'de>, E> {
        Ok(RawKey(Cow::Owned(key.to_owned())))
    }

    fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<RawKey<'de>, E> {
        Ok(RawKey(Cow::Borrowed(key.as_bytes())))
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<RawKey<'de>, E> {
        Ok(RawKey(Cow::Owned(key.as_bytes().to_owned())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::compile_query;
    use serde_json::json;

    /// A raw event with dotted keys, empty values and an escaped key, to project.
    fn event() -> Value {
        json!({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse", "auditID": "a1",
            "stage": "ResponseComplete", "verb": "create", "userAgent": "curl/8.5.0",
            "user": {"username": "eve", "uid": "u-1", "groups": ["g"], "extra": {"authentication.kubernetes.io/pod-name": ["p"]}},
            "impersonatedUser": {"username": ""},
            "sourceIPs": ["10.0.0.1", "10.0.0.1"], "objectRef": {"resource": "pods", "namespace": "web"},
            "objectRef.name": "dotted",
            "requestObject": {"metadata": {"name": "x"}, "spec": {"containers": [{"securityContext": {"privileged": true}}, {"image": "a"}]}},
            "responseObject": {"metadata": {"name": "x"}, "status": {}},
            "annotations": {
                "authorization.k8s.io/decision": "forbid", "authorization.k8s.io/reason": "", "sp\u{e9}cial": "1",
                // Dedotted, both are `a_b_c`: the greater raw key wins.
                "a.b_c": "first", "a_b.c": "second",
                // Spells `_x` with an empty first segment.
                ".x": "dot first"
            },
            "stageTimestamp": "2026-12-04T10:00:00.000000Z"
        })
    }

    #[test]
    fn every_field_reads_the_same_on_the_projection() {
        let fields = [
            "@timestamp",
            "event.action",
            "event.outcome",
            "user.name",
            "user.id",
            "user_agent.original",
            "source.ip",
            "client.ip",
            "related.ip",
            "related.user",
            "orchestrator.namespace",
            "orchestrator.resource.type",
            "orchestrator.resource.name",
            "kubernetes.audit",
            "kubernetes.audit.user.extra.authentication.kubernetes.io/pod-name",
            "kubernetes.audit.objectRef.name",
            "kubernetes.audit.impersonatedUser.username",
            "kubernetes.audit.requestObject",
            "kubernetes.audit.requestObject.spec.containers.securityContext.privileged",
            "kubernetes.audit.responseObject",
            "kubernetes.audit.annotations",
            "kubernetes.audit.annotations.authorization_k8s_io/decision",
            "kubernetes.audit.annotations.a_b_c",
            "kubernetes.audit.annotations._x",
            "kubernetes.audit.annotations.sp\u{e9}cial",
        ];
        // An escaped key cannot be borrowed from the line.
        let line = event().to_string().replace("sp\u{e9}cial", "sp\\u00e9cial");
        assert!(line.contains(r"sp\u00e9cial"));
        for field in fields {
            let query =
                compile_query(&format!("any where `{field}` != null"), Input::Audit).unwrap();
            let projection = Projection::new([&query], Input::Audit);
            let arena = Bump::new();
            let read = projection.read_line(line.as_bytes(), &arena).unwrap();
            let projected = read.events().next().unwrap();
            let source = ecs::raw_source(field).unwrap();
            assert_eq!(
                source.values(&projected.projected().to_json()),
                source.values(&event()),
                "{field}"
            );
            assert_eq!(
                query.matches(projected.projected()),
                query.matches(&event()),
                "{field}"
            );
            assert_eq!(projected.whole(), &event());
        }
    }

    #[test]
    fn shown_events_hold_what_alert_metadata_reads() {
        let query = compile_query(r#"any where event.action == "create""#, Input::Audit).unwrap();
        let projection =
            Projection::new([&query], Input::Audit).showing(crate::alert::metadata_paths(&[]));
        let mut event = event();
        event["requestURI"] = json!("/api/v1/pods?token=x");
        event["responseStatus"] = json!({"code": 201, "message": "created"});
        event["annotations"]["authorization.k8s.io/reason"] = json!("RBAC");
        let line = event.to_string();
        let arena = Bump::new();
        let read = projection.read_line(line.as_bytes(), &arena).unwrap();
        let projected = read.events().next().unwrap();
        assert_eq!(
            crate::alert::event_metadata(projected.shown()),
            crate::alert::event_metadata(&event)
        );
        assert!(
            projected
                .shown()
                .get("requestObject")
                .is_some_and(|object| object.get("spec").is_none()),
            "bodies are not read"
        );
    }

    #[test]
    fn keys_are_checked_to_be_utf8_where_members_are_kept() {
        let query = compile_query(
            r#"any where kubernetes.audit.annotations != null"#,
            Input::Audit,
        )
        .unwrap();
        let projection = Projection::new([&query], Input::Audit);
        let line = |annotation_key: &[u8], other_key: &[u8]| {
            let mut line = br#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a1","annotations":{""#.to_vec();
            line.extend_from_slice(annotation_key);
            line.extend_from_slice(br#"":"x"},""#);
            line.extend_from_slice(other_key);
            line.extend_from_slice(br#"":1}"#);
            line
        };
        let arena = Bump::new();
        let read = |line: &[u8]| projection.read_line(line, &arena).err();
        assert_eq!(read(&line(b"a", b"b")), None);
        // Like every part of the line no rule reads, a skipped member's key is not checked.
        assert_eq!(read(&line(b"a", b"b\xff")), None);
        assert_eq!(
            read(&line(b"a\xff", b"b")),
            Some(MalformedReason::InvalidJson),
            "a kept key must be UTF-8"
        );
    }

    /// The test event as `query` reads it through its projection, and whether it matches there.
    fn projected_for(query: &str) -> (Value, bool) {
        let query = compile_query(query, Input::Audit).unwrap();
        let projection = Projection::new([&query], Input::Audit);
        let line = event().to_string();
        let arena = Bump::new();
        let read = projection.read_line(line.as_bytes(), &arena).unwrap();
        let projected = read.events().next().unwrap().projected();
        (projected.to_json(), query.matches(projected))
    }

    #[test]
    fn only_what_rules_read_is_kept() {
        let (projected, matches) =
            projected_for(r#"any where kubernetes.audit.objectRef.name == "dotted""#);
        assert_eq!(
            projected,
            json!({
                "kind": "Event", "apiVersion": "audit.k8s.io/v1", "auditID": "a1",
                "objectRef": {}, "objectRef.name": "dotted"
            }),
            "an event query on a stream reads no timestamp"
        );
        assert!(matches);
    }

    #[test]
    fn annotation_fields_keep_only_their_own_spellings() {
        let (projected, matches) = projected_for(
            r#"any where event.outcome == "failure" and kubernetes.audit.annotations.a_b_c == "second""#,
        );
        assert_eq!(
            projected["annotations"],
            json!({"authorization.k8s.io/decision": "forbid", "a.b_c": "first", "a_b.c": "second"}),
            "the reason and other annotations are not read"
        );
        assert!(matches);
    }

    #[test]
    fn event_lists_and_malformed_lines_read_as_whole_parsing_reads_them() {
        let query = compile_query(r#"any where event.action == "create""#, Input::Audit).unwrap();
        let projection = Projection::new([&query], Input::Audit);
        let list = json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": [event(), event()]});
        let list = list.to_string();
        let arena = Bump::new();
        let read = projection.read_line(list.as_bytes(), &arena).unwrap();
        assert_eq!(read.events().count(), 2);
        assert!(read.events().all(|event| query.matches(event.projected())));
        let mut without_id = event();
        without_id["auditID"] = json!(7);
        for line in [
            "",
            "  ",
            "{\"kind\":",
            "[1]",
            r#"{"kind":"Pod"}"#,
            &without_id.to_string(),
        ] {
            assert_eq!(
                projection.read_line(line.as_bytes(), &Bump::new()).err(),
                crate::audit::event::parse_audit_line(line.as_bytes()).err(),
                "{line}"
            );
        }
    }
}
