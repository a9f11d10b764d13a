//! The HTTP listener: accepts connections up to a cap and serves each with hyper, with
//! a timer on every stage a client could stall to hold the server's memory or sockets.
//!
//! - **Connections**: at most `max_connections` at once; one more is answered `503`
//!   (`ServiceUnavailableException`) and closed. A connection's place is held by its
//!   socket, so a connection upgraded to a WebSocket (signalling) keeps counting until
//!   the socket closes. A failed accept (EMFILE: out of descriptors) backs off instead
//!   of spinning, and the caps are fitted to the descriptor limit at start
//!   ([`fit_to_descriptors`]), with a reserve left for files and outbound sockets.
//! - **Headers**: a request's head must arrive within `header_timeout`, counted from
//!   the connection's start or the end of the previous response (so an idle keep-alive
//!   connection is closed after it too).
//! - **Bodies**: a request body that sends nothing for `body_idle_timeout` fails (the
//!   handler sees a read error, hyper closes the connection). PutMedia's body is a
//!   stream; this is its idle timeout.
//! - **Slow readers**: a response write that makes no progress for `write_timeout`
//!   ends the connection: the reader is dropped, not the server.
//! - **HTTP/2** beside HTTP/1.1 on the same port: a connection whose first bytes are
//!   HTTP/2's preface (h2c with prior knowledge, or over TLS whether or not ALPN chose
//!   `h2`: the Java SDK's Netty client offers no ALPN and starts HTTP/2 at once) is
//!   served as HTTP/2, anything else as HTTP/1.1. The preface must arrive within
//!   `header_timeout`. HTTP/2's own limits ([`Http2Limits`]): concurrent streams,
//!   header list size (which also bounds CONTINUATION frames), flow-control windows and
//!   send buffers, reset streams (the rapid-reset attack), keep-alive pings to find dead
//!   peers; a connection with no stream open for `header_timeout` is closed, as an idle
//!   HTTP/1.1 keep-alive is. PING and SETTINGS floods cost one pending answer each: h2
//!   stops reading until it is written, and a peer that does not read is dropped by the
//!   write timeout.
//!
//! Every refusal is counted in `kinescope_refused_total{listener="http",reason=…}`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::Sleep;

use crate::metrics::Metrics;

/// The limits of the HTTP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub body_idle_timeout: Duration,
    pub write_timeout: Duration,
    pub http2: Http2Limits,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_connections: 1024,
            header_timeout: Duration::from_secs(30),
            body_idle_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            http2: Http2Limits::default(),
        }
    }
}

/// HTTP/2's limits, per connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2Limits {
    /// Streams open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
    pub max_streams: u32,
    /// Decoded header list size (SETTINGS_MAX_HEADER_LIST_SIZE); CONTINUATION frames
    /// past it are a protocol error.
    pub max_header_list_bytes: u32,
    /// What a peer may send on one stream, and on the connection, before we read it.
    pub stream_window: u32,
    pub connection_window: u32,
    /// Response bytes buffered per stream before the handler waits for the peer.
    pub send_buffer: usize,
    /// Streams the peer may reset before we accepted them (rapid reset, CVE-2023-44487).
    pub max_pending_resets: usize,
    /// How often an idle connection is pinged, and how long the answer may take.
    pub keep_alive_interval: Duration,
    pub keep_alive_timeout: Duration,
}

impl Default for Http2Limits {
    fn default() -> Self {
        Http2Limits {
            max_streams: 100,
            max_header_list_bytes: 64 * 1024,
            stream_window: 256 * 1024,
            connection_window: 1024 * 1024,
            send_buffer: 256 * 1024,
            max_pending_resets: 20,
            keep_alive_interval: Duration::from_secs(30),
            keep_alive_timeout: Duration::from_secs(20),
        }
    }
}

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a connection's first bytes say it speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sniffed {
    Http1,
    Http2,
    /// Too few bytes to tell.
    NeedMore,
}

