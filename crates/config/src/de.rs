//! A serde `Deserializer` over located nodes.
//!
//! Compared with deserializing straight from text, it (1) collects *every* unknown field with a
//! did-you-mean hint instead of stopping at the first, (2) puts the line and column of the
//! innermost offending node on every error, and (3) reads `type`-tagged mappings
//! (`check: {type: tls, ...}`) as externally tagged enums, so check structs keep full
//! unknown-field checking.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

use crate::diag::{Diagnostic, did_you_mean};
use crate::node::{Loc, Node, NodeKind};

/// A deserialization error with the location of the node that caused it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeError {
    pub message: String,
    pub loc: Option<Loc>,
    pub hint: Option<String>,
}

impl DeError {
    fn new(loc: Loc, message: impl Into<String>) -> Self {
        DeError {
            message: message.into(),
            loc: Some(loc),
            hint: None,
        }
    }

    fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Sets the location if no inner node set one already.
    pub fn at(mut self, loc: Loc) -> Self {
        if self.loc.is_none() {
            self.loc = Some(loc);
        }
        self
    }

    pub fn into_diagnostic(self) -> Diagnostic {
        // Messages written as "what is wrong; what to do" split into message and hint.
        let (message, hint) = match (self.hint, self.message.split_once("; ")) {
            (Some(h), _) => (self.message.clone(), Some(h)),
            (None, Some((what, todo))) => (what.to_string(), Some(todo.to_string())),
            (None, None) => (self.message.clone(), default_hint(&self.message)),
        };
        let mut d = Diagnostic::error(self.loc, message);
        if let Some(h) = hint {
            d = d.hint(h);
        }
        d
    }
}

/// A hint derived from serde's standard messages ("invalid type: ..., expected X").
fn default_hint(message: &str) -> Option<String> {
    if let Some((_, expected)) = message.rsplit_once(", expected ") {
        return Some(format!("write {expected} here"));
    }
    if message.starts_with("missing field") {
        return Some("add the field; see the config reference in README.md".into());
    }
    Some("see the config reference in README.md".into())
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            message: msg.to_string(),
            loc: None,
            hint: None,
        }
    }
}

/// Collects problems that do not stop deserialization (unknown fields).
#[derive(Default)]
pub struct Sink {
    pub diags: RefCell<Vec<Diagnostic>>,
}

impl Sink {
    pub fn push(&self, d: Diagnostic) {
        self.diags.borrow_mut().push(d);
    }

    pub fn take(&self) -> Vec<Diagnostic> {
        std::mem::take(&mut self.diags.borrow_mut())
    }
}

/// Deserializes `T` from `node`, collecting unknown fields into `sink`.
pub fn from_node<T: de::DeserializeOwned>(node: &Node, sink: &Sink) -> Result<T, DeError> {
    T::deserialize(NodeDe { node, sink }).map_err(|e| e.at(node.loc))
}

#[derive(Clone, Copy)]
pub struct NodeDe<'a> {
    node: &'a Node,
    sink: &'a Sink,
}

impl<'a> NodeDe<'a> {
    fn invalid(&self, expected: &str) -> DeError {
        DeError::new(
            self.node.loc,
            format!("found {}, expected {expected}", self.node.describe()),
        )
        .with_hint(format!("write {expected} here"))
    }
}

macro_rules! forward_to_any {
    ($($m:ident)*) => {$(
        fn $m<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
            self.deserialize_any(v)
        }
    )*};
}

