// The KVS WebRTC SDK for JavaScript's SignalingClient, unmodified, as master and as
// viewers of one channel through Kinescope's signalling WebSocket (Node, `ws`).
// Prints one JSON object of what each side saw; tests/integration/test_signaling.py
// asserts on it.
//
//   node web/tests/signaling_sdk.mjs CHANNEL_ARN WSS_ENDPOINT REGION KEY SECRET
// The server's certificate comes in through NODE_EXTRA_CA_CERTS.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
globalThis.WebSocket = require('ws');
const { SignalingClient, Role } = require('amazon-kinesis-video-streams-webrtc');

const [channelARN, channelEndpoint, region, accessKeyId, secretAccessKey] = process.argv.slice(2);
const credentials = { accessKeyId, secretAccessKey };

function client(role, clientId) {
  const c = new SignalingClient({ channelARN, channelEndpoint, role, region, credentials, clientId });
  c.seen = [];
  for (const event of ['sdpOffer', 'sdpAnswer', 'iceCandidate', 'statusResponse']) {
    c.on(event, (payload, sender) => c.seen.push({ event, payload, sender }));
  }
  c.closed = new Promise((resolve) => c.on('close', resolve));
  c.on('error', (e) => c.seen.push({ event: 'error', payload: String(e && e.message || e) }));
  return c;
}

function open(c) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('open timed out')), 10000);
    c.once('open', () => { clearTimeout(t); resolve(); });
    c.open();
  });
}

async function until(predicate, what) {
  const end = Date.now() + 10000;
  while (!predicate()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const offer = { type: 'offer', sdp: 'v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n' };
const answer = { type: 'answer', sdp: 'v=0\r\no=- 3 4 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n' };
const candidate = { candidate: 'candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host', sdpMid: '0', sdpMLineIndex: 0 };
const out = {};

// An offer sent while no master is connected waits for the master (MessageTtlSeconds).
const early = client(Role.VIEWER, 'early-viewer');
await open(early);
early.sendSdpOffer(offer);
await new Promise((r) => setTimeout(r, 200));

const master = client(Role.MASTER);
await open(master);
await until(() => master.seen.some((s) => s.sender === 'early-viewer'), 'the held offer');
out.heldOffer = master.seen.find((s) => s.sender === 'early-viewer');

const viewer = client(Role.VIEWER, 'viewer-1');
await open(viewer);
viewer.sendSdpOffer(offer);
await until(() => master.seen.some((s) => s.event === 'sdpOffer' && s.sender === 'viewer-1'), 'the offer');
master.sendSdpAnswer(answer, 'viewer-1');
await until(() => viewer.seen.some((s) => s.event === 'sdpAnswer'), 'the answer');
viewer.sendIceCandidate(candidate);
master.sendIceCandidate(candidate, 'viewer-1');
await until(() => viewer.seen.some((s) => s.event === 'iceCandidate'), "the master's candidate");
await until(() => master.seen.some((s) => s.event === 'iceCandidate' && s.sender === 'viewer-1'), "the viewer's candidate");
out.master = master.seen.filter((s) => s.sender === 'viewer-1').map((s) => ({ event: s.event, payload: s.payload }));
out.viewer = viewer.seen.map((s) => ({ event: s.event, payload: s.payload }));

// To a viewer that is not there, with a correlation id: a status response.
master.sendIceCandidate(candidate, 'nobody', 'corr-1');
await until(() => master.seen.some((s) => s.event === 'statusResponse'), 'the status response');
out.status = master.seen.find((s) => s.event === 'statusResponse').payload;

// The same client id again replaces the older connection.
const again = client(Role.VIEWER, 'viewer-1');
await open(again);
await Promise.race([viewer.closed, new Promise((_, rej) => setTimeout(() => rej(new Error('not replaced')), 10000))]);
out.replacedClosed = true;
master.sendSdpAnswer(answer, 'viewer-1');
await until(() => again.seen.some((s) => s.event === 'sdpAnswer'), 'the answer on the newer connection');
out.newerGotAnswer = true;

for (const c of [early, master, again]) c.close();
console.log(JSON.stringify(out));
process.exit(0);