/// Tells HTTP/2's preface from anything else by the bytes read so far. Pure.
fn sniff(first: &[u8]) -> Sniffed {
    let n = first.len().min(H2_PREFACE.len());
    if first[..n] != H2_PREFACE[..n] {
        Sniffed::Http1
    } else if n == H2_PREFACE.len() {
        Sniffed::Http2
    } else {
        Sniffed::NeedMore
    }
}

/// What a connection over the cap reads before it is closed.
fn busy_response() -> Vec<u8> {
    let body = r#"{"__type":"ServiceUnavailableException","message":"Too many connections; retry with backoff."}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/x-amz-json-1.1\r\n\
         x-amzn-ErrorType: ServiceUnavailableException\r\nRetry-After: 1\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serves `app` on `listener` until `stop` turns true; connections in progress then
/// finish their current request. With `tls`, every connection is TLS first (the
/// handshake must finish within `header_timeout`).
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: HttpLimits,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let listener_name = if tls.is_some() { "https" } else { "http" };
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    loop {
        let stopping = stop.clone();
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    metrics.count_refusal(listener_name, "accept_failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(stopping) => return,
        };
        let _ = stream.set_nodelay(true);
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.count_refusal(listener_name, "connections");
            if tls.is_none() {
                tokio::spawn(refuse_busy(stream));
            }
            continue;
        };
        let (app, metrics, stopping, tls) = (app.clone(), metrics.clone(), stop.clone(), tls.clone());
        tokio::spawn(async move {
            let io = TimedIo::new(stream, limits.write_timeout, metrics.clone(), slot);
            match tls {
                None => serve_connection(io, "http", app, limits, &metrics, stopping, peer).await,
                Some(acceptor) => match tokio::time::timeout(limits.header_timeout, acceptor.accept(io)).await {
                    Ok(Ok(tls_io)) => serve_connection(tls_io, "https", app, limits, &metrics, stopping, peer).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => metrics.count_refusal("https", "handshake_timeout"),
                },
            }
        });
    }
}

/// One connection until it ends or the server stops: HTTP/2 if it starts with the
/// preface, else HTTP/1.1 with upgrades (the signalling WebSocket).
async fn serve_connection<I>(
    mut io: I,
    listener: &'static str,
    app: axum::Router,
    limits: HttpLimits,
    metrics: &Metrics,
    stopping: watch::Receiver<bool>,
    peer: std::net::SocketAddr,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut first = Vec::with_capacity(H2_PREFACE.len());
    let sniffed = tokio::time::timeout(limits.header_timeout, async {
        loop {
            match sniff(&first) {
                Sniffed::NeedMore => {}
                done => return Ok(done),
            }
            let mut byte = [0u8; 24];
            let want = H2_PREFACE.len() - first.len();
            let n = io.read(&mut byte[..want]).await?;
            if n == 0 {
                // Closed before a whole preface: whatever came is HTTP/1's to refuse.
                return Ok(Sniffed::Http1);
            }
            first.extend_from_slice(&byte[..n]);
        }
    })
    .await;
    let sniffed: io::Result<Sniffed> = match sniffed {
        Ok(r) => r,
        Err(_) => {
            metrics.count_refusal(listener, "header_timeout");
            return;
        }
    };
    let Ok(sniffed) = sniffed else { return };
    metrics.count_connection(listener, if sniffed == Sniffed::Http2 { "h2" } else { "http1" });
    let io = TokioIo::new(Prefixed { prefix: first, at: 0, inner: io });
    let result = if sniffed == Sniffed::Http2 {
        serve_http2(io, app, limits, stopping).await
    } else {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).max_buf_size(64 * 1024);
        let conn = builder.serve_connection(io, TowerToHyperService::new(app)).with_upgrades();
        tokio::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => r,
            () = stopped(stopping) => {
                conn.as_mut().graceful_shutdown();
                conn.as_mut().await
            }
        }
    };
    if let Err(e) = result {
        if e.is_timeout() {
            metrics.count_refusal("http", "header_timeout");
        }
        tracing::debug!(%peer, error = %e, "connection ended");
    }
}

