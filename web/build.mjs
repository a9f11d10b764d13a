// Copies the players the page uses from node_modules into dist/vendor, where the
// server's build (build.rs) embeds them. Run by scripts/setup after `npm ci`.
import { copyFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const vendor = join(here, 'dist', 'vendor');
mkdirSync(vendor, { recursive: true });
const files = {
  'hls.min.js': 'node_modules/hls.js/dist/hls.min.js',
  'dash.all.min.js': 'node_modules/dashjs/dist/modern/umd/dash.all.min.js',
};
for (const [name, from] of Object.entries(files)) {
  copyFileSync(join(here, from), join(vendor, name));
  console.log(`web: ${from} -> dist/vendor/${name}`);
}
