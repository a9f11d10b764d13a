// Two-party WebRTC call through a Kinescope signalling channel, as the KVS WebRTC
// sample does it against AWS: the control plane through the AWS SDK for JavaScript v3
// (window.AwsKvs: KinesisVideoClient, KinesisVideoSignalingClient, bundled by
// web/build.mjs) and signalling through the KVS WebRTC SDK (window.KVSWebRTC).
// State for tests and the curious: window.call.
'use strict';

const call = (window.call = { status: 'idle', error: null, connection: null, ice: null, role: null, joined: false });

function status(text) {
  call.status = text;
  document.getElementById('status').textContent = text;
}

function fail(e) {
  call.error = String((e && e.message) || e);
  status(`error: ${call.error}`);
  console.error(e);
}

async function start(form) {
  const role = form.role.value;
  const region = form.region.value;
  const credentials = { accessKeyId: form.key.value, secretAccessKey: form.secret.value };
  const endpoint = location.origin;
  const kv = new AwsKvs.KinesisVideoClient({ region, endpoint, credentials });
  call.role = role;
  status('finding the channel');
  let channelARN;
  try {
    channelARN = (await kv.send(new AwsKvs.DescribeSignalingChannelCommand({ ChannelName: form.channel.value })))
      .ChannelInfo.ChannelARN;
  } catch (e) {
    if (e.name !== 'ResourceNotFoundException') throw e;
    channelARN = (await kv.send(new AwsKvs.CreateSignalingChannelCommand({ ChannelName: form.channel.value })))
      .ChannelARN;
  }
  const ingest = form.ingest.checked;
  const endpoints = await kv.send(new AwsKvs.GetSignalingChannelEndpointCommand({
    ChannelARN: channelARN,
    SingleMasterChannelEndpointConfiguration: {
      Protocols: ingest ? ['WSS', 'HTTPS', 'WEBRTC'] : ['WSS', 'HTTPS'],
      Role: role.toUpperCase(),
    },
  }));
  const by = Object.fromEntries(endpoints.ResourceEndpointList.map((e) => [e.Protocol, e.ResourceEndpoint]));
  const signalingApi = new AwsKvs.KinesisVideoSignalingClient({ region, endpoint: by.HTTPS, credentials });
  const clientId = role === 'viewer' ? `viewer-${Math.random().toString(36).slice(2, 10)}` : undefined;
  const ice = await signalingApi.send(new AwsKvs.GetIceServerConfigCommand({ ChannelARN: channelARN, ClientId: clientId }));
  const iceServers = ice.IceServerList.map((s) => ({ urls: s.Uris, username: s.Username, credential: s.Password }));
  const rtcConfig = { iceServers, iceTransportPolicy: form.ice.value };
  const signaling = new KVSWebRTC.SignalingClient({
    channelARN,
    channelEndpoint: by.WSS,
    role: role === 'master' ? KVSWebRTC.Role.MASTER : KVSWebRTC.Role.VIEWER,
    clientId,
    region,
    credentials,
  });
  call.signaling = signaling;
  // kinesis-video-webrtc-storage, at the WEBRTC endpoint, signed like the SDK signs.
  const join = ingest
    ? () => storageCall(by.WEBRTC, region, credentials, role === 'master'
      ? ['/joinStorageSession', { channelArn: channelARN }]
      : ['/joinStorageSessionAsViewer', { channelArn: channelARN, clientId }])
    : null;
  if (role === 'master') await master(signaling, rtcConfig, join);
  else if (join) await sessionViewer(signaling, rtcConfig, join);
  else await viewer(signaling, rtcConfig);
}

async function storageCall(endpoint, region, credentials, [path, input]) {
  const body = JSON.stringify(input);
  const headers = { 'content-type': 'application/json' };
  const r = await signedFetch(new URL(path, endpoint), { method: 'POST', headers, body }, credentials, region);
  if (!r.ok) throw new Error(`${path.slice(1)}: ${r.status} ${await r.text()}`);
  call.joined = true;
}

function watch(pc) {
  pc.addEventListener('connectionstatechange', () => {
    call.connection = pc.connectionState;
    status(`peer connection ${pc.connectionState}`);
  });
  pc.addEventListener('iceconnectionstatechange', () => (call.ice = pc.iceConnectionState));
}

