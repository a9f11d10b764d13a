//! Signalling throughput: offer/answer round trips through the signalling WebSocket,
//! from 1 and 10 viewers of one channel to its master, over loopback.
//!
//! `cargo bench --bench signaling`. Each viewer sends an `SDP_OFFER`-sized message, the
//! master answers that viewer, the viewer waits for the answer and sends the next: two
//! messages routed per round trip. The reference, in the same process over the same
//! listener code (`api::serve`, axum WebSockets), is a bare relay: the same topology
//! and frame sizes, forwarded by client id through a `HashMap`, with no JSON, no base64
//! check, no channel lookup and no hub. The ratio says what the signalling layer costs
//! over moving the frames at all. The two sides are interleaved, three rounds each;
//! the median and the spread are printed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::Query;
use axum::routing::get;
use axum::Router;
use futures_util::{SinkExt, StreamExt};
use kinescope::api::harness::Harness;
use kinescope::api::serve::{serve, HttpLimits};
use kinescope::clock::SystemClock;
use kinescope::metrics::Metrics;
use kinescope::scope::Scope;
use kinescope::signaling::NewChannel;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as ClientMessage;

#[path = "common.rs"]
mod common;
use common::scale;

/// A payload the size of a browser's SDP offer, base64 (about 4 KiB of SDP).
fn payload() -> String {
    "QUFB".repeat(1400)
}

async fn listen(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
    let addr = listener.local_addr().expect("its address");
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    std::mem::forget(stop_tx);
    tokio::spawn(serve(listener, app, HttpLimits::default(), Arc::new(Metrics::default()), stop, None));
    addr
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str) -> Ws {
    tokio_tungstenite::connect_async(url).await.expect("the WebSocket opens").0
}

async fn next_text(ws: &mut Ws) -> String {
    loop {
        match ws.next().await.expect("a frame").expect("no error") {
            ClientMessage::Text(t) => return t.to_string(),
            ClientMessage::Close(_) => panic!("closed"),
            _ => {}
        }
    }
}

/// Round trips for `seconds` from `viewers` viewers; returns messages routed per
/// second (two per round trip). `master_url` and `viewer_url(i)` are the two ends;
/// `offer(i)` and `answer(from_master_frame)` build the frames of each protocol.
async fn round_trips(
    master_url: String,
    viewer_url: impl Fn(usize) -> String,
    viewers: usize,
    seconds: f64,
    offer: fn(usize) -> String,
    answer: fn(&str) -> String,
) -> f64 {
    let mut master = connect(&master_url).await;
    let mut sockets = Vec::new();
    for i in 0..viewers {
        sockets.push(connect(&viewer_url(i)).await);
    }
    let master_task = tokio::spawn(async move {
        while let Some(Ok(frame)) = master.next().await {
            if let ClientMessage::Text(t) = frame {
                if master.send(ClientMessage::Text(answer(t.as_str()).into())).await.is_err() {
                    break;
                }
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (i, mut ws) in sockets.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                ws.send(ClientMessage::Text(offer(i).into())).await.expect("send");
                next_text(&mut ws).await;
                n += 1;
            }
            let _ = ws.close(None).await;
            n
        }));
    }
    let mut trips = 0;
    for t in tasks {
        trips += t.await.expect("viewer");
    }
    let elapsed = started.elapsed().as_secs_f64();
    master_task.abort();
    2.0 * trips as f64 / elapsed
}

