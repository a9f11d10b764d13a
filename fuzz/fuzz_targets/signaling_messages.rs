//! Signalling messages as clients send them, on arbitrary text: parsed, then routed
//! through the hub from a viewer while no master is connected (held within the
//! per-channel and total bounds), then from a master; the channel forgotten frees all.
//! Image sizes ride along (the same bytes as four numbers). No panic.
#![no_main]

use std::sync::Arc;

use kinescope::clock::ManualClock;
use kinescope::images::render::{target_size, MAX_HEIGHT, MAX_WIDTH};
use kinescope::signaling::hub::{Hub, HubLimits, Role};
use kinescope::wire::kvs_signaling;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let limits =
        HubLimits { max_viewers: 2, outbox: 4, max_pending: 8, max_pending_bytes: 4096, max_pending_bytes_total: 8192 };
    let clock = Arc::new(ManualClock::new(0));
    let hub = Hub::new(clock.clone(), limits);
    let (viewer, _vrx) = hub.join("arn:c", Role::Viewer, "v").expect("a viewer joins");
    let (other, _orx) = hub.join("arn:d", Role::Viewer, "v").expect("a viewer joins");
    for (i, line) in text.split('\n').take(32).enumerate() {
        if let Ok(msg) = kvs_signaling::parse_client_message(line) {
            let from = if i % 2 == 0 { &viewer } else { &other };
            let _ = hub.send(from, msg, (i as u32 % 7) + 1);
            assert!(hub.pending_bytes() <= 8192);
            clock.advance_us(700_000);
        }
    }
    let (master, _mrx) = hub.join("arn:c", Role::Master, "").expect("a master joins");
    for line in text.split('\n').take(8) {
        if let Ok(msg) = kvs_signaling::parse_client_message(line) {
            let _ = hub.send(&master, msg, 60);
        }
    }
    hub.forget("arn:c");
    hub.forget("arn:d");
    assert_eq!(hub.pending_bytes(), 0);
    if data.len() >= 16 {
        let n = |i: usize| u32::from_le_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
        let opt = |v: u32| (v % 3 != 0).then_some(v % 100_000 + 1);
        let (w, h) = target_size(n(0) % 100_000 + 1, n(4) % 100_000 + 1, opt(n(8)), opt(n(12)));
        assert!((1..=MAX_WIDTH).contains(&w) && (1..=MAX_HEIGHT).contains(&h));
    }
});
