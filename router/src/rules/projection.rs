//! Payload projections: keep (`include`) or drop (`exclude`) JSON payload fields, then rename.

use serde_json::{Map, Value as Json};
use yaml_serde::Value;

use super::check::{Ctx, key, with};
use super::filter::split_path;
use headwater_yaml::Seg;

/// Which fields to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keep {
    /// Every field.
    All,
    /// Only these payload paths.
    Include(Vec<Vec<String>>),
    /// Every field but these paths.
    Exclude(Vec<Vec<String>>),
}

/// A compiled projection; applies to JSON object payloads only (others pass unchanged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Projection {
    /// Fields kept.
    pub keep: Keep,
    /// `(from, to)` payload paths moved after `keep`, in file order.
    pub rename: Vec<(Vec<String>, Vec<String>)>,
}

impl Projection {
    /// The projected payload. Never panics, whatever the JSON.
    pub fn apply(&self, payload: Json) -> Json {
        let Json::Object(map) = payload else {
            return payload;
        };
        let mut out = match &self.keep {
            Keep::All => map,
            Keep::Include(paths) => {
                let source = Json::Object(map);
                let mut out = Json::Object(Map::new());
                for path in paths {
                    if let Some(v) = super::filter::json_path(&source, path) {
                        insert(&mut out, path, v.clone());
                    }
                }
                match out {
                    Json::Object(m) => m,
                    _ => Map::new(),
                }
            }
            Keep::Exclude(paths) => {
                let mut out = Json::Object(map);
                for path in paths {
                    remove(&mut out, path);
                }
                match out {
                    Json::Object(m) => m,
                    _ => Map::new(),
                }
            }
        };
        let mut root = Json::Object(std::mem::take(&mut out));
        for (from, to) in &self.rename {
            if let Some(v) = remove(&mut root, from) {
                insert(&mut root, to, v);
            }
        }
        root
    }
}

/// Sets `path` in `root`, creating objects on the way (a non-object on the way is replaced).
fn insert(root: &mut Json, path: &[String], value: Json) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = root;
    for seg in parents {
        if !node.is_object() {
            *node = Json::Object(Map::new());
        }
        let Json::Object(map) = node else { return };
        node = map
            .entry(seg.clone())
            .or_insert_with(|| Json::Object(Map::new()));
    }
    if !node.is_object() {
        *node = Json::Object(Map::new());
    }
    if let Json::Object(map) = node {
        map.insert(last.clone(), value);
    }
}

/// Removes and returns the value at `path` (objects only).
fn remove(root: &mut Json, path: &[String]) -> Option<Json> {
    let (last, parents) = path.split_last()?;
    let mut node = root;
    for seg in parents {
        node = node.as_object_mut()?.get_mut(seg)?;
    }
    node.as_object_mut()?.remove(last)
}

/// Parses `projection:` at `path`.
pub fn parse(v: &Value, path: &[Seg], ctx: &mut Ctx) -> Option<Projection> {
    let entries = ctx.mapping(v, path, "`projection`", &["include", "exclude", "rename"])?;
    let mut keep = Keep::All;
    let mut rename = Vec::new();
    let mut ok = true;
    let has = |k: &str| entries.iter().any(|(e, _)| *e == k);
    if has("include") && has("exclude") {
        ctx.err(path, "`projection` takes `include` or `exclude`, not both");
        ok = false;
    }
    for (k, val) in &entries {
        let p = key(path, k);
        match *k {
            "include" | "exclude" => match paths(val, &p, ctx) {
                Some(list) if *k == "include" => keep = Keep::Include(list),
                Some(list) => keep = Keep::Exclude(list),
                None => ok = false,
            },
            _ => match parse_rename(val, &p, ctx) {
                Some(r) => rename = r,
                None => ok = false,
            },
        }
    }
    ok.then_some(Projection { keep, rename })
}

fn paths(v: &Value, path: &[Seg], ctx: &mut Ctx) -> Option<Vec<Vec<String>>> {
    let list = ctx.strings(v, path, "a projection field list")?;
    let mut out = Vec::with_capacity(list.len());
    let mut ok = true;
    for (i, text) in list.iter().enumerate() {
        match payload_path(text) {
            Ok(p) => out.push(p),
            Err(e) => {
                ctx.err(&with(path, Seg::Index(i)), e);
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

fn parse_rename(v: &Value, path: &[Seg], ctx: &mut Ctx) -> Option<Vec<(Vec<String>, Vec<String>)>> {
    let entries = ctx.mapping(v, path, "`rename`", &[])?;
    let mut out = Vec::with_capacity(entries.len());
    let mut ok = true;
    for (from, to) in entries {
        let p = key(path, from);
        let pair = ctx.string(to, &p, "a new field name").and_then(|to| {
            match (payload_path(from), payload_path(&to)) {
                (Ok(a), Ok(b)) => Some((a, b)),
                (Err(e), _) | (_, Err(e)) => {
                    ctx.err(&p, e);
                    None
                }
            }
        });
        match pair {
            Some(pair) => out.push(pair),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// A payload-relative path; a leading `payload.` is accepted and dropped.
fn payload_path(text: &str) -> Result<Vec<String>, String> {
    split_path(text.strip_prefix("payload.").unwrap_or(text))
}
