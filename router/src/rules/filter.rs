//! Route filters: fields of the envelope and payload, comparison operators, and/or/not; parsed
//! from YAML once (regexes compiled once) and evaluated per event without panicking.

use regex::Regex;
use serde_json::Value as Json;
use yaml_serde::Value;

use super::check::{Ctx, key, kind, with};
use headwater_schemas::Envelope;
use headwater_yaml::{Path, Seg};

/// A field a filter reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// Envelope `id`.
    Id,
    /// Envelope `type`.
    Type,
    /// Envelope `source`.
    Source,
    /// Envelope `tenant`.
    Tenant,
    /// Envelope `version`.
    Version,
    /// Envelope `ts` (client time, ms).
    Ts,
    /// Envelope `received_at` (server time, ms).
    ReceivedAt,
    /// `payload` (empty path) or `payload.a.b`: a JSON payload path; digits index arrays.
    Payload(Vec<String>),
}

impl Field {
    /// Parses `type`, `payload.a.b`…; `Err` explains what is allowed.
    pub fn parse(text: &str) -> Result<Field, String> {
        Ok(match text {
            "id" => Field::Id,
            "type" => Field::Type,
            "source" => Field::Source,
            "tenant" => Field::Tenant,
            "version" => Field::Version,
            "ts" => Field::Ts,
            "received_at" => Field::ReceivedAt,
            "payload" => Field::Payload(Vec::new()),
            other => match other.strip_prefix("payload.") {
                Some(rest) => Field::Payload(split_path(rest)?),
                None => {
                    return Err(format!(
                        "unknown field `{other}`: use id, type, source, tenant, version, ts, \
                         received_at, payload or payload.<path>"
                    ));
                }
            },
        })
    }
}

/// Splits `a.b.0` into segments; no segment may be empty.
pub fn split_path(text: &str) -> Result<Vec<String>, String> {
    let segs: Vec<String> = text.split('.').map(str::to_owned).collect();
    if segs.iter().any(String::is_empty) {
        return Err(format!("field path `{text}` has an empty segment"));
    }
    Ok(segs)
}

/// A comparison applied to one field.
#[derive(Debug, Clone)]
pub enum Op {
    /// Equal to a scalar (numbers compare by value: `1 == 1.0`).
    Eq(Json),
    /// Not equal (also true when the field is missing).
    Ne(Json),
    /// Equal to one of the scalars.
    In(Vec<Json>),
    /// Present and not null (`true`), or missing or null (`false`).
    Exists(bool),
    /// Numeric `<`.
    Lt(f64),
    /// Numeric `<=`.
    Le(f64),
    /// Numeric `>`.
    Gt(f64),
    /// Numeric `>=`.
    Ge(f64),
    /// String matching a regular expression (unanchored; use `^…$` to anchor).
    Matches(Regex),
}

/// A compiled filter condition.
#[derive(Debug, Clone)]
pub enum Filter {
    /// Every condition holds (true when empty).
    And(Vec<Filter>),
    /// At least one holds.
    Or(Vec<Filter>),
    /// The condition does not hold.
    Not(Box<Filter>),
    /// A field comparison.
    Cmp {
        /// The field.
        field: Field,
        /// The comparison.
        op: Op,
    },
}

/// What a filter sees of an event: the envelope and, when JSON, the parsed payload.
#[derive(Debug, Clone, Copy)]
pub struct EventView<'a> {
    /// The envelope.
    pub envelope: &'a Envelope,
    /// The payload parsed as JSON, when it is JSON.
    pub payload: Option<&'a Json>,
}

