//! The router with every service, driven with `oneshot` (no socket, no Python): the
//! AWS shapes of each protocol, errors, pagination, request ids.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use serde_json::{json, Value};

use super::harness::Harness;
use crate::clock::ManualClock;

const SQS_JSON: &str = "application/x-amz-json-1.0";
const KINESIS_JSON: &str = "application/x-amz-json-1.1";

fn harness(dir: &std::path::Path, keys: &[(&str, &str)]) -> Harness {
    Harness::open(dir, Arc::new(ManualClock::new(1_800_000_000_000_000)), keys)
}

#[tokio::test]
async fn kinesis_video_routes_answer_in_the_rest_json_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path(), &[]);
    let a = h.rest("/createStream", r#"{"StreamName":"cam"}"#).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.headers.contains_key("x-amzn-RequestId"));
    assert!(a.json()["StreamARN"].as_str().unwrap().contains(":stream/cam/"));
    let a = h.rest("/getDataEndpoint", r#"{"StreamName":"cam","APIName":"GET_MEDIA"}"#).await;
    assert_eq!((a.status, a.json()["DataEndpoint"].as_str()), (StatusCode::OK, Some(super::harness::PUBLIC_URL)));
    let a = h.rest("/describeStream", r#"{"StreamName":"cam"}"#).await;
    assert_eq!(a.json()["StreamInfo"]["Status"], "ACTIVE");

    let a = h.rest("/describeStream", r#"{"StreamName":"nope"}"#).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.headers["x-amzn-ErrorType"], "ResourceNotFoundException");
    assert!(a.json()["Message"].as_str().unwrap().contains("nope"));
    let a = h.rest("/describeStream", r#"{"StreamName": 5}"#).await;
    assert_eq!(
        (a.status, a.headers["x-amzn-ErrorType"].to_str().unwrap()),
        (StatusCode::BAD_REQUEST, "SerializationException")
    );
    let a = h.rest("/frobnicate", "{}").await;
    assert_eq!(
        (a.status, a.headers["x-amzn-ErrorType"].to_str().unwrap()),
        (StatusCode::NOT_FOUND, "UnknownOperationException")
    );
}

#[tokio::test]
async fn kinesis_video_list_streams_pages_with_signed_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path(), &[]);
    for name in ["a", "b", "c"] {
        h.rest("/createStream", &json!({ "StreamName": name }).to_string()).await;
    }
    let page = h.rest("/listStreams", r#"{"MaxResults": 2}"#).await.json();
    assert_eq!(page["StreamInfoList"].as_array().unwrap().len(), 2);
    let token = page["NextToken"].as_str().unwrap();
    let rest = h.rest("/listStreams", &json!({ "MaxResults": 2, "NextToken": token }).to_string()).await.json();
    assert_eq!(rest["StreamInfoList"][0]["StreamName"], "c");
    assert!(rest.get("NextToken").is_none());
    let forged = base64::engine::general_purpose::STANDARD.encode("a");
    let a = h.rest("/listStreams", &json!({ "NextToken": forged }).to_string()).await;
    assert_eq!(a.headers["x-amzn-ErrorType"], "InvalidArgumentException", "an unsigned token is refused");
}

#[tokio::test]
async fn with_keys_an_unsigned_request_is_refused_in_its_protocol_but_health_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path(), &[("AKID", "secret")]);
    let a = h.rest("/listStreams", "{}").await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(a.headers["x-amzn-ErrorType"], "MissingAuthenticationTokenException");
    // SQS words it as in its Query days (x-amzn-query-error too), Kinesis with a 400.
    let a = h.target("AmazonSQS.ListQueues", SQS_JSON, "{}").await;
    assert_eq!((a.status, a.json()["__type"].as_str()), (StatusCode::FORBIDDEN, Some("MissingAuthenticationToken")));
    assert_eq!(a.headers["x-amzn-query-error"], "MissingAuthenticationToken;Sender");
    let a = h.form("/", "Action=ListQueues").await;
    assert!(a.text().contains("<Code>MissingAuthenticationToken</Code>"), "{}", a.text());
    let a = h.target("Kinesis_20131202.ListStreams", KINESIS_JSON, "{}").await;
    assert_eq!(
        (a.status, a.json()["__type"].as_str()),
        (StatusCode::BAD_REQUEST, Some("MissingAuthenticationTokenException"))
    );
    let a = h.send(Request::get("/health").body(Body::empty()).unwrap()).await;
    assert_eq!(a.status, StatusCode::OK);
}

async fn sqs(h: &Harness, op: &str, body: Value) -> (StatusCode, Value, axum::http::HeaderMap) {
    let a = h.target(&format!("AmazonSQS.{op}"), SQS_JSON, body.to_string()).await;
    (a.status, a.json(), a.headers)
}

#[tokio::test]
async fn sqs_json_sends_receives_and_deletes_with_its_error_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path(), &[]);
    let (status, out, headers) =
        sqs(&h, "CreateQueue", json!({"QueueName": "jobs", "Attributes": {"VisibilityTimeout": 30}})).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(headers["content-type"], SQS_JSON);
    let url = out["QueueUrl"].as_str().unwrap().to_string();
    assert_eq!(url, "http://kinescope.test/123456789012/jobs");
    let (_, sent, _) = sqs(
        &h,
        "SendMessage",
        json!({"QueueUrl": url, "MessageBody": "hi", "DelaySeconds": "0",
        "MessageAttributes": {"cam": {"DataType": "String", "StringValue": "lobby"}}}),
    )
    .await;
    assert_eq!(sent["MD5OfMessageBody"], "49f68a5c8493ec2c0bf489821c21fc3b");
    assert!(sent["MD5OfMessageAttributes"].is_string());
    let (_, got, _) = sqs(
        &h,
        "ReceiveMessage",
        json!({"QueueUrl": url, "MessageAttributeNames": ["All"],
        "MessageSystemAttributeNames": ["SentTimestamp"]}),
    )
    .await;
    let m = &got["Messages"][0];
    assert_eq!(
        (m["Body"].as_str(), m["MessageAttributes"]["cam"]["StringValue"].as_str()),
        (Some("hi"), Some("lobby"))
    );
    assert_eq!(m["Attributes"]["SentTimestamp"], "1800000000000");
    let (status, _, _) = sqs(&h, "DeleteMessage", json!({"QueueUrl": url, "ReceiptHandle": m["ReceiptHandle"]})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, empty, _) = sqs(&h, "ReceiveMessage", json!({"QueueUrl": url})).await;
    assert_eq!(empty, json!({}));

    let (status, e, headers) =
        sqs(&h, "SendMessage", json!({"QueueUrl": format!("{url}-gone"), "MessageBody": "x"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(e["__type"], "com.amazonaws.sqs#QueueDoesNotExist");
    assert_eq!(headers["x-amzn-query-error"], "AWS.SimpleQueueService.NonExistentQueue;Sender");
    let (_, e, _) = sqs(&h, "SendMessage", json!({"QueueUrl": url})).await;
    assert_eq!(e["__type"], "com.amazonaws.sqs#MissingParameter", "{e}");
    assert_eq!(e["message"], "The request must contain the parameter MessageBody.");
    let (_, e, _) = sqs(&h, "SendMessage", json!({"QueueUrl": 7, "MessageBody": "x"})).await;
    assert_eq!(e["__type"], "com.amazonaws.sqs#InvalidParameterValue");
    assert!(e["message"].as_str().unwrap().contains("QueueUrl"), "{e}");
    let (status, e, _) = sqs(&h, "Frobnicate", json!({})).await;
    assert_eq!(
        (status, e["__type"].as_str()),
        (StatusCode::BAD_REQUEST, Some("com.amazonaws.sqs#UnsupportedOperation"))
    );
}

#[tokio::test]
async fn sqs_batches_fail_entry_by_entry_and_lists_page() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path(), &[]);
    for n in 0..3 {
        sqs(&h, "CreateQueue", json!({ "QueueName": format!("q{n}") })).await;
    }
    let url = "http://kinescope.test/123456789012/q0";
    let (_, out, _) = sqs(
        &h,
        "SendMessageBatch",
        json!({"QueueUrl": url, "Entries": [
        {"Id": "a", "MessageBody": "one"}, {"Id": "b"}, {"Id": "c", "MessageBody": "three", "DelaySeconds": -1}]}),
    )
    .await;
    assert_eq!(out["Successful"].as_array().unwrap().len(), 1, "{out}");
    let failed: Vec<&str> = out["Failed"].as_array().unwrap().iter().map(|f| f["Code"].as_str().unwrap()).collect();
    assert_eq!(failed, ["MissingParameter", "InvalidParameterValue"]);
    let (_, e, _) = sqs(&h, "SendMessageBatch", json!({"QueueUrl": url, "Entries": []})).await;
    assert_eq!(e["__type"], "com.amazonaws.sqs#EmptyBatchRequest");
    let (_, e, _) = sqs(
        &h,
        "SendMessageBatch",
        json!({"QueueUrl": url, "Entries": [{"Id": "a", "MessageBody": "1"}, {"Id": "a", "MessageBody": "2"}]}),
    )
    .await;
    assert_eq!(e["__type"], "com.amazonaws.sqs#BatchEntryIdsNotDistinct");

    let (_, page, _) = sqs(&h, "ListQueues", json!({"MaxResults": 2})).await;
    assert_eq!(page["QueueUrls"].as_array().unwrap().len(), 2);
    let (_, rest, _) = sqs(&h, "ListQueues", json!({"MaxResults": 2, "NextToken": page["NextToken"]})).await;
    assert_eq!(rest["QueueUrls"], json!(["http://kinescope.test/123456789012/q2"]));
    let (_, e, _) = sqs(&h, "ListQueues", json!({"NextToken": "Mg=="})).await;
    assert_eq!(e["__type"], "com.amazonaws.sqs#InvalidParameterValue", "a made-up token is refused");
}

