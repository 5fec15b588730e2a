//! `check_routes`: routes.yaml text to [`Routes`], or every problem with line and column.

use std::collections::HashSet;
use std::sync::Arc;

use yaml_serde::Value;

use super::check::{Ctx, key, kind, with};
use super::{
    BatchOverrides, Route, RouteProblem, Routes, Sample, SampleBy, SinkSpec, Source, filter,
    projection,
};
use headwater_yaml::{Seg, display, locate};

const ROUTE_KEYS: [&str; 7] = [
    "name",
    "source",
    "filter",
    "projection",
    "sample",
    "batch",
    "sinks",
];

/// Checks one sink spec (e.g. by deserializing it into the sinks crate's config); `Err` is
/// reported at the sink's line and column.
pub type SinkCheck<'a> = &'a dyn Fn(&SinkSpec) -> Result<(), String>;

/// Parses and compiles a routes file. On failure returns every problem found, in file order,
/// each with its line and column. Sink specs are only checked for a `type`; see
/// [`check_routes_with`] to check their settings too.
pub fn check_routes(text: &str) -> Result<Routes, Vec<RouteProblem>> {
    check_routes_with(text, &|_| Ok(()))
}

/// [`check_routes`], also running `check_sink` on every sink spec.
pub fn check_routes_with(
    text: &str,
    check_sink: SinkCheck<'_>,
) -> Result<Routes, Vec<RouteProblem>> {
    let doc: Value = match yaml_serde::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
            return Err(vec![RouteProblem {
                line,
                column,
                path: String::new(),
                message: strip_position(&e.to_string()),
            }]);
        }
    };
    let mut ctx = Ctx::default();
    let routes = parse_doc(&doc, &mut ctx, check_sink);
    if ctx.problems.is_empty() {
        return Ok(Routes { routes });
    }
    let mut problems: Vec<RouteProblem> = ctx
        .problems
        .into_iter()
        .map(|(path, message)| {
            let (line, column) = locate(text, &path).unwrap_or((1, 1));
            RouteProblem {
                line,
                column,
                path: display(&path),
                message,
            }
        })
        .collect();
    problems.sort_by_key(|p| (p.line, p.column));
    Err(problems)
}

/// yaml_serde appends " at line L column C" to its messages; the problem carries them apart.
fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

fn parse_doc(doc: &Value, ctx: &mut Ctx, check_sink: SinkCheck<'_>) -> Vec<Arc<Route>> {
    if doc.is_null() {
        ctx.err(
            &[],
            "the routes file is empty: expected `routes:` with a list of routes",
        );
        return Vec::new();
    }
    let Some(entries) = ctx.mapping(doc, &[], "the routes file", &["routes"]) else {
        return Vec::new();
    };
    let Some((_, list)) = entries.into_iter().find(|(k, _)| *k == "routes") else {
        ctx.err(&[], "missing `routes:` (a list of routes)");
        return Vec::new();
    };
    let path = key(&[], "routes");
    let Some(items) = list.as_sequence() else {
        ctx.err(
            &path,
            format!("`routes` must be a list, found {}", kind(list)),
        );
        return Vec::new();
    };
    let mut names = HashSet::new();
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let p = with(&path, Seg::Index(i));
        if let Some(route) = parse_route(item, &p, ctx, &mut names, check_sink) {
            out.push(Arc::new(route));
        }
    }
    out
}

fn parse_route(
    v: &Value,
    path: &[Seg],
    ctx: &mut Ctx,
    names: &mut HashSet<String>,
    check_sink: SinkCheck<'_>,
) -> Option<Route> {
    let entries = ctx.mapping(v, path, "a route", &ROUTE_KEYS)?;
    let get = |k: &str| entries.iter().find(|(e, _)| *e == k).map(|(_, v)| *v);
    let before = ctx.problems.len();
    let name = parse_name(get("name"), path, ctx, names);
    let route_name: Arc<str> = Arc::from(name.as_deref().unwrap_or(""));
    let source = match get("source") {
        Some(s) => parse_source(s, &key(path, "source"), ctx),
        None => {
            ctx.err(path, "a route needs `source` (at least `topics`)");
            None
        }
    };
    let filter = get("filter").and_then(|f| filter::parse(f, &key(path, "filter"), ctx));
    let projection =
        get("projection").and_then(|p| projection::parse(p, &key(path, "projection"), ctx));
    let sample = get("sample").and_then(|s| parse_sample(s, &key(path, "sample"), ctx));
    let batch = get("batch")
        .and_then(|b| parse_batch(b, &key(path, "batch"), ctx))
        .unwrap_or_default();
    let sinks = match get("sinks") {
        Some(s) => parse_sinks(s, &key(path, "sinks"), ctx, &route_name, check_sink),
        None => {
            ctx.err(path, "a route needs `sinks` (one or more)");
            Vec::new()
        }
    };
    if ctx.problems.len() > before {
        return None;
    }
    Some(Route {
        name: route_name,
        source: source?,
        filter,
        projection,
        sample,
        batch,
        sinks,
        definition: v.clone(),
    })
}

fn parse_name(
    v: Option<&Value>,
    path: &[Seg],
    ctx: &mut Ctx,
    names: &mut HashSet<String>,
) -> Option<String> {
    let Some(v) = v else {
        ctx.err(path, "a route needs a `name`");
        return None;
    };
    let p = key(path, "name");
    let name = ctx.string(v, &p, "`name`")?;
    let valid = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid {
        ctx.err(
            &p,
            format!("route name `{name}` must be 1-100 characters of A-Z, a-z, 0-9, `_` and `-`"),
        );
        return None;
    }
    if !names.insert(name.clone()) {
        ctx.err(&p, format!("duplicate route name `{name}`"));
        return None;
    }
    Some(name)
}