/// A field's value in one event.
enum Val<'a> {
    Str(&'a str),
    Int(i64),
    Json(&'a Json),
}

impl Filter {
    /// Whether the event passes.
    pub fn eval(&self, ev: &EventView<'_>) -> bool {
        match self {
            Filter::And(all) => all.iter().all(|f| f.eval(ev)),
            Filter::Or(any) => any.iter().any(|f| f.eval(ev)),
            Filter::Not(f) => !f.eval(ev),
            Filter::Cmp { field, op } => compare(lookup(field, ev), op),
        }
    }

    /// Whether any comparison reads the payload.
    pub fn reads_payload(&self) -> bool {
        match self {
            Filter::And(fs) | Filter::Or(fs) => fs.iter().any(Filter::reads_payload),
            Filter::Not(f) => f.reads_payload(),
            Filter::Cmp { field, .. } => matches!(field, Field::Payload(_)),
        }
    }
}

fn lookup<'a>(field: &Field, ev: &EventView<'a>) -> Option<Val<'a>> {
    let env = ev.envelope;
    Some(match field {
        Field::Id => Val::Str(&env.id),
        Field::Type => Val::Str(&env.event_type),
        Field::Source => Val::Str(&env.source),
        Field::Tenant => Val::Str(&env.tenant),
        Field::Version => Val::Int(i64::from(env.version)),
        Field::Ts => Val::Int(env.ts),
        Field::ReceivedAt => Val::Int(env.received_at),
        Field::Payload(path) => Val::Json(json_path(ev.payload?, path)?),
    })
}

/// The JSON value at `path` (object keys, or array indexes for digit segments).
pub fn json_path<'a>(mut v: &'a Json, path: &[String]) -> Option<&'a Json> {
    for seg in path {
        v = match v {
            Json::Object(map) => map.get(seg)?,
            Json::Array(items) => items.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(v)
}

fn compare(val: Option<Val<'_>>, op: &Op) -> bool {
    match op {
        Op::Exists(want) => {
            let present = !matches!(val, None | Some(Val::Json(Json::Null)));
            present == *want
        }
        Op::Ne(lit) => !val.is_some_and(|v| equals(&v, lit)),
        _ => val.is_some_and(|v| compare_present(&v, op)),
    }
}

fn compare_present(v: &Val<'_>, op: &Op) -> bool {
    match op {
        Op::Eq(lit) => equals(v, lit),
        Op::In(lits) => lits.iter().any(|lit| equals(v, lit)),
        Op::Lt(n) => number(v).is_some_and(|x| x < *n),
        Op::Le(n) => number(v).is_some_and(|x| x <= *n),
        Op::Gt(n) => number(v).is_some_and(|x| x > *n),
        Op::Ge(n) => number(v).is_some_and(|x| x >= *n),
        Op::Matches(re) => text(v).is_some_and(|s| re.is_match(s)),
        Op::Exists(_) | Op::Ne(_) => false,
    }
}

fn number(v: &Val<'_>) -> Option<f64> {
    match v {
        Val::Int(i) => Some(*i as f64),
        Val::Json(j) => j.as_f64(),
        Val::Str(_) => None,
    }
}

fn text<'a>(v: &Val<'a>) -> Option<&'a str> {
    match v {
        Val::Str(s) => Some(s),
        Val::Json(j) => j.as_str(),
        Val::Int(_) => None,
    }
}

fn equals(v: &Val<'_>, lit: &Json) -> bool {
    if let (Some(a), Some(b)) = (number(v), lit.as_f64()) {
        return a == b;
    }
    match v {
        Val::Str(s) => lit.as_str() == Some(*s),
        Val::Int(_) => false,
        Val::Json(j) => *j == lit,
    }
}

const COMBINATORS: [&str; 3] = ["and", "or", "not"];
const OPERATORS: [&str; 15] = [
    "eq", "==", "ne", "!=", "in", "exists", "lt", "<", "le", "<=", "gt", ">", "ge", ">=", "matches",
];

/// Parses a filter condition at `path`, recording every problem in `ctx`.
pub fn parse(v: &Value, path: &[Seg], ctx: &mut Ctx) -> Option<Filter> {
    let Some(map) = v.as_mapping() else {
        ctx.err(
            path,
            format!("a filter condition must be a mapping, found {}", kind(v)),
        );
        return None;
    };
    let is_combinator = map
        .keys()
        .any(|k| k.as_str().is_some_and(|k| COMBINATORS.contains(&k)));
    if is_combinator {
        return parse_combinator(v, path, ctx);
    }
    parse_comparison(v, path, ctx)
}

