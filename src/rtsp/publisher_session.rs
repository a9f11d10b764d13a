//! A publisher on one RTSP connection: ANNOUNCE (the SDP names the tracks and their
//! codecs), SETUP with `mode=record` per track (TCP-interleaved channels, or a UDP port
//! pair whose reader puts packets back in order), RECORD; then RTP and RTCP go to an
//! [`ingest::publisher::Publisher`](crate::ingest::publisher::Publisher).

use std::net::{IpAddr, SocketAddr};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::{Refusal, RtspServer};
use crate::ingest::publisher::{PublishStats, Publisher, TrackSpec};
use crate::media::timeline::MediaTime;
use crate::scope::Scope;
use crate::video_store::{NewStream, StoreError, StreamRecord};
use crate::wire::rtp::ReorderBuffer;
use crate::wire::rtsp::{self, Request, Transport};
use crate::wire::sdp::{self, MediaDescription};

/// UDP packets held to put them back in order.
const UDP_REORDER_DEPTH: usize = 64;

/// What a track's UDP readers hand to the connection, in order.
pub enum UdpPacket {
    Rtp { track: usize, lost: u64, data: Vec<u8> },
    Rtcp { track: usize, data: Vec<u8> },
}

/// A track set up for recording: which announced media section, and its interleaved
/// RTP channel (TCP) or none (UDP).
struct SetupTrack {
    media: usize,
    interleaved: Option<u8>,
}

