//! Configuration of the schema registry (`schemas:` in headwater.yaml).

use serde::{Deserialize, Serialize};

/// Where schemas come from and where events go by default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchemasConfig {
    /// Directory of event schemas (JSON Schema and .proto). Default `schemas/events`.
    pub dir: String,
    /// Topic of events whose schema names none. Default `events`.
    pub default_topic: String,
    /// Topic of events that fail validation. Default `events.dlq`.
    pub dlq_topic: String,
}

impl Default for SchemasConfig {
    fn default() -> Self {
        Self {
            dir: "schemas/events".to_owned(),
            default_topic: "events".to_owned(),
            dlq_topic: "events.dlq".to_owned(),
        }
    }
}

impl SchemasConfig {
    /// Checks the wiring; returns every problem found as `(key path, message)`.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        for (key, value) in [
            ("schemas.dir", &self.dir),
            ("schemas.default_topic", &self.default_topic),
            ("schemas.dlq_topic", &self.dlq_topic),
        ] {
            if value.trim().is_empty() {
                errors.push((key.to_owned(), "must not be empty".to_owned()));
            }
        }
        if self.default_topic == self.dlq_topic {
            errors.push((
                "schemas.dlq_topic".to_owned(),
                "must differ from schemas.default_topic".to_owned(),
            ));
        }
        errors
    }
}
