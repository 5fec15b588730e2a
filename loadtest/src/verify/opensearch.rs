//! Reads OpenSearch back: every document `_id` of the index (scroll, no `_source`), counted
//! by event id.

use std::time::Duration;

use serde_json::{Value, json};

use crate::error::LoadtestError;
use crate::fleet::parse_id;
use crate::ledger::Tally;

/// Documents per scroll page.
const PAGE: usize = 5000;
/// Pages at most (50 M documents).
const MAX_PAGES: usize = 10_000;

fn err(e: impl std::fmt::Display) -> LoadtestError {
    LoadtestError::OpenSearch(e.to_string())
}

/// The next page of a scroll.
async fn next_page(
    client: &reqwest::Client,
    base: &str,
    scroll_id: String,
) -> Result<Value, LoadtestError> {
    client
        .post(format!("{base}/_search/scroll"))
        .json(&json!({"scroll": "1m", "scroll_id": scroll_id}))
        .send()
        .await
        .map_err(err)?
        .error_for_status()
        .map_err(err)?
        .json()
        .await
        .map_err(err)
}

/// Counts the documents of run `run` in `index` at `url` into a fresh tally of `len` events.
pub async fn read_ids(
    url: &str,
    index: &str,
    run: &str,
    len: usize,
) -> Result<Tally, LoadtestError> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(err)?;
    let base = url.trim_end_matches('/');
    let mut tally = Tally::new(len);
    let first = client
        .post(format!("{base}/{index}/_search?scroll=1m"))
        .json(&json!({"size": PAGE, "_source": ["id"], "query": {"match_all": {}}}))
        .send()
        .await
        .map_err(err)?;
    if first.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(tally);
    }
    let mut page: Value = first
        .error_for_status()
        .map_err(err)?
        .json()
        .await
        .map_err(err)?;
    for _ in 0..MAX_PAGES {
        let hits = page["hits"]["hits"].as_array().cloned().unwrap_or_default();
        if hits.is_empty() {
            break;
        }
        for hit in &hits {
            // The event id, not `_id` (which also holds the tenant and source).
            if let Some(seq) = hit["_source"]["id"]
                .as_str()
                .and_then(|id| parse_id(run, id))
            {
                tally.add(seq);
            }
        }
        let scroll_id = page["_scroll_id"].as_str().unwrap_or_default().to_owned();
        page = next_page(&client, base, scroll_id).await?;
    }
    if let Some(id) = page["_scroll_id"].as_str() {
        let _ = client
            .delete(format!("{base}/_search/scroll"))
            .json(&json!({"scroll_id": id}))
            .send()
            .await;
    }
    Ok(tally)
}