/// One HTTP/2 connection: closed gracefully when the server stops, or when no stream
/// has been open for `header_timeout`.
async fn serve_http2<I>(
    io: TokioIo<I>,
    app: axum::Router,
    limits: HttpLimits,
    stopping: watch::Receiver<bool>,
) -> Result<(), hyper::Error>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let h2 = limits.http2;
    let mut builder = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(h2.max_streams)
        .max_header_list_size(h2.max_header_list_bytes)
        .initial_stream_window_size(h2.stream_window)
        .initial_connection_window_size(h2.connection_window)
        .max_send_buf_size(h2.send_buffer)
        .max_pending_accept_reset_streams(h2.max_pending_resets)
        .keep_alive_interval(h2.keep_alive_interval)
        .keep_alive_timeout(h2.keep_alive_timeout);
    let streams = Arc::new(OpenStreams::default());
    let service = {
        let streams = streams.clone();
        tower::service_fn(move |req: Request<hyper::body::Incoming>| {
            let open = StreamGuard::open(&streams);
            let app = app.clone();
            async move {
                let response = tower::ServiceExt::oneshot(app, req.map(Body::new)).await?;
                Ok::<_, std::convert::Infallible>(response.map(|b| Body::new(Tracked { inner: b, _open: open })))
            }
        })
    };
    let conn = builder.serve_connection(io, TowerToHyperService::new(service));
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => r,
        () = stopped(stopping) => {
            conn.as_mut().graceful_shutdown();
            conn.as_mut().await
        }
        () = streams.idle_for(limits.header_timeout) => {
            conn.as_mut().graceful_shutdown();
            conn.as_mut().await
        }
    }
}

/// The streams of one HTTP/2 connection that are open: a request being answered or a
/// response body still being sent.
#[derive(Default)]
struct OpenStreams {
    count: std::sync::atomic::AtomicUsize,
    /// Bumped at every open and close, so an idle wait sees any activity in between.
    changes: std::sync::atomic::AtomicU64,
    changed: tokio::sync::Notify,
}

impl OpenStreams {
    /// Resolves once no stream has been open for `idle`.
    async fn idle_for(&self, idle: Duration) {
        use std::sync::atomic::Ordering::SeqCst;
        loop {
            let seen = self.changes.load(SeqCst);
            if self.count.load(SeqCst) == 0 {
                tokio::select! {
                    () = tokio::time::sleep(idle) => {
                        if self.changes.load(SeqCst) == seen {
                            return;
                        }
                    }
                    () = self.changed.notified() => {}
                }
            } else {
                self.changed.notified().await;
            }
        }
    }
}

/// A stream's place among the open ones, given back when dropped.
struct StreamGuard(Arc<OpenStreams>);

impl StreamGuard {
    fn open(streams: &Arc<OpenStreams>) -> Self {
        use std::sync::atomic::Ordering::SeqCst;
        streams.count.fetch_add(1, SeqCst);
        streams.changes.fetch_add(1, SeqCst);
        streams.changed.notify_waiters();
        StreamGuard(streams.clone())
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering::SeqCst;
        self.0.count.fetch_sub(1, SeqCst);
        self.0.changes.fetch_add(1, SeqCst);
        self.0.changed.notify_waiters();
    }
}

/// A response body that holds its stream open until it is sent (or dropped).
struct Tracked {
    inner: Body,
    _open: StreamGuard,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A socket whose first bytes, already read to tell the protocol, are read again.
struct Prefixed<S> {
    prefix: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.at < self.prefix.len() {
            let n = (self.prefix.len() - self.at).min(buf.remaining());
            let at = self.at;
            buf.put_slice(&self.prefix[at..at + n]);
            self.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Descriptors kept out of the connection caps: data files, sled, segment writers,
/// outbound sockets, WebRTC sockets, the query workers' pipes.
pub const DESCRIPTOR_RESERVE: u64 = 256;

/// Raises the soft descriptor limit to the hard one, and returns the caps (each
/// listener's connections, in order) scaled down together so that all of them at once
/// leave [`DESCRIPTOR_RESERVE`] descriptors free: a full server refuses connections
/// with 503 rather than failing `accept` and every file it opens with EMFILE.
pub fn fit_to_descriptors(caps: &[usize]) -> Vec<usize> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit read or fill the struct given; they change only
    // this process's limit.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    if !got {
        return caps.to_vec();
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit.rlim_cur = limit.rlim_max;
        }
    }
    fit_caps(caps, limit.rlim_cur)
}

