//! Loading the configuration: the YAML file, `HEADWATER_*` overrides, and errors that name
//! the key path and the line.

use std::fmt;
use std::path::{Path, PathBuf};

use headwater_log::client_config::{is_secret_key, redact_quoted};
use yaml_serde::{Mapping, Value};

use crate::config::Config;

/// Env vars with this prefix override config keys: `HEADWATER_GATEWAY__LISTEN` sets
/// `gateway.listen` (`__` between levels, the rest lower-cased).
pub(crate) const ENV_PREFIX: &str = "HEADWATER_";

/// Variables under the prefix that are not config keys.
const RESERVED_ENV: &[&str] = &["HEADWATER_CONFIG"];
const RESERVED_ENV_PREFIXES: &[&str] = &["HEADWATER_TEST_"];

/// Where a configuration came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// Built-in defaults (no file).
    Defaults,
    /// A YAML file.
    File(PathBuf),
}

/// One thing wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    /// Dotted key path, e.g. `gateway.limits.max_body_bytes`.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// 1-based line in the file, when the key is in the file.
    pub line: Option<usize>,
    /// The env var or flag that set the key, when one did.
    pub origin: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)?;
        } else {
            write!(f, "{}: {}", self.path, self.message)?;
        }
        if let Some(var) = &self.origin {
            write!(f, " (from {var})")?;
        } else if let Some(line) = self.line {
            write!(f, " at line {line}")?;
        }
        Ok(())
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The configuration has problems; every one is listed.
    #[error("{}", render_problems(.source_name, .problems))]
    Invalid {
        /// The file name or `defaults`.
        source_name: String,
        /// Every problem found.
        problems: Vec<Problem>,
    },
}

fn render_problems(source_name: &str, problems: &[Problem]) -> String {
    let mut out = format!("{source_name}: {} problem(s)", problems.len());
    for problem in problems {
        out.push_str("\n  ");
        out.push_str(&problem.to_string());
    }
    out
}

/// The default config file, used when present and no `--config` is given.
pub(crate) const DEFAULT_FILE: &str = "config/headwater.yaml";

/// Picks the file: the given one, else `config/headwater.yaml` when it exists, else none.
pub(crate) fn resolve_source(explicit: Option<&Path>) -> Source {
    match explicit {
        Some(path) => Source::File(path.to_owned()),
        None if Path::new(DEFAULT_FILE).is_file() => Source::File(PathBuf::from(DEFAULT_FILE)),
        None => Source::Defaults,
    }
}

/// A command-line flag that sets a config key; flags win over env vars and the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Flag {
    /// The flag as typed, e.g. `--listen`.
    pub name: &'static str,
    /// The key it sets, e.g. `gateway.listen`.
    pub path: &'static str,
    /// The value given.
    pub value: String,
}

/// Loads the configuration from `source`, the process environment and `flags`.
pub(crate) fn load(source: &Source, flags: &[Flag]) -> Result<Config, LoadError> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    match source {
        Source::Defaults => load_str("", "defaults", &env, flags),
        Source::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
                path: path.clone(),
                source,
            })?;
            load_str(&text, &path.display().to_string(), &env, flags)
        }
    }
}

/// Loads from YAML text, `(name, value)` env pairs and flags; the testable core of [`load`].
pub(crate) fn load_str(
    text: &str,
    source_name: &str,
    env: &[(String, String)],
    flags: &[Flag],
) -> Result<Config, LoadError> {
    let invalid = |problems: Vec<Problem>| LoadError::Invalid {
        source_name: source_name.to_owned(),
        problems: problems.into_iter().map(without_secrets).collect(),
    };
    let file_problems = file_problems(text);
    if !file_problems.is_empty() {
        return Err(invalid(file_problems));
    }
    let mut tree = if text.trim().is_empty() {
        Value::Mapping(Mapping::new())
    } else {
        yaml_serde::from_str::<Value>(text).map_err(|e| invalid(vec![problem_from_yaml(&e)]))?
    };
    if tree.is_null() {
        tree = Value::Mapping(Mapping::new());
    }
    let applied = apply_overrides(&mut tree, env, flags).map_err(invalid)?;
    let config: Config = serde_path_to_error::deserialize(tree).map_err(|e| {
        let path = e.path().to_string();
        let origin = applied
            .iter()
            .find(|(key, _)| override_matches(key, &path, &e.inner().to_string()))
            .map(|(_, var)| var.clone());
        invalid(vec![Problem {
            message: tidy(&e.inner().to_string()),
            line: None,
            origin,
            path,
        }])
    })?;
    let problems: Vec<Problem> = config
        .validate()
        .into_iter()
        .map(|(path, message)| Problem {
            line: headwater_yaml::line_of(text, &path),
            origin: applied
                .iter()
                .find(|(key, _)| *key == path)
                .map(|(_, var)| var.clone()),
            path,
            message,
        })
        .collect();
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(invalid(problems))
    }
}

