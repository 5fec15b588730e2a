//! Compiles one `.proto` schema file to a descriptor pool by running the vendored protoc.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use prost_reflect::DescriptorPool;

use crate::error::SchemaError;

/// A compile problem: optional line in the source, and a message.
pub(crate) type SourceProblem = (Option<usize>, String);

static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

/// A private scratch directory for one protoc run, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Self, SchemaError> {
        let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("headwater-protoc-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).map_err(|source| SchemaError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Self(path))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Compiles `text` as a self-contained proto file called `name` (it may import the well-known
/// `google/protobuf/*.proto` types). Returns the pool of the file and its imports, or every error
/// protoc printed, each with its line when protoc gave one.
pub(crate) fn compile(name: &str, text: &str) -> Result<DescriptorPool, Vec<SourceProblem>> {
    run(name, text).map_err(|e| match e {
        RunError::Source(problems) => problems,
        RunError::Tool(e) => vec![(None, e.to_string())],
    })
}

enum RunError {
    Source(Vec<SourceProblem>),
    Tool(SchemaError),
}

impl From<SchemaError> for RunError {
    fn from(e: SchemaError) -> Self {
        Self::Tool(e)
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> SchemaError + '_ {
    move |source| SchemaError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn run(name: &str, text: &str) -> Result<DescriptorPool, RunError> {
    let protoc =
        protoc_bin_vendored::protoc_bin_path().map_err(|e| SchemaError::Protoc(e.to_string()))?;
    let include =
        protoc_bin_vendored::include_path().map_err(|e| SchemaError::Protoc(e.to_string()))?;
    let scratch = Scratch::new()?;
    let source = scratch.0.join(name);
    std::fs::write(&source, text).map_err(io_error(&source))?;
    let out = scratch.0.join("descriptor_set.pb");
    let output = Command::new(&protoc)
        .current_dir(&scratch.0)
        .arg("--include_imports")
        .arg(format!("--descriptor_set_out={}", out.display()))
        .arg("--proto_path=.")
        .arg(format!("--proto_path={}", include.display()))
        .arg(name)
        .output()
        .map_err(|e| SchemaError::Protoc(format!("{}: {e}", protoc.display())))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let mut problems: Vec<SourceProblem> = stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| parse_line(name, l))
            .collect();
        if problems.is_empty() {
            problems.push((None, format!("protoc failed with {}", output.status)));
        }
        return Err(RunError::Source(problems));
    }
    let bytes = std::fs::read(&out).map_err(io_error(&out))?;
    DescriptorPool::decode(bytes.as_slice()).map_err(|e| RunError::Tool(SchemaError::Descriptor(e)))
}

/// `name:12:5: Expected ";".` → `(Some(12), "Expected \";\". (column 5)")`.
fn parse_line(name: &str, line: &str) -> SourceProblem {
    let rest = line.strip_prefix(name).and_then(|r| r.strip_prefix(':'));
    if let Some(rest) = rest {
        let mut parts = rest.splitn(3, ':');
        if let (Some(l), Some(c), Some(msg)) = (parts.next(), parts.next(), parts.next())
            && let (Ok(l), Ok(c)) = (l.parse::<usize>(), c.parse::<usize>())
        {
            return (Some(l), format!("{} (column {c})", msg.trim()));
        }
        return (None, rest.trim().to_owned());
    }
    (None, line.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_a_message() {
        let pool = compile(
            "x.v1.proto",
            "syntax = \"proto3\";\npackage t;\nmessage M { int32 a = 1; }\n",
        )
        .unwrap();
        assert!(pool.get_message_by_name("t.M").is_some());
    }

    #[test]
    fn reports_errors_with_lines() {
        let problems = compile(
            "x.v1.proto",
            "syntax = \"proto3\";\nmessage M {\n  int32 a = 1\n}\n",
        )
        .unwrap_err();
        assert!(
            problems.iter().any(|(line, _)| *line == Some(4)),
            "{problems:?}"
        );
    }

    #[test]
    fn well_known_imports_resolve() {
        let text = "syntax = \"proto3\";\nimport \"google/protobuf/timestamp.proto\";\n\
                    message M { google.protobuf.Timestamp at = 1; }\n";
        assert!(compile("x.v1.proto", text).is_ok());
    }

    #[test]
    fn parses_protoc_lines() {
        assert_eq!(
            parse_line("a.proto", "a.proto:3:7: Expected \";\"."),
            (Some(3), "Expected \";\". (column 7)".into())
        );
        assert_eq!(
            parse_line("a.proto", "other: boom"),
            (None, "other: boom".into())
        );
    }
}