impl<'de, 'a> de::Deserializer<'de> for NodeDe<'a> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        let loc = self.node.loc;
        let r = match &self.node.kind {
            NodeKind::Null => v.visit_unit(),
            NodeKind::Bool(b) => v.visit_bool(*b),
            NodeKind::Int(i) => v.visit_i64(*i),
            NodeKind::UInt(u) => v.visit_u64(*u),
            NodeKind::Float(x) => v.visit_f64(*x),
            NodeKind::Str(s) => v.visit_str(s),
            NodeKind::Seq(items) => v.visit_seq(SeqDe {
                iter: items.iter(),
                sink: self.sink,
            }),
            NodeKind::Map(entries) => v.visit_map(MapDe {
                iter: entries.iter().collect::<Vec<_>>().into_iter(),
                value: None,
                sink: self.sink,
            }),
        };
        r.map_err(|e| e.at(loc))
    }

    forward_to_any! {
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
        deserialize_f32 deserialize_f64 deserialize_char deserialize_bytes deserialize_byte_buf
    }

    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            NodeKind::Bool(b) => v.visit_bool::<DeError>(*b).map_err(|e| e.at(self.node.loc)),
            _ => Err(self.invalid("`true` or `false`")),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        let loc = self.node.loc;
        // Scalars are accepted as text (`owner: 42`, `version: 1.0`): friendlier than a type
        // error, and never ambiguous for a field that wants a string.
        let r = match &self.node.kind {
            NodeKind::Str(s) => v.visit_str::<DeError>(s),
            NodeKind::Int(_) | NodeKind::UInt(_) | NodeKind::Float(_) | NodeKind::Bool(_) => {
                match self.node.scalar_text() {
                    Some(t) => v.visit_string(t.into_owned()),
                    None => return Err(self.invalid("a string")),
                }
            }
            _ => return Err(self.invalid("a string")),
        };
        r.map_err(|e| e.at(loc))
    }

    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.node.kind {
            NodeKind::Null => v.visit_none(),
            _ => v.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.node.kind {
            NodeKind::Null => v.visit_unit(),
            _ => Err(self.invalid("nothing")),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(v)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, DeError> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            NodeKind::Seq(items) => v
                .visit_seq(SeqDe {
                    iter: items.iter(),
                    sink: self.sink,
                })
                .map_err(|e| e.at(self.node.loc)),
            NodeKind::Null => v
                .visit_seq(SeqDe {
                    iter: [].iter(),
                    sink: self.sink,
                })
                .map_err(|e| e.at(self.node.loc)),
            _ => Err(self.invalid("a list")),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, DeError> {
        self.deserialize_seq(v)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        v: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(v)
    }

    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            NodeKind::Map(entries) => v
                .visit_map(MapDe {
                    iter: entries.iter().collect::<Vec<_>>().into_iter(),
                    value: None,
                    sink: self.sink,
                })
                .map_err(|e| e.at(self.node.loc)),
            NodeKind::Null => v
                .visit_map(MapDe {
                    iter: Vec::new().into_iter(),
                    value: None,
                    sink: self.sink,
                })
                .map_err(|e| e.at(self.node.loc)),
            _ => Err(self.invalid("a mapping")),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        let entries: Vec<&(Node, Node)> = match &self.node.kind {
            NodeKind::Map(entries) => entries
                .iter()
                .filter(|(k, _)| {
                    let key = k.as_str().unwrap_or("");
                    if fields.contains(&key) {
                        return true;
                    }
                    let shown = match &k.kind {
                        NodeKind::Str(s) => s.clone(),
                        _ => format!("<{}>", k.describe()),
                    };
                    self.sink.push(
                        Diagnostic::error(k.loc, format!("unknown field `{shown}`"))
                            .hint(did_you_mean(&shown, fields)),
                    );
                    false
                })
                .collect(),
            NodeKind::Null => Vec::new(),
            _ => return Err(self.invalid("a mapping")),
        };
        v.visit_map(MapDe {
            iter: entries.into_iter(),
            value: None,
            sink: self.sink,
        })
        .map_err(|e| e.at(self.node.loc))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        let what = if name == "CheckSpec" {
            "check type"
        } else {
            "value"
        };
        let loc = self.node.loc;
        let (variant, variant_loc, content) = match &self.node.kind {
            NodeKind::Str(s) => (s.clone(), loc, Content::Empty(loc)),
            NodeKind::Map(entries) => {
                if let Some((k, tag)) = entries.iter().find(|(k, _)| k.as_str() == Some("type")) {
                    let Some(t) = tag.as_str() else {
                        return Err(DeError::new(
                            tag.loc,
                            format!("`type` must be a string, found {}", tag.describe()),
                        )
                        .with_hint(format!("one of: {}", variants.join(", "))));
                    };
                    let rest: Vec<(Node, Node)> = entries
                        .iter()
                        .filter(|(key, _)| key.loc != k.loc)
                        .cloned()
                        .collect();
                    (
                        t.to_string(),
                        tag.loc,
                        Content::Owned(Node::new(loc, NodeKind::Map(rest))),
                    )
                } else if entries.len() == 1 {
                    let (k, val) = &entries[0];
                    match k.as_str() {
                        Some(key) => (key.to_string(), k.loc, Content::Borrowed(val)),
                        None => return Err(self.invalid("a mapping with `type:`")),
                    }
                } else {
                    return Err(DeError::new(loc, format!("missing `type` for this {what}"))
                        .with_hint(format!("add `type:` with one of: {}", variants.join(", "))));
                }
            }
            _ => {
                return Err(DeError::new(
                    loc,
                    format!("found {}, expected a {what}", self.node.describe()),
                )
                .with_hint(format!("one of: {}", variants.join(", "))));
            }
        };
        if !variants.contains(&variant.as_str()) {
            return Err(
                DeError::new(variant_loc, format!("unknown {what} `{variant}`"))
                    .with_hint(did_you_mean(&variant, variants)),
            );
        }
        v.visit_enum(EnumDe {
            variant,
            content,
            sink: self.sink,
        })
        .map_err(|e| e.at(loc))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_unit()
    }
}

struct SeqDe<'a> {
    iter: std::slice::Iter<'a, Node>,
    sink: &'a Sink,
}

impl<'de, 'a> de::SeqAccess<'de> for SeqDe<'a> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.iter.next() {
            Some(node) => seed
                .deserialize(NodeDe {
                    node,
                    sink: self.sink,
                })
                .map(Some)
                .map_err(|e| e.at(node.loc)),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

struct MapDe<'a> {
    iter: std::vec::IntoIter<&'a (Node, Node)>,
    value: Option<&'a Node>,
    sink: &'a Sink,
}

