//! Loads one JSON Schema file: parse, `x-headwater` options, compile for draft 2020-12.

use jsonschema::Draft;
use jsonschema::paths::LocationSegment;
use serde_json::{Map, Value};

use crate::loader::{FileName, LoadOptions, Loaded, SourceProblem, valid_topic};
use crate::registry::{Checker, Compatibility, Compiled, JsonChecker, SchemaFormat, SchemaInfo};
use crate::tape::TapeJson;

/// The only `$schema` accepted (it may also be left out).
pub const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";
/// The key of Headwater's options object inside a JSON Schema.
pub const OPTIONS_KEY: &str = "x-headwater";

/// Parses and compiles `text`; every problem found is returned.
pub(crate) fn load(
    name: &FileName,
    text: &str,
    options: &LoadOptions,
) -> Result<Loaded, Vec<SourceProblem>> {
    let document: Value = serde_json::from_str(text).map_err(|e| vec![json_syntax_problem(&e)])?;
    let Some(root) = document.as_object() else {
        return Err(vec![(
            Some(1),
            "a JSON Schema file must hold a JSON object".to_owned(),
        )]);
    };
    let mut problems = Vec::new();
    if let Some(declared) = root.get("$schema")
        && declared.as_str() != Some(DRAFT_2020_12)
    {
        problems.push((
            line_of(text, "\"$schema\""),
            format!("$schema must be {DRAFT_2020_12:?} or absent, not {declared}"),
        ));
    }
    let (topic, compatibility) = read_options(root, text, options, &mut problems);
    let compiled = jsonschema::options()
        .with_draft(Draft::Draft202012)
        .build(&document)
        .and_then(|value| {
            let tape = jsonschema::options_for::<TapeJson>()
                .with_draft(Draft::Draft202012)
                .build(&document)?;
            Ok(JsonChecker { tape, value })
        });
    let validator = match compiled {
        Ok(validator) => Some(validator),
        Err(e) => {
            let at = e.instance_path();
            let key = at.segments().filter_map(|s| match s {
                LocationSegment::Property(p) => Some(p.into_owned()),
                LocationSegment::Index(_) => None,
            });
            let line = key.last().and_then(|k| line_of(text, &format!("\"{k}\"")));
            let place = if at.as_str().is_empty() {
                String::new()
            } else {
                format!(" at {at}")
            };
            problems.push((line, format!("invalid JSON Schema{place}: {e}")));
            None
        }
    };
    match validator {
        Some(validator) if problems.is_empty() => Ok(Loaded {
            compiled: Compiled {
                info: SchemaInfo {
                    event_type: name.event_type.clone(),
                    version: name.version,
                    format: SchemaFormat::Json,
                    topic,
                    compatibility,
                    message: None,
                },
                raw: text.to_owned(),
                checker: Checker::Json(Box::new(validator)),
            },
            document: Some(document),
        }),
        _ => Err(problems),
    }
}

/// `x-headwater: {"topic": "...", "compatibility": "..."}`, both optional.
fn read_options(
    root: &Map<String, Value>,
    text: &str,
    options: &LoadOptions,
    problems: &mut Vec<SourceProblem>,
) -> (String, Compatibility) {
    let mut topic = options.default_topic.clone();
    let mut compatibility = options.default_compatibility;
    let Some(value) = root.get(OPTIONS_KEY) else {
        return (topic, compatibility);
    };
    let Some(object) = value.as_object() else {
        problems.push((
            line_of(text, "\"x-headwater\""),
            "x-headwater must be an object".to_owned(),
        ));
        return (topic, compatibility);
    };
    for (key, value) in object {
        let line = line_of(text, &format!("\"{key}\""));
        match (key.as_str(), value.as_str()) {
            ("topic", Some(t)) if valid_topic(t) => topic = t.to_owned(),
            ("topic", _) => problems.push((
                line,
                format!(
                    "x-headwater.topic {value} is not a topic name (1-249 of a-z A-Z 0-9 . _ -)"
                ),
            )),
            ("compatibility", Some(c)) => match c.parse() {
                Ok(mode) => compatibility = mode,
                Err(message) => {
                    problems.push((line, format!("x-headwater.compatibility: {message}")))
                }
            },
            ("compatibility", None) => {
                problems.push((
                    line,
                    "x-headwater.compatibility must be a string".to_owned(),
                ));
            }
            (other, _) => problems.push((
                line,
                format!("unknown x-headwater key {other:?} (expected topic or compatibility)"),
            )),
        }
    }
    (topic, compatibility)
}

/// A serde_json syntax error as (line, message without serde's position suffix).
fn json_syntax_problem(e: &serde_json::Error) -> SourceProblem {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let message = full.strip_suffix(&suffix).unwrap_or(&full);
    (
        Some(e.line()),
        format!("invalid JSON: {message} (column {})", e.column()),
    )
}

/// 1-based number of the first line containing `needle`.
pub(crate) fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}
