//! Kinescope's own JSON endpoints, for the watch page and operators: what AWS has no
//! single call for. Behind the same SigV4 check as every API.
//!
//! - `GET /v1/streams`: every stream with its status, retention and newest fragment.

use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::json;

use super::error::ApiError;
use super::json::epoch_seconds;
use super::{json_ok, AppState};

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/streams", get(list_streams))
}

/// At most this many streams are listed (the page shows them all on one screen).
const LIST_LIMIT: usize = 10_000;

async fn list_streams(State(s): State<AppState>) -> Result<Response, ApiError> {
    let records = s.store.list_streams("", None, LIST_LIMIT)?;
    let mut streams = Vec::with_capacity(records.len());
    for r in records {
        let last = s.store.last_fragment(r.id)?.map(|m| {
            json!({
                "FragmentNumber": m.fragment_number.to_string(),
                "ProducerTimestamp": epoch_seconds(m.producer_ts_us),
                "ServerTimestamp": epoch_seconds(m.server_ts_us),
            })
        });
        streams.push(json!({
            "StreamName": r.name,
            "StreamARN": r.arn,
            "Status": r.status.as_str(),
            "DataRetentionInHours": r.data_retention_hours,
            "CreationTime": epoch_seconds(r.creation_time_ms * 1000),
            "LastFragment": last,
        }));
    }
    Ok(json_ok(json!({ "Streams": streams })))
}
