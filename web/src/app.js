// The watch page: lists the server's streams and plays one with hls.js or dash.js,
// through the same session URLs boto3's kinesis-video-archived-media client gets.
//
// Query parameters pre-fill and start playback: ?stream=NAME&player=hls|dash
// &mode=LIVE|ON_DEMAND&from=ISO-8601&autoplay=1. `window.kinescope` exposes the
// player's state for scripts and tests.
//
// With access keys configured on the server, sign in with one: the page then signs its
// API requests with SigV4 in the browser (the AWS SDK's own signer, @smithy/signature-v4,
// bundled as window.AwsKvs). The key stays in this tab's sessionStorage and goes nowhere
// but into signatures; no cookie, so no CSRF to defend against.
'use strict';

const $ = (sel) => document.querySelector(sel);
const video = $('#video');
const state = { status: 'idle', error: null, player: null, url: null };
window.kinescope = state;
const params = new URLSearchParams(location.search);
let hls = null;
let dash = null;
let whep = null; // { pc, resource }

function setStatus(status, text) {
  state.status = status;
  $('#status').textContent = text;
  $('#status').dataset.status = status;
}

const KEYS = 'kinescope.keys';
// Each listed stream's RTSP URL (GET /v1/streams), shown to copy beside the session URL.
const rtspUrls = new Map();

function keys() {
  try {
    return JSON.parse(sessionStorage.getItem(KEYS) || 'null');
  } catch (_) {
    return null;
  }
}

// fetch(), signed with SigV4 (service kinesisvideo) when signed in.
async function call(path, method, body, contentType = 'application/json') {
  const headers = { 'content-type': contentType };
  const k = keys();
  if (!k || !window.AwsKvs) return fetch(path, { method, headers, body });
  const credentials = { accessKeyId: k.accessKeyId, secretAccessKey: k.secretAccessKey };
  return signedFetch(path, { method, headers, body }, credentials, k.region);
}

async function api(path, body) {
  const resp = await call(path, 'POST', JSON.stringify(body || {}));
  const json = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const code = json.__type || resp.status;
    throw new Error(`${code}: ${json.Message || json.message || resp.statusText}`);
  }
  return json;
}

function when(seconds) {
  if (!seconds) return '—';
  return new Date(seconds * 1000).toLocaleString();
}

// A pulled camera's state, from GET /v1/streams (credentials are never in it).
function sourceText(source) {
  if (!source) return '—';
  const st = source.status || {};
  if (st.connected) {
    const mbps = (st.bitrate_bps || 0) / 1e6;
    return `camera · ${Math.round(st.frames_per_second || 0)} fps · ${mbps.toFixed(1)} Mbit/s`;
  }
  return `camera · reconnecting${st.last_error ? `: ${st.last_error}` : ''}`;
}

async function loadStreams() {
  const tbody = $('#streams tbody');
  try {
    const streams = await call('/v1/streams', 'GET').then(async (r) => {
      const json = await r.json();
      if (!r.ok) {
        const e = new Error(`${json.__type || r.status}: ${json.Message || json.message || ''}`);
        e.status = r.status;
        throw e;
      }
      return json.Streams;
    });
    $('#server-note').textContent = keys() ? `signed in as ${keys().accessKeyId}` : '';
    $('#signin').hidden = true;
    $('#signout').hidden = !keys();
    tbody.replaceChildren();
    rtspUrls.clear();
    for (const s of streams) {
      if (s.RtspUrl) rtspUrls.set(s.StreamName, s.RtspUrl);
      const row = document.createElement('tr');
      row.dataset.stream = s.StreamName;
      const cells = [
        s.StreamName,
        s.Status,
        s.DataRetentionInHours ? `${s.DataRetentionInHours} h` : 'none',
        when(s.LastFragment && s.LastFragment.ServerTimestamp),
        sourceText(s.Source),
      ];
      for (const c of cells) {
        const td = document.createElement('td');
        td.textContent = c;
        row.appendChild(td);
      }
      row.addEventListener('click', () => {
        $('#stream').value = s.StreamName;
        play();
      });
      tbody.appendChild(row);
    }
    $('#streams-empty').hidden = streams.length > 0;
  } catch (e) {
    if (e.status === 403 || e.status === 400) {
      // Keys are configured on the server: ask for one.
      $('#signin').hidden = false;
      $('#server-note').textContent = keys() ? `Signed requests refused (${e.message}).` : 'Sign in with an access key.';
    } else {
      $('#server-note').textContent = `Cannot list streams (${e.message}).`;
    }
  }
}