fn parse_source(v: &Value, path: &[Seg], ctx: &mut Ctx) -> Option<Source> {
    let entries = ctx.mapping(v, path, "`source`", &["topics", "types", "tenants"])?;
    let mut source = Source {
        topics: Vec::new(),
        types: None,
        tenants: None,
    };
    let before = ctx.problems.len();
    for (k, val) in entries {
        let p = key(path, k);
        match k {
            "topics" => {
                let topics = ctx.strings(val, &p, "`topics`").unwrap_or_default();
                let mut seen = HashSet::new();
                for (i, t) in topics.iter().enumerate() {
                    let tp = with(&p, Seg::Index(i));
                    if headwater_log::check_topic_name(t).is_err() {
                        ctx.err(&tp, format!("invalid topic name `{t}`"));
                    } else if !seen.insert(t.clone()) {
                        ctx.err(&tp, format!("topic `{t}` is listed twice"));
                    }
                }
                source.topics = topics;
            }
            "types" => source.types = ctx.strings(val, &p, "`types`"),
            _ => source.tenants = ctx.strings(val, &p, "`tenants`"),
        }
    }
    if source.topics.is_empty() && ctx.problems.len() == before {
        ctx.err(path, "`source` needs `topics` (one or more)");
    }
    (ctx.problems.len() == before).then_some(source)
}

fn parse_sample(v: &Value, path: &[Seg], ctx: &mut Ctx) -> Option<Sample> {
    let entries = ctx.mapping(v, path, "`sample`", &["rate", "by"])?;
    let mut rate = None;
    let mut by = SampleBy::Source;
    let before = ctx.problems.len();
    for (k, val) in entries {
        let p = key(path, k);
        if k == "rate" {
            match val.as_f64() {
                Some(r) if (0.0..=1.0).contains(&r) => rate = Some(r),
                Some(r) => ctx.err(&p, format!("sampling rate {r} is out of range 0 to 1")),
                None => ctx.err(&p, format!("`rate` must be a number, found {}", kind(val))),
            }
        } else {
            match val.as_str() {
                Some("source") => by = SampleBy::Source,
                Some("id") => by = SampleBy::Id,
                _ => ctx.err(&p, "`by` must be `source` or `id`"),
            }
        }
    }
    if rate.is_none() && ctx.problems.len() == before {
        ctx.err(path, "`sample` needs a `rate` (0 to 1)");
    }
    Some(Sample { rate: rate?, by })
}

fn parse_batch(v: &Value, path: &[Seg], ctx: &mut Ctx) -> Option<BatchOverrides> {
    let entries = ctx.mapping(
        v,
        path,
        "`batch`",
        &["max_events", "max_bytes", "max_age_ms"],
    )?;
    let mut out = BatchOverrides::default();
    for (k, val) in entries {
        let p = key(path, k);
        let n = ctx.positive(val, &p, &format!("`{k}`"));
        match k {
            "max_events" => out.max_events = n.map(|n| n as usize),
            "max_bytes" => out.max_bytes = n.map(|n| n as usize),
            _ => out.max_age_ms = n,
        }
    }
    Some(out)
}

fn parse_sinks(
    v: &Value,
    path: &[Seg],
    ctx: &mut Ctx,
    route: &Arc<str>,
    check_sink: SinkCheck<'_>,
) -> Vec<SinkSpec> {
    let Some(items) = v.as_sequence() else {
        ctx.err(path, format!("`sinks` must be a list, found {}", kind(v)));
        return Vec::new();
    };
    if items.is_empty() {
        ctx.err(path, "`sinks` must list at least one sink");
        return Vec::new();
    }
    let mut out: Vec<SinkSpec> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let p = with(path, Seg::Index(i));
        let Some(entries) = ctx.mapping(item, &p, "a sink", &[]) else {
            continue;
        };
        let Some((_, kind_value)) = entries.iter().find(|(k, _)| *k == "type") else {
            ctx.err(&p, "a sink needs a `type` (s3, elasticsearch, topic…)");
            continue;
        };
        let Some(kind) = ctx.string(kind_value, &key(&p, "type"), "`type`") else {
            continue;
        };
        let label = sink_label(&entries, &kind, &out);
        if out.iter().any(|s| s.label == label) {
            ctx.err(
                &p,
                format!("two sinks of this route are called `{label}`: give them distinct `name`s"),
            );
            continue;
        }
        let spec = SinkSpec {
            route: Arc::clone(route),
            kind,
            label,
            spec: item.clone(),
        };
        if let Err(e) = check_sink(&spec) {
            ctx.err(&p, format!("sink {}: {e}", spec.label));
        }
        out.push(spec);
    }
    out
}

/// The sink's `name`, else its kind, else `kind#2`, `kind#3`… whichever is free in the route.
fn sink_label(entries: &[(&str, &Value)], kind: &str, earlier: &[SinkSpec]) -> String {
    let named = entries
        .iter()
        .find(|(k, _)| *k == "name")
        .and_then(|(_, v)| v.as_str())
        .filter(|n| !n.is_empty());
    if let Some(name) = named {
        return name.to_owned();
    }
    (1..)
        .map(|n| match n {
            1 => kind.to_owned(),
            n => format!("{kind}#{n}"),
        })
        .find(|l| !earlier.iter().any(|s| s.label == *l))
        .unwrap_or_default()
}