async function master(signaling, rtcConfig, join) {
  status('opening the camera');
  const local = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: true });
  document.getElementById('local').srcObject = local;
  const peers = new Map();
  call.peers = peers;
  // What viewers send back (a storage session sends the voices of its viewers).
  const remote = document.getElementById('remote');
  signaling.on('sdpOffer', async (offer, viewerId) => {
    const pc = new RTCPeerConnection(rtcConfig);
    peers.set(viewerId, pc);
    watch(pc);
    pc.addEventListener('icecandidate', ({ candidate }) => {
      if (candidate) signaling.sendIceCandidate(candidate, viewerId);
    });
    pc.addEventListener('track', ({ streams }) => {
      if (streams[0] && remote.srcObject !== streams[0]) remote.srcObject = streams[0];
    });
    local.getTracks().forEach((t) => pc.addTrack(t, local));
    await pc.setRemoteDescription(offer);
    await pc.setLocalDescription(await pc.createAnswer());
    signaling.sendSdpAnswer(pc.localDescription, viewerId);
  });
  signaling.on('iceCandidate', (candidate, viewerId) => {
    const pc = peers.get(viewerId);
    if (pc) pc.addIceCandidate(candidate).catch(fail);
  });
  signaling.on('open', async () => {
    status('master: waiting for viewers');
    if (join) await join().then(() => status('master: joined the storage session'), fail);
  });
  signaling.on('error', fail);
  signaling.open();
}

// A viewer in the channel's storage session: the session offers, this page answers with
// its microphone, and plays what the session sends (the master's camera, the others'
// voices).
async function sessionViewer(signaling, rtcConfig, join) {
  status('opening the microphone');
  const mic = await navigator.mediaDevices.getUserMedia({ audio: true });
  const pc = new RTCPeerConnection(rtcConfig);
  call.pc = pc;
  watch(pc);
  const remote = document.getElementById('remote');
  const heard = new MediaStream();
  pc.addEventListener('track', ({ track }) => {
    heard.addTrack(track);
    if (remote.srcObject !== heard) remote.srcObject = heard;
  });
  pc.addEventListener('icecandidate', ({ candidate }) => {
    if (candidate) signaling.sendIceCandidate(candidate);
  });
  signaling.on('sdpOffer', async (offer) => {
    await pc.setRemoteDescription(offer);
    const audio = pc.getTransceivers().find((t) => t.receiver.track.kind === 'audio');
    if (audio) {
      audio.direction = 'sendrecv';
      await audio.sender.replaceTrack(mic.getAudioTracks()[0]);
    }
    await pc.setLocalDescription(await pc.createAnswer());
    signaling.sendSdpAnswer(pc.localDescription);
  });
  signaling.on('iceCandidate', (candidate) => pc.addIceCandidate(candidate).catch(fail));
  signaling.on('open', async () => {
    status('viewer: joining the storage session');
    await join().then(() => status('viewer: waiting for the storage session'), fail);
  });
  signaling.on('error', fail);
  signaling.open();
}

async function viewer(signaling, rtcConfig) {
  const pc = new RTCPeerConnection(rtcConfig);
  call.pc = pc;
  watch(pc);
  pc.addTransceiver('video', { direction: 'recvonly' });
  pc.addTransceiver('audio', { direction: 'recvonly' });
  const remote = document.getElementById('remote');
  pc.addEventListener('track', ({ streams }) => {
    if (streams[0] && remote.srcObject !== streams[0]) remote.srcObject = streams[0];
  });
  pc.addEventListener('icecandidate', ({ candidate }) => {
    if (candidate) signaling.sendIceCandidate(candidate);
  });
  signaling.on('open', async () => {
    status('viewer: sending the offer');
    await pc.setLocalDescription(await pc.createOffer());
    signaling.sendSdpOffer(pc.localDescription);
  });
  signaling.on('sdpAnswer', (answer) => pc.setRemoteDescription(answer).catch(fail));
  signaling.on('iceCandidate', (candidate) => pc.addIceCandidate(candidate).catch(fail));
  signaling.on('error', fail);
  signaling.open();
}

const form = document.getElementById('controls');
const params = new URLSearchParams(location.search);
for (const name of ['channel', 'role', 'region', 'key', 'secret', 'ice']) {
  if (params.has(name)) form[name].value = params.get(name);
}
form.ingest.checked = params.get('ingest') === '1';
form.addEventListener('submit', (e) => {
  e.preventDefault();
  start(form).catch(fail);
});
if (params.get('autostart') === '1') start(form).catch(fail);