#[tokio::test]
async fn sqs_query_forms_get_xml_with_the_requests_own_id() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path(), &[]);
    let a = h.form("/", "Action=CreateQueue&QueueName=old&Attribute.1.Name=DelaySeconds&Attribute.1.Value=0").await;
    assert_eq!(a.status, StatusCode::OK);
    let xml = a.text();
    assert!(xml.contains("<QueueUrl>http://kinescope.test/123456789012/old</QueueUrl>"), "{xml}");
    let id = a.headers["x-amzn-RequestId"].to_str().unwrap();
    assert!(xml.contains(&format!("<RequestId>{id}</RequestId>")), "one id in the header and the body");
    let a = h.form("/123456789012/old", "Action=SendMessage&MessageBody=hello").await;
    assert!(a.text().contains("<MD5OfMessageBody>5d41402abc4b2a76b9719d911017c592</MD5OfMessageBody>"), "{}", a.text());
    let a = h.form("/123456789012/old", "Action=ReceiveMessage&AttributeName.1=All").await;
    assert!(a.text().contains("<Body>hello</Body>") && a.text().contains("<Name>SenderId</Name>"), "{}", a.text());
    let a = h.form("/123456789012/gone", "Action=GetQueueAttributes").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let id = a.headers["x-amzn-RequestId"].to_str().unwrap();
    assert!(a.text().contains("<Code>AWS.SimpleQueueService.NonExistentQueue</Code>"));
    assert!(a.text().contains(&format!("<RequestId>{id}</RequestId>")));
    let a = h.form("/", "QueueName=x").await;
    assert!(a.text().contains("<Code>MissingParameter</Code>"), "no Action");
}