impl<'de, 'a> de::MapAccess<'de> for MapDe<'a> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.iter.next() {
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(NodeDe {
                    node: k,
                    sink: self.sink,
                })
                .map(Some)
                .map_err(|e| e.at(k.loc))
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let node = self
            .value
            .take()
            .ok_or_else(|| <DeError as de::Error>::custom("value requested before key"))?;
        seed.deserialize(NodeDe {
            node,
            sink: self.sink,
        })
        .map_err(|e| e.at(node.loc))
    }
}

enum Content<'a> {
    Empty(Loc),
    Borrowed(&'a Node),
    Owned(Node),
}

struct EnumDe<'a> {
    variant: String,
    content: Content<'a>,
    sink: &'a Sink,
}

impl<'de, 'a> de::EnumAccess<'de> for EnumDe<'a> {
    type Error = DeError;
    type Variant = VariantDe<'a>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, VariantDe<'a>), DeError> {
        let de: de::value::StringDeserializer<DeError> = self.variant.into_deserializer();
        let v = seed.deserialize(de)?;
        Ok((
            v,
            VariantDe {
                content: self.content,
                sink: self.sink,
            },
        ))
    }
}

struct VariantDe<'a> {
    content: Content<'a>,
    sink: &'a Sink,
}

impl<'a> VariantDe<'a> {
    fn with_node<R>(&self, f: impl FnOnce(NodeDe<'_>) -> R) -> R {
        match &self.content {
            Content::Empty(loc) => {
                let n = Node::new(*loc, NodeKind::Null);
                f(NodeDe {
                    node: &n,
                    sink: self.sink,
                })
            }
            Content::Borrowed(n) => f(NodeDe {
                node: n,
                sink: self.sink,
            }),
            Content::Owned(n) => f(NodeDe {
                node: n,
                sink: self.sink,
            }),
        }
    }
}

impl<'de, 'a> de::VariantAccess<'de> for VariantDe<'a> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        let n: &Node = match &self.content {
            Content::Empty(_) => return Ok(()),
            Content::Borrowed(n) => n,
            Content::Owned(n) => n,
        };
        match &n.kind {
            NodeKind::Null => Ok(()),
            NodeKind::Map(m) if m.is_empty() => Ok(()),
            _ => {
                Err(DeError::new(n.loc, "this kind takes no options")
                    .with_hint("remove the options"))
            }
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        self.with_node(|de| seed.deserialize(de))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, DeError> {
        self.with_node(|de| de::Deserializer::deserialize_seq(de, v))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        self.with_node(|de| de::Deserializer::deserialize_struct(de, "", fields, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::parse;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        #[serde(default)]
        a: u16,
        #[serde(default)]
        b: Option<String>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "snake_case")]
    enum Kind {
        Plain,
        WithOpts(Inner),
    }

    #[test]
    fn collects_every_unknown_field() {
        let n = parse("a: 1\nbb: x\nc: 2\n").unwrap();
        let sink = Sink::default();
        let v: Inner = from_node(&n, &sink).unwrap();
        assert_eq!(v.a, 1);
        let d = sink.take();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].message, "unknown field `bb`");
        assert_eq!(d[0].hint.as_deref(), Some("did you mean `b`?"));
        assert_eq!(d[0].loc, Some(Loc { line: 2, col: 1 }));
    }

    #[test]
    fn locates_type_errors() {
        let n = parse("a: [1]\n").unwrap();
        let e = from_node::<Inner>(&n, &Sink::default()).unwrap_err();
        assert_eq!(e.loc, Some(Loc { line: 1, col: 4 }));
        let n = parse("a: 70000\n").unwrap();
        let e = from_node::<Inner>(&n, &Sink::default()).unwrap_err();
        assert!(e.message.contains("70000"), "{}", e.message);
    }

    #[test]
    fn type_tagged_enums() {
        let sink = Sink::default();
        let k: Kind = from_node(&parse("type: with_opts\na: 3\n").unwrap(), &sink).unwrap();
        assert_eq!(k, Kind::WithOpts(Inner { a: 3, b: None }));
        let k: Kind = from_node(&parse("plain").unwrap(), &sink).unwrap();
        assert_eq!(k, Kind::Plain);
        let k: Kind = from_node(&parse("with_opts").unwrap(), &sink).unwrap();
        assert_eq!(k, Kind::WithOpts(Inner { a: 0, b: None }));
        let e = from_node::<Kind>(&parse("type: with_opt\n").unwrap(), &sink).unwrap_err();
        assert_eq!(e.message, "unknown value `with_opt`");
        assert_eq!(e.hint.as_deref(), Some("did you mean `with_opts`?"));
        let _: Kind = from_node(&parse("type: with_opts\nzz: 1\n").unwrap(), &sink).unwrap();
        assert_eq!(sink.take().len(), 1);
    }
}
