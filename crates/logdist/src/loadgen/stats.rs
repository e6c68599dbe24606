//! The distributor's `GET /analyzer/stats`, read once at the end of a run: fetched
//! with a timeout (a run never fails for want of it) and shown as a table of each
//! analyzer's share against its target.

use std::fmt::Write as _;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use serde::Deserialize;

use super::agent::HttpClient;
use crate::error_chain;
use crate::thousands as group;

/// Fetches `GET {base}/analyzer/stats`; the error says why it could not be read.
pub(crate) async fn fetch(
    client: &HttpClient,
    base: &str,
    timeout: Duration,
) -> Result<serde_json::Value, String> {
    let url = format!("{base}/analyzer/stats");
    let request = Request::get(url.as_str())
        .body(Full::new(Bytes::new()))
        .map_err(|e| format!("could not fetch {url}: {e}"))?;
    let exchange = async {
        let response = client.request(request).await.map_err(|e| error_chain(&e))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("answered {status}"));
        }
        let value: serde_json::Value =
            serde_json::from_slice(&body.to_bytes()).map_err(|e| format!("not JSON: {e}"))?;
        if value.is_array() {
            Ok(value)
        } else {
            Err("not a JSON array".to_owned())
        }
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(format!("could not fetch {url}: {e}")),
        Err(_) => Err(format!(
            "could not fetch {url}: no answer within {timeout:?}"
        )),
    }
}

/// One row of `/analyzer/stats`, read leniently for the table (the raw JSON goes into
/// the report untouched).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AnalyzerRow {
    id: serde_json::Value,
    url: String,
    weight: f64,
    state: String,
    target_share: f64,
    messages_sent: u64,
    share: f64,
    messages_total: u64,
}

/// The table of each analyzer's share against its target, or a line saying why there
/// is none.
pub(super) fn table(analyzers: Option<&serde_json::Value>, error: Option<&str>) -> String {
    let rows = match (analyzers, error) {
        (Some(value), _) => match Vec::<AnalyzerRow>::deserialize(value) {
            Ok(rows) => rows,
            Err(e) => {
                return format!("\n  analyzers: unexpected /analyzer/stats answer: {e}\n");
            }
        },
        (None, Some(error)) => return format!("\n  analyzers: {error}\n"),
        (None, None) => return "\n  analyzers: not fetched\n".to_owned(),
    };
    if rows.is_empty() {
        return "\n  analyzers: none registered\n".to_owned();
    }
    let mut out = format!(
        "\n  {:<10} {:<10} {:>7} {:>8} {:>8} {:>8} {:>14} {:>14}  url\n",
        "analyzer", "state", "weight", "target", "share", "diff", "window msgs", "total msgs"
    );
    for row in rows {
        let id = match &row.id {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let _ = writeln!(
            out,
            "  {id:<10} {:<10} {:>7.3} {:>7.2}% {:>7.2}% {:>+7.2}% {:>14} {:>14}  {}",
            row.state,
            row.weight,
            row.target_share * 100.0,
            row.share * 100.0,
            (row.share - row.target_share) * 100.0,
            group(row.messages_sent),
            group(row.messages_total),
            row.url
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shows_shares_against_targets() {
        let stats = serde_json::json!([{"id": 1, "url": "u", "weight": 0.5, "state": "online",
            "target_share": 0.5, "messages_sent": 5100, "share": 0.51}]);
        let text = table(Some(&stats), None);
        assert!(text.contains("51.00%") && text.contains("+1.00%"), "{text}");
        assert!(text.contains("5,100"), "{text}");
        assert!(table(Some(&serde_json::json!([])), None).contains("none registered"));
        assert!(table(Some(&serde_json::json!({"x": 1})), None).contains("unexpected"));
        assert!(table(None, Some("refused")).contains("refused"));
    }
}