/// The Kinesis Video frames: a viewer's offer; the master's answer to its sender.
fn kvs_offer(_: usize) -> String {
    format!(r#"{{"action":"SDP_OFFER","messagePayload":"{}"}}"#, payload())
}

fn kvs_answer(event: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(event).expect("an event");
    let to = v["senderClientId"].as_str().expect("a sender");
    format!(r#"{{"action":"SDP_ANSWER","messagePayload":"{}","recipientClientId":"{to}"}}"#, payload())
}

/// The bare relay's frames: `ID\nPAYLOAD`, answered to the same id.
fn bare_offer(i: usize) -> String {
    format!("v{i}\n{}", payload())
}

fn bare_answer(frame: &str) -> String {
    let id = frame.split('\n').next().unwrap_or_default();
    format!("{id}\n{}", payload())
}

/// The reference: forwards viewers' frames to the master and the master's frames to the
/// viewer named on their first line.
#[derive(Clone, Default)]
struct Relay {
    master: Arc<Mutex<Option<mpsc::Sender<String>>>>,
    viewers: Arc<Mutex<HashMap<String, mpsc::Sender<String>>>>,
}

fn relay_app() -> Router {
    let relay = Relay::default();
    Router::new().route(
        "/relay",
        get(move |Query(q): Query<HashMap<String, String>>, ws: WebSocketUpgrade| {
            let relay = relay.clone();
            async move { ws.on_upgrade(move |socket| relay_session(socket, relay, q.get("id").cloned())) }
        }),
    )
}

async fn relay_session(socket: WebSocket, relay: Relay, id: Option<String>) {
    let (tx, mut rx) = mpsc::channel::<String>(64);
    match &id {
        Some(id) => drop(relay.viewers.lock().expect("lock").insert(id.clone(), tx)),
        None => *relay.master.lock().expect("lock") = Some(tx),
    }
    let (mut sink, mut stream) = socket.split();
    loop {
        tokio::select! {
            frame = stream.next() => match frame {
                Some(Ok(Message::Text(t))) => {
                    let target = match &id {
                        Some(_) => relay.master.lock().expect("lock").clone(),
                        None => {
                            let to = t.as_str().split('\n').next().unwrap_or_default().to_string();
                            relay.viewers.lock().expect("lock").get(&to).cloned()
                        }
                    };
                    if let Some(target) = target {
                        let _ = target.try_send(t.to_string());
                    }
                }
                Some(Ok(_)) => {}
                _ => break,
            },
            out = rx.recv() => match out {
                Some(text) => if sink.send(Message::Text(text.into())).await.is_err() { break },
                None => break,
            },
        }
    }
}

fn main() {
    let Some((rt, tmp)) = common::setup() else { return };
    let seconds = 2.0 * scale();
    println!("kinescope signalling benchmark — {seconds:.1} s per run, interleaved with a bare relay, 3 rounds");
    rt.block_on(async {
        let harness = Harness::open(tmp.path(), Arc::new(SystemClock), &[]);
        let scope = Scope::new(kinescope::api::harness::ACCOUNT, "us-east-1");
        let channel = harness
            .state
            .kvs
            .signaling
            .create(
                &scope,
                NewChannel { name: "bench".into(), channel_type: None, message_ttl_s: None, tags: Default::default() },
            )
            .await
            .expect("a channel");
        let ours = listen(harness.app.clone()).await;
        let bare = listen(relay_app()).await;
        let arn = channel.arn.clone();
        let mut rows = Vec::new();
        for viewers in [1usize, 10] {
            let (mut ours_rates, mut bare_rates) = (Vec::new(), Vec::new());
            for round in 0..3 {
                // A B, B A, A B: neither side always runs first.
                for side in if round % 2 == 0 { [0, 1] } else { [1, 0] } {
                    let rate = if side == 0 {
                        let arn = arn.clone();
                        let base = format!("ws://{ours}/v1/signaling?X-Amz-ChannelARN={arn}");
                        let viewer = move |i: usize| format!("{base}&X-Amz-ClientId=viewer-{i}");
                        let master = format!("ws://{ours}/v1/signaling?X-Amz-ChannelARN={arn}");
                        round_trips(master, viewer, viewers, seconds, kvs_offer, kvs_answer).await
                    } else {
                        let viewer = move |i: usize| format!("ws://{bare}/relay?id=v{i}");
                        round_trips(format!("ws://{bare}/relay"), viewer, viewers, seconds, bare_offer, bare_answer)
                            .await
                    };
                    println!(
                        "[{viewers} viewer(s), round {}] {}: {rate:.0} messages/s",
                        round + 1,
                        ["signalling", "bare relay"][side]
                    );
                    if side == 0 {
                        ours_rates.push(rate)
                    } else {
                        bare_rates.push(rate)
                    }
                }
            }
            let ratios: Vec<f64> = ours_rates.iter().zip(&bare_rates).map(|(a, b)| a / b).collect();
            rows.push((
                viewers,
                common::median_spread(ours_rates),
                common::median_spread(bare_rates),
                common::median_spread(ratios),
            ));
        }
        println!();
        println!("| viewers | signalling messages/s, median (min–max) | bare relay messages/s | ratio |");
        println!("|---|---|---|---|");
        for (v, o, b, r) in rows {
            println!("| {v} | {:.0} ({:.0}–{:.0}) | {:.0} ({:.0}–{:.0}) | {:.2} |", o.0, o.1, o.2, b.0, b.1, b.2, r.0);
            println!("  (ratio spread {:.2}–{:.2})", r.1, r.2);
        }
    });
}
