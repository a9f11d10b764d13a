//! The HTTP adapters end to end, on arbitrary bytes: the whole application (every
//! engine, anonymous mode, in one directory for the whole run) answers a request whose
//! body or query string is the input: CBOR and JSON to Kinesis targets, JSON and Query
//! forms to SQS, JSON to Firehose, rest-json to Kinesis Video (storage sessions
//! included), query strings to the playback URLs.
//! Whatever arrives: no panic, never a 500, and the body is in the protocol's shape
//! (JSON for the JSON protocols, XML for Query, CBOR decodable for CBOR).
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::Request;
use kinescope::api::harness::Harness;
use kinescope::clock::SystemClock;
use libfuzzer_sys::fuzz_target;

struct World {
    runtime: tokio::runtime::Runtime,
    harness: Harness,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let harness = runtime.block_on(async { Harness::open(dir.path(), Arc::new(SystemClock), &[]) });
        World { runtime, harness, _dir: dir }
    })
}

const KINESIS: [&str; 8] = [
    "Kinesis_20131202.PutRecords",
    "Kinesis_20131202.PutRecord",
    "Kinesis_20131202.CreateStream",
    "Kinesis_20131202.GetShardIterator",
    "Kinesis_20131202.GetRecords",
    "Kinesis_20131202.ListShards",
    "Kinesis_20131202.DescribeStreamSummary",
    "Kinesis_20131202.SubscribeToShard",
];
const SQS: [&str; 6] = [
    "AmazonSQS.CreateQueue",
    "AmazonSQS.SendMessageBatch",
    "AmazonSQS.ReceiveMessage",
    "AmazonSQS.SetQueueAttributes",
    "AmazonSQS.DeleteMessageBatch",
    "AmazonSQS.ChangeMessageVisibilityBatch",
];
const KVS: [&str; 8] = [
    "/createStream",
    "/listFragments",
    "/getHLSStreamingSessionURL",
    "/getClip",
    "/getMedia",
    "/TagResource",
    "/joinStorageSession",
    "/joinStorageSessionAsViewer",
];
const FIREHOSE: [&str; 4] = [
    "Firehose_20150804.PutRecordBatch",
    "Firehose_20150804.PutRecord",
    "Firehose_20150804.CreateDeliveryStream",
    "Firehose_20150804.DescribeDeliveryStream",
];
const PLAYBACK: [&str; 4] = [
    "/hls/v1/getHLSMediaPlaylist.m3u8",
    "/hls/v1/getMP4MediaFragment.mp4",
    "/dash/v1/getDASHManifest.mpd",
    "/dash/v1/getMP4InitFragment.mp4",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else { return };
    let choice = usize::from(pick >> 3);
    let (req, expect) = match pick & 7 {
        0 => (target(KINESIS[choice % KINESIS.len()], "application/x-amz-cbor-1.1", body), Shape::Cbor),
        1 => (target(KINESIS[choice % KINESIS.len()], "application/x-amz-json-1.1", body), Shape::Json),
        2 => (target(SQS[choice % SQS.len()], "application/x-amz-json-1.0", body), Shape::Json),
        3 | 4 => (
            Request::post("/")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(body.to_vec())),
            Shape::Xml,
        ),
        5 => (
            Request::post(KVS[choice % KVS.len()])
                .header("content-type", "application/json")
                .body(Body::from(body.to_vec())),
            Shape::Any,
        ),
        6 => (target(FIREHOSE[choice % FIREHOSE.len()], "application/x-amz-json-1.1", body), Shape::Json),
        _ => {
            // Query strings the playback URLs get: only what a URI can hold.
            let query: String =
                String::from_utf8_lossy(body).chars().filter(|c| c.is_ascii_graphic() && *c != '#').collect();
            (Request::get(format!("{}?{query}", PLAYBACK[choice % PLAYBACK.len()])).body(Body::empty()), Shape::Any)
        }
    };
    let Ok(req) = req else { return };
    let w = world();
    let answer = w.runtime.block_on(w.harness.send(req));
    assert_ne!(answer.status.as_u16(), 500, "{}", answer.text());
    if answer.body.is_empty() {
        return;
    }
    match expect {
        Shape::Json => {
            serde_json::from_slice::<serde_json::Value>(&answer.body).expect("a JSON body");
        }
        Shape::Cbor => {
            let is_cbor =
                answer.headers.get("content-type").is_some_and(|v| v.as_bytes().starts_with(b"application/x-amz-cbor"));
            if is_cbor {
                kinescope::wire::cbor::to_json(&answer.body).expect("a CBOR body");
            } else {
                serde_json::from_slice::<serde_json::Value>(&answer.body).expect("a JSON body");
            }
        }
        Shape::Xml => assert!(answer.text().starts_with("<?xml"), "{}", answer.text()),
        Shape::Any => {}
    }
});

enum Shape {
    Json,
    Cbor,
    Xml,
    Any,
}

fn target(target: &str, content_type: &str, body: &[u8]) -> axum::http::Result<Request<Body>> {
    Request::post("/")
        .header("x-amz-target", target)
        .header("content-type", content_type)
        .body(Body::from(body.to_vec()))
}
