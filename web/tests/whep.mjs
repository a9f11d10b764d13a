// A WHEP viewer in headless Chromium: posts an SDP offer (recvonly video) to
// /v1/streams/NAME/whep on the page's own origin, applies the answer, and checks that the
// video plays (videoWidth > 0, currentTime advancing). Prints one JSON line; exit 0 on
// success. Driven by tests/integration/test_whep.py.
//
//   node web/tests/whep.mjs --url http://127.0.0.1:PORT --stream NAME --screenshot out.png
//        [--sample SECONDS]  (then sample the receiver's delay every 250 ms: its jitter
//                             buffer, and now minus the sender time of the frame playing
//                             out, from RTCP sender reports — estimatedPlayoutTimestamp)
//        [--clock 1]         (with --sample: also read the clock burned into the frames,
//                             the glass-to-glass delay; see browser.mjs)
import { installBurnedClockReader, launch, options, report } from './browser.mjs';

const opts = options({ timeout: 40 });
// Host candidates as addresses, not mDNS names the server cannot resolve.
const browser = await launch(['--disable-features=WebRtcHideLocalIpsWithMdns']);
const result = { ok: false, console: [] };
await report(browser, result, async () => {
  const page = await browser.newPage({ viewport: { width: 800, height: 600 } });
  page.on('console', (m) => { if (m.type() === 'error') result.console.push(m.text()); });
  if (opts.clock) await installBurnedClockReader(page);
  await page.goto(`${opts.url}/health`);
  const out = await page.evaluate(async ({ stream, timeout, sample, clock }) => {
    const pc = new RTCPeerConnection();
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    const video = document.createElement('video');
    video.muted = true;
    video.autoplay = true;
    video.playsInline = true;
    document.body.appendChild(video);
    const media = new MediaStream();
    pc.ontrack = (e) => { media.addTrack(e.track); video.srcObject = media; video.play().catch(() => {}); };
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((resolve) => {
      if (pc.iceGatheringState === 'complete') return resolve();
      pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === 'complete') resolve(); };
      setTimeout(resolve, 3000);
    });
    const resp = await fetch(`/v1/streams/${stream}/whep`, {
      method: 'POST', headers: { 'content-type': 'application/sdp' }, body: pc.localDescription.sdp,
    });
    const answer = await resp.text();
    const report = { status: resp.status, location: resp.headers.get('location'), type: resp.headers.get('content-type') };
    if (resp.status !== 201) return { ...report, answer };
    await pc.setRemoteDescription({ type: 'answer', sdp: answer });
    const deadline = Date.now() + timeout * 1000;
    let first = null;
    while (Date.now() < deadline) {
      if (video.videoWidth > 0 && first === null) first = video.currentTime;
      if (first !== null && video.currentTime > first + 1.0) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const stats = await pc.getStats();
    let pair = null;
    stats.forEach((s) => { if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s; });
    let framesDecoded = 0;
    stats.forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') framesDecoded = s.framesDecoded; });
    const delays = [];
    const until = Date.now() + sample * 1000;
    while (Date.now() < until) {
      (await pc.getStats()).forEach((s) => {
        if (s.type !== 'inbound-rtp' || s.kind !== 'video') return;
        const buffer = s.jitterBufferEmittedCount ? (s.jitterBufferDelay / s.jitterBufferEmittedCount) * 1000 : null;
        // estimatedPlayoutTimestamp is NTP time in ms (since 1900) on the sender's clock,
        // the same machine's clock here.
        const playout = s.estimatedPlayoutTimestamp ? Date.now() + 2208988800000 - s.estimatedPlayoutTimestamp : null;
        delays.push({ buffer, playout });
      });
      if (clock && delays.length) delays[delays.length - 1].glass = await window.readBurnedClock(video);
      await new Promise((r) => setTimeout(r, 250));
    }
    let audioPackets = 0;
    (await pc.getStats()).forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'audio') audioPackets = s.packetsReceived; });
    const deleted = await fetch(report.location, { method: 'DELETE' });
    return {
      ...report,
      connection: pc.connectionState,
      width: video.videoWidth,
      height: video.videoHeight,
      played: first === null ? 0 : video.currentTime - first,
      framesDecoded,
      audioPackets,
      pair: pair ? { local: pair.localCandidateId, remote: pair.remoteCandidateId } : null,
      deleted: deleted.status,
      delays,
    };
  }, { stream: opts.stream, timeout: Number(opts.timeout), sample: Number(opts.sample || 0), clock: Boolean(opts.clock) });
  Object.assign(result, out);
  result.ok = out.status === 201 && out.width > 0 && out.played >= 1.0;
  if (opts.screenshot) await page.screenshot({ path: opts.screenshot });
});
