// Publishes Chromium's fake camera (and microphone) to a stream through the publish page
// (/publish, WHIP), for SECONDS once connected, then stops (DELETE on the session).
// Prints one JSON line: the page's state, the sender's stats, the console; exit 0 when
// it published. Driven by tests/integration/test_whip.py.
//
//   node web/tests/whip.mjs --url http://127.0.0.1:PORT --stream NAME [--seconds 6]
//        [--audio 1] [--screenshot out.png] [--keep 1 (do not stop)]
//        [--token T]       (a publishing token: sent as Authorization: Bearer)
//        [--source clock]  (the page's clock canvas instead of the fake camera: a
//                           glass-to-glass source, see publish.js)
import { launch, options, report } from './browser.mjs';

const opts = options({ seconds: 6, timeout: 30 });
const browser = await launch([
  '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
]);
const result = { ok: false, console: [] };
await report(browser, result, async () => {
  const page = await browser.newPage({ viewport: { width: 900, height: 700 } });
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') result.console.push(m.text()); });
  page.on('pageerror', (e) => result.console.push(`pageerror: ${e.message}`));
  const extra = (opts.audio ? '&audio=1' : '') + (opts.source ? `&source=${opts.source}` : '')
    + (opts.token ? `&token=${encodeURIComponent(opts.token)}` : '');
  await page.goto(`${opts.url}/publish?stream=${encodeURIComponent(opts.stream)}&autostart=1${extra}`);
  const deadline = Date.now() + Number(opts.timeout) * 1000;
  let state = null;
  while (Date.now() < deadline) {
    state = await page.evaluate(() => ({ ...window.kinescopePublish }));
    if (state.status === 'publishing' || state.status === 'error') break;
    await page.waitForTimeout(100);
  }
  result.connected = state && state.status === 'publishing';
  if (result.connected) {
    await page.waitForTimeout(Number(opts.seconds) * 1000);
    state = await page.evaluate(() => ({ ...window.kinescopePublish }));
  }
  result.state = state;
  if (opts.screenshot) await page.screenshot({ path: opts.screenshot });
  if (!opts.keep) {
    await page.click('#stop');
    await page.waitForTimeout(500);
    result.stopped = await page.evaluate(() => window.kinescopePublish.status);
  }
  result.ok = Boolean(result.connected && state.stats && state.stats.framesEncoded > 0);
});
