//! The JSON-protocol services on `POST /` (`X-Amz-Target: <Prefix>.<Operation>`), and
//! the table of typed operations each one is.
//!
//! A service is an [`Operations`] table: one `async fn(state, Input) -> Result<Output,
//! E>` per operation, with `Input: Deserialize` and `Output: Serialize`. The table
//! decodes the request in its protocol (JSON, CBOR, or a Query form already turned into
//! the JSON shape), runs the function, and encodes the output or the error in the same
//! protocol. Nothing here knows a service.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Extension;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::error::ApiError;
use super::protocol::{self, Protocol, RequestId};
use crate::credentials::Caller;
use crate::wire::xml::Element;

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A request body that did not fit an operation's input shape.
#[derive(Debug, Clone)]
pub struct InputError {
    /// The member path (`Entries[0].Id`), empty at the top.
    pub path: String,
    /// A required member that is missing, if that is what went wrong.
    pub missing: Option<String>,
    pub message: String,
}

/// One call of an operation.
pub struct Call {
    pub operation: String,
    pub protocol: Protocol,
    pub input: CallInput,
    pub request_id: RequestId,
    /// Who calls, in which account and region.
    pub caller: Caller,
}

/// The operation that answered a request, put in its response's extensions, so the
/// metrics and logs name only operations the server has (never text a request chose).
#[derive(Debug, Clone, Copy)]
pub struct Operation(pub &'static str);

/// A service's state, narrowed to one caller (its account and region) for a call.
pub trait ForCaller: Clone + Send + Sync + 'static {
    fn for_caller(&self, caller: &Caller) -> Self;
}

/// An axum extractor: the router's state narrowed to the request's [`Caller`] (put in
/// the request's extensions by the SigV4 layer), for the REST-routed services.
pub struct Scoped<S>(pub S);

impl<S: ForCaller> axum::extract::FromRequestParts<S> for Scoped<S> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        match parts.extensions.get::<Caller>() {
            Some(caller) => Ok(Scoped(state.for_caller(caller))),
            None => Err(ApiError::internal("the request reached a service without passing authentication")),
        }
    }
}

/// What the operation's input is read from.
pub enum CallInput {
    /// A JSON or CBOR body, as sent.
    Body(Bytes),
    /// The JSON shape already built (from a Query form).
    Value(Value),
}

impl Call {
    fn decode<I: DeserializeOwned>(&self, input_error: fn(InputError) -> ApiError) -> Result<I, ApiError> {
        let value = match &self.input {
            CallInput::Body(b) if self.protocol != Protocol::Cbor => {
                let body = if b.iter().all(u8::is_ascii_whitespace) { &b"{}"[..] } else { b };
                let de = &mut serde_json::Deserializer::from_slice(body);
                return serde_path_to_error::deserialize(de).map_err(|e| input_error(describe(e)));
            }
            CallInput::Body(b) => protocol::body_value(self.protocol, b)?,
            CallInput::Value(v) => v.clone(),
        };
        serde_path_to_error::deserialize(value).map_err(|e| input_error(describe(e)))
    }
}

fn describe(e: serde_path_to_error::Error<serde_json::Error>) -> InputError {
    let path = e.path().to_string();
    let path = if path == "." { String::new() } else { path };
    let message = e.inner().to_string();
    let missing = message.strip_prefix("missing field `").and_then(|m| m.split_once('`')).map(|(name, _)| {
        if path.is_empty() {
            name.to_string()
        } else {
            format!("{path}.{name}")
        }
    });
    InputError { path, missing, message }
}

/// The default reading of an input error: SerializationException.
pub fn serialization_error(e: InputError) -> ApiError {
    let at = if e.path.is_empty() { String::new() } else { format!(" at {}", e.path) };
    ApiError::serialization(format!("could not parse the request body{at}: {}", e.message))
}

type Handler<S> = Box<dyn Fn(S, Call) -> BoxFuture<Result<Response, ApiError>> + Send + Sync>;

