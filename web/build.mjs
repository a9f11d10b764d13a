// Puts the third-party code the pages use into dist/vendor, where the server's build
// (build.rs) embeds it: the players and the KVS WebRTC SDK copied from node_modules,
// and the AWS SDK for JavaScript v3 Kinesis Video clients bundled with esbuild. Run by
// scripts/setup after `npm ci`.
import { copyFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const vendor = join(here, 'dist', 'vendor');
mkdirSync(vendor, { recursive: true });
const files = {
  'hls.min.js': 'node_modules/hls.js/dist/hls.min.js',
  'dash.all.min.js': 'node_modules/dashjs/dist/modern/umd/dash.all.min.js',
  'kvs-webrtc.min.js': 'node_modules/amazon-kinesis-video-streams-webrtc/dist/kvs-webrtc.min.js',
};
for (const [name, from] of Object.entries(files)) {
  copyFileSync(join(here, from), join(vendor, name));
  console.log(`web: ${from} -> dist/vendor/${name}`);
}
await build({
  entryPoints: [join(here, 'aws-kvs-entry.js')],
  bundle: true,
  minify: true,
  format: 'iife',
  globalName: 'AwsKvs',
  platform: 'browser',
  target: ['chrome120'],
  outfile: join(vendor, 'aws-kvs.js'),
  logLevel: 'warning',
});
console.log('web: @aws-sdk/client-kinesis-video(-signaling) -> dist/vendor/aws-kvs.js');
