// Opens a Kinescope watch-page URL in headless Chromium and checks that the video
// plays: the page reaches "playing" and video.currentTime advances. Prints one JSON
// line with what it saw and saves a screenshot.
//
//   node web/tests/play.mjs --url URL --screenshot out.png [--click STREAM] [--timeout 40]
//        [--keys KEY:SECRET]   (sign in through the page's form first)
//        [--timeline 1]        (click the first recorded range on the stream's timeline)
//        [--overlay 1]         (after playback advances, wait for detections drawn over it)
//        [--sample SECONDS]    (after playback advances, sample the live delay every 250 ms)
//        [--clock 1]           (with --sample: also read the clock burned into the frames,
//                               the glass-to-glass delay; see browser.mjs)
//
// Exit status 0 when playback advanced, 1 otherwise. Driven by
// tests/integration/test_browser.py.
import { installBurnedClockReader, launch, options, report } from './browser.mjs';

const opts = options({ timeout: 40, advance: 1.0 });
opts.timeout = Number(opts.timeout);
opts.advance = Number(opts.advance);
const browser = await launch();
const result = { ok: false, url: opts.url, samples: [], console: [] };
await report(browser, result, async () => {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  if (opts.clock) await installBurnedClockReader(page);
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning' || process.env.PLAY_LOG) result.console.push(m.text());
  });
  page.on('pageerror', (e) => result.console.push(`pageerror: ${e.message}`));
  page.on('response', (r) => {
    if (r.status() >= 400) result.console.push(`${r.status()} ${r.url().replace(/SessionToken=[^&]+/, 'SessionToken=…')}`);
  });
  await page.goto(opts.url, { waitUntil: 'load' });
  if (opts.keys) {
    // The server has keys: sign in the way a person would, through the form.
    const [key, secret] = opts.keys.split(':');
    await page.locator('#signin').waitFor({ state: 'visible', timeout: 10000 });
    await page.fill('#signin input[name=key]', key);
    await page.fill('#signin input[name=secret]', secret);
    await page.click('#signin button[type=submit]');
    await page.locator('#signout').waitFor({ state: 'visible', timeout: 10000 });
  }
  if (opts.timeline) {
    // Play first (to load the stream's timeline), then click into its first range.
    await page.waitForFunction(() => window.kinescope.timeline.ranges.length > 0, null, { timeout: 20000 });
    const range = page.locator('#timeline .range').first();
    await range.click({ position: { x: 0, y: 5 } });
    result.timelineRanges = await page.evaluate(() => window.kinescope.timeline.ranges.length);
  }
  if (opts.click) {
    const row = page.locator(`#streams tbody tr[data-stream="${opts.click}"]`);
    await row.waitFor({ timeout: 10000 });
    await row.click();
  }
  const deadline = Date.now() + opts.timeout * 1000;
  let first = null;
  while (Date.now() < deadline) {
    const s = await page.evaluate(() => ({
      status: window.kinescope.status,
      error: window.kinescope.error,
      time: document.querySelector('#video').currentTime,
      ended: document.querySelector('#video').ended,
    }));
    result.samples.push(s);
    if (s.status === 'error') break;
    if (s.status === 'playing' && first === null) first = s.time;
    if (first !== null && (s.time >= first + opts.advance || (s.ended && s.time > 0))) {
      result.ok = true;
      break;
    }
    await page.waitForTimeout(250);
  }
  if (result.ok && opts.overlay) {
    // Detections drawn over the video: wait for a frame with boxes, and the screenshot
    // is taken while they show.
    result.ok = false;
    const overlayDeadline = Date.now() + 20000;
    while (Date.now() < overlayDeadline) {
      const o = await page.evaluate(() => {
        const { drawn, frameMs, fragment, items } = window.kinescope.overlay;
        return { drawn, frameMs, fragment, items: items.length, playing: window.kinescope.status };
      });
      result.overlay = o;
      if (o.drawn > 0) {
        result.ok = true;
        break;
      }
      await page.waitForTimeout(50);
    }
  }
  if (result.ok && opts.sample) {
    result.delays = [];
    const until = Date.now() + Number(opts.sample) * 1000;
    while (Date.now() < until) {
      result.delays.push(await page.evaluate(async (clock) => ({
        measured: window.kinescope.measuredDelay,
        estimate: window.kinescope.latency,
        status: window.kinescope.status,
        glass: clock ? await window.readBurnedClock(document.querySelector('#video')) : null,
      }), Boolean(opts.clock)));
      await page.waitForTimeout(250);
    }
  }
  result.final = result.samples[result.samples.length - 1];
  result.rows = await page.$$eval('#streams tbody tr', (rows) => rows.map((r) => r.textContent));
  result.rtspUrl = await page.$eval('#rtsp-url', (e) => e.value);
  result.samples = result.samples.slice(-8);
  if (opts.screenshot) await page.screenshot({ path: opts.screenshot });
});