/// How a service's outputs are written as Query XML: the `{Action}Result` element.
pub type QueryResult = fn(action: &str, result: &Value) -> Element;

/// A service's operations, with what its wire needs.
pub struct Operations<S> {
    state: S,
    /// Its JSON protocol version (awsJson 1.0 or 1.1).
    json: Protocol,
    xml_namespace: Option<&'static str>,
    query_result: Option<QueryResult>,
    input_error: fn(InputError) -> ApiError,
    unknown: fn(&str) -> ApiError,
    handlers: HashMap<&'static str, Handler<S>>,
}

impl<S: ForCaller> Operations<S> {
    pub fn new(state: S, json: Protocol) -> Self {
        Operations {
            state,
            json,
            xml_namespace: None,
            query_result: None,
            input_error: serialization_error,
            unknown: ApiError::unknown_operation,
            handlers: HashMap::new(),
        }
    }

    /// Answers the Query protocol too, writing results with `result`.
    pub fn query(mut self, xml_namespace: &'static str, result: QueryResult) -> Self {
        self.xml_namespace = Some(xml_namespace);
        self.query_result = Some(result);
        self
    }

    /// How a body that does not fit an input shape is refused.
    pub fn input_error(mut self, f: fn(InputError) -> ApiError) -> Self {
        self.input_error = f;
        self
    }

    /// How an operation this table does not have is refused.
    pub fn unknown(mut self, f: fn(&str) -> ApiError) -> Self {
        self.unknown = f;
        self
    }

    /// Registers a typed operation.
    pub fn op<I, O, E, F, Fut>(mut self, name: &'static str, f: F) -> Self
    where
        I: DeserializeOwned + Send + 'static,
        O: Serialize + Send + 'static,
        E: Into<ApiError> + 'static,
        F: Fn(S, I) -> Fut + Send + Sync + Copy + 'static,
        Fut: Future<Output = Result<O, E>> + Send + 'static,
    {
        let input_error = self.input_error;
        let (query_result, xml_namespace) = (self.query_result, self.xml_namespace.unwrap_or_default());
        let handler: Handler<S> = Box::new(move |state, call| {
            Box::pin(async move {
                let input: I = call.decode(input_error)?;
                let out = f(state, input).await.map_err(Into::into)?;
                Ok(match (call.protocol, query_result) {
                    (Protocol::Query, Some(result)) => {
                        let value = serde_json::to_value(&out).map_err(ApiError::internal)?;
                        let element = result(&call.operation, &value);
                        protocol::query_response(&call.operation, xml_namespace, element, &call.request_id)
                    }
                    (p, _) => protocol::encode(p, &out),
                })
            })
        });
        self.handlers.insert(name, handler);
        self
    }

    /// Registers an operation that writes its own response (an event stream).
    pub fn streaming_op<I, F, Fut>(mut self, name: &'static str, f: F) -> Self
    where
        I: DeserializeOwned + Send + 'static,
        F: Fn(S, I) -> Fut + Send + Sync + Copy + 'static,
        Fut: Future<Output = Result<Response, ApiError>> + Send + 'static,
    {
        let input_error = self.input_error;
        let handler: Handler<S> = Box::new(move |state, call| {
            Box::pin(async move {
                let input: I = call.decode(input_error)?;
                f(state, input).await
            })
        });
        self.handlers.insert(name, handler);
        self
    }

    pub fn operation_names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.handlers.keys().copied().collect();
        names.sort_unstable();
        names
    }
}

/// A service reachable from `POST /`.
pub trait Service: Send + Sync + 'static {
    /// The JSON version its requests and answers use (CBOR requests get CBOR).
    fn json_protocol(&self) -> Protocol;
    fn call(&self, call: Call) -> BoxFuture<Response>;
}

impl<S: ForCaller> Service for Operations<S> {
    fn json_protocol(&self) -> Protocol {
        self.json
    }

