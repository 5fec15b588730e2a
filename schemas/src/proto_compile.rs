//! Compiles one `.proto` schema file in memory with protox: no files written, no process run.

use miette::Diagnostic;
use prost_reflect::DescriptorPool;
use protox::Compiler;
use protox::file::{File, FileResolver, GoogleFileResolver};

use crate::loader::SourceProblem;

/// Serves the schema file being compiled and the well-known `google/protobuf/*.proto` types;
/// any other import is not found.
struct OneFile {
    name: String,
    text: String,
    well_known: GoogleFileResolver,
}

impl FileResolver for OneFile {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        if name == self.name {
            File::from_source(name, &self.text)
        } else {
            self.well_known.open_file(name)
        }
    }
}

/// Compiles `text` as a self-contained proto file called `name` (it may import the well-known
/// `google/protobuf/*.proto` types). Returns the pool of the file and its imports, or every
/// error protox found, each with its line when it points into `text`.
pub(crate) fn compile(name: &str, text: &str) -> Result<DescriptorPool, Vec<SourceProblem>> {
    let mut compiler = Compiler::with_file_resolver(OneFile {
        name: name.to_owned(),
        text: text.to_owned(),
        well_known: GoogleFileResolver::new(),
    });
    match compiler.open_file(name) {
        Ok(_) => Ok(compiler.descriptor_pool()),
        Err(error) => Err(problems(&error, text)),
    }
}

/// The error and every related one (protox reports all parse errors of a file at once).
fn problems(error: &protox::Error, text: &str) -> Vec<SourceProblem> {
    let mut found = vec![problem(error, text)];
    if let Some(related) = error.related() {
        found.extend(related.map(|d| problem(d, text)));
    }
    found
}

/// One diagnostic as `(line, "message (column C)")`, located by its primary label (else the
/// last one: for a duplicate definition, the second place).
fn problem(diagnostic: &dyn Diagnostic, text: &str) -> SourceProblem {
    let message = diagnostic.to_string();
    let labels: Vec<_> = diagnostic
        .labels()
        .map(Iterator::collect)
        .unwrap_or_default();
    let at = labels
        .iter()
        .find(|l| l.primary())
        .or_else(|| labels.last())
        .map(|l| l.offset());
    match at.and_then(|offset| position(text, offset)) {
        Some((line, column)) => (Some(line), format!("{message} (column {column})")),
        None => (None, message),
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn position(text: &str, offset: usize) -> Option<(usize, usize)> {
    let before = text.get(..offset)?;
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Some((line, before[line_start..].chars().count() + 1))
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
    fn reports_every_parse_error_with_line_and_column() {
        let text =
            "syntax = \"proto3\";\nmessage M {\n  int32 a = 1\n}\nmessage N {\n  int32 b = 1\n}\n";
        let problems = compile("x.v1.proto", text).unwrap_err();
        let expected = "expected ';' or '[', but found '}' (column 1)";
        assert_eq!(
            problems,
            [
                (Some(4), expected.to_owned()),
                (Some(7), expected.to_owned())
            ]
        );
    }

    #[test]
    fn reports_semantic_errors_at_the_offending_place() {
        let text = "syntax = \"proto3\";\nmessage M { int32 a = 1; }\nmessage M { int32 b = 1; }\n";
        let problems = compile("x.v1.proto", text).unwrap_err();
        let defined_twice = (Some(3), "name 'M' is defined twice (column 9)".to_owned());
        assert_eq!(problems, [defined_twice]);
        let text = "syntax = \"proto3\";\nmessage M { Nope n = 1; Nah b = 2; }\n";
        let problems = compile("x.v1.proto", text).unwrap_err();
        let undefined = |name: &str, column: usize| {
            let message = format!("name '{name}' is not defined (column {column})");
            (Some(2), message)
        };
        assert_eq!(problems, [undefined("Nope", 13), undefined("Nah", 25)]);
    }

    #[test]
    fn well_known_imports_resolve_and_others_do_not() {
        let text = "syntax = \"proto3\";\nimport \"google/protobuf/timestamp.proto\";\n\
                    message M { google.protobuf.Timestamp at = 1; }\n";
        assert!(compile("x.v1.proto", text).is_ok());
        let text = "syntax = \"proto3\";\nimport \"other.proto\";\nmessage M {}\n";
        let problems = compile("x.v1.proto", text).unwrap_err();
        assert_eq!(
            problems,
            [(
                Some(2),
                "import 'other.proto' not found (column 1)".to_owned()
            )]
        );
    }

    #[test]
    fn positions_count_lines_and_characters() {
        assert_eq!(position("ab\ncdé\nx", 7), Some((2, 4)));
        assert_eq!(position("ab", 0), Some((1, 1)));
        assert_eq!(position("ab", 9), None);
    }
}
