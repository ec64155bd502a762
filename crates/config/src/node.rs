//! A YAML document as a tree of located nodes.
//!
//! serde-saphyr parses the YAML (with its budgets against hostile input, anchors and merges);
//! we keep the result as a tree where every node knows its line and column, so that validation
//! can report *every* problem with `file:line:col`, not only the first one serde meets.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// 1-based line and column of a node in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord, Hash)]
pub struct Loc {
    pub line: u32,
    pub col: u32,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub loc: Loc,
    pub kind: NodeKind,
    /// The source text of a plain scalar that YAML typed as a number or boolean, so a field
    /// that wants text gets `0x16` or `007` as written, not `22` or `7`.
    pub raw: Option<Box<str>>,
    /// Byte range in the source (filled for scalars; used to recover `raw`).
    span: Option<(usize, usize)>,
}

impl Node {
    pub fn new(loc: Loc, kind: NodeKind) -> Node {
        Node {
            loc,
            kind,
            raw: None,
            span: None,
        }
    }

    /// Text of a scalar as written (numbers and booleans included).
    pub fn scalar_text(&self) -> Option<std::borrow::Cow<'_, str>> {
        if let Some(r) = &self.raw {
            return Some(std::borrow::Cow::Borrowed(r));
        }
        match &self.kind {
            NodeKind::Str(s) => Some(s.as_str().into()),
            NodeKind::Int(i) => Some(i.to_string().into()),
            NodeKind::UInt(u) => Some(u.to_string().into()),
            NodeKind::Float(x) => Some(x.to_string().into()),
            NodeKind::Bool(b) => Some(b.to_string().into()),
            _ => None,
        }
    }

    fn fill_raw(&mut self, text: &str) {
        match &mut self.kind {
            NodeKind::Seq(items) => items.iter_mut().for_each(|n| n.fill_raw(text)),
            NodeKind::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
                k.fill_raw(text);
                v.fill_raw(text);
            }),
            NodeKind::Int(_) | NodeKind::UInt(_) | NodeKind::Float(_) | NodeKind::Bool(_) => {
                if let Some(src) = self
                    .span
                    .and_then(|(start, len)| text.get(start..start.saturating_add(len)))
                {
                    let t = src.trim();
                    if !t.is_empty() && !t.contains('\n') {
                        self.raw = Some(t.into());
                    }
                }
            }
            _ => {}
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.kind, NodeKind::Null)
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The entries of a mapping node (empty for anything else).
    pub fn entries(&self) -> &[(Node, Node)] {
        match &self.kind {
            NodeKind::Map(m) => m,
            _ => &[],
        }
    }

    /// The value under `key` in a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries()
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// Location of the value under a dotted path (`check.ca_file`, `steps[1].expect`), or
    /// the deepest node found on the way.
    pub fn loc_of(&self, path: &str) -> Loc {
        let mut node = self;
        for part in path.split('.') {
            let (key, index) = match part.split_once('[') {
                Some((k, rest)) => (k, rest.trim_end_matches(']').parse::<usize>().ok()),
                None => (part, None),
            };
            let next = if key.is_empty() {
                Some(node)
            } else {
                node.get(key)
            };
            let Some(mut n) = next else { return node.loc };
            if let Some(i) = index {
                match &n.kind {
                    NodeKind::Seq(items) if i < items.len() => n = &items[i],
                    _ => return n.loc,
                }
            }
            node = n;
        }
        node.loc
    }

    /// What kind of YAML value this is, for error messages.
    pub fn describe(&self) -> &'static str {
        match self.kind {
            NodeKind::Null => "nothing (null)",
            NodeKind::Bool(_) => "a boolean",
            NodeKind::Int(_) | NodeKind::UInt(_) => "an integer",
            NodeKind::Float(_) => "a number",
            NodeKind::Str(_) => "a string",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
        }
    }
}

fn loc_from(l: &serde_saphyr::Location) -> Loc {
    Loc {
        line: l.line().min(u64::from(u32::MAX)) as u32,
        col: l.column().min(u64::from(u32::MAX)) as u32,
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = serde_saphyr::Spanned::<NodeKind>::deserialize(d)?;
        let span = s.referenced.span();
        let span = match (span.byte_offset(), span.byte_len()) {
            (Some(o), Some(l)) => usize::try_from(o).ok().zip(usize::try_from(l).ok()),
            _ => None,
        };
        Ok(Node {
            loc: loc_from(&s.referenced),
            kind: s.value,
            raw: None,
            span,
        })
    }
}