    fn call(&self, call: Call) -> BoxFuture<Response> {
        let (protocol, request_id) = (call.protocol, call.request_id.clone());
        let xml_namespace = self.xml_namespace.unwrap_or_default();
        let (name, fut) = match self.handlers.get_key_value(call.operation.as_str()) {
            Some((name, h)) => (Some(*name), h(self.state.for_caller(&call.caller), call)),
            None => {
                let e = (self.unknown)(&call.operation);
                (None, Box::pin(async move { Err(e) }) as BoxFuture<Result<Response, ApiError>>)
            }
        };
        Box::pin(async move {
            let mut resp = match fut.await {
                Ok(resp) => resp,
                Err(e) if protocol == Protocol::Query => protocol::query_error(&e, xml_namespace, Some(&request_id)),
                Err(e) => protocol::error_response(&e, protocol, None),
            };
            if let Some(name) = name {
                resp.extensions_mut().insert(Operation(name));
            }
            resp
        })
    }
}

/// The services on `POST /`, by target prefix, and those that answer Query forms.
#[derive(Default)]
pub struct Registry {
    by_prefix: HashMap<&'static str, Arc<dyn Service>>,
    /// Query services in registration order: the first is the default.
    query: Vec<QueryRoute>,
}

/// A Query service and how its forms are recognised: the service name in a SigV4
/// credential scope, else the form's `Version`.
struct QueryRoute {
    signing_name: &'static str,
    version: &'static str,
    service: Arc<dyn QueryService>,
}

/// A service that takes Query-protocol forms (SQS, STS).
pub trait QueryService: Send + Sync + 'static {
    /// A form body sent to `path` (`/` or a resource's URL path).
    fn call_query(&self, path: &str, form: &[u8], request_id: RequestId, caller: Caller) -> BoxFuture<Response>;
}

impl Registry {
    pub fn register(&mut self, target_prefix: &'static str, service: Arc<dyn Service>) {
        self.by_prefix.insert(target_prefix, service);
    }

    /// Adds a Query service: forms signed for `signing_name` (`sqs`, `sts`), or
    /// unsigned with `Version=version`, go to it; the first added takes the rest.
    pub fn add_query_service(
        &mut self,
        signing_name: &'static str,
        version: &'static str,
        service: Arc<dyn QueryService>,
    ) {
        self.query.push(QueryRoute { signing_name, version, service });
    }

    /// The Query service registered as `signing_name`.
    pub fn query_service(&self, signing_name: &str) -> Option<Arc<dyn QueryService>> {
        self.query.iter().find(|r| r.signing_name == signing_name).map(|r| r.service.clone())
    }

    /// The Query service a form is for: the one its signature names; unsigned, the one
    /// of its `Version`, or the first registered when it has none. `Err` names a
    /// service this server does not offer.
    fn query_service_for(&self, headers: &HeaderMap, form: &[u8]) -> Result<Arc<dyn QueryService>, String> {
        let signed_for = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| crate::wire::sigv4::parse_authorization(v).ok())
            .map(|a| a.service);
        let version = form_urlencoded::parse(form).find(|(k, _)| k == "Version").map(|(_, v)| v.into_owned());
        let route = match (&signed_for, &version) {
            (Some(service), _) => self.query.iter().find(|r| r.signing_name == service),
            (None, Some(v)) => self.query.iter().find(|r| r.version == v),
            (None, None) => self.query.first(),
        };
        route.map(|r| r.service.clone()).ok_or_else(|| match (signed_for, version) {
            (Some(service), _) => format!("service '{service}'"),
            (None, v) => format!("API version '{}'", v.unwrap_or_default()),
        })
    }

    /// Runs the operation `target` names, or refuses it in the JSON protocol.
    pub async fn dispatch(
        &self,
        target: &str,
        headers: &HeaderMap,
        body: Bytes,
        request_id: RequestId,
        caller: Caller,
    ) -> Response {
        let unknown =
            |what: String| protocol::error_response(&ApiError::unknown_operation(&what), Protocol::AwsJson11, None);
        let Some((prefix, operation)) = target.rsplit_once('.') else { return unknown(target.to_string()) };
        let Some(service) = self.by_prefix.get(prefix) else {
            return unknown(format!("{target} (no service registered for '{prefix}')"));
        };
        let protocol = Protocol::of_json_request(headers, service.json_protocol());
        service
            .call(Call { operation: operation.to_string(), protocol, input: CallInput::Body(body), request_id, caller })
            .await
    }
}

