//! The schema registry as the gateway uses it: the schema directory read into a `Registry`
//! ([`load_dir`]), validation over an atomically swapped one, reloaded on SIGHUP (by the
//! caller) and when the directory's fingerprint changes; a broken change keeps the old registry
//! and logs why.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use headwater_schemas::document::JsonValue;
use headwater_schemas::{LoadOptions, Payload, PayloadFormat, Problem, Registry, SourceFile};

use crate::decode::IncomingEvent;
use crate::metrics as m;
use crate::validate::{Validate, Verdict};

/// Names, sizes and modification times of a directory's files: changes when a file does.
type Fingerprint = Vec<(String, u64, Option<SystemTime>)>;

/// A hot-reloadable registry.
pub struct SchemaRegistry {
    current: ArcSwap<Registry>,
    dir: PathBuf,
    options: LoadOptions,
    seen: Mutex<Fingerprint>,
}

impl SchemaRegistry {
    /// Loads `dir`; every problem is returned when it does not load.
    pub fn load(dir: &Path, options: LoadOptions) -> Result<Self, Vec<Problem>> {
        let seen = fingerprint(dir);
        let registry = load_dir(dir, &options)?;
        metrics::gauge!(m::SCHEMAS_LOADED).set(registry.len() as f64);
        Ok(Self {
            current: ArcSwap::from_pointee(registry),
            dir: dir.to_owned(),
            options,
            seen: Mutex::new(seen),
        })
    }

    /// The registry now in use.
    pub fn snapshot(&self) -> Arc<Registry> {
        self.current.load_full()
    }

    /// Loads the directory again and swaps it in; on problems keeps the old one and returns them.
    pub fn reload(&self) -> Result<usize, Vec<Problem>> {
        let seen = fingerprint(&self.dir);
        if let Ok(mut last) = self.seen.lock() {
            *last = seen;
        }
        match load_dir(&self.dir, &self.options) {
            Ok(registry) => {
                let count = registry.len();
                self.current.store(Arc::new(registry));
                metrics::gauge!(m::SCHEMAS_LOADED).set(count as f64);
                metrics::counter!(m::SCHEMAS_RELOADS_TOTAL, "outcome" => "ok").increment(1);
                tracing::info!(dir = %self.dir.display(), schemas = count, "schemas reloaded");
                Ok(count)
            }
            Err(problems) => {
                metrics::counter!(m::SCHEMAS_RELOADS_TOTAL, "outcome" => "error").increment(1);
                for problem in &problems {
                    tracing::error!(%problem, "schema reload refused; keeping the previous schemas");
                }
                Err(problems)
            }
        }
    }

    /// Whether the directory changed since the last load.
    pub fn changed(&self) -> bool {
        let now = fingerprint(&self.dir);
        self.seen.lock().map(|seen| *seen != now).unwrap_or(false)
    }

    /// Polls the directory every `interval` and reloads when a file changed. Polling, not
    /// inotify, so that Kubernetes ConfigMap symlink swaps are seen too.
    pub fn watch(self: Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let this = self.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    if this.changed() {
                        let _ = this.reload();
                    }
                })
                .await;
            }
        })
    }
}

/// Loads the schema files of `dir` (see [`read_dir`]); problems name files by their path.
pub fn load_dir(dir: &Path, options: &LoadOptions) -> Result<Registry, Vec<Problem>> {
    let sources = read_dir(dir)?;
    Registry::from_sources(sources, options).map_err(|problems| {
        problems
            .into_iter()
            .map(|p| Problem {
                file: dir.join(&p.file).display().to_string(),
                ..p
            })
            .collect()
    })
}

/// The schema files of `dir` by name and text, sorted by name. Not recursive; subdirectories,
/// hidden files and files not ending in `.json` or `.proto` (a README) are skipped. Every
/// unreadable file is a problem.
pub fn read_dir(dir: &Path) -> Result<Vec<SourceFile>, Vec<Problem>> {
    let shown = dir.display().to_string();
    let entries = std::fs::read_dir(dir).map_err(|e| {
        vec![Problem::new(
            &shown,
            None,
            format!("cannot read directory: {e}"),
        )]
    })?;
    let mut sources = Vec::new();
    let mut problems = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                problems.push(Problem::new(
                    &shown,
                    None,
                    format!("cannot list directory: {e}"),
                ));
                continue;
            }
        };
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if !is_schema_file(&entry, &name) {
            continue;
        }
        match std::fs::read_to_string(entry.path()) {
            Ok(text) => sources.push(SourceFile { name, text }),
            Err(e) => problems.push(Problem::new(
                &entry.path().display().to_string(),
                None,
                format!("cannot read: {e}"),
            )),
        }
    }
    sources.sort_by(|a, b| a.name.cmp(&b.name));
    if problems.is_empty() {
        Ok(sources)
    } else {
        Err(problems)
    }
}

/// A file (or a symlink, as in a Kubernetes ConfigMap) named like a schema, not hidden.
fn is_schema_file(entry: &std::fs::DirEntry, name: &str) -> bool {
    let is_file = entry
        .file_type()
        .map(|t| t.is_file() || t.is_symlink())
        .unwrap_or(false);
    is_file && !name.starts_with('.') && (name.ends_with(".json") || name.ends_with(".proto"))
}