/// A problem at a secret key (see [`is_secret_key`]) without the values its message quotes:
/// serde says ``invalid type: integer `12345`, expected a string``, and `12345` may be the
/// password.
fn without_secrets(problem: Problem) -> Problem {
    let secret = problem.path.split(['.', '[']).any(is_secret_key);
    if !secret {
        return problem;
    }
    Problem {
        message: redact_quoted(&problem.message),
        ..problem
    }
}

/// Whether an override of `key` explains an error at `path` with `message`.
fn override_matches(key: &str, path: &str, message: &str) -> bool {
    if path == key || path.starts_with(&format!("{key}.")) {
        return true;
    }
    // An unknown key fails at its parent's path, naming the key in the message.
    let (parent, leaf) = key.rsplit_once('.').unwrap_or((".", key));
    (path == parent || (parent == "." && path.is_empty()))
        && message.contains(&format!("unknown field `{leaf}`"))
}

/// Every type and unknown-key error of the file, each with its path and line.
///
/// serde stops at the first error, so the offending line (and what nests under it) is
/// commented out and the text parsed again, until it parses or an error has no line.
fn file_problems(text: &str) -> Vec<Problem> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut problems = Vec::new();
    for _ in 0..64 {
        let joined = lines.join("\n");
        let Err(error) = yaml_serde::from_str::<Config>(&joined) else {
            break;
        };
        let problem = problem_from_yaml(&error);
        let Some(line) = problem.line.filter(|l| *l >= 1 && *l <= lines.len()) else {
            problems.push(problem);
            break;
        };
        if problems.contains(&problem) {
            break;
        }
        problems.push(problem);
        comment_out(&mut lines, line - 1);
    }
    problems
}

/// Comments out line `index` and the lines indented deeper below it.
fn comment_out(lines: &mut [String], index: usize) {
    let indent = indentation(&lines[index]);
    lines[index] = format!("#{}", lines[index]);
    for line in lines.iter_mut().skip(index + 1) {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if indentation(line) <= indent {
            break;
        }
        *line = format!("#{line}");
    }
}

