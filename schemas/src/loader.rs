//! Builds a [`Registry`] from schema files given as name and text (no I/O: the caller reads
//! them), collecting every problem with its file and line.
//!
//! File names are `TYPE.vVERSION.schema.json` (JSON Schema draft 2020-12) or
//! `TYPE.vVERSION.proto` (one protobuf message). See the crate README for the conventions.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde_json::Value;

use crate::compat::{self, Pair};
use crate::config::SchemasConfig;
use crate::registry::{Checker, Compatibility, Compiled, Registry, SchemaFormat};
use crate::{json_file, proto_file};

/// Settings applied to schemas that do not state their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// Topic of schemas that name none. Default `events`.
    pub default_topic: String,
    /// Compatibility mode of schemas that name none. Default backward.
    pub default_compatibility: Compatibility,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            default_topic: "events".to_owned(),
            default_compatibility: Compatibility::Backward,
        }
    }
}

impl From<&SchemasConfig> for LoadOptions {
    fn from(config: &SchemasConfig) -> Self {
        Self {
            default_topic: config.default_topic.clone(),
            ..Self::default()
        }
    }
}

/// One thing wrong with a schema directory. Displays as `FILE:LINE: message` (or
/// `FILE: message` when no line applies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file (or directory) at fault.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong, one line.
    pub message: String,
}

impl Problem {
    /// A problem of `file` (at `line`, when known).
    pub fn new(file: &str, line: Option<usize>, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            line,
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// A compile problem of one file: optional 1-based line, and a message.
pub(crate) type SourceProblem = (Option<usize>, String);

/// A schema file's name (no directory) and text, for [`Registry::from_sources`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// File name following the conventions, e.g. `playback.start.v1.schema.json`.
    pub name: String,
    /// File contents.
    pub text: String,
}

/// What a file name says: event type, version and kind of schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileName {
    pub(crate) event_type: String,
    pub(crate) version: u32,
    pub(crate) format: SchemaFormat,
}

/// A parsed and compiled schema plus what the compatibility checks need.
pub(crate) struct Loaded {
    pub(crate) compiled: Compiled,
    /// The JSON Schema document (JSON schemas only).
    pub(crate) document: Option<Value>,
}

impl Registry {
    /// Builds a registry from schema files given by name and text (problems name the files by
    /// `name`; the caller reads them, e.g. the gateway from its schema directory). Protobuf
    /// sources are compiled in memory with protox. Returns every problem found, or the registry.
    pub fn from_sources(
        sources: impl IntoIterator<Item = SourceFile>,
        options: &LoadOptions,
    ) -> Result<Registry, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut by_type: HashMap<String, BTreeMap<u32, (Loaded, String)>> = HashMap::new();
        for source in sources {
            let (name, loaded) = match load_one(&source, options) {
                Ok(found) => found,
                Err(mut found) => {
                    problems.append(&mut found);
                    continue;
                }
            };
            let versions = by_type.entry(name.event_type.clone()).or_default();
            if let Some((_, first)) = versions.get(&name.version) {
                problems.push(Problem::new(
                    &source.name,
                    None,
                    format!(
                        "duplicate schema for {} v{} (also in {first})",
                        name.event_type, name.version
                    ),
                ));
                continue;
            }
            versions.insert(name.version, (loaded, source.name));
        }
        for versions in by_type.values() {
            problems.extend(check_versions(versions));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let types = by_type
            .into_iter()
            .map(|(t, versions)| {
                let compiled = versions.into_iter().map(|(v, (l, _))| (v, l.compiled));
                (t, compiled.collect())
            })
            .collect();
        Ok(Registry { types })
    }
}

