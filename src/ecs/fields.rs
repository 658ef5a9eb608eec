//! Reading dotted field paths the way Elasticsearch sees a document, and the pipeline's
//! empty-value removal.

use std::borrow::Cow;

use serde_json::{Map, Value};

/// Whether the pipeline's `script_to_drop_empty_values` drops this value.
pub(crate) fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(text) => text.is_empty(),
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Bool(_) | Value::Number(_) => false,
    }
}

/// Removes `null`, `""`, `{}` and `[]` at any depth, as the pipeline's last processor does.
///
/// Children are cleaned before their parent is tested (the Painless `removeIf` recurses first),
/// so a container that only held empty values is removed too: one pass reaches the fixpoint.
/// The root itself is kept even when it ends up empty.
pub fn drop_empty_values(value: &mut Value) {
    match value {
        Value::Object(map) => map.retain(|_, child| {
            drop_empty_values(child);
            !is_empty(child)
        }),
        Value::Array(items) => items.retain_mut(|child| {
            drop_empty_values(child);
            !is_empty(child)
        }),
        _ => {}
    }
}

/// Whether [`drop_empty_values`] would change `value` or remove it.
fn holds_empty_value(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.is_empty() || map.values().any(holds_empty_value),
        Value::Array(items) => items.is_empty() || items.iter().any(holds_empty_value),
        other => is_empty(other),
    }
}

/// `value` as the document would hold it: `None` when it would be dropped, a cleaned copy when
/// it holds empty values, and the value itself (no copy) otherwise.
pub fn without_empty_values(value: &Value) -> Option<Cow<'_, Value>> {
    if !holds_empty_value(value) {
        return Some(Cow::Borrowed(value));
    }
    let mut cleaned = value.clone();
    drop_empty_values(&mut cleaned);
    (!is_empty(&cleaned)).then_some(Cow::Owned(cleaned))
}

/// The values of a dotted field in `root`, as Elasticsearch indexes them.
///
/// - A key that itself contains dots (`user.extra["authentication.kubernetes.io/pod-name"]`)
///   matches as many segments as it has parts, like Elasticsearch's dotted-name expansion.
/// - Arrays are transparent: `requestObject.spec.containers.image` yields every container's
///   image, and an array-valued field yields its elements.
/// - Values the pipeline would drop (`null`, `""`, containers without a non-empty value) yield
///   nothing; objects are returned cleaned of their empty members.
pub fn field_values<'a, S: AsRef<str>>(root: &'a Value, segments: &[S]) -> Vec<Cow<'a, Value>> {
    let mut values = Vec::new();
    collect_field(root, segments, &mut values);
    values
}

fn collect_field<'a, S: AsRef<str>>(
    node: &'a Value,
    segments: &[S],
    values: &mut Vec<Cow<'a, Value>>,
) {
    let Some((first, rest)) = segments.split_first() else {
        collect_leaves(node, values);
        return;
    };
    match node {
        Value::Object(map) => {
            let first = first.as_ref();
            if let Some(child) = map.get(first) {
                collect_field(child, rest, values);
            }
            if !rest.is_empty() && has_dotted_key_starting_with(map, first) {
                let mut dotted = first.to_owned();
                for (taken, segment) in rest.iter().enumerate() {
                    dotted.push('.');
                    dotted.push_str(segment.as_ref());
                    if let Some(child) = map.get(&dotted) {
                        collect_field(child, &rest[taken + 1..], values);
                    }
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                collect_field(item, segments, values);
            }
        }
        _ => {}
    }
}

/// Cheap pre-check so the common case (no dotted keys) allocates nothing.
fn has_dotted_key_starting_with(map: &Map<String, Value>, segment: &str) -> bool {
    map.keys().any(|key| {
        key.strip_prefix(segment)
            .is_some_and(|after| after.starts_with('.'))
    })
}

fn collect_leaves<'a>(node: &'a Value, values: &mut Vec<Cow<'a, Value>>) {
    match node {
        Value::Array(items) => {
            for item in items {
                collect_leaves(item, values);
            }
        }
        other => values.extend(without_empty_values(other)),
    }
}

/// The dotted names of every leaf field of a document, in document order, each once: the fields
/// Elasticsearch would map (array indices are not part of a field name).
pub fn leaf_fields(document: &Value) -> Vec<String> {
    let mut fields = Vec::new();
    collect_leaf_fields(document, &mut String::new(), &mut fields);
    fields
}

fn collect_leaf_fields(node: &Value, prefix: &mut String, fields: &mut Vec<String>) {
    match node {
        Value::Object(map) => {
            for (key, child) in map {
                let restore = prefix.len();
                if !prefix.is_empty() {
                    prefix.push('.');
                }
                prefix.push_str(key);
                collect_leaf_fields(child, prefix, fields);
                prefix.truncate(restore);
            }
        }
        Value::Array(items) => {
            for item in items {
                collect_leaf_fields(item, prefix, fields);
            }
        }
        _ => {
            if !fields.contains(prefix) {
                fields.push(prefix.clone());
            }
        }
    }
}
