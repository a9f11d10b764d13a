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
import { launch, options } from './browser.mjs';

const opts = options({ ice: 'all', timeout: '40' });

const browser = await launch([
  '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
  // Host candidates as addresses: a server-side peer (a storage session) resolves no mDNS.
  ...(opts.only ? ['--disable-features=WebRtcHideLocalIpsWithMdns'] : []),
  // The server's certificate is self-signed (data/tls/); the test trusts it.
  '--ignore-certificate-errors',
]);
const result = { ok: false, console: [], master: null, viewer: null, samples: [] };
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const open = async (role) => {
    const page = await context.newPage();
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') result.console.push(`${role}: ${m.text()}`);
    });
    page.on('pageerror', (e) => result.console.push(`${role} pageerror: ${e.message}`));
    const q = new URLSearchParams({ channel: opts.channel, role, key: opts.key, secret: opts.secret, ice: opts.ice, autostart: '1' });
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
    throw Object.assign(new Error('done'), { done: true });
  }
  // The master is listening before the viewer offers (an earlier offer would wait
  // for it anyway, for MessageTtlSeconds).
  await master.waitForFunction(() => window.call.status.startsWith('master: waiting') || window.call.error, null, { timeout: 20000 });
  const viewer = await open('viewer');
  const deadline = Date.now() + Number(opts.timeout) * 1000;
  let first = null;
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
    if (v.connection === 'connected' && v.width > 0) {
      if (first === null) first = v.time;
      else if (v.time > first + 1.0) { result.ok = true; break; }
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
} catch (e) {
  if (!e.done) result.console.push(`test: ${e.message}`);
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
