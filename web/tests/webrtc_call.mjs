// Two Chromium pages call each other through a Kinescope signalling channel with the
// KVS WebRTC SDK and the AWS SDK v3, unmodified (web/src/webrtc.js): the master sends
// Chromium's fake camera, the viewer must reach "connected" and play it (videoWidth
// set, currentTime advancing). Prints one JSON line; exit 0 when the viewer played.
//
//   node web/tests/webrtc_call.mjs --origin https://127.0.0.1:PORT --channel NAME
//        --key K --secret S [--ice all|relay] [--timeout 40]
//        [--only master --seconds N]  (the master alone, for N seconds: for a viewer
//                                      that is not a page, such as a storage session;
//                                      exit 0 when its peer connection connected)
//        [--ingest 1]  (the storage session in the call: the master page calls
//                       JoinStorageSession, the viewer page JoinStorageSessionAsViewer and
//                       answers the session's offer; exit 0 when the viewer played the
//                       master's video and each side received the other's voice)
import { launch, options, report } from './browser.mjs';

const opts = options({ ice: 'all', timeout: '40' });

const browser = await launch([
  '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
  // Host candidates as addresses: a server-side peer (a storage session) resolves no mDNS.
  ...(opts.only || opts.ingest ? ['--disable-features=WebRtcHideLocalIpsWithMdns'] : []),
  // The server's certificate is self-signed (data/tls/); the test trusts it.
  '--ignore-certificate-errors',
  // Web Audio measures what each side hears.
  '--autoplay-policy=no-user-gesture-required',
]);
const result = { ok: false, console: [], master: null, viewer: null, samples: [] };
// The audio a page's peer connections received: packets (inbound-rtp) and how loud it plays.
async function audioIn() {
  const pcs = window.call.peers ? [...window.call.peers.values()] : [window.call.pc];
  const out = { packets: 0 };
  for (const pc of pcs) {
    (await pc.getStats()).forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'audio') {
        out.packets += s.packetsReceived || 0;
      }
    });
  }
  // The loudest sample played from the remote stream over a second (Web Audio).
  const remote = document.getElementById('remote');
  if (remote.srcObject && remote.srcObject.getAudioTracks().length) {
    const ctx = new AudioContext();
    await ctx.resume();
    const analyser = ctx.createAnalyser();
    ctx.createMediaStreamSource(remote.srcObject).connect(analyser);
    const buf = new Float32Array(analyser.fftSize);
    let peak = 0;
    for (let i = 0; i < 40; i++) {
      analyser.getFloatTimeDomainData(buf);
      for (const v of buf) peak = Math.max(peak, Math.abs(v));
      await new Promise((r) => setTimeout(r, 25));
    }
    out.peak = peak;
    await ctx.close();
  }
  return out;
}
await report(browser, result, async () => {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const open = async (role) => {
    const page = await context.newPage();
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') result.console.push(`${role}: ${m.text()}`);
    });
    page.on('pageerror', (e) => result.console.push(`${role} pageerror: ${e.message}`));
    const q = new URLSearchParams({ channel: opts.channel, role, key: opts.key, secret: opts.secret, ice: opts.ice, autostart: '1', ingest: opts.ingest || '0' });
    await page.goto(`${opts.origin}/webrtc?${q}`, { waitUntil: 'load' });
    return page;
  };
  const master = await open('master');
  if (opts.only === 'master') {
    const until = Date.now() + Number(opts.seconds || 10) * 1000;
    let connectedAt = null;
    while (Date.now() < until) {
      const m = await master.evaluate(() => ({ status: window.call.status, error: window.call.error, connection: window.call.connection }));
      result.samples.push(m);
      if (result.samples.length > 20) result.samples.shift();
      if (m.connection === 'connected' && connectedAt === null) connectedAt = Date.now();
      if (m.error) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    result.master = result.samples[result.samples.length - 1];
    result.connectedFor = connectedAt === null ? 0 : (Date.now() - connectedAt) / 1000;
    result.ok = connectedAt !== null;
    return;
  }
  // The master is listening before the viewer offers (an earlier offer would wait
  // for it anyway, for MessageTtlSeconds).
  const ready = opts.ingest ? 'master: joined' : 'master: waiting';
  await master.waitForFunction((r) => window.call.status.startsWith(r) || window.call.error, ready, { timeout: 20000 });
  const viewer = await open('viewer');
  const deadline = Date.now() + Number(opts.timeout) * 1000;
  let first = null;
  let connectedAt = null;
  while (Date.now() < deadline) {
    const v = await viewer.evaluate(() => {
      const video = document.getElementById('remote');
      const stats = window.call.pc ? window.call.pc.getStats() : null;
      return { status: window.call.status, error: window.call.error, connection: window.call.connection,
        width: video.videoWidth, height: video.videoHeight, time: video.currentTime };
    });
    result.samples.push(v);
    if (result.samples.length > 20) result.samples.shift();
    if (v.error) break;
    if (v.connection === 'connected' && connectedAt === null) connectedAt = Date.now();
    if (v.connection === 'connected' && v.width > 0) {
      if (first === null) {
        first = v.time;
        // From the connection to the first picture (a keyframe), to the 250 ms poll.
        result.firstPictureMs = Date.now() - connectedAt;
      }
      else if (v.time > first + 1.0 && !opts.ingest) { result.ok = true; break; }
      else if (v.time > first + 3.0) {
        // Long enough for voices (Chromium's fake microphone beeps) to cross the mix.
        result.heard = { viewer: await viewer.evaluate(audioIn), master: await master.evaluate(audioIn) };
        result.ok = result.heard.viewer.peak > 0.05 && result.heard.master.peak > 0.05;
        break;
      }
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  result.viewer = result.samples[result.samples.length - 1];
  result.master = await master.evaluate(() => ({ status: window.call.status, error: window.call.error, connection: window.call.connection }));
  // Which candidate pair carried the call (host, or relay through TURN).
  result.pair = await viewer.evaluate(async () => {
    const stats = await window.call.pc.getStats();
    let pair = null;
    stats.forEach((s) => { if (s.type === 'candidate-pair' && s.state === 'succeeded' && s.nominated) pair = s; });
    if (!pair) return null;
    const local = stats.get(pair.localCandidateId);
    const remote = stats.get(pair.remoteCandidateId);
    return { local: local && local.candidateType, remote: remote && remote.candidateType };
  });
});
