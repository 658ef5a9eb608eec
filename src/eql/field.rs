//! How query fields are located in documents: caller-provided mapping, resolved once at compile time.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde_json::Value as Json;

use super::node::{Kind, Node};

/// A per-document computation of a field's value (`Null` when missing, an array for several values); values
/// shared by many documents can be borrowed rather than built each time.
pub type ComputeField = Arc<dyn Fn(&dyn Node) -> Cow<'static, Json> + Send + Sync>;

/// How a field named in a query is found in a document. Lets the caller alias fields (e.g. ECS names onto a
/// raw Kubernetes audit event) at compile time.
#[derive(Clone)]
pub enum FieldAccess {
    /// Walk the document along these keys (dotted-key aware: `{"a.b":1}` and `{"a":{"b":1}}` are the same).
    Path(Vec<String>),
    /// Like `Path`, but empty values (`""`, and objects holding only empty values) read as missing: the view of
    /// a source whose indexing pipeline drops empty values (Elastic's Kubernetes integration does).
    NonEmptyPath(Vec<String>),
    /// The same value for every document (e.g. data_stream.dataset). Null = always missing.
    Constant(Json),
    /// Computed from the document (e.g. event.outcome derived from an annotation). Returns null when absent.
    /// `name` identifies the computation: fields computed under one name read the same values, so a reader
    /// of several queries computes them once.
    Computed { name: String, compute: ComputeField },
}

impl fmt::Debug for FieldAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldAccess::Path(parts) => f.debug_tuple("Path").field(parts).finish(),
            FieldAccess::NonEmptyPath(parts) => f.debug_tuple("NonEmptyPath").field(parts).finish(),
            FieldAccess::Constant(value) => f.debug_tuple("Constant").field(value).finish(),
            FieldAccess::Computed { name, .. } => f.debug_tuple("Computed").field(name).finish(),
        }
    }
}

/// Maps query field names to document access.
pub trait FieldMapper {
    fn access(&self, field: &str) -> FieldAccess;
}

/// Identity mapping: the field name split on `.` is the document path.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainFields;

impl FieldMapper for PlainFields {
    fn access(&self, field: &str) -> FieldAccess {
        FieldAccess::Path(field.split('.').map(str::to_string).collect())
    }
}

/// A field ready for reading: the dotted-key spellings of every sub-path are precomputed.
#[derive(Debug, Clone)]
pub(crate) struct ResolvedField {
    reader: Reader,
}

#[derive(Clone)]
enum Reader {
    /// `keys[i][k]` is `parts[i..=i+k].join(".")`: the keys that may hold the value at depth `i`.
    Path {
        keys: Vec<Vec<String>>,
        skip_empty: bool,
    },
    Constant(Json),
    Computed {
        name: String,
        compute: ComputeField,
    },
}

impl fmt::Debug for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reader::Path { keys, skip_empty } => f
                .debug_struct("Path")
                .field("keys", keys)
                .field("skip_empty", skip_empty)
                .finish(),
            Reader::Constant(value) => f.debug_tuple("Constant").field(value).finish(),
            Reader::Computed { name, .. } => f.debug_tuple("Computed").field(name).finish(),
        }
    }
}

impl ResolvedField {
    pub fn new(access: FieldAccess) -> Self {
        let reader = match access {
            FieldAccess::Path(parts) => Reader::Path {
                keys: dotted_spellings(&parts),
                skip_empty: false,
            },
            FieldAccess::NonEmptyPath(parts) => Reader::Path {
                keys: dotted_spellings(&parts),
                skip_empty: true,
            },
            FieldAccess::Constant(value) => Reader::Constant(value),
            FieldAccess::Computed { name, compute } => Reader::Computed { name, compute },
        };
        ResolvedField { reader }
    }

    /// Calls `visit` on each non-null leaf value (arrays are flattened) until it returns true; returns whether
    /// any call did.
    pub fn any_value<F: FnMut(&dyn Node) -> bool>(&self, doc: &dyn Node, mut visit: F) -> bool {
        match &self.reader {
            Reader::Path { keys, skip_empty } => {
                walk(doc, keys, 0, &mut skipping_empty(*skip_empty, visit))
            }
            Reader::Constant(value) => any_leaf(value, &mut visit),
            Reader::Computed { compute, .. } => any_leaf(&*compute(doc), &mut visit),
        }
    }

    pub fn is_constant(&self) -> bool {
        matches!(self.reader, Reader::Constant(_))
    }

    pub fn is_computed(&self) -> bool {
        matches!(self.reader, Reader::Computed { .. })
    }

    /// Whether both read the same values from any document (computed fields when computed under one name).
    pub fn same_as(&self, other: &ResolvedField) -> bool {
        match (&self.reader, &other.reader) {
            (
                Reader::Path { keys, skip_empty },
                Reader::Path {
                    keys: other_keys,
                    skip_empty: other_skip,
                },
            ) => keys == other_keys && skip_empty == other_skip,
            (Reader::Constant(a), Reader::Constant(b)) => a == b,
            (Reader::Computed { name, .. }, Reader::Computed { name: other, .. }) => name == other,
            _ => false,
        }
    }

