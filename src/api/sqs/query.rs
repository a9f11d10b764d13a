//! SQS over the older Query protocol: form-encoded `Action=…` requests (to `/` or to a
//! queue's URL path) and XML responses, as older SDKs and CLIs send them.
//!
//! One implementation of each operation: the form is unflattened into the JSON
//! protocol's request shape ([`form_to_json`]), the same typed operation runs, and its
//! output is written as the Query protocol's XML ([`result_element`]). Both are pure.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::Uri;
use axum::response::Response;
use axum::routing::post;
use axum::{Extension, Router};
use serde_json::{Map, Value};

use super::{missing, SqsState, XML_NAMESPACE};
use crate::api::error::ApiError;
use crate::api::protocol::{self, Protocol, RequestId};
use crate::api::registry::{BoxFuture, Call, CallInput, Operations, QueryService, Registry, Service};
use crate::credentials::Caller;
use crate::wire::xml::Element;

/// The Query side of the SQS service: forms become calls of its operation table.
pub struct SqsQuery {
    pub operations: Arc<Operations<SqsState>>,
    pub base_url: String,
}

impl QueryService for SqsQuery {
    fn call_query(&self, path: &str, form: &[u8], request_id: RequestId, caller: Caller) -> BoxFuture<Response> {
        let params: Vec<(String, String)> = form_urlencoded::parse(form).into_owned().collect();
        let (action, mut input) = form_to_json(&params);
        // A request sent to a queue's URL names the queue by its path.
        let path = path.trim_matches('/');
        if !path.is_empty() && !input.contains_key("QueueUrl") {
            input.insert("QueueUrl".into(), Value::String(format!("{}/{path}", self.base_url.trim_end_matches('/'))));
        }
        let Some(operation) = action else {
            let e = ApiError::from(missing("Action"));
            return Box::pin(async move { protocol::query_error(&e, XML_NAMESPACE, Some(&request_id)) });
        };
        let input = CallInput::Value(Value::Object(input));
        let call = Call { operation, protocol: Protocol::Query, input, request_id, caller };
        self.operations.call(call)
    }
}

/// `POST /ACCOUNT/QUEUE` with a form body: a Query request sent to a queue's URL.
pub fn routes() -> Router<Arc<Registry>> {
    Router::new().route("/{account}/{queue}", post(queue_url_request))
}

async fn queue_url_request(
    State(registry): State<Arc<Registry>>,
    Extension(request_id): Extension<RequestId>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    body: Bytes,
) -> Response {
    match registry.query_service("sqs") {
        Some(q) => q.call_query(uri.path(), &body, request_id, caller).await,
        None => protocol::query_error(
            &ApiError::unknown_operation("Query protocol request"),
            XML_NAMESPACE,
            Some(&request_id),
        ),
    }
}

/// Flattened list and map members of SQS requests: the form prefix and the JSON member.
const LISTS: [(&str, &str); 6] = [
    ("AttributeName", "AttributeNames"),
    ("MessageAttributeName", "MessageAttributeNames"),
    ("MessageSystemAttributeName", "MessageSystemAttributeNames"),
    ("TagKey", "TagKeys"),
    ("AWSAccountId", "AWSAccountIds"),
    ("ActionName", "Actions"),
];
const ENTRY_LISTS: [&str; 3] =
    ["SendMessageBatchRequestEntry", "DeleteMessageBatchRequestEntry", "ChangeMessageVisibilityBatchRequestEntry"];

/// Groups `Prefix.N.rest=value` parameters by N (in N order).
fn indexed<'a>(params: &'a [(String, String)], prefix: &str) -> BTreeMap<u32, Vec<(&'a str, &'a str)>> {
    let mut out: BTreeMap<u32, Vec<(&str, &str)>> = BTreeMap::new();
    for (k, v) in params {
        let Some(rest) = k.strip_prefix(prefix).and_then(|r| r.strip_prefix('.')) else { continue };
        let (n, field) = rest.split_once('.').unwrap_or((rest, ""));
        if let Ok(n) = n.parse::<u32>() {
            out.entry(n).or_default().push((field, v.as_str()));
        }
    }
    out
}