$('#signin').addEventListener('submit', (e) => {
  e.preventDefault();
  const f = e.target;
  sessionStorage.setItem(KEYS, JSON.stringify({
    accessKeyId: f.key.value.trim(), secretAccessKey: f.secret.value, region: f.region.value.trim() || 'us-east-1',
  }));
  f.secret.value = '';
  loadStreams();
});
$('#signout').addEventListener('click', () => {
  sessionStorage.removeItem(KEYS);
  $('#signout').hidden = true;
  loadStreams();
});

// The recorded ranges of the last 24 hours, from ListFragments (SERVER_TIMESTAMP), drawn
// as a bar; a click plays ON_DEMAND from that moment.
const DAY_S = 24 * 3600;
const timeline = { stream: null, from: 0, to: 0, ranges: [] };
state.timeline = timeline;

async function loadTimeline(name) {
  const to = Date.now() / 1000;
  const from = to - DAY_S;
  const fragments = [];
  let token;
  do {
    const page = await api('/listFragments', token ? { StreamName: name, NextToken: token } : {
      StreamName: name,
      MaxResults: 1000,
      FragmentSelector: {
        FragmentSelectorType: 'SERVER_TIMESTAMP',
        TimestampRange: { StartTimestamp: from, EndTimestamp: to },
      },
    });
    fragments.push(...(page.Fragments || []));
    token = page.NextToken;
  } while (token && fragments.length < 20000);
  // Adjacent fragments (less than a second apart) make one range.
  const spans = fragments
    .map((f) => [f.ServerTimestamp, f.ServerTimestamp + f.FragmentLengthInMilliseconds / 1000])
    .sort((a, b) => a[0] - b[0]);
  const ranges = [];
  for (const [a, b] of spans) {
    const last = ranges[ranges.length - 1];
    if (last && a - last[1] < 1) last[1] = Math.max(last[1], b);
    else ranges.push([a, b]);
  }
  Object.assign(timeline, { stream: name, from, to, ranges, starts: spans.map(([a]) => a) });
  drawTimeline();
}

function drawTimeline() {
  const bar = $('#timeline');
  bar.replaceChildren();
  const span = timeline.to - timeline.from;
  // Short recordings would be invisible on a day: the bar zooms to what exists.
  const first = timeline.ranges.length ? timeline.ranges[0][0] : timeline.from;
  const start = Math.max(timeline.from, Math.min(first - 60, timeline.to - 600));
  timeline.shownFrom = start;
  const width = timeline.to - start || span;
  for (const [a, b] of timeline.ranges) {
    const el = document.createElement('div');
    el.className = 'range';
    el.style.left = `${((a - start) / width) * 100}%`;
    el.style.width = `${((b - a) / width) * 100}%`;
    el.title = `${new Date(a * 1000).toLocaleString()} – ${new Date(b * 1000).toLocaleTimeString()}`;
    bar.appendChild(el);
  }
  $('#timeline-start').textContent = new Date(start * 1000).toLocaleString();
  $('#timeline-panel').hidden = false;
}

