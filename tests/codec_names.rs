//! Codec knowledge lives in `src/codec/` only: outside it, no code names a codec
//! variant (`CodecKind::H264`, `CodecParams::Opus(…)`), a codec's module
//! (`codec::h265`, `use crate::codec::{aac, …}`) or a codec's SDP name (`"opus/48000"`,
//! `"MPEG4-GENERIC"`). Callers ask `CodecKind` (`is_video`, `webrtc`, `decoder_name`,
//! `elementary_sample`, …). So adding a codec is its file in `codec/` plus one arm per
//! `match` in `codec/mod.rs`, as ARCHITECTURE.md's VP8 example says.
//!
//! Unit-test modules (from a line `#[cfg(test)]` on) and comments are not checked:
//! tests build fixtures of named codecs on purpose. Adapters of other crates' codec
//! types (retina's `VideoParametersCodec` in `ingest/rtsp_pull.rs`, FFmpeg's decoder ids
//! in `media/opus_pcm.rs`) name *their* types, which this test does not look for.

use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Each `CodecKind` variant and the names SDP and the codec layer give it, lowercase.
const NAMES: [(&str, &[&str]); 4] =
    [("H264", &["h264"]), ("H265", &["h265", "hevc"]), ("Aac", &["aac", "mpeg4-generic"]), ("Opus", &["opus"])];

/// The variants of `pub enum CodecKind` in `src/codec/mod.rs`.
fn codec_variants() -> Vec<String> {
    let text = std::fs::read_to_string(Path::new(ROOT).join("src/codec/mod.rs")).expect("codec/mod.rs");
    let start = text.find("pub enum CodecKind {").expect("the CodecKind enum");
    let body = &text[start + "pub enum CodecKind {".len()..];
    let body = &body[..body.find('}').expect("its end")];
    body.lines()
        .map(|l| l.trim().trim_end_matches(','))
        .filter(|l| !l.is_empty() && !l.starts_with("//") && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// The codec modules: every file of `src/codec/` but `mod.rs` and what codecs share.
fn codec_modules() -> Vec<String> {
    std::fs::read_dir(Path::new(ROOT).join("src/codec"))
        .expect("src/codec")
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".rs").map(str::to_string))
        .filter(|m| m != "mod")
        .collect()
}

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a readable directory") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().and_then(|e| e.to_str()) == Some("rs") {
            out.push(path);
        }
    }
}

/// The code of a file: no comments, nothing from its unit-test module on.
fn code_lines(text: &str) -> Vec<(usize, String)> {
    text.lines()
        .enumerate()
        .take_while(|(_, l)| l.trim() != "#[cfg(test)]")
        .map(|(i, l)| (i + 1, l.split("//").next().unwrap_or_default().to_string()))
        .filter(|(_, l)| !l.trim().is_empty())
        .collect()
}

/// The string literals of a line (simple ones: enough for SDP names).
fn literals(line: &str) -> Vec<String> {
    line.split('"').skip(1).step_by(2).map(str::to_lowercase).collect()
}

fn findings_in(text: &str, variants: &[String], modules: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for (n, line) in code_lines(text) {
        for v in variants {
            for owner in ["CodecKind::", "CodecParams::"] {
                let named = format!("{owner}{v}");
                let at_word_end = line.match_indices(&named).any(|(i, _)| {
                    !line[i + named.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
                });
                if at_word_end {
                    found.push(format!("line {n}: names {named}"));
                }
            }
        }
        for m in modules {
            let path = format!("codec::{m}");
            let in_path = line
                .match_indices(&path)
                .any(|(i, _)| !line[i + path.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_'));
            let in_braces = line.contains("codec::{")
                && line.split("codec::{").nth(1).is_some_and(|rest| {
                    rest.split(['}', ',']).map(str::trim).any(|item| item == m || item.starts_with(&format!("{m}::")))
                });
            if in_path || in_braces {
                found.push(format!("line {n}: names the codec module {m}"));
            }
        }
        for lit in literals(&line) {
            for name in NAMES.iter().flat_map(|(_, names)| names.iter()) {
                let rest = lit.strip_prefix(name);
                if rest.is_some_and(|r| r.is_empty() || r.starts_with('/')) {
                    found.push(format!("line {n}: spells the SDP name \"{lit}\""));
                }
            }
        }
    }
    found
}

#[test]
fn no_code_outside_codec_names_a_codec() {
    let variants = codec_variants();
    assert!(variants.len() >= 4, "CodecKind's variants were not found: {variants:?}");
    for v in &variants {
        assert!(NAMES.iter().any(|(n, _)| n == v), "add {v} and its SDP name(s) to NAMES in this test");
    }
    let modules = codec_modules();
    let src = Path::new(ROOT).join("src");
    let mut files = Vec::new();
    source_files(&src, &mut files);
    let mut report = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).expect("under src");
        if rel.starts_with("codec") {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("a source file");
        for f in findings_in(&text, &variants, &modules) {
            report.push(format!("src/{}: {f}", rel.display()));
        }
    }
    assert!(report.is_empty(), "codec knowledge outside src/codec/:\n{}", report.join("\n"));
}

#[test]
fn the_check_sees_what_it_should() {
    let variants = vec!["H264".to_string(), "Opus".to_string()];
    let modules = vec!["h264".to_string(), "opus".to_string(), "nal".to_string()];
    let bad =
        "fn f() {\n    if k == CodecKind::H264 {}\n    let p = CodecParams::Opus(opus::Params { channels: 2 });\n    \
               use crate::codec::{nal, CodecKind};\n    sdp::offers(o, \"audio\", \"opus/48000\");\n}\n";
    let found = findings_in(bad, &variants, &modules);
    assert_eq!(found.len(), 4, "{found:?}");
    let fine = "fn f() {\n    // CodecKind::H264 in a comment\n    let k = CodecKind::H264Ish;\n    \
                let s = \"video\";\n}\n#[cfg(test)]\nmod tests { const X: CodecKind = CodecKind::H264; }\n";
    assert!(findings_in(fine, &variants, &modules).is_empty());
}
