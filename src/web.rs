//! The pages, embedded in the binary: the watch page at `/`, the two-party WebRTC page
//! at `/webrtc` and the camera publisher (WHIP) at `/publish` from `web/src/`; the players (hls.js, dash.js), the KVS WebRTC SDK
//! and the AWS SDK bundle from `web/dist/vendor/` as `build.rs` found them.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

const INDEX_HTML: &str = include_str!("../web/src/index.html");
const APP_JS: &str = include_str!("../web/src/app.js");
const SIGNED_JS: &str = include_str!("../web/src/signed.js");
const STYLE_CSS: &str = include_str!("../web/src/style.css");
const HLS_JS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hls.min.js"));
const DASH_JS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/dash.all.min.js"));
const WEBRTC_HTML: &str = include_str!("../web/src/webrtc.html");
const WEBRTC_JS: &str = include_str!("../web/src/webrtc.js");
const PUBLISH_HTML: &str = include_str!("../web/src/publish.html");
const PUBLISH_JS: &str = include_str!("../web/src/publish.js");
const KVS_WEBRTC_JS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kvs-webrtc.min.js"));
const AWS_KVS_JS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/aws-kvs.js"));

pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| asset("text/html; charset=utf-8", "no-cache", INDEX_HTML.as_bytes())))
        .route("/web/app.js", get(|| asset("text/javascript; charset=utf-8", "no-cache", APP_JS.as_bytes())))
        .route("/web/signed.js", get(|| asset("text/javascript; charset=utf-8", "no-cache", SIGNED_JS.as_bytes())))
        .route("/web/style.css", get(|| asset("text/css; charset=utf-8", "no-cache", STYLE_CSS.as_bytes())))
        .route(
            "/web/vendor/hls.min.js",
            get(|| asset("text/javascript; charset=utf-8", "public, max-age=86400", HLS_JS)),
        )
        .route(
            "/web/vendor/dash.all.min.js",
            get(|| asset("text/javascript; charset=utf-8", "public, max-age=86400", DASH_JS)),
        )
        .route("/webrtc", get(|| asset("text/html; charset=utf-8", "no-cache", WEBRTC_HTML.as_bytes())))
        .route("/web/webrtc.js", get(|| asset("text/javascript; charset=utf-8", "no-cache", WEBRTC_JS.as_bytes())))
        .route("/publish", get(|| asset("text/html; charset=utf-8", "no-cache", PUBLISH_HTML.as_bytes())))
        .route("/web/publish.js", get(|| asset("text/javascript; charset=utf-8", "no-cache", PUBLISH_JS.as_bytes())))
        .route(
            "/web/vendor/kvs-webrtc.min.js",
            get(|| asset("text/javascript; charset=utf-8", "public, max-age=86400", KVS_WEBRTC_JS)),
        )
        .route(
            "/web/vendor/aws-kvs.js",
            get(|| asset("text/javascript; charset=utf-8", "public, max-age=86400", AWS_KVS_JS)),
        )
}

async fn asset(content_type: &'static str, cache: &'static str, body: &'static [u8]) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, cache)], body)
}
