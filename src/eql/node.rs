//! The documents queries read. `serde_json::Value` is one; a caller may hand the engine its own representation
//! (vigil's scanner passes a document borrowed from the input line that holds only the fields rules read), so the
//! engine reads documents through this trait and never needs them built as `serde_json::Value`.

use serde_json::Value as Json;

/// What a document node is. Numbers are `Int` when they fit an `i64` and `Float` otherwise (as
/// `serde_json::Number::as_i64` / `as_f64` read them).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
    Array,
    Object,
}

/// A JSON-like document node.
pub trait Node {
    fn kind(&self) -> Kind<'_>;

    /// The member `key` of an object (the last one when a key is repeated); `None` for other nodes.
    fn get(&self, key: &str) -> Option<&dyn Node>;

    /// Calls `visit` on each item of an array, in order, until it returns true; returns whether any call did.
    fn any_item<'s>(&'s self, visit: &mut dyn FnMut(&'s dyn Node) -> bool) -> bool;

    /// Calls `visit` on each member of an object (each key once) until it returns true; returns whether any did.
    fn any_entry<'s>(&'s self, visit: &mut dyn FnMut(&'s str, &'s dyn Node) -> bool) -> bool;

    /// Whether some key of this object holds a dot (`{"a.b": 1}`): only then can a field path be spelled
    /// another way here. Implementations that do not keep track answer true.
    fn has_dotted_keys(&self) -> bool {
        true
    }

    /// The node as a `serde_json::Value`, for the few readers that need one (computed fields, whole objects).
    fn to_json(&self) -> Json;
}

impl dyn Node + '_ {
    pub fn as_str(&self) -> Option<&str> {
        match self.kind() {
            Kind::Str(text) => Some(text),
            _ => None,
        }
    }
}

impl Node for Json {
    fn kind(&self) -> Kind<'_> {
        match self {
            Json::Null => Kind::Null,
            Json::Bool(b) => Kind::Bool(*b),
            Json::Number(n) => match n.as_i64() {
                Some(i) => Kind::Int(i),
                None => n.as_f64().map_or(Kind::Null, Kind::Float),
            },
            Json::String(s) => Kind::Str(s),
            Json::Array(_) => Kind::Array,
            Json::Object(_) => Kind::Object,
        }
    }

    fn get(&self, key: &str) -> Option<&dyn Node> {
        match self {
            Json::Object(map) => map.get(key).map(|value| value as &dyn Node),
            _ => None,
        }
    }

    fn any_item<'s>(&'s self, visit: &mut dyn FnMut(&'s dyn Node) -> bool) -> bool {
        match self {
            Json::Array(items) => items.iter().any(|item| visit(item)),
            _ => false,
        }
    }

    fn any_entry<'s>(&'s self, visit: &mut dyn FnMut(&'s str, &'s dyn Node) -> bool) -> bool {
        match self {
            Json::Object(map) => map.iter().any(|(key, value)| visit(key, value)),
            _ => false,
        }
    }

    fn to_json(&self) -> Json {
        self.clone()
    }
}
