// Publishes the browser's camera to a stream with WHIP (RFC 9725): an SDP offer that
// sends the camera's track(s) is POSTed to /v1/streams/NAME/whip; the answer comes back
// with the session's resource in Location, which DELETE ends. Candidates are gathered
// before the offer is sent (the server takes no trickle ICE).
'use strict';

const $ = (s) => document.querySelector(s);
const params = new URLSearchParams(location.search);
const state = { status: 'idle', error: null, resource: null, stream: null, stats: null };
window.kinescopePublish = state;
let pc = null;
let media = null;

function setStatus(status, text) {
  state.status = status;
  $('#status').textContent = text;
  $('#status').dataset.status = status;
}

// With access keys on the server, WHIP takes a stream's publishing token (Bearer).
function auth() {
  const token = $('#token').value.trim();
  return token ? { authorization: `Bearer ${token}` } : {};
}

async function start(event) {
  if (event) event.preventDefault();
  await stop();
  const name = $('#stream').value.trim();
  if (!name) return;
  state.stream = name;
  state.error = null;
  try {
    setStatus('starting', 'Opening the camera…');
    media = params.get('source') === 'clock' ? clockStream() : await navigator.mediaDevices.getUserMedia({
      video: { width: 640, height: 360, frameRate: 25 },
      audio: $('#audio').checked,
    });
    $('#preview').srcObject = media;
    pc = new RTCPeerConnection();
    for (const track of media.getTracks()) pc.addTransceiver(track, { direction: 'sendonly', streams: [media] });
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((resolve) => {
      if (pc.iceGatheringState === 'complete') return resolve();
      pc.addEventListener('icegatheringstatechange', () => { if (pc.iceGatheringState === 'complete') resolve(); });
      setTimeout(resolve, 3000);
    });
    setStatus('starting', `Offering to ${name}…`);
    const resp = await fetch(`/v1/streams/${encodeURIComponent(name)}/whip`, {
      method: 'POST', headers: { 'content-type': 'application/sdp', ...auth() }, body: pc.localDescription.sdp,
    });
    const body = await resp.text();
    if (resp.status !== 201) {
      let message = body;
      try { message = JSON.parse(body).message || body; } catch (_) { /* SDP or text */ }
      throw new Error(`${resp.status}: ${message}`);
    }
    state.resource = resp.headers.get('location');
    await pc.setRemoteDescription({ type: 'answer', sdp: body });
    pc.addEventListener('connectionstatechange', () => {
      if (pc && pc.connectionState === 'connected') setStatus('publishing', `Publishing to ${name}`);
      if (pc && ['failed', 'closed'].includes(pc.connectionState)) setStatus('error', `Connection ${pc.connectionState}`);
    });
    $('#stop').disabled = false;
  } catch (e) {
    state.error = e.message;
    setStatus('error', `Could not publish: ${e.message}`);
  }
}

// A test source instead of the camera (`?source=clock`): a 640x360 canvas at 25 fps
// with the time it was drawn burned in at the top left (16 blocks of 24 px: the
// milliseconds modulo 65,536, bit b white in block b, and the complement below), which
// a viewer on the same machine reads back for the glass-to-glass delay.
let clockTimer = null;
function clockStream() {
  const canvas = document.createElement('canvas');
  canvas.width = 640;
  canvas.height = 360;
  const g = canvas.getContext('2d');
  const draw = () => {
    const t = Date.now();
    g.fillStyle = '#246';
    g.fillRect(0, 0, 640, 360);
    g.fillStyle = '#fc3';
    g.fillRect((t / 4) % 640, 200, 40, 40);
    g.fillStyle = '#000';
    g.fillRect(0, 0, 384, 48);
    g.fillStyle = '#fff';
    const v = t % 65536;
    for (let b = 0; b < 16; b++) g.fillRect(b * 24, (v >> b) & 1 ? 0 : 24, 24, 24);
  };
  draw();
  clearInterval(clockTimer);
  clockTimer = setInterval(draw, 40);
  return canvas.captureStream(25);
}

async function stop() {
  clearInterval(clockTimer);
  if (state.resource) {
    await fetch(state.resource, { method: 'DELETE', headers: auth() }).catch(() => {});
    state.resource = null;
  }
  if (pc) { pc.close(); pc = null; }
  if (media) { media.getTracks().forEach((t) => t.stop()); media = null; }
  $('#stop').disabled = true;
  if (state.status === 'publishing') setStatus('stopped', 'Stopped.');
}

// What the sender reports: frames encoded and the encoder used, for the tests.
setInterval(async () => {
  if (!pc) return;
  const stats = { framesEncoded: 0, bytesSent: 0, encoder: null, audioPackets: 0 };
  (await pc.getStats()).forEach((s) => {
    if (s.type === 'outbound-rtp' && s.kind === 'video') {
      stats.framesEncoded = s.framesEncoded;
      stats.bytesSent += s.bytesSent;
      stats.encoder = s.encoderImplementation;
    }
    if (s.type === 'outbound-rtp' && s.kind === 'audio') stats.audioPackets = s.packetsSent;
  });
  state.stats = stats;
}, 500);

$('#controls').addEventListener('submit', start);
$('#stop').addEventListener('click', () => stop().then(() => setStatus('stopped', 'Stopped.')));
if (params.get('stream')) $('#stream').value = params.get('stream');
if (params.get('audio') === '1') $('#audio').checked = true;
if (params.get('token')) $('#token').value = params.get('token');
if (params.get('autostart') && $('#stream').value) start();
