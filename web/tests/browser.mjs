// What the browser test runners (play.mjs, webrtc_call.mjs, whep.mjs) share: their
// `--name value` arguments, and Debian's Chromium started headless with the flags this
// machine's closed network needs.
import { chromium } from 'playwright-core';

/** `--name value` pairs from the command line over `defaults`. */
export function options(defaults = {}) {
  const out = { ...defaults };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) out[argv[i].replace(/^--/, '')] = argv[i + 1];
  return out;
}

/** Chromium (CHROMIUM, else /usr/bin/chromium) with the common flags and `extra`. */
export function launch(extra = []) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--autoplay-policy=no-user-gesture-required',
      ...extra,
    ],
  });
}

/**
 * Defines `window.readBurnedClock(video)` in every page: the glass-to-glass delay of the
 * frame `video` presents next, in ms, read from the clock a producer burned into it
 * (bench/live_delay.sh's ffmpeg filter): at the top left, 16 blocks of BLOCK px carry
 * the capture time's milliseconds modulo 65,536, bit b in block b (white = 1), and the
 * row below carries the complement, so a frame the codec smeared reads as null. The
 * delay is now minus that time, modulo 65.5 s (producer and browser share this clock).
 */
export async function installBurnedClockReader(page) {
  await page.addInitScript(() => {
    const BLOCK = 24;
    const BITS = 16;
    let canvas = null;
    window.readBurnedClock = (video) => new Promise((resolve) => {
      if (!video || !video.videoWidth || !video.requestVideoFrameCallback) return resolve(null);
      const timer = setTimeout(() => resolve(null), 1000);
      video.requestVideoFrameCallback(() => {
        clearTimeout(timer);
        const now = Date.now();
        canvas = canvas || document.createElement('canvas');
        canvas.width = BITS * BLOCK;
        canvas.height = 2 * BLOCK;
        const g = canvas.getContext('2d', { willReadFrequently: true });
        g.drawImage(video, 0, 0, canvas.width, canvas.height, 0, 0, canvas.width, canvas.height);
        const px = g.getImageData(0, 0, canvas.width, canvas.height).data;
        const bit = (b, row) => {
          const x = b * BLOCK + BLOCK / 2;
          const y = row * BLOCK + BLOCK / 2;
          const i = (y * canvas.width + x) * 4;
          return (px[i] + px[i + 1] + px[i + 2]) / 3 > 128 ? 1 : 0;
        };
        let value = 0;
        for (let b = 0; b < BITS; b++) {
          if (bit(b, 0) === bit(b, 1)) return resolve(null);
          value |= bit(b, 0) << b;
        }
        resolve((((now % 65536) - value) + 65536) % 65536);
      });
    });
  });
}

// Runs a test's body, then closes the browser, prints `result` as one JSON line and
// exits 0 when `result.ok`: what every runner ends with. An error thrown by the body
// lands in `result.error`.
export async function report(browser, result, body) {
  try {
    await body();
  } catch (e) {
    result.error = String(e);
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(result));
  process.exit(result.ok ? 0 : 1);
}