$('#timeline').addEventListener('click', (e) => {
  const rect = e.currentTarget.getBoundingClientRect();
  const at = timeline.shownFrom + ((e.clientX - rect.left) / rect.width) * (timeline.to - timeline.shownFrom);
  // Snap into the range clicked (or the next one), to the start of the fragment there:
  // a time selects the fragments that start after it.
  // Past the last range (a click on its last pixel, say): the last range.
  const range = timeline.ranges.find(([, b]) => b > at) || timeline.ranges[timeline.ranges.length - 1];
  if (!range) return;
  const inside = Math.max(at, range[0]);
  const t = timeline.starts.filter((a) => a >= range[0] && a <= inside).pop() ?? range[0];
  const local = new Date(t * 1000 - new Date().getTimezoneOffset() * 60000);
  $('#from').value = local.toISOString().slice(0, 19);
  $('#mode').value = 'ON_DEMAND';
  showModeFields();
  play();
});

// The live delay, two ways. Measured (HLS): now minus the time the frame showing reached
// the server — its fragment's ServerTimestamp (when the fragment began to arrive, from
// ListFragments) plus the frame's offset into the fragment; the producer's capture and
// encoding come before that, a frame or two on a local network. Estimated: what the
// player itself reports (hls.js's latency, dash.js's live latency).
const arrivals = new Map(); // fragment number → ServerTimestamp (s)
let arrivalsFetching = false;

async function learnArrivals(name) {
  if (arrivalsFetching) return;
  arrivalsFetching = true;
  try {
    const to = Date.now() / 1000;
    const page = await api('/listFragments', {
      StreamName: name,
      MaxResults: 1000,
      FragmentSelector: {
        FragmentSelectorType: 'SERVER_TIMESTAMP',
        TimestampRange: { StartTimestamp: to - 120, EndTimestamp: to },
      },
    });
    for (const f of page.Fragments || []) arrivals.set(f.FragmentNumber, f.ServerTimestamp);
  } catch (e) {
    console.warn(`arrivals: ${e.message}`);
  } finally {
    arrivalsFetching = false;
  }
}

// WHEP: the receiver's jitter buffer per frame, what WebRTC itself holds.
setInterval(async () => {
  if (!whep) return;
  (await whep.pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video' && s.jitterBufferEmittedCount) {
      if (whep) whep.jitter = s.jitterBufferDelay / s.jitterBufferEmittedCount;
    }
  });
}, 1000);

setInterval(() => {
  let latency = null;
  if (hls && state.mode === 'LIVE' && hls.latency) latency = hls.latency;
  if (dash && dash.isDynamic && dash.isDynamic()) latency = dash.getCurrentLiveLatency();
  if (whep) latency = whep.jitter || null;
  state.latency = latency;
  let measured = null;
  const f = playingFragment;
  if (f && state.mode === 'LIVE' && state.status === 'playing') {
    const arrived = arrivals.get(f.number);
    if (arrived === undefined) learnArrivals($('#stream').value.trim());
    else measured = Date.now() / 1000 - (arrived + (video.currentTime - f.start));
  }
  state.measuredDelay = measured;
  const parts = [];
  if (measured !== null) parts.push(`live delay ${measured.toFixed(2)} s (measured)`);
  if (latency && whep) parts.push(`WebRTC jitter buffer ${(latency * 1000).toFixed(0)} ms`);
  else if (latency) parts.push(`player's estimate ${latency.toFixed(1)} s`);
  $('#latency').textContent = parts.join(', ');
}, 250);

function copyField(input) {
  input.select();
  navigator.clipboard?.writeText(input.value).catch(() => document.execCommand('copy'));
}
$('#copy-rtsp').addEventListener('click', () => copyField($('#rtsp-url')));
$('#copy-url').addEventListener('click', () => {
  copyField($('#session-url'));
});

function stop() {
  playingFragment = null;
  if (hls) { hls.destroy(); hls = null; }
  if (dash) { dash.reset(); dash = null; }
  if (whep) {
    if (whep.resource) call(whep.resource, 'DELETE').catch(() => {});
    whep.pc.close();
    whep = null;
    video.srcObject = null;
  }
  video.removeAttribute('src');
}

