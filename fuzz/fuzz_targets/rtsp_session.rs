//! The RTSP server's session state machine over a real loopback socket: the input is
//! what a client sends (requests in any order, interleaved RTP, garbage), split into
//! writes as the first byte says. The server runs once for the whole run (anonymous
//! mode, streams created on ANNOUNCE). Whatever arrives: no panic (a panic in any of
//! its tasks aborts the run), and the server answers the next client.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use kinescope::clock::SystemClock;
use kinescope::credentials::Credentials;
use kinescope::metrics::Metrics;
use kinescope::rtsp::{RtspLimits, RtspServer};
use kinescope::scope::Scope;
use kinescope::video_store::{StoreConfig, VideoStore};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct World {
    runtime: tokio::runtime::Runtime,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("a runtime");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let scope = Scope::new("123456789012", "us-east-1");
        let clock = Arc::new(SystemClock);
        let addr = runtime.block_on(async {
            let (store, _) = VideoStore::open(
                StoreConfig { default_scope: scope.clone(), ..StoreConfig::new(dir.path()) },
                clock.clone(),
            )
            .expect("the video store opens");
            let limits = RtspLimits {
                idle_timeout: Duration::from_millis(500),
                write_timeout: Duration::from_millis(500),
                ..RtspLimits::default()
            };
            let server = RtspServer::new(
                store,
                Arc::new(Credentials::new(scope)),
                clock,
                true,
                [3; 32],
                Arc::new(Metrics::default()),
            )
            .with_limits(limits);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
            let addr = listener.local_addr().expect("its address");
            let (stop_tx, stop) = tokio::sync::watch::channel(false);
            std::mem::forget(stop_tx);
            tokio::spawn(server.run(listener, stop));
            addr
        });
        World { runtime, addr, _dir: dir }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, input)) = data.split_first() else { return };
    let piece = usize::from(split).max(1) * 16;
    let w = world();
    w.runtime.block_on(async {
        let mut sock = tokio::net::TcpStream::connect(w.addr).await.expect("the server accepts");
        for chunk in input.chunks(piece) {
            if sock.write_all(chunk).await.is_err() {
                break;
            }
        }
        let _ = sock.shutdown().await;
        // Read what it answers until it closes (the idle timeout ends a silent session).
        let mut sink = vec![0u8; 64 * 1024];
        let _ = tokio::time::timeout(Duration::from_secs(3), async {
            while let Ok(n) = sock.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
        // Still serving: a fresh client gets an answer to OPTIONS.
        let mut probe = tokio::net::TcpStream::connect(w.addr).await.expect("the server still accepts");
        probe.write_all(b"OPTIONS rtsp://127.0.0.1/x RTSP/1.0\r\nCSeq: 1\r\n\r\n").await.expect("a write");
        let mut head = [0u8; 12];
        tokio::time::timeout(Duration::from_secs(3), probe.read_exact(&mut head))
            .await
            .expect("an answer in time")
            .expect("bytes");
        assert_eq!(&head[..9], b"RTSP/1.0 ");
    });
});