/// Parses the name of one source and loads it by its format.
fn load_one(
    source: &SourceFile,
    options: &LoadOptions,
) -> Result<(FileName, Loaded), Vec<Problem>> {
    let name = parse_file_name(&source.name)
        .map_err(|message| vec![Problem::new(&source.name, None, message)])?;
    let loaded = match name.format {
        SchemaFormat::Json => json_file::load(&name, &source.text, options),
        SchemaFormat::Protobuf => proto_file::load(&name, &source.name, &source.text, options),
    };
    match loaded {
        Ok(loaded) => Ok((name, loaded)),
        Err(found) => Err(found
            .into_iter()
            .map(|(line, m)| Problem::new(&source.name, line, m))
            .collect()),
    }
}

/// `playback.start.v2.schema.json` → (`playback.start`, 2, JSON).
pub(crate) fn parse_file_name(name: &str) -> Result<FileName, String> {
    let expected =
        "expected TYPE.vN.schema.json or TYPE.vN.proto, e.g. playback.start.v1.schema.json";
    let (stem, format) = if let Some(stem) = name.strip_suffix(".schema.json") {
        (stem, SchemaFormat::Json)
    } else if let Some(stem) = name.strip_suffix(".proto") {
        (stem, SchemaFormat::Protobuf)
    } else {
        return Err(format!("bad file name: {expected}"));
    };
    let Some((event_type, version)) = stem.rsplit_once(".v") else {
        return Err(format!("bad file name, no version: {expected}"));
    };
    let version = parse_version(version).ok_or_else(|| {
        format!("bad version {version:?}: a whole number from 1, no leading zero")
    })?;
    if !valid_type(event_type) {
        return Err(format!(
            "bad event type {event_type:?}: dot-separated lowercase words of a-z, 0-9, '_' and '-', starting with a letter"
        ));
    }
    Ok(FileName {
        event_type: event_type.to_owned(),
        version,
        format,
    })
}

fn parse_version(text: &str) -> Option<u32> {
    if text.is_empty() || text.starts_with('0') || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn valid_type(event_type: &str) -> bool {
    event_type.starts_with(|c: char| c.is_ascii_lowercase())
        && event_type.split('.').all(|word| {
            !word.is_empty()
                && word
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        })
}

/// Kafka's rule for topic names: 1 to 249 of `a-zA-Z0-9._-`, not `.` or `..`.
pub(crate) fn valid_topic(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= 249
        && topic != "."
        && topic != ".."
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// Compatibility of each version with the previous registered one, by the newer one's mode.
fn check_versions(versions: &BTreeMap<u32, (Loaded, String)>) -> Vec<Problem> {
    let mut problems = Vec::new();
    let ordered: Vec<_> = versions.values().collect();
    for pair in ordered.windows(2) {
        let [(old, _), (new, file)] = pair else {
            continue;
        };
        let (old_info, new_info) = (&old.compiled.info, &new.compiled.info);
        let mode = new_info.compatibility;
        let (old_label, new_label) = (
            format!("v{}", old_info.version),
            format!("v{}", new_info.version),
        );
        let labels = Pair {
            old: &old_label,
            new: &new_label,
        };
        let found = match (
            &old.compiled.checker,
            &new.compiled.checker,
            &old.document,
            &new.document,
        ) {
            (_, _, Some(old_doc), Some(new_doc)) => {
                compat::json::check(old_doc, new_doc, mode, labels)
            }
            (Checker::Proto(o), Checker::Proto(n), _, _) => {
                compat::proto::check(o.descriptor(), n.descriptor(), mode, labels)
            }
            _ if mode == Compatibility::None => Vec::new(),
            _ => vec![format!(
                "{new_label} changes the schema format from {} to {}; use compatibility none to allow it",
                old_info.format.as_str(),
                new_info.format.as_str()
            )],
        };
        problems.extend(found.into_iter().map(|m| {
            Problem::new(
                file,
                None,
                format!("{} {new_label} vs {old_label}: {m}", new_info.event_type),
            )
        }));
    }
    problems
}

#[cfg(test)]
#[path = "loader_tests.rs"]
mod tests;
