//! Where each document field lives in the raw audit event, so rules can run on the raw event.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, LazyLock};

use serde_json::Value;

use super::document::{
    converted_source_ips, decision_outcome, dedot_keys, indexed_audit, related_ips, related_users,
};
use super::fields::{drop_empty_values, field_values, is_empty};
use super::{DATA_STREAM_NAMESPACE, DATA_STREAM_TYPE, DATASET};
pub use crate::eql::ComputeField;
use crate::eql::Node;

/// How to read one document field from the raw audit event. Resolve it once per rule.
#[derive(Clone)]
pub enum RawSource {
    /// The dotted path in the raw event, read like the document is read (see
    /// [`field_values`](super::field_values)): keys containing dots match several segments,
    /// arrays are transparent, and `null`, `""`, `{}`, `[]` (at any depth) are missing because the
    /// document never holds them. A reader that skips that last rule would see raw `""` values the
    /// document does not have.
    Path(Vec<String>),
    /// The same value for every event.
    Constant(Value),
    /// Derived from the raw event (cheap: small lookups, no document is built).
    Computed(ComputeField),
    /// A field the document never has, whatever the event (`requestObject.metadata…`).
    Missing,
    /// `event.ingested`: the processing time the caller gives [`normalize`](super::normalize); the
    /// raw event does not hold it.
    IngestTime,
}

impl fmt::Debug for RawSource {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Path(segments) => formatter.debug_tuple("Path").field(segments).finish(),
            Self::Constant(value) => formatter.debug_tuple("Constant").field(value).finish(),
            Self::Computed(_) => formatter.write_str("Computed(..)"),
            Self::Missing => formatter.write_str("Missing"),
            Self::IngestTime => formatter.write_str("IngestTime"),
        }
    }
}

impl RawSource {
    /// The field's values for the raw event `raw`, as [`field_values`](super::field_values)
    /// would read them from the document. [`RawSource::IngestTime`] yields nothing here.
    pub fn values<'a>(&'a self, raw: &'a Value) -> Vec<Cow<'a, Value>> {
        match self {
            Self::Path(segments) => field_values(raw, segments),
            Self::Constant(value) => field_values(value, &[] as &[&str]),
            Self::Computed(compute) => field_values(&compute(raw), &[] as &[&str])
                .into_iter()
                .map(|value| Cow::Owned(value.into_owned()))
                .collect(),
            Self::Missing | Self::IngestTime => Vec::new(),
        }
    }
}

/// Where the document field `ecs_field` (dotted, e.g. `user.name`) comes from in the raw event;
/// `None` for a field the document never has, which the caller treats as missing.
///
/// Object-valued fields outside `kubernetes.audit` (`user`, `orchestrator.resource`, …) are
/// `None`: rules compare leaf values. Everything under `kubernetes.audit` resolves.
pub fn raw_source(ecs_field: &str) -> Option<RawSource> {
    use RawSource::{Constant, IngestTime};
    let source = match ecs_field {
        "@timestamp" => path(&["stageTimestamp"]),
        "data_stream.type" => Constant(DATA_STREAM_TYPE.into()),
        "data_stream.dataset" | "event.dataset" => Constant(DATASET.into()),
        "data_stream.namespace" => Constant(DATA_STREAM_NAMESPACE.into()),
        "event.kind" => Constant("event".into()),
        "event.action" => path(&["verb"]),
        "event.outcome" => RawSource::Computed(Arc::new(|audit: &dyn Node| {
            // Read for most events by many rules: the two outcomes are built once.
            static OUTCOMES: LazyLock<[Value; 2]> =
                LazyLock::new(|| ["success".into(), "failure".into()]);
            let outcome = audit
                .get("annotations")
                .and_then(|annotations| annotations.get(DECISION_ANNOTATION))
                .and_then(|decision| decision.as_str())
                .and_then(decision_outcome);
            match outcome {
                Some("success") => Cow::Borrowed(&OUTCOMES[0]),
                Some("failure") => Cow::Borrowed(&OUTCOMES[1]),
                Some(other) => Cow::Owned(Value::from(other)),
                None => Cow::Borrowed(&Value::Null),
            }
        })),
        "event.ingested" => IngestTime,
        "user.name" => path(&["user", "username"]),
        "user.id" => path(&["user", "uid"]),
        "user_agent.original" => path(&["userAgent"]),
        "source.ip" | "client.ip" => {
            computed(|audit| converted_source_ips(audit.get("sourceIPs")).unwrap_or(Value::Null))
        }
        "related.ip" => computed(|audit| {
            converted_source_ips(audit.get("sourceIPs"))
                .map_or(Value::Null, |ips| related_ips(&ips))
        }),
        "related.user" => computed(|audit| related_users(owned_member(audit, "user").as_ref())),
        "orchestrator.type" => Constant("kubernetes".into()),
        "orchestrator.api_version" => path(&["apiVersion"]),
        "orchestrator.namespace" => path(&["objectRef", "namespace"]),
        "orchestrator.resource.type" => path(&["objectRef", "resource"]),
        "orchestrator.resource.name" => path(&["objectRef", "name"]),
        "kubernetes" => {
            computed(|audit| serde_json::json!({ "audit": audit_document(&audit.to_json()) }))
        }
        "kubernetes.audit" => computed(|audit| audit_document(&audit.to_json())),
        other => return audit_source(other.strip_prefix("kubernetes.audit.")?),
    };
    Some(source)
}