async fn kinesis(h: &Harness, op: &str, body: Value) -> (StatusCode, Value) {
    let a = h.target(&format!("Kinesis_20131202.{op}"), KINESIS_JSON, body.to_string()).await;
    (a.status, a.json())
}

#[tokio::test]
async fn kinesis_json_and_cbor_put_and_read_records() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path(), &[]);
    assert_eq!(kinesis(&h, "CreateStream", json!({"StreamName": "events", "ShardCount": 3})).await.0, StatusCode::OK);
    let (status, put) =
        kinesis(&h, "PutRecord", json!({"StreamName": "events", "Data": "aGVsbG8=", "PartitionKey": "k"})).await;
    assert_eq!(status, StatusCode::OK, "{put}");
    let shard = put["ShardId"].as_str().unwrap().to_string();
    let (_, it) = kinesis(
        &h,
        "GetShardIterator",
        json!({"StreamName": "events", "ShardId": shard, "ShardIteratorType": "TRIM_HORIZON"}),
    )
    .await;
    let (_, got) = kinesis(&h, "GetRecords", json!({"ShardIterator": it["ShardIterator"]})).await;
    assert_eq!(got["Records"][0]["Data"], "aGVsbG8=");
    assert_eq!(got["Records"][0]["SequenceNumber"], put["SequenceNumber"]);
    assert!(got["NextShardIterator"].is_string() && got.get("ChildShards").is_none());

    // CBOR in, CBOR out: the blob as a byte string, the arrival time as a tag-1 epoch.
    let body = crate::wire::cbor::from_json(&json!({"StreamName": "events", "Limit": 2}));
    let a = h.target("Kinesis_20131202.ListShards", crate::api::protocol::CBOR_CONTENT_TYPE, body).await;
    assert_eq!(a.headers["content-type"], crate::api::protocol::CBOR_CONTENT_TYPE);
    let v = crate::wire::cbor::to_json(&a.body).unwrap();
    assert_eq!(v["Shards"].as_array().unwrap().len(), 3);

    let (_, page) = kinesis(&h, "ListShards", json!({"StreamName": "events", "MaxResults": 2})).await;
    let (_, rest) = kinesis(&h, "ListShards", json!({"NextToken": page["NextToken"], "MaxResults": 2})).await;
    assert_eq!(rest["Shards"][0]["ShardId"], "shardId-000000000002");
    let (status, e) = kinesis(&h, "ListShards", json!({"StreamName": "events", "NextToken": page["NextToken"]})).await;
    assert_eq!((status, e["__type"].as_str()), (StatusCode::BAD_REQUEST, Some("InvalidArgumentException")));
    let (status, e) = kinesis(&h, "DescribeStream", json!({"StreamName": "nope"})).await;
    assert_eq!((status, e["__type"].as_str()), (StatusCode::BAD_REQUEST, Some("ResourceNotFoundException")));
    let (status, e) =
        kinesis(&h, "PutRecord", json!({"StreamName": "events", "Data": "!!", "PartitionKey": "k"})).await;
    assert_eq!((status, e["__type"].as_str()), (StatusCode::BAD_REQUEST, Some("SerializationException")));
    let (status, e) = kinesis(&h, "ListStreamConsumers", json!({})).await;
    assert_eq!((status, e["__type"].as_str()), (StatusCode::BAD_REQUEST, Some("SerializationException")), "{e}");
    let (status, e) = kinesis(&h, "PutResourcePolicyX", json!({})).await;
    assert_eq!((status, e["__type"].as_str()), (StatusCode::NOT_FOUND, Some("UnknownOperationException")));
}