/// `POST /`: a JSON-protocol service by `X-Amz-Target`, or a Query form.
pub async fn root(
    State(registry): State<Arc<Registry>>,
    Extension(request_id): Extension<RequestId>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if protocol::is_query(&headers) && !registry.query.is_empty() {
        return match registry.query_service_for(&headers, &body) {
            Ok(q) => q.call_query("/", &body, request_id, caller).await,
            Err(what) => {
                let e = ApiError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "InvalidAction",
                    format!("Kinescope does not serve the {what} this request is for."),
                );
                protocol::query_error(&e, "", Some(&request_id))
            }
        };
    }
    let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) else {
        let e = ApiError::unknown_operation("POST / without X-Amz-Target");
        return protocol::error_response(&e, Protocol::AwsJson11, None);
    };
    registry.dispatch(target, &headers, body, request_id, caller).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct EchoIn {
        word: String,
        times: Option<u32>,
    }

    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct EchoOut {
        said: String,
    }

    #[derive(Clone)]
    struct Prefix(String);

    impl ForCaller for Prefix {
        fn for_caller(&self, caller: &Caller) -> Self {
            Prefix(format!("{}{}", caller.scope.region, self.0))
        }
    }

    async fn echo(prefix: Prefix, i: EchoIn) -> Result<EchoOut, ApiError> {
        if i.word.is_empty() {
            return Err(ApiError::invalid_argument("say something"));
        }
        Ok(EchoOut { said: format!("{}{}", prefix.0, i.word.repeat(i.times.unwrap_or(1) as usize)) })
    }

    fn registry() -> Registry {
        let mut r = Registry::default();
        r.register(
            "Test_20200101",
            Arc::new(Operations::new(Prefix(">".into()), Protocol::AwsJson11).op("Echo", echo)),
        );
        r
    }

    async fn call(target: &str, body: &str) -> (u16, serde_json::Value) {
        let caller =
            Caller { access_key_id: None, scope: crate::scope::Scope::new("123456789012", "eu-west-1"), session: None };
        let body = Bytes::from(body.to_string());
        let resp = registry().dispatch(target, &HeaderMap::new(), body, RequestId::new(), caller).await;
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    #[tokio::test]
    async fn typed_operations_decode_run_and_encode() {
        assert_eq!(
            call("Test_20200101.Echo", r#"{"Word":"ab","Times":2}"#).await,
            (200, serde_json::json!({"Said": "eu-west-1>abab"})),
            "the state took the caller's region"
        );
        let (status, body) = call("Test_20200101.Echo", r#"{"Word":""}"#).await;
        assert_eq!((status, body["__type"].as_str()), (400, Some("InvalidArgumentException")));
        let (status, body) = call("Test_20200101.Echo", r#"{"Times":"x"}"#).await;
        assert_eq!((status, body["__type"].as_str()), (400, Some("SerializationException")));
        assert!(body["message"].as_str().unwrap().contains("Times"), "{body}");
        let (status, body) = call("Test_20200101.Nope", "{}").await;
        assert_eq!((status, body["__type"].as_str()), (404, Some("UnknownOperationException")));
        assert_eq!(call("Other_1.Echo", "{}").await.0, 404);
        assert_eq!(call("NoDot", "{}").await.0, 404);
    }

    #[test]
    fn input_errors_name_the_missing_member() {
        let de = &mut serde_json::Deserializer::from_str(r#"{"Times": 1}"#);
        let e = describe(serde_path_to_error::deserialize::<_, EchoIn>(de).err().unwrap());
        assert_eq!(e.missing.as_deref(), Some("Word"));
    }
}