/// `{field: F, OP: VALUE}`.
fn parse_comparison(v: &Value, path: &[Seg], ctx: &mut Ctx) -> Option<Filter> {
    let mut allowed = vec!["field"];
    allowed.extend(OPERATORS);
    let entries = ctx.mapping(v, path, "a filter condition", &allowed)?;
    let mut field = None;
    let mut ops = Vec::new();
    for (k, val) in entries {
        let p = key(path, k);
        if k == "field" {
            let name = ctx.string(val, &p, "`field`")?;
            match Field::parse(&name) {
                Ok(f) => field = Some(f),
                Err(e) => ctx.err(&p, e),
            }
        } else {
            ops.push((k, val, p));
        }
    }
    if !v.as_mapping().is_some_and(|m| m.contains_key("field")) {
        ctx.err(
            path,
            "a filter condition needs `field` and one operator, or one of and, or, not",
        );
        return None;
    }
    match ops.as_slice() {
        [(k, val, p)] => {
            let op = parse_op(k, val, p, ctx);
            Some(Filter::Cmp {
                field: field?,
                op: op?,
            })
        }
        [] => {
            ctx.err(
                path,
                format!("missing operator (one of: {})", OPERATORS.join(", ")),
            );
            None
        }
        _ => {
            ctx.err(
                path,
                "a condition takes exactly one operator; combine several with `and`",
            );
            None
        }
    }
}

fn parse_combinator(v: &Value, path: &[Seg], ctx: &mut Ctx) -> Option<Filter> {
    let entries = ctx.mapping(v, path, "a filter condition", &[])?;
    if entries.len() != 1 {
        ctx.err(
            path,
            "`and`, `or` and `not` must be the only key of their condition",
        );
        return None;
    }
    let (k, val) = entries[0];
    let p = key(path, k);
    match k {
        "not" => Some(Filter::Not(Box::new(parse(val, &p, ctx)?))),
        _ => {
            let Some(items) = val.as_sequence() else {
                ctx.err(
                    &p,
                    format!("`{k}` takes a list of conditions, found {}", kind(val)),
                );
                return None;
            };
            let parsed: Vec<Option<Filter>> = items
                .iter()
                .enumerate()
                .map(|(i, item)| parse(item, &with(&p, Seg::Index(i)), ctx))
                .collect();
            let all: Option<Vec<Filter>> = parsed.into_iter().collect();
            Some(if k == "and" {
                Filter::And(all?)
            } else {
                Filter::Or(all?)
            })
        }
    }
}

fn parse_op(op: &str, v: &Value, path: &Path, ctx: &mut Ctx) -> Option<Op> {
    let num = |ctx: &mut Ctx| match v.as_f64() {
        Some(n) if n.is_finite() => Some(n),
        _ => {
            ctx.err(path, format!("`{op}` compares numbers, found {}", kind(v)));
            None
        }
    };
    Some(match op {
        "eq" | "==" => Op::Eq(scalar(v, path, ctx)?),
        "ne" | "!=" => Op::Ne(scalar(v, path, ctx)?),
        "in" => {
            let Some(items) = v.as_sequence() else {
                ctx.err(
                    path,
                    format!("`in` takes a list of values, found {}", kind(v)),
                );
                return None;
            };
            let lits: Option<Vec<Json>> = items
                .iter()
                .enumerate()
                .map(|(i, item)| scalar(item, &with(path, Seg::Index(i)), ctx))
                .collect();
            Op::In(lits?)
        }
        "exists" => match v.as_bool() {
            Some(b) => Op::Exists(b),
            None => {
                ctx.err(
                    path,
                    format!("`exists` takes true or false, found {}", kind(v)),
                );
                return None;
            }
        },
        "lt" | "<" => Op::Lt(num(ctx)?),
        "le" | "<=" => Op::Le(num(ctx)?),
        "gt" | ">" => Op::Gt(num(ctx)?),
        "ge" | ">=" => Op::Ge(num(ctx)?),
        _ => {
            let pattern = ctx.string(v, path, "`matches`")?;
            match Regex::new(&pattern) {
                Ok(re) => Op::Matches(re),
                Err(e) => {
                    ctx.err(
                        path,
                        format!("bad regular expression: {}", one_line(&e.to_string())),
                    );
                    return None;
                }
            }
        }
    })
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn scalar(v: &Value, path: &[Seg], ctx: &mut Ctx) -> Option<Json> {
    match v {
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {
            serde_json::to_value(v).ok()
        }
        other => {
            ctx.err(
                path,
                format!("expected a single value, found {}", kind(other)),
            );
            None
        }
    }
}
