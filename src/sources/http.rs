//! http_sd: one fetch of an inventory in Prometheus' HTTP SD format: a `200` with a JSON body
//! (`Content-Type: application/json`) holding a list of target groups.

use http::header::CONTENT_TYPE;

use crate::config::{Discovered, Target};
use crate::probe;

use super::Group;

/// Fetches `endpoint` once (under its timeout, within its body limit) and parses the answer.
pub async fn fetch(endpoint: &Target) -> Result<Vec<Discovered>, String> {
    let (outcome, body) = probe::fetch(endpoint).await;
    if let Some(failure) = outcome.failure {
        return Err(format!(
            "fetching {}: {} ({})",
            endpoint.shown_url,
            failure.detail,
            failure.reason.as_str()
        ));
    }
    let content_type = outcome
        .headers
        .as_ref()
        .and_then(|h| h.get(CONTENT_TYPE))
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(format!(
            "{} answered with Content-Type {:?}, not application/json",
            endpoint.shown_url,
            crate::config::one_line(content_type)
        ));
    }
    let body = body.unwrap_or_default();
    let groups: Vec<Group> = serde_json::from_slice(&body)
        .map_err(|e| format!("{}: not a list of target groups: {e}", endpoint.shown_url))?;
    Ok(super::entries(groups).collect())
}
