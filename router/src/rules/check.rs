//! Small helpers to read a `yaml_serde::Value` tree while collecting every problem with the
//! path where it was found (turned into line and column later).

use yaml_serde::{Mapping, Value};

use headwater_yaml::{Path, Seg};

/// Problems found so far, each with the path of the node it is about.
#[derive(Debug, Default)]
pub struct Ctx {
    /// `(path, message)` in discovery order.
    pub problems: Vec<(Path, String)>,
}

impl Ctx {
    /// Records a problem at `path`.
    pub fn err(&mut self, path: &[Seg], message: impl Into<String>) {
        self.problems.push((path.to_vec(), message.into()));
    }

    /// The node as a mapping with string keys, checking that every key is in `allowed`.
    pub fn mapping<'v>(
        &mut self,
        v: &'v Value,
        path: &[Seg],
        what: &str,
        allowed: &[&str],
    ) -> Option<Vec<(&'v str, &'v Value)>> {
        let Some(map) = v.as_mapping() else {
            self.err(path, format!("{what} must be a mapping, found {}", kind(v)));
            return None;
        };
        Some(self.entries(map, path, what, allowed))
    }

    fn entries<'v>(
        &mut self,
        map: &'v Mapping,
        path: &[Seg],
        what: &str,
        allowed: &[&str],
    ) -> Vec<(&'v str, &'v Value)> {
        let mut out = Vec::with_capacity(map.len());
        for (k, v) in map {
            let Some(key) = k.as_str() else {
                self.err(path, format!("{what} has a key that is not a string"));
                continue;
            };
            if !allowed.is_empty() && !allowed.contains(&key) {
                let key_path = with(path, Seg::KeyName(key.to_owned()));
                self.err(
                    &key_path,
                    format!(
                        "unknown key `{key}` in {what} (expected one of: {})",
                        allowed.join(", ")
                    ),
                );
                continue;
            }
            out.push((key, v));
        }
        out
    }

    /// A string scalar.
    pub fn string(&mut self, v: &Value, path: &[Seg], what: &str) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            other => {
                self.err(
                    path,
                    format!("{what} must be a string, found {}", kind(other)),
                );
                None
            }
        }
    }

    /// A non-empty sequence of strings (a single string is accepted as a list of one).
    pub fn strings(&mut self, v: &Value, path: &[Seg], what: &str) -> Option<Vec<String>> {
        let items = match v {
            Value::String(s) => return Some(vec![s.clone()]),
            Value::Sequence(items) => items,
            other => {
                self.err(
                    path,
                    format!("{what} must be a list of strings, found {}", kind(other)),
                );
                return None;
            }
        };
        if items.is_empty() {
            self.err(path, format!("{what} must not be empty"));
            return None;
        }
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            out.push(self.string(item, &with(path, Seg::Index(i)), what)?);
        }
        Some(out)
    }

    /// A non-negative integer.
    pub fn unsigned(&mut self, v: &Value, path: &[Seg], what: &str) -> Option<u64> {
        match v.as_u64() {
            Some(n) => Some(n),
            None => {
                self.err(
                    path,
                    format!("{what} must be a non-negative integer, found {}", kind(v)),
                );
                None
            }
        }
    }

    /// A positive integer.
    pub fn positive(&mut self, v: &Value, path: &[Seg], what: &str) -> Option<u64> {
        match self.unsigned(v, path, what)? {
            0 => {
                self.err(path, format!("{what} must be at least 1"));
                None
            }
            n => Some(n),
        }
    }
}

/// `path` with one more step.
pub(super) fn with(path: &[Seg], seg: Seg) -> Path {
    let mut p = path.to_vec();
    p.push(seg);
    p
}

/// `path` with one more key step.
pub(super) fn key(path: &[Seg], k: &str) -> Path {
    with(path, Seg::Key(k.to_owned()))
}

/// What kind of node a value is, for messages.
pub(super) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}
