//! Process metrics at `/metrics`, in the OpenMetrics text format Prometheus scrapes.
//!
//! Built on `prometheus-client`: label values are escaped by the encoder, and every
//! label set is drawn from a bounded set (operation names the server knows, HTTP
//! statuses, fixed refusal reasons), so no request can add a series of its choosing or
//! forge a sample.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Upper bounds (seconds) of the PERSISTED-ack latency histogram buckets.
/// Upper bounds (seconds) of the image render-time histogram buckets.
const RENDER_BUCKETS: [f64; 10] = [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// Upper bounds (seconds) of the event-age histogram buckets.
const AGE_BUCKETS: [f64; 10] = [0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0];

const ACK_BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// The label of a request that named no operation this server knows.
pub const UNKNOWN_OPERATION: &str = "unknown";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// An operation name the server registered or a route it serves (or
    /// [`UNKNOWN_OPERATION`]): never text a request chose.
    pub api: String,
    pub status: u16,
}

/// A served HTTP connection: its listener and the protocol it spoke.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionLabels {
    /// `http` or `https`.
    pub listener: &'static str,
    /// `http1` or `h2`.
    pub protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// `http` or `rtsp`.
    pub listener: &'static str,
    /// A fixed reason: `connections`, `header_timeout`, `body_timeout`, `idle_timeout`,
    /// `slow_reader`, `too_large`, `limit`, `origin`.
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SignalingLabels {
    /// `MASTER` or `VIEWER`.
    pub role: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SignalingMessageLabels {
    /// `SDP_OFFER`, `SDP_ANSWER`, `ICE_CANDIDATE`, or `invalid` for a refused frame.
    pub action: &'static str,
    /// `delivered`, `held` (for an absent master) or `refused`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ViewerLabels {
    /// `live_bus` (frames as a live source delivers them) or `fragments` (stored GOPs).
    pub source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LowLatencyLabels {
    /// `reload` (a blocking playlist reload) or `part` (a part request).
    pub request: &'static str,
    /// reload: `immediate`, `waited`, `timeout`, `too_far`; part: `memory`, `waited`,
    /// `store`, `missing`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    /// `whep` (a viewer), `whip` (a publisher), `storage_session` (a channel's master
    /// recorded) or `storage_viewer` (a viewer in a storage session).
    pub role: &'static str,
    /// `connected`, or `not_connected` (ICE or DTLS did not complete in time).
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ForwardLabels {
    /// `answered` (the writer's answer passed on, whatever its status), `no_writer`
    /// (no node held the lease, or the database could not say), `unreachable` (the
    /// writer did not answer), `refused` (a request already forwarded, an upgrade).
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ImageLabels {
    /// `image` (encoded), `no_media` or `media_error`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// `fragment` or `image`.
    pub kind: &'static str,
    /// `queue`, `data_stream` or `delivery_stream`.
    pub destination: &'static str,
    /// `sent`, `failed_attempt` (retried) or `dropped` (its destination does not exist).
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    /// `incoming` (accepted), `delivered`, `failed_attempt`, `error_output` (written
    /// under the error prefix) or `expired` (given up after the retry window).
    pub outcome: &'static str,
}

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    refused: Family<RefusalLabels, Counter>,
    connections: Family<ConnectionLabels, Counter>,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub fragments_persisted: Counter,
    pub fragments_rejected: Counter,
    pub ack_latency: Histogram,
    /// RTSP publishers and pulled cameras.
    pub rtsp_packets: Counter,
    pub rtsp_packets_lost: Counter,
    pub rtsp_units_dropped: Counter,
    signaling_clients: Family<SignalingLabels, prometheus_client::metrics::gauge::Gauge>,
    signaling_messages: Family<SignalingMessageLabels, Counter>,
    delivery_records: Family<DeliveryLabels, Counter>,
    delivery_bytes: Family<DeliveryLabels, Counter>,
    images: Family<ImageLabels, Counter>,
    webrtc_viewers: Family<ViewerLabels, Counter>,
    /// WHEP and WHIP peer connections open now.
    pub webrtc_peers: prometheus_client::metrics::gauge::Gauge,
    /// Bytes of signalling messages held for masters not connected, across channels.
    pub signaling_held_bytes: prometheus_client::metrics::gauge::Gauge,
    /// Stream-event followers stopped because their cursor could not be read.
    pub event_followers_stopped: Counter,
    /// Records recovery could not read at start (kept, copied to quarantine/).
    pub recovery_unreadable_records: prometheus_client::metrics::gauge::Gauge,
    webrtc_connections: Family<PeerLabels, Counter>,
    ll_hls: Family<LowLatencyLabels, Counter>,
    /// RTP packets received from WHIP publishers and storage sessions' masters.
    pub webrtc_rtp_in: Counter,
    /// Video frames sent to WHEP and storage-session viewers (each packetized into RTP by
    /// the peer).
    pub webrtc_frames_out: Counter,
    /// Render jobs (one GOP each) waiting for or on an image thread.
    pub image_queue_depth: prometheus_client::metrics::gauge::Gauge,
    /// Time an image thread spends on one job: decode, scale, encode.
    pub image_render_seconds: Histogram,
    events: Family<EventLabels, Counter>,
    /// Age of a fragment (now minus its server timestamp) when its event is accepted.
    pub event_age_seconds: Histogram,
    /// Requests a cluster follower passed to the writer, by outcome.
    forwarded: Family<ForwardLabels, Counter>,
    /// 1 while this node holds the cluster's writer lease (0 on followers and
    /// standalone servers).
    pub cluster_writer: prometheus_client::metrics::gauge::Gauge,
    /// The epoch of the lease this node holds (0 when it holds none).
    pub cluster_epoch: prometheus_client::metrics::gauge::Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("kinescope");
        let requests = Family::<RequestLabels, Counter>::default();
        let refused = Family::<RefusalLabels, Counter>::default();
        let connections = Family::<ConnectionLabels, Counter>::default();
        let m = Metrics {
            requests: requests.clone(),
            refused: refused.clone(),
            connections: connections.clone(),
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            fragments_persisted: Counter::default(),
            fragments_rejected: Counter::default(),
            ack_latency: Histogram::new(ACK_BUCKETS),
            rtsp_packets: Counter::default(),
            rtsp_packets_lost: Counter::default(),
            rtsp_units_dropped: Counter::default(),
            signaling_clients: Family::default(),
            signaling_messages: Family::default(),
            delivery_records: Family::default(),
            delivery_bytes: Family::default(),
            images: Family::default(),
            webrtc_viewers: Family::default(),
            webrtc_peers: Default::default(),
            signaling_held_bytes: Default::default(),
            event_followers_stopped: Default::default(),
            recovery_unreadable_records: Default::default(),
            webrtc_connections: Family::default(),
            ll_hls: Family::default(),
            webrtc_rtp_in: Counter::default(),
            webrtc_frames_out: Counter::default(),
            image_queue_depth: Default::default(),
            image_render_seconds: Histogram::new(RENDER_BUCKETS),
            events: Family::default(),
            event_age_seconds: Histogram::new(AGE_BUCKETS),
            forwarded: Family::default(),
            cluster_writer: Default::default(),
            cluster_epoch: Default::default(),
            registry: Registry::default(),
        };
        registry.register("requests", "API requests by operation and HTTP status", requests);
        registry.register("refused", "Connections and requests refused by a limit, by listener and reason", refused);
        registry.register("http_connections", "HTTP connections served, by listener and protocol", connections);
        registry.register("bytes_in", "Request body bytes received", m.bytes_in.clone());
        registry.register("bytes_out", "Response body bytes sent", m.bytes_out.clone());
        registry.register(
            "fragments_persisted",
            "Fragments made durable and acknowledged PERSISTED",
            m.fragments_persisted.clone(),
        );
        registry.register(
            "fragments_rejected",
            "Fragments refused with an ERROR acknowledgement",
            m.fragments_rejected.clone(),
        );
        registry.register(
            "put_media_ack_latency_seconds",
            "Time from RECEIVED to PERSISTED per fragment",
            m.ack_latency.clone(),
        );
        registry.register("rtsp_packets", "RTP packets (or camera frames) received over RTSP", m.rtsp_packets.clone());
        registry.register(
            "rtsp_packets_lost",
            "RTP packets missing from the sequence (UDP gaps, camera-reported loss)",
            m.rtsp_packets_lost.clone(),
        );
        registry.register(
            "rtsp_units_dropped",
            "Access units dropped: a packet of theirs lost or malformed, or before parameters were known",
            m.rtsp_units_dropped.clone(),
        );
        registry.register(
            "signaling_clients",
            "WebSocket signalling clients connected, by role",
            m.signaling_clients.clone(),
        );
        registry.register(
            "signaling_messages",
            "Signalling messages by action and outcome",
            m.signaling_messages.clone(),
        );
        registry.register(
            "delivery_records",
            "Delivery-stream records by stream and outcome (Firehose's IncomingRecords, DeliveryToS3.Records, ...)",
            m.delivery_records.clone(),
        );
        registry.register(
            "delivery_bytes",
            "Delivery-stream record bytes by stream and outcome",
            m.delivery_bytes.clone(),
        );
        registry.register("images", "Images asked of the image threads, by outcome", m.images.clone());
        registry.register(
            "cluster_forwarded",
            "Requests a cluster follower passed to the writer, by outcome",
            m.forwarded.clone(),
        );
        registry.register(
            "cluster_writer",
            "1 while this node holds the cluster's writer lease",
            m.cluster_writer.clone(),
        );
        registry.register(
            "cluster_epoch",
            "The epoch of the writer lease this node holds (0: none)",
            m.cluster_epoch.clone(),
        );
        registry.register(
            "webrtc_viewers",
            "WHEP viewers that started receiving video, by where their frames came from",
            m.webrtc_viewers.clone(),
        );
        registry.register("webrtc_peers", "WHEP and WHIP peer connections open", m.webrtc_peers.clone());
        registry.register(
            "event_followers_stopped",
            "Stream-event followers stopped because their cursor could not be read",
            m.event_followers_stopped.clone(),
        );
        registry.register(
            "recovery_unreadable_records",
            "Records the video store's recovery could not read at start (kept, copied to quarantine/)",
            m.recovery_unreadable_records.clone(),
        );
        registry.register(
            "signaling_held_bytes",
            "Bytes of signalling messages held for masters not connected",
            m.signaling_held_bytes.clone(),
        );
        registry.register(
            "webrtc_connections",
            "WebRTC peer connections by role and whether they connected",
            m.webrtc_connections.clone(),
        );
        registry.register(
            "ll_hls_requests",
            "Low-Latency HLS blocking reloads and part requests, by outcome",
            m.ll_hls.clone(),
        );
        registry.register("webrtc_rtp_in", "RTP packets received from WebRTC publishers", m.webrtc_rtp_in.clone());
        registry.register(
            "webrtc_frames_out",
            "Video frames sent to WHEP and storage-session viewers",
            m.webrtc_frames_out.clone(),
        );
        registry.register(
            "image_queue_depth",
            "Image render jobs (one GOP each) queued or running",
            m.image_queue_depth.clone(),
        );
        registry.register(
            "image_render_seconds",
            "Time to decode, scale and encode the images of one GOP",
            m.image_render_seconds.clone(),
        );
        registry.register(
            "stream_events",
            "Fragment and image events by kind, destination type and outcome",
            m.events.clone(),
        );
        registry.register(
            "stream_event_age_seconds",
            "Age of a fragment (now minus its server timestamp) when its event is accepted: grows when events fall behind",
            m.event_age_seconds.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// Counts a request; `api` must come from the server's own operation names.
    pub fn count_request(&self, api: &str, status: u16) {
        self.requests.get_or_create(&RequestLabels { api: api.to_string(), status }).inc();
    }

    /// A signalling client connected (`+1`) or left (`-1`).
    pub fn signaling_client(&self, role: &'static str, delta: i64) {
        self.signaling_clients.get_or_create(&SignalingLabels { role }).inc_by(delta);
    }

    pub fn count_signaling_message(&self, action: &'static str, outcome: &'static str) {
        self.signaling_messages.get_or_create(&SignalingMessageLabels { action, outcome }).inc();
    }

    /// Counts a connection or request refused by a limit.
    /// Counts delivery-stream records and their bytes, over every stream: `/metrics` is
    /// unauthenticated, so it names no account's resources (a stream's own figures are
    /// in its logs).
    pub fn count_delivery(&self, outcome: &'static str, records: u64, bytes: u64) {
        let labels = DeliveryLabels { outcome };
        self.delivery_records.get_or_create(&labels).inc_by(records);
        self.delivery_bytes.get_or_create(&labels).inc_by(bytes);
    }

    pub fn count_ll_hls(&self, request: &'static str, outcome: &'static str) {
        self.ll_hls.get_or_create(&LowLatencyLabels { request, outcome }).inc();
    }

    pub fn count_peer(&self, role: &'static str, connected: bool) {
        let outcome = if connected { "connected" } else { "not_connected" };
        self.webrtc_connections.get_or_create(&PeerLabels { role, outcome }).inc();
    }

    pub fn count_viewer(&self, source: &'static str) {
        self.webrtc_viewers.get_or_create(&ViewerLabels { source }).inc();
    }

    pub fn count_forwarded(&self, outcome: &'static str) {
        self.forwarded.get_or_create(&ForwardLabels { outcome }).inc();
    }

    pub fn count_images(&self, outcome: &'static str, n: u64) {
        self.images.get_or_create(&ImageLabels { outcome }).inc_by(n);
    }

    pub fn count_event(&self, kind: &'static str, destination: &'static str, outcome: &'static str) {
        self.events.get_or_create(&EventLabels { kind, destination, outcome }).inc();
    }

    pub fn count_connection(&self, listener: &'static str, protocol: &'static str) {
        self.connections.get_or_create(&ConnectionLabels { listener, protocol }).inc();
    }

    pub fn count_refusal(&self, listener: &'static str, reason: &'static str) {
        self.refused.get_or_create(&RefusalLabels { listener, reason }).inc();
    }

    pub fn add_bytes_in(&self, n: u64) {
        self.bytes_in.inc_by(n);
    }

    pub fn add_bytes_out(&self, n: u64) {
        self.bytes_out.inc_by(n);
    }

    /// The OpenMetrics text of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "metrics could not be encoded");
        }
        out
    }
}

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_openmetrics_text() {
        let m = Metrics::default();
        m.count_request("CreateStream", 200);
        m.count_request("CreateStream", 200);
        m.count_refusal("http", "header_timeout");
        m.ack_latency.observe(0.003);
        let text = m.render();
        assert!(text.contains("kinescope_requests_total{api=\"CreateStream\",status=\"200\"} 2"), "{text}");
        assert!(text.contains("kinescope_refused_total{listener=\"http\",reason=\"header_timeout\"} 1"));
        assert!(text.contains("kinescope_put_media_ack_latency_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("kinescope_put_media_ack_latency_seconds_bucket{le=\"0.0025\"} 0"));
        assert!(text.contains("kinescope_put_media_ack_latency_seconds_count 1"));
        assert!(text.contains("kinescope_rtsp_packets_lost_total 0"));
        assert!(text.ends_with("# EOF\n"));
    }
}