/// `caps` scaled down proportionally (each at least 1) to fit `descriptors` less the
/// reserve. Pure.
pub fn fit_caps(caps: &[usize], descriptors: u64) -> Vec<usize> {
    let room = descriptors.saturating_sub(DESCRIPTOR_RESERVE).max(caps.len() as u64);
    let total: u64 = caps.iter().map(|&c| c as u64).sum();
    if total <= room {
        return caps.to_vec();
    }
    caps.iter().map(|&c| ((c as u64 * room / total.max(1)) as usize).max(1)).collect()
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn refuse_busy(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = stream.write_all(&busy_response()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// A socket whose writes fail once they have made no progress for `timeout`, holding
/// its connection's place under the cap for as long as it is open (an upgraded
/// connection's too: hyper hands this very socket to the WebSocket).
struct TimedIo<S> {
    inner: S,
    timeout: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
    metrics: Arc<Metrics>,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl<S> TimedIo<S> {
    fn new(inner: S, timeout: Duration, metrics: Arc<Metrics>, slot: tokio::sync::OwnedSemaphorePermit) -> Self {
        TimedIo { inner, timeout, stalled: None, metrics, _slot: slot }
    }

    /// On `Pending`, arms (or checks) the stall timer; on progress, disarms it.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match poll {
            Poll::Pending => {
                let timeout = self.timeout;
                let sleep = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if sleep.as_mut().poll(cx).is_ready() {
                    self.stalled = None;
                    self.metrics.count_refusal("http", "slow_reader");
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading")));
                }
                Poll::Pending
            }
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for TimedIo<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TimedIo<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Middleware: the request's body fails once it has sent nothing for `timeout`.
pub async fn body_idle_timeout(
    axum::extract::State((timeout, metrics)): axum::extract::State<(Duration, Arc<Metrics>)>,
    req: Request,
    next: Next,
) -> Response {
    let req = req.map(|body| Body::new(IdleBody { inner: body, timeout, idle: None, metrics }));
    next.run(req).await
}

/// A request body with an idle timer between frames.
struct IdleBody {
    inner: Body,
    timeout: Duration,
    idle: Option<Pin<Box<Sleep>>>,
    metrics: Arc<Metrics>,
}

impl http_body::Body for IdleBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Pending => {
                let timeout = self.timeout;
                let idle = self.idle.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if idle.as_mut().poll(cx).is_ready() {
                    self.idle = None;
                    self.metrics.count_refusal("http", "body_timeout");
                    let e = io::Error::new(io::ErrorKind::TimedOut, "the request body sent nothing for too long");
                    return Poll::Ready(Some(Err(axum::Error::new(e))));
                }
                Poll::Pending
            }
            ready => {
                self.idle = None;
                ready
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod descriptor_tests {
    use super::*;

    #[test]
    fn the_http2_preface_is_told_from_http1_by_its_first_bytes() {
        assert_eq!(sniff(b""), Sniffed::NeedMore);
        assert_eq!(sniff(b"PRI * HTTP/2"), Sniffed::NeedMore);
        assert_eq!(sniff(H2_PREFACE), Sniffed::Http2);
        assert_eq!(sniff(b"POST / HTTP/1.1\r\n"), Sniffed::Http1);
        assert_eq!(sniff(b"PRI * HTTP/1.1\r\n"), Sniffed::Http1);
        assert_eq!(sniff(b"G"), Sniffed::Http1);
    }

    #[test]
    fn caps_shrink_together_to_leave_the_reserve() {
        assert_eq!(fit_caps(&[1024, 256], 65_536), vec![1024, 256]);
        let fitted = fit_caps(&[1024, 1024, 256], 1024);
        assert!(fitted.iter().sum::<usize>() as u64 <= 1024 - DESCRIPTOR_RESERVE, "{fitted:?}");
        assert_eq!(fitted[0], fitted[1]);
        assert_eq!(fit_caps(&[10, 10], 100), vec![1, 1], "at least one each");
    }
}
