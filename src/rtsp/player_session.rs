//! A viewer on one RTSP connection: DESCRIBE (the newest init segment's tracks as SDP),
//! SETUP per track over TCP-interleaved transport, PLAY; then
//! [`crate::playback::rtsp_play::follow`] sends the stored fragments as RTP from the
//! newest one on, following the live edge.

use tokio::sync::mpsc;

use super::{Refusal, RtspServer};
use crate::codec::CodecParams;
use crate::playback::rtsp_play::PlayTrack;
use crate::scope::Scope;
use crate::video_store::{StoreError, StreamRecord};
use crate::wire::rtsp::{self, Request, Transport};
use crate::wire::sdp::{self, MediaDescription};

/// The first dynamic RTP payload type; track i is offered as 96 + i.
const FIRST_PAYLOAD_TYPE: u8 = 96;

pub struct PlayerSession {
    stream: StreamRecord,
    /// What DESCRIBE offered: (stored track id, codec) per SDP media section.
    offer: Vec<(u32, CodecParams)>,
    /// What SETUP chose.
    tracks: Vec<PlayTrack>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl PlayerSession {
    /// DESCRIBE: the session and the SDP to answer.
    pub fn describe(server: &RtspServer, req: &Request, scope: &Scope) -> Result<(Self, String), Refusal> {
        let name = rtsp::path_of(&req.uri);
        let stream = match server.store.resolve(scope, Some(&name), None) {
            Ok(r) => r,
            Err(StoreError::StreamNotFound(_)) => {
                return Err(Refusal::not_found(format!("stream {name} does not exist")))
            }
            Err(e) => return Err(Refusal::internal(e)),
        };
        let offer = crate::playback::rtsp_play::describe(&server.store, &stream)
            .map_err(Refusal::internal)?
            .filter(|o| !o.is_empty())
            .ok_or_else(|| Refusal::not_found(format!("stream {name} has no media yet")))?;
        let media: Vec<MediaDescription> = offer
            .iter()
            .enumerate()
            .map(|(i, (_, p))| {
                let mut m = p.sdp_media(FIRST_PAYLOAD_TYPE + i as u8);
                m.control = Some(format!("trackID={i}"));
                m
            })
            .collect();
        let sdp = sdp::write(&name, &media);
        Ok((PlayerSession { stream, offer, tracks: Vec::new(), task: None }, sdp))
    }

    /// SETUP of one offered track (`…/trackID=N`); returns the Transport header.
    pub fn setup(&mut self, req: &Request, transport: &Transport) -> Result<String, Refusal> {
        if !transport.tcp {
            return Err(Refusal::unsupported_transport("playing is served over TCP (interleaved) only"));
        }
        let i = req
            .uri
            .rsplit_once("trackID=")
            .and_then(|(_, n)| n.trim_end_matches('/').parse::<usize>().ok())
            .unwrap_or(self.tracks.len());
        let Some((track_id, codec)) = self.offer.get(i).cloned() else {
            return Err(Refusal::not_found(format!("no track for {}", req.uri)));
        };
        let (rtp_ch, rtcp_ch) = transport.interleaved.unwrap_or((2 * i as u8, 2 * i as u8 + 1));
        self.tracks.push(PlayTrack { track_id, codec, payload_type: FIRST_PAYLOAD_TYPE + i as u8, channel: rtp_ch });
        Ok(format!("RTP/AVP/TCP;unicast;interleaved={rtp_ch}-{rtcp_ch}"))
    }

    /// PLAY: starts sending; interleaved frames go to `out`, which the connection writes.
    pub fn play(&mut self, server: &RtspServer, out: mpsc::Sender<Vec<u8>>) -> Result<(), Refusal> {
        if self.tracks.is_empty() {
            return Err(Refusal::wrong_state("SETUP first"));
        }
        if self.task.is_none() {
            tracing::info!(stream = %self.stream.name, tracks = self.tracks.len(), "RTSP PLAY");
            let follow =
                crate::playback::rtsp_play::follow(server.store.clone(), self.stream.clone(), self.tracks.clone(), out);
            self.task = Some(tokio::spawn(follow));
        }
        Ok(())
    }

    /// Whether media is being sent (the viewer may then stay silent).
    pub fn playing(&self) -> bool {
        self.task.is_some()
    }

    pub fn end(&mut self, why: &str) {
        if let Some(t) = self.task.take() {
            t.abort();
            tracing::info!(why, "RTSP viewer left");
        }
    }
}