/// The raw paths the value of `ecs_field` depends on, so a reader can skip the rest of the event: a path's whole
/// subtree (dotted keys as [`RawSource::Path`] reads them). An empty path stands for the whole event. Computed
/// fields name what their computation reads; one not named here depends on the whole event, which is always safe.
pub fn raw_paths_read(ecs_field: &str) -> Vec<Vec<String>> {
    let key = |key: &str| vec![vec![key.to_owned()]];
    match raw_source(ecs_field) {
        Some(RawSource::Path(segments)) => vec![segments],
        Some(RawSource::Computed(_)) => match ecs_field {
            "event.outcome" => vec![annotation_path(DECISION_ANNOTATION)],
            "source.ip" | "client.ip" | "related.ip" => key("sourceIPs"),
            "related.user" => key("user"),
            "kubernetes.audit.requestObject" => key("requestObject"),
            "kubernetes.audit.responseObject" => key("responseObject"),
            "kubernetes.audit.annotations" => key("annotations"),
            annotation => match annotation.strip_prefix("kubernetes.audit.annotations.") {
                Some(rest) => annotation_spellings(rest.split('.').next().unwrap_or(rest)),
                None => vec![Vec::new()],
            },
        },
        Some(RawSource::Constant(_) | RawSource::Missing | RawSource::IngestTime) | None => {
            Vec::new()
        }
    }
}

/// The annotation `event.outcome` is derived from.
const DECISION_ANNOTATION: &str = "authorization.k8s.io/decision";

/// The raw path of the annotation `raw_key`: a reader splits keys on dots, as it does every key.
fn annotation_path(raw_key: &str) -> Vec<String> {
    std::iter::once("annotations")
        .chain(raw_key.split('.'))
        .map(str::to_owned)
        .collect()
}

/// Most underscores in a dedotted annotation name whose raw spellings are listed; past that, all annotations
/// are read (2^n spellings).
const MAX_SPELLED_UNDERSCORES: usize = 6;

/// The raw paths of every annotation that dedots to `dedotted` (each `_` may have been `.` or `_`; see
/// [`annotation_source`]), so that the reason and other long annotations are never read for it.
fn annotation_spellings(dedotted: &str) -> Vec<Vec<String>> {
    let underscores = dedotted.matches('_').count();
    if underscores > MAX_SPELLED_UNDERSCORES {
        return vec![vec!["annotations".to_owned()]];
    }
    (0..1usize << underscores)
        .map(|dots| {
            // Bit n of `dots` says whether the nth underscore was a dot.
            let mut nth = 0;
            let spelling: String = dedotted
                .chars()
                .map(|ch| match ch {
                    '_' => {
                        nth += 1;
                        if dots & (1 << (nth - 1)) != 0 {
                            '.'
                        } else {
                            '_'
                        }
                    }
                    other => other,
                })
                .collect();
            annotation_path(&spelling)
        })
        .collect()
}