impl<'de> Deserialize<'de> for NodeKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KindVisitor)
    }
}

struct KindVisitor;

impl<'de> Visitor<'de> for KindVisitor {
    type Value = NodeKind;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<NodeKind, E> {
        Ok(NodeKind::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<NodeKind, E> {
        Ok(NodeKind::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<NodeKind, D::Error> {
        NodeKind::deserialize(d)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<NodeKind, E> {
        Ok(NodeKind::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<NodeKind, E> {
        Ok(NodeKind::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<NodeKind, E> {
        Ok(match i64::try_from(v) {
            Ok(i) => NodeKind::Int(i),
            Err(_) => NodeKind::UInt(v),
        })
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<NodeKind, E> {
        i64::try_from(v)
            .map(NodeKind::Int)
            .map_err(|_| E::custom("integer out of range"))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<NodeKind, E> {
        u64::try_from(v)
            .map(NodeKind::UInt)
            .map_err(|_| E::custom("integer out of range"))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<NodeKind, E> {
        Ok(NodeKind::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<NodeKind, E> {
        Ok(NodeKind::Str(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<NodeKind, E> {
        Ok(NodeKind::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<NodeKind, E> {
        Ok(NodeKind::Str(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NodeKind, A::Error> {
        let mut items = Vec::new();
        while let Some(n) = seq.next_element::<Node>()? {
            items.push(n);
        }
        Ok(NodeKind::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NodeKind, A::Error> {
        let mut entries = Vec::new();
        while let Some(k) = map.next_key::<Node>()? {
            let v = map.next_value::<Node>()?;
            entries.push((k, v));
        }
        Ok(NodeKind::Map(entries))
    }
}

/// Parses YAML text into a located tree. An empty document is an empty mapping.
pub fn parse(text: &str) -> Result<Node, (Option<Loc>, String)> {
    if text.trim().is_empty() {
        return Ok(Node::new(
            Loc { line: 1, col: 1 },
            NodeKind::Map(Vec::new()),
        ));
    }
    // Strict booleans: only true/false are booleans (`on`, `y`, `no` stay text, as in YAML 1.2).
    // Budgets against hostile YAML, sized for real inventories (100 000 monitors is ~1.5 M
    // nodes); the library defaults (250 000 nodes) would refuse a 20 000-monitor config.
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_nodes: 10_000_000,
            max_events: 40_000_000,
        },
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
        underscored_numbers_as_strings: true,
    };
    let mut root = serde_saphyr::from_str_with_options::<Node>(text, options).map_err(|e| {
        let loc = e.location().map(|l| loc_from(&l)).filter(|l| l.line > 0);
        let msg = e.to_string();
        let first = msg.lines().next().unwrap_or("invalid YAML").to_string();
        (loc, first)
    })?;
    root.fill_raw(text);
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_nodes() {
        let n = parse("a: 1\nb:\n  - x: yes\n    y: \"s\"\n").unwrap();
        assert_eq!(n.get("a").unwrap().kind, NodeKind::Int(1));
        assert_eq!(n.get("a").unwrap().loc, Loc { line: 1, col: 4 });
        assert_eq!(n.loc_of("b[0].y"), Loc { line: 4, col: 8 });
        assert_eq!(n.loc_of("b[0].x").line, 3);
    }

    #[test]
    fn keeps_scalar_text() {
        let n = parse("a: 0x16\nb: y\nc: 007\nd: true\n").unwrap();
        assert_eq!(n.get("a").unwrap().scalar_text().unwrap(), "0x16");
        assert_eq!(n.get("b").unwrap().kind, NodeKind::Str("y".into()));
        assert_eq!(n.get("c").unwrap().scalar_text().unwrap(), "007");
        assert_eq!(n.get("d").unwrap().kind, NodeKind::Bool(true));
    }

    #[test]
    fn syntax_errors_are_located() {
        let (loc, msg) = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(loc.is_some(), "{msg}");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,200}") { let _ = parse(&s); }
    }
}
