// The watch page: lists the server's streams and plays one with hls.js or dash.js,
// through the same session URLs boto3's kinesis-video-archived-media client gets.
//
// Query parameters pre-fill and start playback: ?stream=NAME&player=hls|dash
// &mode=LIVE|ON_DEMAND&from=ISO-8601&autoplay=1. `window.kinescope` exposes the
// player's state for scripts and tests.
'use strict';

const $ = (sel) => document.querySelector(sel);
const video = $('#video');
const state = { status: 'idle', error: null, player: null, url: null };
window.kinescope = state;
const params = new URLSearchParams(location.search);
let hls = null;
let dash = null;

function setStatus(status, text) {
  state.status = status;
  $('#status').textContent = text;
  $('#status').dataset.status = status;
}

async function api(path, body) {
  const resp = await fetch(path, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body || {}),
  });
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
    const streams = await fetch('/v1/streams').then(async (r) => {
      const json = await r.json();
      if (!r.ok) throw new Error(`${json.__type || r.status}: ${json.Message || json.message || ''}`);
      return json.Streams;
    });
    tbody.replaceChildren();
    for (const s of streams) {
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
    $('#server-note').textContent = `Cannot list streams (${e.message}). ` +
      'With access keys configured, the page needs anonymous access; use the SDKs instead.';
  }
}

function stop() {
  if (hls) { hls.destroy(); hls = null; }
  if (dash) { dash.reset(); dash = null; }
  video.removeAttribute('src');
}

function selector(mode) {
  if (mode === 'LIVE') return undefined;
  const from = $('#from').value ? new Date($('#from').value).getTime() / 1000 : Date.now() / 1000 - 3600;
  const now = Date.now() / 1000 - 0.1;
  const end = Math.min(from + 24 * 3600 - 1, now);
  return { FragmentSelectorType: 'SERVER_TIMESTAMP', TimestampRange: { StartTimestamp: from, EndTimestamp: end } };
}

async function play(event) {
  if (event) event.preventDefault();
  stop();
  const name = $('#stream').value.trim();
  const player = $('#player').value;
  const mode = $('#mode').value;
  if (!name) return;
  state.player = player;
  state.error = null;
  setStatus('loading', `Opening ${name} (${player.toUpperCase()}, ${mode})…`);
  try {
    if (player === 'hls') {
      const { HLSStreamingSessionURL: url } = await api('/getHLSStreamingSessionURL', {
        StreamName: name,
        PlaybackMode: mode,
        DiscontinuityMode: 'ON_DISCONTINUITY',
        HLSFragmentSelector: selector(mode),
        Expires: 43200,
      });
      state.url = url;
      if (window.Hls && Hls.isSupported()) {
        hls = new Hls({ debug: Boolean(params.get('debug')) });
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
    } else {
      const { DASHStreamingSessionURL: url } = await api('/getDASHStreamingSessionURL', {
        StreamName: name,
        PlaybackMode: mode,
        DASHFragmentSelector: selector(mode),
        Expires: 43200,
      });
      state.url = url;
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
    fail(e.message);
  }
}

function fail(message) {
  state.error = message;
  setStatus('error', message);
}

video.addEventListener('playing', () => setStatus('playing', `Playing ${$('#stream').value} (${state.player.toUpperCase()})`));
video.addEventListener('timeupdate', () => {
  if (state.status === 'playing') {
    $('#status').dataset.time = video.currentTime.toFixed(2);
  }
});
$('#mode').addEventListener('change', () => { $('#from-label').hidden = $('#mode').value === 'LIVE'; });
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
$('#from-label').hidden = $('#mode').value === 'LIVE';
loadStreams();
if (params.get('autoplay') && $('#stream').value) play();
