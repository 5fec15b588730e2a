//! Finds the line and column of a YAML node in the source text by its path (keys and indexes),
//! so that every configuration error (headwater.yaml, routes.yaml, sink entries) names its line.
//!
//! yaml_serde keeps no positions in its `Value`, but every error raised while a node is being
//! deserialized carries that node's position. [`locate`] walks the document along a path with
//! a `DeserializeSeed` and fails on purpose at the target node to learn where it is.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// One step of a path into a YAML document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// The value under a mapping key.
    Key(String),
    /// The key itself (to point at an unknown or duplicate key).
    KeyName(String),
    /// An element of a sequence.
    Index(usize),
}

/// A path into the document, root first.
pub type Path = Vec<Seg>;

/// Renders a path as `routes[2].filter.and[0]` for messages.
pub fn display(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) | Seg::KeyName(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Parses a rendered path (`gateway.auth.keys[0].tenant`, as [`display`] writes it) back into
/// segments. Keys holding dots cannot be told apart from nesting; such paths are not found.
pub fn parse(rendered: &str) -> Path {
    let mut path = Vec::new();
    for part in rendered.split('.').filter(|p| !p.is_empty()) {
        let (name, indexes) = part.split_once('[').unwrap_or((part, ""));
        if !name.is_empty() {
            path.push(Seg::Key(name.to_owned()));
        }
        for index in indexes.split('[') {
            if let Some(i) = index.strip_suffix(']').and_then(|i| i.parse().ok()) {
                path.push(Seg::Index(i));
            }
        }
    }
    path
}

/// 1-based line of the key (or sequence element) a rendered path names, for problems found
/// after parsing (`validate()`), or `None` when the path is not in `text`.
pub fn line_of(text: &str, rendered: &str) -> Option<usize> {
    let mut path = parse(rendered);
    if let Some(Seg::Key(last)) = path.last_mut() {
        let name = std::mem::take(last);
        path.pop();
        path.push(Seg::KeyName(name));
    }
    locate(text, &path).map(|(line, _)| line)
}

/// 1-based `(line, column)` of the node at `path`, or `None` when the path is not in `text`.
pub fn locate(text: &str, path: &[Seg]) -> Option<(usize, usize)> {
    let de = yaml_serde::Deserializer::from_str(text);
    match (Nav { path }).deserialize(de) {
        Ok(()) => None,
        Err(e) => e.location().map(|l| (l.line(), l.column())),
    }
}

/// Walks down `path`; errors at the target node.
struct Nav<'p> {
    path: &'p [Seg],
}

impl<'de> DeserializeSeed<'de> for Nav<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        match self.path.first() {
            None => d.deserialize_any(Here),
            Some(_) => d.deserialize_any(self),
        }
    }
}

impl<'de> Visitor<'de> for Nav<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any node")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (name, descend) = match self.path.first() {
            Some(Seg::Key(k)) => (k.as_str(), true),
            Some(Seg::KeyName(k)) => (k.as_str(), false),
            _ => return drain_map(map),
        };
        while let Some(matched) = map.next_key_seed(KeySeed {
            name,
            stop: !descend,
        })? {
            if matched {
                return map.next_value_seed(Nav {
                    path: &self.path[1..],
                });
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some(Seg::Index(want)) = self.path.first() else {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(());
        };
        let mut i = 0;
        loop {
            if i == *want {
                return seq
                    .next_element_seed(Nav {
                        path: &self.path[1..],
                    })
                    .map(|_| ());
            }
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }

    // Scalars on the way: the path does not exist.
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Fails at whatever node it is given: every default `visit_*` returns an error, and yaml_serde
/// stamps it with the node's position.
struct Here;

impl Visitor<'_> for Here {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("nothing (locating a node)")
    }
}

/// Reads a mapping key; `Ok(true)` when it is `name`. With `stop`, errors at that key instead.
struct KeySeed<'n> {
    name: &'n str,
    stop: bool,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = bool;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl KeySeed<'_> {
    fn check<E: de::Error>(&self, key: &str) -> Result<bool, E> {
        if key != self.name {
            return Ok(false);
        }
        if self.stop {
            return Err(E::custom("located"));
        }
        Ok(true)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        self.check(v)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        self.check(&v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
        self.check(&v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
        self.check(&v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<bool, E> {
        self.check(&v.to_string())
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        self.check("null")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<bool, A::Error> {
        drain_map(map).map(|_| false)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "routes:\n  - name: a\n    sinks:\n      - type: s3\n  - name: b\n    bogus: 1\n    source: {topics: [x, y]}\n";

    fn key(k: &str) -> Seg {
        Seg::Key(k.to_owned())
    }

    #[test]
    fn finds_values_keys_and_flow_nodes() {
        assert_eq!(locate(TEXT, &[]), Some((1, 1)));
        let p = [key("routes"), Seg::Index(1), key("name")];
        assert_eq!(locate(TEXT, &p), Some((5, 11)));
        let p = [key("routes"), Seg::Index(1), Seg::KeyName("bogus".into())];
        assert_eq!(locate(TEXT, &p), Some((6, 5)));
        let p = [
            key("routes"),
            Seg::Index(1),
            key("source"),
            key("topics"),
            Seg::Index(1),
        ];
        assert_eq!(locate(TEXT, &p), Some((7, 26)));
        let p = [key("routes"), Seg::Index(0), key("sinks"), Seg::Index(0)];
        assert_eq!(locate(TEXT, &p), Some((4, 9)));
        assert_eq!(locate(TEXT, &[key("nope")]), None);
        assert_eq!(locate(TEXT, &[key("routes"), Seg::Index(9)]), None);
    }

    #[test]
    fn rendered_paths_parse_back_and_find_their_line() {
        let text = "a:\n  b: 1\nc:\n  # note\n  d:\n    e: 2\n    f:\n      - x\n      - y: 3\n";
        assert_eq!(line_of(text, "a.b"), Some(2));
        assert_eq!(line_of(text, "c.d.e"), Some(6));
        assert_eq!(line_of(text, "c.d.f[1].y"), Some(9));
        assert_eq!(line_of(text, "c.b"), None);
        assert_eq!(
            parse("r[2].and[0]"),
            vec![key("r"), Seg::Index(2), key("and"), Seg::Index(0)]
        );
    }

    #[test]
    fn display_paths() {
        let p = [
            key("routes"),
            Seg::Index(2),
            key("filter"),
            key("and"),
            Seg::Index(0),
        ];
        assert_eq!(display(&p), "routes[2].filter.and[0]");
    }
}