    /// Every non-null leaf value, borrowed from the document where possible.
    pub fn values<'a>(&'a self, doc: &'a dyn Node) -> FieldValues<'a> {
        match &self.reader {
            Reader::Path { keys, skip_empty } => {
                let mut out = Vec::new();
                let collect = |v: &'a dyn Node| {
                    out.push(v);
                    false
                };
                walk(doc, keys, 0, &mut skipping_empty(*skip_empty, collect));
                FieldValues::Borrowed(out)
            }
            Reader::Constant(value) => {
                let mut out = Vec::new();
                any_leaf(value, &mut |v: &'a dyn Node| {
                    out.push(v);
                    false
                });
                FieldValues::Borrowed(out)
            }
            Reader::Computed { compute, .. } => {
                let mut out = Vec::new();
                any_leaf(&*compute(doc), &mut |v: &dyn Node| {
                    out.push(v.to_json());
                    false
                });
                FieldValues::Owned(out)
            }
        }
    }
}

/// `keys[i][k]` is `parts[i..=i+k].join(".")`.
fn dotted_spellings(parts: &[String]) -> Vec<Vec<String>> {
    (0..parts.len())
        .map(|i| (i..parts.len()).map(|j| parts[i..=j].join(".")).collect())
        .collect()
}

/// Wraps a leaf visitor so that, when `skip`, empty leaves are never visited.
fn skipping_empty<'a, F: FnMut(&'a dyn Node) -> bool>(
    skip: bool,
    mut visit: F,
) -> impl FnMut(&'a dyn Node) -> bool {
    move |leaf| !(skip && is_empty(leaf)) && visit(leaf)
}

fn is_empty(value: &dyn Node) -> bool {
    match value.kind() {
        Kind::Null => true,
        Kind::Str(s) => s.is_empty(),
        Kind::Array => !value.any_item(&mut |item| !is_empty(item)),
        Kind::Object => !value.any_entry(&mut |_, member| !is_empty(member)),
        Kind::Bool(_) | Kind::Int(_) | Kind::Float(_) => false,
    }
}

pub(crate) enum FieldValues<'a> {
    Borrowed(Vec<&'a dyn Node>),
    Owned(Vec<Json>),
}

fn walk<'a, F: FnMut(&'a dyn Node) -> bool>(
    node: &'a dyn Node,
    keys: &[Vec<String>],
    depth: usize,
    visit: &mut F,
) -> bool {
    if depth == keys.len() {
        return any_leaf(node, visit);
    }
    match node.kind() {
        Kind::Object => {
            let [segment, joined @ ..] = keys[depth].as_slice() else {
                return false;
            };
            if node
                .get(segment)
                .is_some_and(|child| walk(child, keys, depth + 1, visit))
            {
                return true;
            }
            // Dotted spellings are rare: one pass over the keys spares a lookup per spelling when none can exist.
            !joined.is_empty()
                && node.has_dotted_keys()
                && node.any_entry(&mut |key, _| is_dotted_under(key, segment))
                && joined.iter().enumerate().any(|(extra, key)| {
                    node.get(key)
                        .is_some_and(|child| walk(child, keys, depth + extra + 2, visit))
                })
        }
        Kind::Array => node.any_item(&mut |item| walk(item, keys, depth, visit)),
        _ => false,
    }
}

/// Whether `key` is `segment` followed by `.` and more: the only keys that can spell a path continuing `segment`.
fn is_dotted_under(key: &str, segment: &str) -> bool {
    key.as_bytes().get(segment.len()) == Some(&b'.') && key.starts_with(segment)
}

fn any_leaf<'a, F: FnMut(&'a dyn Node) -> bool>(node: &'a dyn Node, visit: &mut F) -> bool {
    match node.kind() {
        Kind::Null => false,
        Kind::Array => node.any_item(&mut |item| any_leaf(item, visit)),
        _ => visit(node),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn values(field: &str, doc: &Json) -> Vec<Json> {
        let resolved = ResolvedField::new(PlainFields.access(field));
        match resolved.values(doc) {
            FieldValues::Borrowed(v) => v.into_iter().map(|v| v.to_json()).collect(),
            FieldValues::Owned(v) => v,
        }
    }

    #[test]
    fn dotted_keys_nested_objects_and_arrays_are_equivalent() {
        assert_eq!(
            values("a.b.c", &json!({"a": {"b": {"c": 1}}})),
            vec![json!(1)]
        );
        assert_eq!(values("a.b.c", &json!({"a.b.c": 1})), vec![json!(1)]);
        assert_eq!(values("a.b.c", &json!({"a": {"b.c": 1}})), vec![json!(1)]);
        assert_eq!(
            values("a.b", &json!({"a": [{"b": 1}, {"b": [2, null]}]})),
            vec![json!(1), json!(2)]
        );
        assert!(values("a.x", &json!({"a": {"b": 1}})).is_empty());
        assert!(values("a", &json!({"a": null})).is_empty());
    }

    #[test]
    fn non_empty_paths_read_empty_values_as_missing() {
        let read = |doc: &Json| {
            let resolved =
                ResolvedField::new(FieldAccess::NonEmptyPath(vec!["a".into(), "b".into()]));
            match resolved.values(doc) {
                FieldValues::Borrowed(v) => v.into_iter().map(|v| v.to_json()).collect::<Vec<_>>(),
                FieldValues::Owned(v) => v,
            }
        };
        assert!(read(&json!({"a": {"b": ""}})).is_empty());
        assert!(read(&json!({"a": {"b": {"c": "", "d": []}}})).is_empty());
        assert_eq!(read(&json!({"a": {"b": ["", "x"]}})), vec![json!("x")]);
        assert_eq!(read(&json!({"a": {"b": 0}})), vec![json!(0)]);
    }
}