fn message_attributes(params: &[(String, String)], prefix: &str) -> Map<String, Value> {
    let mut out = Map::new();
    for (_, fields) in indexed(params, prefix) {
        let get = |f: &str| fields.iter().find(|(k, _)| *k == f).map(|(_, v)| v.to_string());
        let Some(name) = get("Name") else { continue };
        let mut value = Map::new();
        for (k, json) in
            [("Value.DataType", "DataType"), ("Value.StringValue", "StringValue"), ("Value.BinaryValue", "BinaryValue")]
        {
            if let Some(v) = get(k) {
                value.insert(json.into(), Value::String(v));
            }
        }
        out.insert(name, Value::Object(value));
    }
    out
}

/// Unflattens a Query request into the JSON protocol's request object; returns the
/// action too. Scalars stay strings (the typed inputs read numbers from strings).
pub fn form_to_json(params: &[(String, String)]) -> (Option<String>, Map<String, Value>) {
    let mut out = Map::new();
    let mut action = None;
    for (k, v) in params {
        match k.as_str() {
            "Action" => action = Some(v.clone()),
            "Version" => {}
            k if !k.contains('.') => {
                out.insert(k.to_string(), Value::String(v.clone()));
            }
            _ => {}
        }
    }
    // Attribute.N.Name / .Value → Attributes map.
    let attrs = indexed(params, "Attribute");
    if !attrs.is_empty() {
        let mut m = Map::new();
        for (_, fields) in attrs {
            let get = |f: &str| fields.iter().find(|(k, _)| *k == f).map(|(_, v)| v.to_string());
            if let (Some(n), Some(v)) = (get("Name"), get("Value")) {
                m.insert(n, Value::String(v));
            }
        }
        out.insert("Attributes".into(), Value::Object(m));
    }
    // Tag.N.Key / .Value → tags (CreateQueue) or Tags (TagQueue).
    let tags = indexed(params, "Tag");
    if !tags.is_empty() {
        let mut m = Map::new();
        for (_, fields) in tags {
            let get = |f: &str| fields.iter().find(|(k, _)| *k == f).map(|(_, v)| v.to_string());
            if let (Some(k), Some(v)) = (get("Key"), get("Value")) {
                m.insert(k, Value::String(v));
            }
        }
        let key = if action.as_deref() == Some("CreateQueue") { "tags" } else { "Tags" };
        out.insert(key.into(), Value::Object(m));
    }
    for (prefix, member) in LISTS {
        let items = indexed(params, prefix);
        if !items.is_empty() {
            let list = items
                .values()
                .filter_map(|f| f.iter().find(|(k, _)| k.is_empty()).map(|(_, v)| Value::String(v.to_string())));
            out.insert(member.into(), Value::Array(list.collect()));
        }
    }
    for (prefix, member) in
        [("MessageAttribute", "MessageAttributes"), ("MessageSystemAttribute", "MessageSystemAttributes")]
    {
        let m = message_attributes(params, prefix);
        if !m.is_empty() {
            out.insert(member.into(), Value::Object(m));
        }
    }
    for prefix in ENTRY_LISTS {
        let entries = indexed(params, prefix);
        if entries.is_empty() {
            continue;
        }
        let list = entries
            .into_values()
            .map(|fields| {
                let sub: Vec<(String, String)> = fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
                let (_, entry) = form_to_json(&sub);
                Value::Object(entry)
            })
            .collect();
        out.insert("Entries".into(), Value::Array(list));
    }
    (action, out)
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn name_values(wrapper: &str, key: &str, m: &Map<String, Value>) -> Vec<Element> {
    m.iter()
        .map(|(k, v)| Element::new(wrapper).child(Element::text(key, k)).child(Element::text("Value", scalar(v))))
        .collect()
}

fn message_element(m: &Map<String, Value>) -> Element {
    let mut e = Element::new("Message");
    for (k, v) in m {
        match (k.as_str(), v) {
            ("Attributes", Value::Object(a)) => e = e.children(name_values("Attribute", "Name", a)),
            ("MessageAttributes", Value::Object(a)) => {
                for (name, attr) in a {
                    let mut value = Element::new("Value");
                    if let Value::Object(fields) = attr {
                        for (f, fv) in fields {
                            value = value.child(Element::text(f.clone(), scalar(fv)));
                        }
                    }
                    e = e.child(Element::new("MessageAttribute").child(Element::text("Name", name)).child(value));
                }
            }
            (k, v) => e = e.child(Element::text(k.to_string(), scalar(v))),
        }
    }
    e
}

/// The `{Action}Result` element of an action's output (in its JSON shape).
pub fn result_element(action: &str, result: &Value) -> Element {
    let mut body = Element::new(format!("{action}Result"));
    if let Value::Object(m) = result {
        for (k, v) in m {
            body = match (k.as_str(), v) {
                ("Attributes", Value::Object(a)) => body.children(name_values("Attribute", "Name", a)),
                ("Tags", Value::Object(t)) => body.children(name_values("Tag", "Key", t)),
                ("QueueUrls" | "queueUrls", Value::Array(urls)) => {
                    body.children(urls.iter().map(|u| Element::text("QueueUrl", scalar(u))))
                }
                ("Messages", Value::Array(ms)) => {
                    body.children(ms.iter().filter_map(Value::as_object).map(message_element))
                }
                ("Successful", Value::Array(entries)) => {
                    body.children(entries.iter().filter_map(Value::as_object).map(|en| {
                        Element::new(format!("{action}ResultEntry"))
                            .children(en.iter().map(|(k, v)| Element::text(k.clone(), scalar(v))))
                    }))
                }
                ("Failed", Value::Array(entries)) => {
                    body.children(entries.iter().filter_map(Value::as_object).map(|en| {
                        Element::new("BatchResultErrorEntry")
                            .children(en.iter().map(|(k, v)| Element::text(k.clone(), scalar(v))))
                    }))
                }
                (k, v) => body.child(Element::text(k.to_string(), scalar(v))),
            };
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn forms_unflatten_into_the_json_shape() {
        let (action, m) = form_to_json(&params(&[
            ("Action", "SendMessageBatch"),
            ("Version", "2012-11-05"),
            ("QueueUrl", "http://h/1/q"),
            ("SendMessageBatchRequestEntry.2.Id", "b"),
            ("SendMessageBatchRequestEntry.2.MessageBody", "second"),
            ("SendMessageBatchRequestEntry.1.Id", "a"),
            ("SendMessageBatchRequestEntry.1.MessageBody", "first"),
            ("SendMessageBatchRequestEntry.1.MessageAttribute.1.Name", "cam"),
            ("SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.DataType", "String"),
            ("SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.StringValue", "lobby"),
        ]));
        assert_eq!(action.as_deref(), Some("SendMessageBatch"));
        assert_eq!(
            Value::Object(m),
            json!({
                "QueueUrl": "http://h/1/q",
                "Entries": [
                    {"Id": "a", "MessageBody": "first", "MessageAttributes": {"cam": {"DataType": "String", "StringValue": "lobby"}}},
                    {"Id": "b", "MessageBody": "second"}
                ]
            })
        );
        let (_, m) = form_to_json(&params(&[
            ("Action", "CreateQueue"),
            ("Attribute.1.Name", "VisibilityTimeout"),
            ("Attribute.1.Value", "60"),
            ("Tag.1.Key", "site"),
            ("Tag.1.Value", "hq"),
            ("AttributeName.1", "All"),
        ]));
        assert_eq!(
            Value::Object(m),
            json!({"Attributes": {"VisibilityTimeout": "60"}, "tags": {"site": "hq"}, "AttributeNames": ["All"]})
        );
    }

    async fn body_of(resp: Response) -> String {
        String::from_utf8(axum::body::to_bytes(resp.into_body(), 1 << 16).await.unwrap().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn results_and_errors_render_as_query_xml() {
        let rid = RequestId("rid".into());
        let element = result_element(
            "ReceiveMessage",
            &json!({"Messages": [{"MessageId": "m1", "Body": "a<b", "Attributes": {"SentTimestamp": "1"}}]}),
        );
        let xml = body_of(protocol::query_response("ReceiveMessage", XML_NAMESPACE, element, &rid)).await;
        assert!(xml.contains("<ReceiveMessageResponse xmlns=\"http://queue.amazonaws.com/doc/2012-11-05/\">"));
        assert!(xml.contains("<Body>a&lt;b</Body>"));
        assert!(xml.contains("<Attribute>\n"));
        assert!(xml.contains("<RequestId>rid</RequestId>"));
        let e = ApiError::from(crate::queues::QueueError::QueueDoesNotExist);
        let xml = body_of(protocol::query_error(&e, XML_NAMESPACE, Some(&rid))).await;
        assert!(xml.contains("<Code>AWS.SimpleQueueService.NonExistentQueue</Code>"));
        assert!(xml.contains("<Type>Sender</Type>") && xml.contains("<RequestId>rid</RequestId>"));
    }
}