#[tokio::test]
async fn kinesis_put_records_answers_per_record_and_refuses_an_oversize_batch_whole() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path(), &[]);
    kinesis(&h, "CreateStream", json!({"StreamName": "s", "ShardCount": 2})).await;
    let records =
        json!([{"Data": "YQ==", "PartitionKey": "a"}, {"Data": "Yg==", "PartitionKey": "b", "ExplicitHashKey": "0"}]);
    let (status, out) = kinesis(&h, "PutRecords", json!({"StreamName": "s", "Records": records})).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!((out["FailedRecordCount"].as_u64(), out["EncryptionType"].as_str()), (Some(0), Some("NONE")));
    assert_eq!(out["Records"][1]["ShardId"], "shardId-000000000000", "the explicit hash key routes");
    let big = base64::engine::general_purpose::STANDARD.encode(vec![0u8; 1024 * 1024 + 1]);
    let records = json!([{"Data": "YQ==", "PartitionKey": "a"}, {"Data": big, "PartitionKey": "b"}]);
    let (status, e) = kinesis(&h, "PutRecords", json!({"StreamName": "s", "Records": records})).await;
    assert_eq!((status, e["__type"].as_str()), (StatusCode::BAD_REQUEST, Some("InvalidArgumentException")));
    let (_, d) = kinesis(&h, "DescribeStreamSummary", json!({"StreamName": "s"})).await;
    assert_eq!(d["StreamDescriptionSummary"]["OpenShardCount"], 2);
}