fn indentation(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn problem_from_yaml(error: &yaml_serde::Error) -> Problem {
    let text = error.to_string();
    let text = text
        .rfind(" at line ")
        .map_or(text.as_str(), |i| &text[..i]);
    let (path, message) = match text.split_once(": ") {
        Some((path, message)) if !path.contains(' ') => (path.to_owned(), message.to_owned()),
        _ => (String::new(), text.to_owned()),
    };
    Problem {
        path,
        message: tidy(&message),
        line: error.location().map(|l| l.line()),
        origin: None,
    }
}

/// Says `expected an integer` rather than `expected u64`.
fn tidy(message: &str) -> String {
    let mut out = message.to_owned();
    for ty in ["u64", "u32", "u16", "u8", "i64", "i32", "usize"] {
        out = out.replace(&format!("expected {ty}"), "expected an integer");
    }
    out.replace("expected a boolean", "expected true or false")
}

/// Applies `HEADWATER_*` variables, then flags, to the tree; returns `(key path, origin)`
/// for each applied, the origin being the variable or flag name.
fn apply_overrides(
    tree: &mut Value,
    env: &[(String, String)],
    flags: &[Flag],
) -> Result<Vec<(String, String)>, Vec<Problem>> {
    let mut applied: Vec<(String, String)> = Vec::new();
    let mut problems = Vec::new();
    let mut vars: Vec<&(String, String)> = env
        .iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX))
        .filter(|(name, _)| !RESERVED_ENV.contains(&name.as_str()))
        .filter(|(name, _)| !RESERVED_ENV_PREFIXES.iter().any(|p| name.starts_with(p)))
        .collect();
    vars.sort();
    let from_env = vars.into_iter().map(|(name, raw)| {
        let segments: Vec<String> = name[ENV_PREFIX.len()..]
            .split("__")
            .map(str::to_lowercase)
            .collect();
        (name.clone(), segments, raw.clone())
    });
    let from_flags = flags.iter().map(|flag| {
        let segments = flag.path.split('.').map(str::to_owned).collect();
        (flag.name.to_owned(), segments, flag.value.clone())
    });
    for (name, segments, raw) in from_env.chain(from_flags) {
        let path = segments.join(".");
        if segments.iter().any(String::is_empty) {
            problems.push(Problem {
                path,
                message: "malformed variable name".to_owned(),
                line: None,
                origin: Some(name.clone()),
            });
            continue;
        }
        // A secret is text as given: `12345`, `true` or `#x` are passwords, not YAML (and a
        // value that fails to parse as a string would be echoed in the error).
        let value = if segments.iter().any(|s| is_secret_key(s)) {
            Value::String(raw)
        } else {
            yaml_serde::from_str::<Value>(&raw).unwrap_or(Value::String(raw))
        };
        if let Err(message) = set_path(tree, &segments, value) {
            problems.push(Problem {
                path,
                message,
                line: None,
                origin: Some(name.clone()),
            });
            continue;
        }
        applied.retain(|(key, _)| *key != path);
        applied.push((path, name));
    }
    if problems.is_empty() {
        Ok(applied)
    } else {
        Err(problems)
    }
}

