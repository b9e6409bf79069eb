//! What an action answers, before its dialect's envelope: most actions build their fields as a
//! `serde_json` tree; the listings, the hot calls, serialize typed rows straight into JSON text,
//! without building a tree first (docs/BENCHMARKS.md, run 13).

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

/// An answer's fields as a tree.
pub type Fields = Map<String, Value>;

/// Builds an object from `(key, value)` pairs, keeping their order.
pub fn obj<const N: usize>(pairs: [(&str, Value); N]) -> Fields {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

pub enum Reply {
    /// Fields built as a tree.
    Tree(Map<String, Value>),
    /// The text of a JSON object, serialized from typed rows.
    Json(String),
}

impl Reply {
    /// Serializes typed fields (a struct or map) straight to JSON text.
    pub fn rows(fields: &impl Serialize) -> Self {
        // Serializing plain structs of strings and numbers into a String cannot fail.
        Self::Json(serde_json::to_string(fields).expect("response fields serialize"))
    }

    /// The fields as a tree, for the envelopes that are not JSON (Alibaba's `Format=XML`).
    pub fn into_tree(self) -> Map<String, Value> {
        match self {
            Self::Tree(map) => map,
            // Text this module wrote from a struct: always an object.
            Self::Json(text) => serde_json::from_str(&text).unwrap_or_default(),
        }
    }

    /// The fields as a JSON object's text.
    pub fn into_json(self) -> String {
        match self {
            Self::Tree(map) => Value::Object(map).to_string(),
            Self::Json(text) => text,
        }
    }
}

impl From<Map<String, Value>> for Reply {
    fn from(map: Map<String, Value>) -> Self {
        Self::Tree(map)
    }
}

/// `{"<key>": <items>}`: the vendors' wrapper around a list (`{"KeyPair": [...]}`).
pub struct Wrap<T>(pub &'static str, pub T);

impl<T: Serialize> Serialize for Wrap<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(1))?;
        map.serialize_entry(self.0, &self.1)?;
        map.end()
    }
}

/// A list this product never fills, as the vendor spells it empty: `{"<key>": []}`.
pub fn empty(key: &'static str) -> Wrap<[(); 0]> {
    Wrap(key, [])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_fields_and_a_tree_give_the_same_object() {
        #[derive(serde::Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Page {
            total_count: u64,
            items: Wrap<Vec<&'static str>>,
            locks: Wrap<[(); 0]>,
        }
        let typed = Reply::rows(&Page {
            total_count: 2,
            items: Wrap("Item", vec!["a", "b"]),
            locks: empty("LockReason"),
        });
        let tree = serde_json::json!({
            "TotalCount": 2,
            "Items": {"Item": ["a", "b"]},
            "Locks": {"LockReason": []},
        });
        assert_eq!(typed.into_json(), tree.to_string());
        let typed = Reply::rows(&Page {
            total_count: 2,
            items: Wrap("Item", vec!["a", "b"]),
            locks: empty("LockReason"),
        });
        assert_eq!(Value::Object(typed.into_tree()), tree);
    }
}