/// `kubernetes.audit.<rest>`: the raw path `<rest>`, except where the document differs.
fn audit_source(rest: &str) -> Option<RawSource> {
    let segments: Vec<&str> = rest.split('.').collect();
    if segments.iter().any(|segment| segment.is_empty()) {
        return None;
    }
    let source = match segments.as_slice() {
        ["annotations"] => computed(|audit| match owned_member(audit, "annotations") {
            Some(Value::Object(annotations)) => Value::Object(dedot_keys(&annotations)),
            _ => Value::Null,
        }),
        ["annotations", name, inner @ ..] => annotation_source(name, inner),
        [object @ ("requestObject" | "responseObject")] => {
            let object = (*object).to_owned();
            computed(move |audit| {
                owned_member(audit, &object).map_or(Value::Null, without_object_metadata)
            })
        }
        ["requestObject" | "responseObject", "metadata", ..] => RawSource::Missing,
        _ => path(&segments),
    };
    Some(source)
}

/// `kubernetes.audit.annotations.<name>…`: `<name>` is dedotted, so it matches the raw key that
/// becomes `<name>` once its dots are `_` (`authorization_k8s_io/decision` reads
/// `authorization.k8s.io/decision`; `round_0_index_2` keys keep their own `_`). The last
/// matching key wins, as in the document.
fn annotation_source(name: &str, inner: &[&str]) -> RawSource {
    let name = name.to_owned();
    let inner: Vec<String> = inner.iter().map(|segment| (*segment).to_owned()).collect();
    computed(move |audit| {
        // When raw keys collide once dedotted, the greatest wins: the last one the document's sorted map holds.
        let mut found: Option<(&str, &dyn Node)> = None;
        if let Some(annotations) = audit.get("annotations") {
            annotations.any_entry(&mut |key, value| {
                if is_dedotted(key, &name) && found.is_none_or(|(known, _)| key > known) {
                    found = Some((key, value));
                }
                false
            });
        }
        let Some((_, value)) = found else {
            return Value::Null;
        };
        let value = value.to_json();
        let mut values: Vec<Value> = field_values(&value, &inner)
            .into_iter()
            .map(Cow::into_owned)
            .collect();
        match values.len() {
            0 => Value::Null,
            1 => values.swap_remove(0),
            _ => Value::Array(values),
        }
    })
}

/// Whether `raw_key` with every `.` replaced by `_` equals `dedotted`, without allocating.
fn is_dedotted(raw_key: &str, dedotted: &str) -> bool {
    raw_key.len() == dedotted.len()
        && raw_key
            .bytes()
            .zip(dedotted.bytes())
            .all(|(raw, indexed)| raw == indexed || (raw == b'.' && indexed == b'_'))
}

/// `kubernetes.audit` as the document holds it. Copies the whole event: meant for rules that
/// read the object itself, not for leaf fields.
fn audit_document(audit: &Value) -> Value {
    let Value::Object(audit) = audit else {
        return Value::Null;
    };
    let mut document = Value::Object(indexed_audit(audit));
    drop_empty_values(&mut document);
    document
}

fn without_object_metadata(mut object: Value) -> Value {
    if let Value::Object(map) = &mut object {
        map.remove("metadata");
    }
    drop_empty_values(&mut object);
    if is_empty(&object) {
        Value::Null
    } else {
        object
    }
}

fn path(segments: &[&str]) -> RawSource {
    RawSource::Path(
        segments
            .iter()
            .map(|segment| (*segment).to_owned())
            .collect(),
    )
}

/// Wraps a computation on the event object; anything else (not an audit event) yields nothing.
fn computed(compute: impl Fn(&dyn Node) -> Value + Send + Sync + 'static) -> RawSource {
    RawSource::Computed(Arc::new(move |raw: &dyn Node| match raw.kind() {
        crate::eql::Kind::Object => Cow::Owned(compute(raw)),
        _ => Cow::Borrowed(&Value::Null),
    }))
}

/// The member `key` of the event, copied into a `Value` for the pipeline's own functions.
fn owned_member(audit: &dyn Node, key: &str) -> Option<Value> {
    audit.get(key).map(|value| value.to_json())
}