fn set_path(tree: &mut Value, segments: &[String], value: Value) -> Result<(), String> {
    let mut node = tree;
    for segment in &segments[..segments.len() - 1] {
        if node.is_null() {
            *node = Value::Mapping(Mapping::new());
        }
        let Value::Mapping(map) = node else {
            return Err(format!(
                "`{segment}` sits under a value that is not a mapping"
            ));
        };
        node = map
            .entry(Value::String(segment.clone()))
            .or_insert(Value::Null);
    }
    if node.is_null() {
        *node = Value::Mapping(Mapping::new());
    }
    let Value::Mapping(map) = node else {
        return Err("the parent key is not a mapping".to_owned());
    };
    if let Some(last) = segments.last() {
        map.insert(Value::String(last.clone()), value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn problems(result: Result<Config, LoadError>) -> Vec<Problem> {
        match result {
            Err(LoadError::Invalid { problems, .. }) => problems,
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn empty_text_gives_the_defaults() {
        assert_eq!(load_str("", "t", &[], &[]).unwrap(), Config::default());
        assert_eq!(Config::default().data_dir, PathBuf::from("./data"));
    }

    #[test]
    fn shipped_config_parses_and_validates() {
        let text = include_str!("../config/headwater.yaml");
        let config = load_str(text, "config/headwater.yaml", &[], &[]).unwrap();
        assert_eq!(config.gateway.listen, "127.0.0.1:8080");
        assert_eq!(config.log.kafka_listen, "127.0.0.1:9092");
    }

    #[test]
    fn a_type_error_names_path_and_line() {
        let text = "data_dir: ./d\ngateway:\n  limits:\n    max_body_bytes: lots\n";
        let found = problems(load_str(text, "t", &[], &[]));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].path, "gateway.limits.max_body_bytes");
        assert_eq!(found[0].line, Some(4));
        assert_eq!(
            found[0].to_string(),
            "gateway.limits.max_body_bytes: invalid type: string \"lots\", expected an integer at line 4"
        );
    }

    #[test]
    fn every_error_is_reported_including_unknown_keys() {
        let text = "gateway:\n  listen: 127.0.0.1:1\n  limitz: {}\nlog:\n  default_partitions: -3\nbogus: 1\n";
        let found = problems(load_str(text, "t", &[], &[]));
        let lines: Vec<_> = found.iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![Some(3), Some(5), Some(6)], "{found:?}");
        assert!(
            found[0].message.contains("unknown field `limitz`"),
            "{found:?}"
        );
        assert!(
            found[2].message.contains("unknown field `bogus`"),
            "{found:?}"
        );
    }

    #[test]
    fn validation_errors_point_at_their_line() {
        let text = "gateway:\n  listen: not-an-address\nlog:\n  default_partitions: 0\n";
        let found = problems(load_str(text, "t", &[], &[]));
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(
            (found[0].path.as_str(), found[0].line),
            ("gateway.listen", Some(2))
        );
        assert_eq!(
            (found[1].path.as_str(), found[1].line),
            ("log.default_partitions", Some(4))
        );
    }

    #[test]
    fn env_overrides_the_file() {
        let text = "gateway:\n  listen: 127.0.0.1:1\n";
        let config = load_str(
            text,
            "t",
            &env(&[
                ("HEADWATER_GATEWAY__LISTEN", "127.0.0.1:2"),
                ("HEADWATER_DATA_DIR", "/tmp/hw"),
                ("HEADWATER_GATEWAY__LIMITS__MAX_BODY_BYTES", "1234"),
                ("HEADWATER_TEST_KAFKA", "127.0.0.1:9"),
                ("HEADWATER_CONFIG", "x.yaml"),
                ("OTHER", "1"),
            ]),
            &[],
        )
        .unwrap();
        assert_eq!(config.gateway.listen, "127.0.0.1:2");
        assert_eq!(config.data_dir, PathBuf::from("/tmp/hw"));
        assert_eq!(config.gateway.limits.max_body_bytes, 1234);
    }

    #[test]
    fn bad_env_values_name_the_variable() {
        let found = problems(load_str(
            "",
            "t",
            &env(&[("HEADWATER_GATEWAY__LIMITS__MAX_BODY_BYTES", "huge")]),
            &[],
        ));
        assert_eq!(
            found[0].origin.as_deref(),
            Some("HEADWATER_GATEWAY__LIMITS__MAX_BODY_BYTES")
        );
        let found = problems(load_str("", "t", &env(&[("HEADWATER_NOPE", "1")]), &[]));
        assert!(
            found[0].message.contains("unknown field `nope`"),
            "{found:?}"
        );
        assert_eq!(found[0].origin.as_deref(), Some("HEADWATER_NOPE"));
    }

    #[test]
    fn flags_win_over_env_and_file() {
        let flag = Flag {
            name: "--listen",
            path: "gateway.listen",
            value: "127.0.0.1:3".to_owned(),
        };
        let config = load_str(
            "gateway:\n  listen: 127.0.0.1:1\n",
            "t",
            &env(&[("HEADWATER_GATEWAY__LISTEN", "127.0.0.1:2")]),
            std::slice::from_ref(&flag),
        )
        .unwrap();
        assert_eq!(config.gateway.listen, "127.0.0.1:3");
        let bad = Flag {
            value: "nowhere".to_owned(),
            ..flag
        };
        let found = problems(load_str("", "t", &[], &[bad]));
        assert_eq!(
            found[0].to_string(),
            "gateway.listen: `nowhere` is not a socket address (host:port) (from --listen)"
        );
    }

    #[test]
    fn secrets_from_env_are_text_and_never_echoed_in_problems() {
        let config = load_str(
            "",
            "t",
            &env(&[
                ("HEADWATER_SINKS__S3__SECRET_ACCESS_KEY", "12345"),
                ("HEADWATER_SINKS__ELASTICSEARCH__PASSWORD", "#not-a-comment"),
                ("HEADWATER_LOG__CLIENT__PROPERTIES__SASL.PASSWORD", "true"),
            ]),
            &[],
        )
        .unwrap();
        assert_eq!(config.sinks.s3.secret_access_key, "12345");
        assert_eq!(config.sinks.elasticsearch.password, "#not-a-comment");
        assert_eq!(config.log.client.properties["sasl.password"], "true");
        let found = problems(load_str(
            "sinks:\n  s3:\n    secret_access_key: 98765\n",
            "t",
            &[],
            &[],
        ));
        assert_eq!(found[0].path, "sinks.s3.secret_access_key", "{found:?}");
        assert!(!found[0].to_string().contains("98765"), "{found:?}");
        assert!(found[0].message.contains("expected a string"), "{found:?}");
    }

    #[test]
    fn syntax_errors_are_reported_with_a_line() {
        let found = problems(load_str("gateway:\n  listen: [\n", "t", &[], &[]));
        assert_eq!(found.len(), 1);
        assert!(found[0].line.is_some(), "{found:?}");
    }
}
