//! Embeds the watch page's third-party players (built by `npm run build` in `web/`,
//! which the README's commands run). Without them the binary still builds, and the
//! page says what to run.

use std::path::Path;

fn main() {
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    for name in ["hls.min.js", "dash.all.min.js", "kvs-webrtc.min.js", "aws-kvs.js"] {
        let from = Path::new("web/dist/vendor").join(name);
        println!("cargo:rerun-if-changed={}", from.display());
        let to = Path::new(&out).join(name);
        if std::fs::copy(&from, &to).is_err() {
            let stub = format!(
                "console.error('{name} was not built into this binary: run scripts/setup (npm ci and npm run build in web/), then rebuild');"
            );
            std::fs::write(&to, stub).expect("OUT_DIR is writable");
        }
    }
    println!("cargo:rerun-if-changed=web/dist/vendor");
}