// WHEP: the stream's video over WebRTC, frames as the camera sends them (a live RTSP,
// WHIP or camera source; a PutMedia stream a GOP behind). The offer is sent once its
// candidates are gathered (the server takes no trickle ICE).
async function playWhep(name, mine) {
  const pc = new RTCPeerConnection();
  whep = { pc, resource: null };
  pc.addTransceiver('video', { direction: 'recvonly' });
  pc.addTransceiver('audio', { direction: 'recvonly' });
  const media = new MediaStream();
  pc.ontrack = (e) => {
    media.addTrack(e.track);
    video.srcObject = media;
    video.play().catch(() => {});
  };
  pc.onconnectionstatechange = () => {
    if (['failed', 'closed'].includes(pc.connectionState) && whep && whep.pc === pc) fail(`WebRTC ${pc.connectionState}`);
  };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve();
    pc.addEventListener('icegatheringstatechange', () => { if (pc.iceGatheringState === 'complete') resolve(); });
    setTimeout(resolve, 3000);
  });
  const resp = await call(`/v1/streams/${encodeURIComponent(name)}/whep`, 'POST', pc.localDescription.sdp, 'application/sdp');
  const body = await resp.text();
  if (resp.status !== 201) {
    let message = body;
    try { const j = JSON.parse(body); message = `${j.__type}: ${j.Message || j.message}`; } catch (_) { /* text */ }
    throw new Error(message);
  }
  if (mine !== generation) return;
  whep.resource = resp.headers.get('location');
  state.url = new URL(`/v1/streams/${encodeURIComponent(name)}/whep`, location.origin).href;
  showSession(state.url);
  await pc.setRemoteDescription({ type: 'answer', sdp: body });
}

function selector(mode) {
  if (mode === 'LIVE') return undefined;
  const from = $('#from').value ? new Date($('#from').value).getTime() / 1000 : Date.now() / 1000 - 3600;
  const now = Date.now() / 1000 - 0.1;
  const end = Math.min(from + 24 * 3600 - 1, now);
  return { FragmentSelectorType: 'SERVER_TIMESTAMP', TimestampRange: { StartTimestamp: from, EndTimestamp: end } };
}

// Each play() supersedes the ones before: a slow answer to an older one (an error
// especially) must not overwrite what the newer one shows.
let generation = 0;

