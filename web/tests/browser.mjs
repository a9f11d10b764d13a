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
