//! Streaming sessions over the router with a manual clock: what needs time to pass
//! (expiry, the LIVE 30-second rule, a sliding window) without sleeping.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use kinescope::api::harness::Harness as App;
use kinescope::clock::ManualClock;
use kinescope::ingest::fragmenter::{FragmentLimits, Fragmenter, FragmenterEvent};
use kinescope::video_store::{NewFragment, NewStream, StreamRecord, VideoStore};
use tower::ServiceExt;

const T0: i64 = 1_800_000_000_000_000;

struct Harness {
    app: Router,
    store: VideoStore,
    clock: Arc<ManualClock>,
    record: StreamRecord,
    init_id: u32,
    chunks: Vec<Vec<bytes::Bytes>>,
    next_ts: i64,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(T0));
        let App { app, store, .. } = App::open(dir.path(), clock.clone(), &[]);
        let file = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/av.mp4")).unwrap();
        let mut f = Fragmenter::new(FragmentLimits::default());
        let mut events = Vec::new();
        f.push(&file, &mut events).unwrap();
        f.finish(&mut events).unwrap();
        let mut init = None;
        let mut chunks = Vec::new();
        for e in events {
            match e {
                FragmenterEvent::Init(i) => init = Some(i.bytes),
                FragmenterEvent::Fragment(a) => chunks.push(a.chunks),
                _ => {}
            }
        }
        let record = store
            .create_stream(&store.config().default_scope, NewStream { name: "cam".into(), ..Default::default() })
            .await
            .unwrap();
        let init_id = store.put_init(record.id, init.unwrap()).await.unwrap();
        Harness { app, store, clock, record, init_id, chunks, next_ts: T0, _dir: dir }
    }

    /// Stores one 1-second fragment at the current clock time.
    async fn fragment(&mut self) -> u64 {
        let i = (self.next_ts - T0) as usize / 1_000_000;
        let f = NewFragment {
            producer_ts_us: self.next_ts,
            server_ts_us: self.clock_now(),
            duration_us: 1_000_000,
            init_id: self.init_id,
            keyframe: true,
            chunks: self.chunks[i % self.chunks.len()].clone(),
        };
        self.next_ts += 1_000_000;
        let pending = self.store.submit_fragment(&self.record, f).await.unwrap();
        pending.persisted.await.unwrap().unwrap().fragment_number
    }

    fn clock_now(&self) -> i64 {
        use kinescope::clock::Clock;
        self.clock.now_us()
    }

    async fn post(&self, path: &str, body: &str) -> (StatusCode, serde_json::Value) {
        let req = Request::post(path).body(Body::from(body.to_string())).unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    }

    async fn get(&self, url: &str) -> (StatusCode, String) {
        let path = url.strip_prefix("http://kinescope.test").unwrap_or(url);
        let resp = self.app.clone().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20).await.unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    async fn live_hls_url(&self) -> (StatusCode, serde_json::Value) {
        self.post("/getHLSStreamingSessionURL", r#"{"StreamName":"cam","PlaybackMode":"LIVE"}"#).await
    }
}

/// The media playlist's path, from the master playlist's relative URI.
fn media_playlist_url(master: &str) -> String {
    let rel = master.lines().find(|l| !l.is_empty() && !l.starts_with('#')).unwrap();
    format!("/hls/v1/{rel}")
}

#[tokio::test]
async fn a_session_expires_when_its_expires_says() {
    let mut h = Harness::new().await;
    h.fragment().await;
    let (status, body) =
        h.post("/getHLSStreamingSessionURL", r#"{"StreamName":"cam","PlaybackMode":"LIVE","Expires":300}"#).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let url = body["HLSStreamingSessionURL"].as_str().unwrap().to_string();
    assert_eq!(h.get(&url).await.0, StatusCode::OK);
    h.clock.advance_us(299_000_000);
    assert_eq!(h.get(&url).await.0, StatusCode::OK);
    h.clock.advance_us(1_000_000);
    let (status, body) = h.get(&url).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("expired"), "{body}");
}

#[tokio::test]
async fn live_needs_a_fragment_in_the_last_30_seconds() {
    let mut h = Harness::new().await;
    assert_eq!(h.live_hls_url().await.0, StatusCode::NOT_FOUND, "no fragments at all");
    h.fragment().await;
    h.clock.advance_us(29_000_000);
    assert_eq!(h.live_hls_url().await.0, StatusCode::OK);
    h.clock.advance_us(2_000_000);
    let (status, body) = h.live_hls_url().await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["Message"].as_str().unwrap().contains("30 seconds"));
}

#[tokio::test]
async fn the_live_playlist_slides_over_the_newest_fragments() {
    let mut h = Harness::new().await;
    for _ in 0..3 {
        h.fragment().await;
        h.clock.advance_us(1_000_000);
    }
    let (_, body) = h.live_hls_url().await;
    let url = body["HLSStreamingSessionURL"].as_str().unwrap().to_string();
    let (_, master) = h.get(&url).await;
    let media = media_playlist_url(&master);
    let (_, text) = h.get(&media).await;
    assert_eq!(text.matches("#EXTINF").count(), 3);
    let mut last = 0;
    for _ in 0..4 {
        last = h.fragment().await;
        h.clock.advance_us(1_000_000);
    }
    let (status, text) = h.get(&media).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(text.matches("#EXTINF").count(), 5, "LIVE shows the newest 5 by default: {text}");
    assert!(text.contains(&format!("#EXT-X-MEDIA-SEQUENCE:{}", last - 4)), "{text}");
    assert!(text.contains(&format!("FragmentNumber={last}\n")));
    assert!(!text.contains("#EXT-X-ENDLIST"));
    // Every segment the playlist names is served.
    for line in text.lines().filter(|l| l.starts_with("getMP4")) {
        let (status, _) = h.get(&format!("/hls/v1/{line}")).await;
        assert_eq!(status, StatusCode::OK, "{line}");
    }
}