async function play(event) {
  if (event) event.preventDefault();
  const mine = ++generation;
  stop();
  const name = $('#stream').value.trim();
  const player = $('#player').value;
  const mode = $('#mode').value;
  if (!name) return;
  state.player = player;
  state.mode = mode;
  state.error = null;
  if (timeline.stream !== name) loadTimeline(name).catch((e) => console.warn(`timeline: ${e.message}`));
  setStatus('loading', `Opening ${name} (${player.toUpperCase()}, ${mode})…`);
  try {
    if (player === 'hls') {
      // LowLatency is Kinescope's extension of the call (LL-HLS parts, blocking reloads).
      const lowLatency = mode === 'LIVE' && $('#lowlatency').checked;
      state.lowLatency = lowLatency;
      const { HLSStreamingSessionURL: url } = await api('/getHLSStreamingSessionURL', {
        StreamName: name,
        PlaybackMode: mode,
        DiscontinuityMode: 'ON_DISCONTINUITY',
        HLSFragmentSelector: selector(mode),
        Expires: 43200,
        ...(lowLatency ? { LowLatency: true } : {}),
        // ?container=MPEG_TS: transport-stream segments, for players that need them.
        ...(!lowLatency && params.get('container') === 'MPEG_TS' ? { ContainerFormat: 'MPEG_TS' } : {}),
      });
      if (mine !== generation) return;
      state.url = url;
      showSession(url);
      if (window.Hls && Hls.isSupported()) {
        hls = new Hls({ debug: Boolean(params.get('debug')), lowLatencyMode: lowLatency });
        hls.on(Hls.Events.FRAG_CHANGED, (_, data) => {
          const changed = fragmentOf(data.frag);
          const fresh = changed && (!playingFragment || playingFragment.number !== changed.number);
          playingFragment = changed;
          // A fragment not in what was fetched: fetch from it now.
          if (fresh && !overlay.items.some((d) => d.fragmentNumber === changed.number)) refreshDetections();
        });
        hls.on(Hls.Events.ERROR, (_, data) => {
          if (data.fatal) fail(`hls.js: ${data.type} ${data.details}`);
        });
        hls.loadSource(url);
        hls.attachMedia(video);
      } else if (video.canPlayType('application/vnd.apple.mpegurl')) {
        video.src = url;
      } else {
        throw new Error('this browser plays neither MSE nor native HLS');
      }
    } else if (player === 'whep') {
      if (mode !== 'LIVE') throw new Error('WebRTC (WHEP) plays the live stream only; choose Live');
      await playWhep(name, mine);
    } else {
      const { DASHStreamingSessionURL: url } = await api('/getDASHStreamingSessionURL', {
        StreamName: name,
        PlaybackMode: mode,
        DASHFragmentSelector: selector(mode),
        Expires: 43200,
      });
      if (mine !== generation) return;
      state.url = url;
      showSession(url);
      dash = dashjs.MediaPlayer().create();
      if (params.get('debug')) dash.updateSettings({ debug: { logLevel: dashjs.Debug.LOG_LEVEL_DEBUG } });
      dash.on(dashjs.MediaPlayer.events.ERROR, (e) => fail(`dash.js: ${JSON.stringify(e.error || e)}`));
      // dash.js starts playback itself; calling play() before it listens to the
      // element would hide the 'play' event it needs to keep refreshing a live MPD.
      video.muted = true;
      dash.initialize(video, url, true);
      return;
    }
    video.muted = true;
    await video.play().catch(() => {});
  } catch (e) {
    if (mine === generation) fail(e.message);
  }
}

function showSession(url) {
  $('#session-url').value = url;
  const rtsp = rtspUrls.get($('#stream').value.trim());
  $('#rtsp-url').value = rtsp || '';
  $('#rtsp').hidden = !rtsp;
  $('#session').hidden = false;
}

function fail(message) {
  state.error = message;
  setStatus('error', message);
}

video.addEventListener('playing', () => {
  setStatus('playing', `Playing ${$('#stream').value} (${state.player.toUpperCase()})`);
  refreshDetections();
});
video.addEventListener('timeupdate', () => {
  if (state.status === 'playing') {
    $('#status').dataset.time = video.currentTime.toFixed(2);
  }
});
// Detections over the video: the stream's frame metadata (records of the data stream
// bound with PUT /v1/streams/NAME/metadata, fetched from /v1/streams/NAME/detections),
// drawn at the frame showing. hls.js says which stored fragment plays (its URL names it)
// and where in it; each detection comes with its fragmentNumber and fragmentOffsetMs,
// so no clock has to agree with another. Boxes are {x, y, w, h} as fractions of the
// picture, with a label and a score. (HLS only: dash.js's segments do not name fragments.)
const overlay = { stream: null, items: [], drawn: 0, frameMs: null, fragment: null, fetching: false };
state.overlay = overlay;
let playingFragment = null; // { number, start } from hls.js

function fragmentOf(frag) {
  const m = /[?&]FragmentNumber=(\d+)/.exec(frag.relurl || frag.url || '');
  if (m) return { number: m[1], start: frag.start };
  // A low-latency segment still being received has parts but no URI yet; in LIVE
  // sessions its media sequence number is its fragment number.
  if (state.mode === 'LIVE' && Number.isFinite(frag.sn)) return { number: String(frag.sn), start: frag.start };
  return null;
}