pub struct PublisherSession {
    stream: StreamRecord,
    media: Vec<MediaDescription>,
    specs: Vec<Option<TrackSpec>>,
    setup: Vec<SetupTrack>,
    publisher: Option<Publisher>,
    udp_tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl PublisherSession {
    /// ANNOUNCE: the stream the URL names (created if the server may), and the tracks
    /// its SDP describes.
    pub async fn announce(server: &RtspServer, req: &Request, scope: &Scope) -> Result<Self, Refusal> {
        let name = rtsp::path_of(&req.uri);
        if name.is_empty() {
            return Err(Refusal::bad_request("the URL must name a stream: rtsp://HOST:PORT/STREAM"));
        }
        let media = sdp::parse(&req.body).map_err(|e| Refusal::bad_request(e.to_string()))?;
        let max_tracks = server.limits.max_tracks;
        if media.len() > max_tracks {
            server.metrics.count_refusal("rtsp", "limit");
            return Err(Refusal::new(
                453,
                "Not Enough Bandwidth",
                format!("the SDP announces {} tracks; a publication may have {max_tracks}", media.len()),
            ));
        }
        let mut specs = Vec::new();
        for m in &media {
            let (kind, params) = crate::codec::from_sdp(m)
                .map_err(|why| Refusal::new(415, "Unsupported Media Type", why.to_string()))?;
            specs.push(Some(TrackSpec { params, kind, fmtp: m.fmtp.clone(), clock_rate: m.clock_rate.max(1) }));
        }
        let store = &server.store;
        let stream = match store.resolve(scope, Some(&name), None) {
            Ok(r) => r,
            Err(StoreError::StreamNotFound(_)) if server.create_streams => store
                .create_stream(scope, NewStream { name: name.clone(), ..Default::default() })
                .await
                .map_err(|e| Refusal::bad_request(e.to_string()))?,
            Err(StoreError::StreamNotFound(_)) => {
                return Err(Refusal::not_found(format!("stream {name} does not exist; create it first")))
            }
            Err(e) => return Err(Refusal::internal(e)),
        };
        tracing::info!(stream = %name, tracks = media.len(), "RTSP ANNOUNCE");
        Ok(PublisherSession { stream, media, specs, setup: Vec::new(), publisher: None, udp_tasks: Vec::new() })
    }

    /// SETUP of one announced track; returns the Transport header to answer.
    pub async fn setup(
        &mut self,
        req: &Request,
        transport: &Transport,
        local_ip: IpAddr,
        peer: SocketAddr,
        udp_tx: &mpsc::Sender<UdpPacket>,
    ) -> Result<String, Refusal> {
        if !transport.record {
            return Err(Refusal::unsupported_transport("this server takes publishers: mode=record"));
        }
        if self.publisher.is_some() {
            return Err(Refusal::wrong_state("already recording"));
        }
        let media = self
            .media
            .iter()
            .position(|m| m.control.as_deref().is_some_and(|c| req.uri.ends_with(c)))
            .unwrap_or(self.setup.len());
        if media >= self.media.len() || self.setup.iter().any(|s| s.media == media) {
            return Err(Refusal::not_found(format!("no announced track for {}", req.uri)));
        }
        let track = self.setup.len();
        if transport.tcp {
            let (rtp_ch, rtcp_ch) = transport.interleaved.unwrap_or((2 * track as u8, 2 * track as u8 + 1));
            self.setup.push(SetupTrack { media, interleaved: Some(rtp_ch) });
            return Ok(format!("RTP/AVP/TCP;unicast;interleaved={rtp_ch}-{rtcp_ch};mode=record"));
        }
        let (client_rtp, client_rtcp) =
            transport.client_port.ok_or_else(|| Refusal::unsupported_transport("UDP needs client_port"))?;
        let rtp_sock = UdpSocket::bind((local_ip, 0)).await.map_err(Refusal::internal)?;
        let rtcp_sock = UdpSocket::bind((local_ip, 0)).await.map_err(Refusal::internal)?;
        let server_rtp = rtp_sock.local_addr().map_err(Refusal::internal)?.port();
        let server_rtcp = rtcp_sock.local_addr().map_err(Refusal::internal)?.port();
        self.udp_tasks.push(tokio::spawn(read_rtcp(rtcp_sock, peer.ip(), track, udp_tx.clone())));
        self.udp_tasks.push(tokio::spawn(read_rtp(rtp_sock, peer.ip(), track, udp_tx.clone())));
        self.setup.push(SetupTrack { media, interleaved: None });
        Ok(format!(
            "RTP/AVP/UDP;unicast;client_port={client_rtp}-{client_rtcp};server_port={server_rtp}-{server_rtcp};mode=record"
        ))
    }

    /// RECORD: the tracks set up start flowing into the store.
    pub fn record(&mut self, server: &RtspServer) -> Result<(), Refusal> {
        if self.setup.is_empty() {
            return Err(Refusal::wrong_state("SETUP first"));
        }
        if self.publisher.is_some() {
            return Ok(()); // a repeated RECORD changes nothing
        }
        let specs: Vec<TrackSpec> = self.setup.iter().filter_map(|s| self.specs.get_mut(s.media)?.take()).collect();
        tracing::info!(stream = %self.stream.name, tracks = specs.len(), "RTSP RECORD");
        self.publisher = Some(
            Publisher::new(
                server.store.clone(),
                self.stream.clone(),
                server.clock.clone(),
                server.metrics.clone(),
                specs,
            )
            .with_max_fragment_bytes(server.limits.max_fragment_bytes),
        );
        Ok(())
    }

    /// Whether media arrives over UDP (the TCP connection may then stay silent).
    pub fn recording_over_udp(&self) -> bool {
        !self.udp_tasks.is_empty() && self.publisher.is_some()
    }

    /// An interleaved frame: RTP on a track's channel, RTCP on the one after it.
    pub async fn interleaved(&mut self, channel: u8, payload: &[u8]) -> Result<(), String> {
        if let Some(track) = self.setup.iter().position(|s| s.interleaved == Some(channel)) {
            return self.rtp(track, payload, 0).await;
        }
        if let Some(track) = self.setup.iter().position(|s| s.interleaved.map(|c| c.wrapping_add(1)) == Some(channel)) {
            self.rtcp(track, payload);
        }
        Ok(())
    }

    pub async fn udp(&mut self, packet: UdpPacket) -> Result<(), String> {
        match packet {
            UdpPacket::Rtp { track, lost, data } => self.rtp(track, &data, lost).await,
            UdpPacket::Rtcp { track, data } => {
                self.rtcp(track, &data);
                Ok(())
            }
        }
    }

    async fn rtp(&mut self, track: usize, packet: &[u8], lost: u64) -> Result<(), String> {
        let Some(p) = self.publisher.as_mut() else { return Ok(()) };
        p.packet(track, packet, lost).await.map_err(|e| e.to_string())
    }

    /// A publisher's RTCP: its sender reports anchor the track on its wall clock.
    fn rtcp(&mut self, track: usize, packet: &[u8]) {
        let Some(p) = self.publisher.as_mut() else { return };
        for sr in crate::wire::rtcp::sender_reports(packet) {
            p.sender_report(track, MediaTime::Rtp(sr.rtp_timestamp), sr.ntp);
        }
    }

    /// Ends the publication: UDP readers stop, buffered media becomes the last fragment.
    pub async fn end(&mut self, why: &str) {
        for t in self.udp_tasks.drain(..) {
            t.abort();
        }
        if let Some(mut p) = self.publisher.take() {
            match p.finish().await {
                Ok(stats) => log_stats(why, &stats),
                Err(e) => tracing::warn!(why, error = %e, "RTSP publication ended with an error"),
            }
        }
    }
}

fn log_stats(why: &str, stats: &PublishStats) {
    tracing::info!(
        why,
        fragments = stats.fragments,
        samples = stats.samples,
        waiting_dropped = stats.waiting_dropped,
        packets = stats.depacketize.packets,
        lost = stats.depacketize.lost,
        dropped_units = stats.depacketize.dropped_units,
        malformed = stats.depacketize.malformed,
        "RTSP publication ended"
    );
}

/// A UDP RTP reader: packets from the publisher's address, back in sequence order.
async fn read_rtp(sock: UdpSocket, peer: IpAddr, track: usize, tx: mpsc::Sender<UdpPacket>) {
    let mut reorder = ReorderBuffer::new(UDP_REORDER_DEPTH);
    let mut buf = vec![0u8; 65536];
    while let Ok((n, from)) = sock.recv_from(&mut buf).await {
        if from.ip() != peer || n < 12 {
            continue;
        }
        let seq = u16::from_be_bytes([buf[2], buf[3]]);
        for (lost, p) in reorder.push(seq, buf[..n].to_vec()) {
            if tx.send(UdpPacket::Rtp { track, lost, data: p }).await.is_err() {
                return;
            }
        }
    }
}

async fn read_rtcp(sock: UdpSocket, peer: IpAddr, track: usize, tx: mpsc::Sender<UdpPacket>) {
    let mut buf = vec![0u8; 2048];
    while let Ok((n, from)) = sock.recv_from(&mut buf).await {
        if from.ip() == peer && tx.send(UdpPacket::Rtcp { track, data: buf[..n].to_vec() }).await.is_err() {
            return;
        }
    }
}