/// Metrics label requests by the operation that answered or the route they matched,
/// never by text the request chose: unknown targets and paths share one label, and a
/// target built to close the label and forge a sample writes nothing of its own.
#[tokio::test]
async fn metrics_labels_come_from_the_server_not_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path(), &[]);
    let forged = "x.evil\",status=\"200\"} 1e9 #";
    for target in [forged.to_string(), "Kinesis_20131202.NoSuchThing".into(), format!("a.{}", "z".repeat(60_000))] {
        let req = Request::post("/")
            .header("x-amz-target", target)
            .header("content-type", KINESIS_JSON)
            .body(Body::from("{}"))
            .unwrap();
        assert_eq!(h.send(req).await.status, StatusCode::NOT_FOUND);
    }
    for i in 0..50 {
        h.rest(&format!("/nothing-here-{i}"), "{}").await;
    }
    h.rest("/createStream", r#"{"StreamName":"cam"}"#).await;
    let req = Request::post("/")
        .header("x-amz-target", "Kinesis_20131202.ListStreams")
        .header("content-type", KINESIS_JSON)
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(h.send(req).await.status, StatusCode::OK);

    let text = h.state.metrics.render();
    let series: Vec<&str> = text.lines().filter(|l| l.starts_with("kinescope_requests_total{")).collect();
    assert!(series.contains(&"kinescope_requests_total{api=\"CreateStream\",status=\"200\"} 1"), "{text}");
    assert!(series.contains(&"kinescope_requests_total{api=\"ListStreams\",status=\"200\"} 1"), "{text}");
    assert!(series.contains(&"kinescope_requests_total{api=\"unknown\",status=\"404\"} 53"), "{text}");
    assert_eq!(series.len(), 3, "{series:?}");
    assert!(!text.contains("evil") && !text.contains("1e9") && text.len() < 8_000);
}

/// A request signed as the SDKs sign it (SigV4 over host, date, content type, target
/// and, with a session, its token).
#[allow(clippy::too_many_arguments)]
fn signed_request(
    clock: &ManualClock,
    path: &str,
    target: Option<&str>,
    content_type: &str,
    body: &str,
    key: &str,
    secret: &str,
    service: &str,
    token: Option<&str>,
) -> Request<Body> {
    use crate::clock::Clock;
    let date = chrono::DateTime::from_timestamp(clock.now_us() / 1_000_000, 0).unwrap().format("%Y%m%dT%H%M%SZ");
    let mut headers: Vec<(String, String)> = vec![
        ("host".into(), "kinescope.test".into()),
        ("x-amz-date".into(), date.to_string()),
        ("content-type".into(), content_type.into()),
    ];
    if let Some(t) = target {
        headers.push(("x-amz-target".into(), t.into()));
    }
    if let Some(t) = token {
        headers.push(("x-amz-security-token".into(), t.into()));
    }
    let hash = crate::wire::sigv4::sha256_hex(body.as_bytes());
    let parts =
        crate::wire::sigv4::RequestParts { method: "POST", path, query: "", headers: &headers, payload_hash: &hash };
    let auth = crate::wire::sigv4::sign(&parts, key, secret, "us-east-1", service);
    let mut req = Request::post(path);
    for (k, v) in &headers {
        req = req.header(k.as_str(), v.as_str());
    }
    req.header("authorization", auth).body(Body::from(body.to_string())).unwrap()
}

/// `<Name>value</Name>` of an XML answer.
fn xml_value(text: &str, name: &str) -> String {
    let open = format!("<{name}>");
    let start = text.find(&open).unwrap_or_else(|| panic!("no {name} in {text}")) + open.len();
    text[start..start + text[start..].find('<').unwrap()].to_string()
}

