//! Configuration of the router (`router:` in headwater.yaml).

use serde::{Deserialize, Serialize};

/// Where the routing rules live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouterConfig {
    /// Path of routes.yaml. Default `config/routes.yaml`.
    pub routes: String,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            routes: "config/routes.yaml".to_owned(),
        }
    }
}

impl RouterConfig {
    /// Checks the wiring; returns every problem found as `(key path, message)`.
    pub fn validate(&self) -> Vec<(String, String)> {
        if self.routes.trim().is_empty() {
            return vec![("router.routes".to_owned(), "must not be empty".to_owned())];
        }
        Vec::new()
    }
}
