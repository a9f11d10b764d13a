//! The recently read fragments, in memory: live viewers all ask for the same few newest
//! fragments, and serving them from one shared `Bytes` costs no read, no CRC check and no
//! copy per request. Bounded by bytes; the oldest inserted goes first. Contents never go
//! stale: a stored fragment's bytes never change, and a fragment removed from the index
//! (retention, a deleted stream) is not looked up any more.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;

use super::records::StreamId;

pub struct RecentFragments {
    max_bytes: usize,
    inner: Mutex<Recent>,
}

#[derive(Default)]
struct Recent {
    map: HashMap<(StreamId, u64), Bytes>,
    order: VecDeque<(StreamId, u64)>,
    bytes: usize,
}

impl RecentFragments {
    pub fn new(max_bytes: usize) -> Self {
        RecentFragments { max_bytes, inner: Mutex::new(Recent::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, stream: StreamId, number: u64) -> Option<Bytes> {
        self.lock().map.get(&(stream, number)).cloned()
    }

    /// Keeps `bytes` (unless larger than the whole cache), dropping the oldest entries
    /// until it fits.
    pub fn insert(&self, stream: StreamId, number: u64, bytes: Bytes) {
        if bytes.len() > self.max_bytes {
            return;
        }
        let mut r = self.lock();
        if r.map.contains_key(&(stream, number)) {
            return;
        }
        while r.bytes + bytes.len() > self.max_bytes {
            let Some(old) = r.order.pop_front() else { break };
            if let Some(b) = r.map.remove(&old) {
                r.bytes -= b.len();
            }
        }
        r.bytes += bytes.len();
        r.order.push_back((stream, number));
        r.map.insert((stream, number), bytes);
    }

    /// Forgets a deleted stream's fragments (their memory, not their correctness).
    pub fn remove_stream(&self, stream: StreamId) {
        let mut r = self.lock();
        let gone: usize = r.map.iter().filter(|((s, _), _)| *s == stream).map(|(_, b)| b.len()).sum();
        r.map.retain(|(s, _), _| *s != stream);
        r.order.retain(|(s, _)| *s != stream);
        r.bytes -= gone;
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_goes_first_and_the_bound_holds() {
        let c = RecentFragments::new(10);
        c.insert(1, 1, Bytes::from_static(b"aaaa"));
        c.insert(1, 2, Bytes::from_static(b"bbbb"));
        c.insert(2, 1, Bytes::from_static(b"cccc"));
        assert_eq!(c.get(1, 1), None);
        assert_eq!(c.get(1, 2).as_deref(), Some(&b"bbbb"[..]));
        assert_eq!(c.bytes(), 8);
        c.insert(3, 1, Bytes::from_static(b"this is too large"));
        assert_eq!(c.get(3, 1), None);
        c.remove_stream(1);
        assert_eq!((c.get(1, 2), c.bytes()), (None, 4));
        c.insert(2, 1, Bytes::from_static(b"dddd"));
        assert_eq!(c.get(2, 1).as_deref(), Some(&b"cccc"[..]), "first insert kept");
    }
}
