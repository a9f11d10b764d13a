//! SQS's wire-facing pure functions on arbitrary bytes: the Query-protocol form
//! unflattening and XML writing, the body and attribute checks, the MD5 encodings,
//! and queue attribute parsing. No panic; every result is well-formed.
#![no_main]

use std::collections::BTreeMap;

use kinescope::api::sqs::query::{form_to_json, result_element};
use kinescope::queues::config::QueueConfig;
use kinescope::queues::message::{check_attributes, check_body, AttributeValue, MessageAttribute};
use kinescope::wire::sqs_md5::attributes_md5;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let params: Vec<(String, String)> = form_urlencoded::parse(data).into_owned().collect();
    let (action, json) = form_to_json(&params);
    let value = serde_json::Value::Object(json);
    let xml = result_element(action.as_deref().unwrap_or("Fuzz"), &value).to_document();
    assert!(xml.starts_with("<?xml"));

    let text = String::from_utf8_lossy(data);
    let _ = check_body(&text);
    let mut attrs = BTreeMap::new();
    for (k, v) in params.iter().take(12) {
        let value = if k.starts_with('b') {
            AttributeValue::Binary(v.as_bytes().to_vec())
        } else {
            AttributeValue::String(v.clone())
        };
        attrs.insert(
            k.clone(),
            MessageAttribute { data_type: if k.starts_with('b') { "Binary".into() } else { "String".into() }, value },
        );
    }
    let _ = check_attributes(&attrs);
    let _ = attributes_md5(attrs.iter().map(|(n, a)| (n.as_str(), a.data_type.as_str(), &a.value)));
    let map: BTreeMap<String, String> = params.into_iter().collect();
    for fifo in [false, true] {
        let _ = QueueConfig::new(fifo).with(&map, true);
    }
});