fn fingerprint(dir: &Path) -> Fingerprint {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            // metadata() follows symlinks, so a swapped ConfigMap target shows as a change.
            let meta = std::fs::metadata(entry.path()).ok();
            out.push((
                entry.file_name().to_string_lossy().into_owned(),
                meta.as_ref().map_or(0, |m| m.len()),
                meta.and_then(|m| m.modified().ok()),
            ));
        }
    }
    out.sort();
    out
}

impl SchemaRegistry {
    /// The current registry's answer for `event` with its payload given as `payload`.
    fn answer(
        &self,
        event: &IncomingEvent,
        payload: Payload<'_>,
    ) -> Result<Verdict, crate::validate::Invalid> {
        let registry = self.current.load();
        registry
            .validate(&event.event_type, event.version.unwrap_or(0), payload)
            .map(|info| Verdict {
                topic: info.topic.as_str().into(),
                version: info.version,
            })
            .map_err(crate::validate::Invalid::from)
    }
}

impl Validate for SchemaRegistry {
    fn validate(&self, event: &IncomingEvent) -> Result<Verdict, crate::validate::Invalid> {
        let payload = match event.format {
            PayloadFormat::Json => Payload::Json(&event.payload),
            PayloadFormat::Protobuf => Payload::Protobuf(&event.payload),
        };
        self.answer(event, payload)
    }

    fn validate_parsed(
        &self,
        event: &IncomingEvent,
        payload: JsonValue<'_>,
    ) -> Result<Verdict, crate::validate::Invalid> {
        self.answer(event, Payload::Parsed(payload))
    }

    fn validate_built(
        &self,
        event: &IncomingEvent,
        tape: &[headwater_schemas::TapeNode<'_>],
    ) -> Result<Verdict, crate::validate::Invalid> {
        self.answer(
            event,
            Payload::Built {
                text: &event.payload,
                tape,
            },
        )
    }

    fn knows_type(&self, event_type: &str) -> bool {
        !self.current.load().versions(event_type).is_empty()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn event(event_type: &str, payload: &'static str) -> IncomingEvent {
        IncomingEvent {
            id: None,
            event_type: event_type.into(),
            version: None,
            source: "tv-1".into(),
            ts: None,
            payload: Bytes::from_static(payload.as_bytes()),
            format: PayloadFormat::Json,
            attributes: Vec::new(),
            verdict: None,
        }
    }

    const V1: &str =
        r#"{"type":"object","properties":{"n":{"type":"integer","minimum":0}},"required":["n"]}"#;

    #[test]
    fn validates_and_reloads_atomically_keeping_the_old_on_a_broken_change() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t.count.v1.schema.json"), V1).unwrap();
        let registry = SchemaRegistry::load(dir.path(), LoadOptions::default()).unwrap();
        let verdict = registry.validate(&event("t.count", r#"{"n":1}"#)).unwrap();
        assert_eq!(
            verdict,
            Verdict {
                topic: "events".into(),
                version: 1
            }
        );
        let reason = registry
            .validate(&event("t.count", r#"{"n":-1}"#))
            .unwrap_err();
        assert!(reason.to_string().contains("minimum"), "{reason}");
        assert!(registry.knows_type("t.count") && !registry.knows_type("t.other"));

        std::fs::write(dir.path().join("t.other.v1.schema.json"), "{ not json").unwrap();
        assert!(registry.changed());
        let problems = registry.reload().unwrap_err();
        assert!(
            problems[0].to_string().contains("t.other.v1.schema.json"),
            "{problems:?}"
        );
        assert!(
            registry.validate(&event("t.count", r#"{"n":2}"#)).is_ok(),
            "old schemas kept"
        );

        std::fs::write(
            dir.path().join("t.other.v1.schema.json"),
            r#"{"type":"object"}"#,
        )
        .unwrap();
        assert_eq!(registry.reload().unwrap(), 2);
        assert!(registry.knows_type("t.other"));
        assert!(!registry.changed());
    }

    #[test]
    fn load_dir_reports_paths_and_skips_other_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("README.md"), "not a schema").unwrap();
        std::fs::write(dir.path().join(".hidden.v1.schema.json"), "{").unwrap();
        std::fs::create_dir(dir.path().join("sub.v1.schema.json")).unwrap();
        std::fs::write(dir.path().join("t.count.v1.schema.json"), V1).unwrap();
        let options = LoadOptions::default();
        assert_eq!(load_dir(dir.path(), &options).unwrap().len(), 1);
        std::fs::write(dir.path().join("bad.v1.schema.json"), "{\n\n  oops").unwrap();
        let found = load_dir(dir.path(), &options).unwrap_err();
        assert_eq!(found.len(), 1);
        let path = dir.path().join("bad.v1.schema.json").display().to_string();
        assert_eq!(
            (found[0].file.as_str(), found[0].line),
            (path.as_str(), Some(3))
        );
        let shown = found[0].to_string();
        assert!(
            shown.starts_with(&format!("{path}:3: invalid JSON: ")),
            "{shown}"
        );

        let missing = load_dir(&dir.path().join("absent"), &options).unwrap_err();
        assert!(
            missing[0].message.starts_with("cannot read directory"),
            "{missing:?}"
        );
    }
}