async function refreshDetections() {
  const name = $('#stream').value.trim();
  if (!name || !playingFragment || overlay.fetching) return;
  overlay.fetching = true;
  try {
    const q = `fragment=${playingFragment.number}&count=10`;
    const r = await call(`/v1/streams/${encodeURIComponent(name)}/detections?${q}`, 'GET');
    if (r.ok) {
      const json = await r.json();
      Object.assign(overlay, { stream: name, items: json.Detections || [] });
    }
  } catch (e) {
    console.warn(`detections: ${e.message}`);
  } finally {
    overlay.fetching = false;
  }
}
setInterval(() => { if (state.status === 'playing') refreshDetections(); }, 2000);

// The rectangle the picture fills inside the <video> element (letterboxed).
function pictureRect() {
  const w = video.clientWidth;
  const h = video.clientHeight;
  const vw = video.videoWidth || w;
  const vh = video.videoHeight || h;
  const scale = Math.min(w / vw, h / vh);
  return { x: (w - vw * scale) / 2, y: (h - vh * scale) / 2, w: vw * scale, h: vh * scale };
}

function drawOverlay() {
  const canvas = $('#overlay');
  const ratio = window.devicePixelRatio || 1;
  if (canvas.width !== video.clientWidth * ratio || canvas.height !== video.clientHeight * ratio) {
    canvas.width = video.clientWidth * ratio;
    canvas.height = video.clientHeight * ratio;
    canvas.style.width = `${video.clientWidth}px`;
    canvas.style.height = `${video.clientHeight}px`;
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  let frame = null;
  let boxes = [];
  const f = playingFragment;
  if (f && overlay.stream === $('#stream').value.trim()) {
    const at = (video.currentTime - f.start) * 1000;
    const here = overlay.items.filter((d) => d.fragmentNumber === f.number);
    for (const d of here) {
      if (d.fragmentOffsetMs <= at && (frame === null || d.fragmentOffsetMs > frame)) frame = d.fragmentOffsetMs;
    }
    // A frame's boxes stay up until the next sampled frame, at most 0.5 s.
    if (frame !== null && at - frame <= 500) boxes = here.filter((d) => d.fragmentOffsetMs === frame);
    else frame = null;
  }
  const pic = pictureRect();
  ctx.lineWidth = 2;
  ctx.font = '13px sans-serif';
  for (const b of boxes) {
    const x = pic.x + b.x * pic.w;
    const y = pic.y + b.y * pic.h;
    ctx.strokeStyle = '#ff2d55';
    ctx.strokeRect(x, y, b.w * pic.w, b.h * pic.h);
    const label = `${b.label || ''}${b.score !== undefined ? ` ${Number(b.score).toFixed(2)}` : ''}`;
    if (label.trim()) {
      ctx.fillStyle = '#ff2d55';
      ctx.fillText(label, x + 3, Math.max(12, y - 4));
    }
  }
  overlay.drawn = boxes.length;
  overlay.frameMs = frame;
  overlay.fragment = f ? f.number : null;
  canvas.dataset.boxes = String(boxes.length);
  requestAnimationFrame(drawOverlay);
}
requestAnimationFrame(drawOverlay);

function showModeFields() {
  const live = $('#mode').value === 'LIVE';
  $('#from-label').hidden = live;
  $('#lowlatency-label').hidden = !(live && $('#player').value === 'hls');
}
$('#mode').addEventListener('change', showModeFields);
$('#player').addEventListener('change', showModeFields);
$('#controls').addEventListener('submit', play);
$('#refresh').addEventListener('click', loadStreams);

for (const key of ['stream', 'player', 'mode']) {
  if (params.get(key)) $(`#${key}`).value = params.get(key);
}
if (params.get('from')) {
  const d = new Date(params.get('from'));
  const local = new Date(d.getTime() - d.getTimezoneOffset() * 60000);
  $('#from').value = local.toISOString().slice(0, 19);
}
if (params.get('lowlatency') === '0') $('#lowlatency').checked = false;
showModeFields();
loadStreams().then(() => {
  if (params.get('autoplay') && $('#stream').value) play();
});