#[tokio::test]
async fn sts_sessions_sign_every_service_until_they_expire_and_each_says_so_its_own_way() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_800_000_000_000_000));
    let h = Harness::open(dir.path(), clock.clone(), &[("AKIDLONGTERM", "secret")]);
    let form = "Action=GetSessionToken&Version=2011-06-15&DurationSeconds=900";
    let form_type = "application/x-www-form-urlencoded; charset=utf-8";
    let a = h.send(signed_request(&clock, "/", None, form_type, form, "AKIDLONGTERM", "secret", "sts", None)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let (key, secret, token) = (
        xml_value(&a.text(), "AccessKeyId"),
        xml_value(&a.text(), "SecretAccessKey"),
        xml_value(&a.text(), "SessionToken"),
    );
    assert!(key.starts_with("ASIA") && key.len() == 20, "{key}");
    assert_eq!(xml_value(&a.text(), "Expiration"), "2027-01-15T08:15:00Z");
    let kinesis = |token: Option<&str>| {
        signed_request(
            &clock,
            "/",
            Some("Kinesis_20131202.ListStreams"),
            KINESIS_JSON,
            "{}",
            &key,
            &secret,
            "kinesis",
            token,
        )
    };
    assert_eq!(h.send(kinesis(Some(&token))).await.status, StatusCode::OK);
    let a = h.send(kinesis(None)).await;
    assert_eq!((a.status, a.json()["__type"].as_str()), (StatusCode::BAD_REQUEST, Some("UnrecognizedClientException")));

    // A session assumes a role of its own account (not another's), and acts as it.
    let assume = |role: &str| {
        let form = format!("Action=AssumeRole&Version=2011-06-15&RoleArn={role}&RoleSessionName=job-1");
        signed_request(&clock, "/", None, form_type, &form, &key, &secret, "sts", Some(&token))
    };
    let a = h.send(assume("arn%3Aaws%3Aiam%3A%3A210987654321%3Arole%2Fother")).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text());
    assert!(a.text().contains("<Code>AccessDenied</Code>"));
    let a = h.send(assume(&format!("arn%3Aaws%3Aiam%3A%3A{}%3Arole%2Freader", super::harness::ACCOUNT))).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert!(a.text().contains(&format!("arn:aws:sts::{}:assumed-role/reader/job-1", super::harness::ACCOUNT)));
    let (role_key, role_secret, role_token) = (
        xml_value(&a.text(), "AccessKeyId"),
        xml_value(&a.text(), "SecretAccessKey"),
        xml_value(&a.text(), "SessionToken"),
    );
    let who = "Action=GetCallerIdentity&Version=2011-06-15";
    let a = h
        .send(signed_request(&clock, "/", None, form_type, who, &role_key, &role_secret, "sts", Some(&role_token)))
        .await;
    assert!(a.text().contains("assumed-role/reader/job-1"), "{}", a.text());

    // Past the session's end, each service refuses it with its own code and status.
    clock.advance_us(901_000_000);
    let a = h.send(kinesis(Some(&token))).await;
    assert_eq!((a.status, a.json()["__type"].as_str()), (StatusCode::BAD_REQUEST, Some("ExpiredTokenException")));
    let sqs =
        signed_request(&clock, "/", Some("AmazonSQS.ListQueues"), SQS_JSON, "{}", &key, &secret, "sqs", Some(&token));
    let a = h.send(sqs).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(a.headers["x-amzn-query-error"], "ExpiredToken;Sender");
    let a = h.send(signed_request(&clock, "/", None, form_type, who, &key, &secret, "sts", Some(&token))).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.text().contains("<Code>ExpiredToken</Code>"), "{}", a.text());
    let kvs = signed_request(
        &clock,
        "/listStreams",
        None,
        "application/json",
        "{}",
        &key,
        &secret,
        "kinesisvideo",
        Some(&token),
    );
    let a = h.send(kvs).await;
    assert_eq!(
        (a.status, a.headers["x-amzn-ErrorType"].to_str().unwrap()),
        (StatusCode::FORBIDDEN, "ExpiredTokenException")
    );
    // A long-term key's bad signature, per service too.
    let bad = signed_request(
        &clock,
        "/",
        Some("Kinesis_20131202.ListStreams"),
        KINESIS_JSON,
        "{}",
        "AKIDLONGTERM",
        "wrong",
        "kinesis",
        None,
    );
    let a = h.send(bad).await;
    assert_eq!((a.status, a.json()["__type"].as_str()), (StatusCode::BAD_REQUEST, Some("InvalidSignatureException")));
    let bad = signed_request(&clock, "/", None, form_type, who, "AKIDLONGTERM", "wrong", "sts", None);
    assert!(h.send(bad).await.text().contains("<Code>SignatureDoesNotMatch</Code>"));
}
