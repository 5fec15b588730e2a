//! Loads one `.proto` schema file: the `// headwater:` directive, compiling, the named message.

use prost_reflect::{DescriptorPool, MessageDescriptor};

use crate::loader::{FileName, LoadOptions, Loaded, SourceProblem, valid_topic};
use crate::proto_compile;
use crate::registry::{Checker, Compatibility, Compiled, ProtoChecker, SchemaFormat, SchemaInfo};

/// The comment prefix of Headwater's options line in a `.proto` file.
pub const DIRECTIVE: &str = "// headwater:";

/// Options from the `// headwater:` line.
struct Directive {
    line: Option<usize>,
    message: Option<String>,
    topic: String,
    compatibility: Compatibility,
}

/// Compiles `text` (file `file_name`) and resolves its event message; every problem found is
/// returned.
pub(crate) fn load(
    name: &FileName,
    file_name: &str,
    text: &str,
    options: &LoadOptions,
) -> Result<Loaded, Vec<SourceProblem>> {
    let mut problems = Vec::new();
    let directive = read_directive(text, options, &mut problems);
    let pool = match proto_compile::compile(file_name, text) {
        Ok(pool) => pool,
        Err(mut found) => {
            problems.append(&mut found);
            return Err(problems);
        }
    };
    let message = match resolve_message(&pool, file_name, directive.message.as_deref()) {
        Ok(message) => message,
        Err(m) => {
            problems.push((directive.line, m));
            return Err(problems);
        }
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Loaded {
        compiled: Compiled {
            info: SchemaInfo {
                event_type: name.event_type.clone(),
                version: name.version,
                format: SchemaFormat::Protobuf,
                topic: directive.topic,
                compatibility: directive.compatibility,
                message: Some(message.full_name().to_owned()),
            },
            raw: text.to_owned(),
            checker: Checker::Proto(ProtoChecker::new(&message)),
        },
        document: None,
    })
}

/// `// headwater: message=Telemetry topic=device compatibility=full`, every key optional.
fn read_directive(
    text: &str,
    options: &LoadOptions,
    problems: &mut Vec<SourceProblem>,
) -> Directive {
    let mut directive = Directive {
        line: None,
        message: None,
        topic: options.default_topic.clone(),
        compatibility: options.default_compatibility,
    };
    for (index, line) in text.lines().enumerate() {
        let Some(rest) = line.trim_start().strip_prefix(DIRECTIVE) else {
            continue;
        };
        let at = Some(index + 1);
        if directive.line.is_some() {
            problems.push((
                at,
                "a second // headwater: line; put every option on one line".to_owned(),
            ));
            continue;
        }
        directive.line = at;
        for token in rest.split_whitespace() {
            let Some((key, value)) = token.split_once('=') else {
                problems.push((
                    at,
                    format!("expected key=value in the headwater line, found {token:?}"),
                ));
                continue;
            };
            match key {
                "message" => directive.message = Some(value.to_owned()),
                "topic" if valid_topic(value) => directive.topic = value.to_owned(),
                "topic" => problems.push((
                    at,
                    format!("topic {value:?} is not a topic name (1-249 of a-z A-Z 0-9 . _ -)"),
                )),
                "compatibility" => match value.parse() {
                    Ok(mode) => directive.compatibility = mode,
                    Err(message) => problems.push((at, message)),
                },
                other => problems.push((
                    at,
                    format!("unknown headwater option {other:?} (expected message, topic or compatibility)"),
                )),
            }
        }
    }
    directive
}

/// The message named by the directive (short name in the file's package, or fully qualified),
/// or the file's only top-level message.
fn resolve_message(
    pool: &DescriptorPool,
    file_name: &str,
    wanted: Option<&str>,
) -> Result<MessageDescriptor, String> {
    let file = pool
        .get_file_by_name(file_name)
        .ok_or_else(|| format!("the compiler produced no descriptor for {file_name}"))?;
    match wanted {
        Some(name) => {
            let qualified = if file.package_name().is_empty() {
                name.to_owned()
            } else {
                format!("{}.{name}", file.package_name())
            };
            pool.get_message_by_name(&qualified)
                .or_else(|| pool.get_message_by_name(name))
                .ok_or_else(|| format!("message {name:?} is not defined in this file"))
        }
        None => {
            let mut messages = file.messages();
            match (messages.next(), messages.next()) {
                (Some(only), None) => Ok(only),
                (None, _) => Err("the file defines no message".to_owned()),
                (Some(_), Some(_)) => Err(format!(
                    "the file defines several messages; name the event's with `{DIRECTIVE} message=NAME`"
                )),
            }
        }
    }
}
