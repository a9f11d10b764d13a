//! ARCHITECTURE.md's code map lists every source file: a file of `src/` that its
//! section does not name fails this test, so a new module is mapped when it lands.
//!
//! The map is the fenced block after `## Code map`. Its sections start at a line
//! beginning with `src/` (a top-level file, or a folder such as `src/queues/`); a file
//! `src/DIR/…/NAME.rs` is listed when the section of `src/DIR/` names `NAME.rs` (or, for
//! a `mod.rs`, its folder `NAME/`); a top-level file when a section starts with its path.

use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code map's sections: (the `src/…` they start with, their text).
fn sections() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(Path::new(ROOT).join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let start = text.find("## Code map").expect("a code map");
    let block = &text[start..];
    let open = block.find("```").expect("its block") + 3;
    let block = &block[open..];
    let block = &block[..block.find("```").expect("the block's end")];
    let mut out: Vec<(String, String)> = Vec::new();
    for line in block.lines() {
        if let Some(head) = line.strip_prefix("src/") {
            let name = head.split_whitespace().next().unwrap_or_default();
            out.push((format!("src/{name}"), String::new()));
        }
        if let Some((_, body)) = out.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    out
}

#[test]
fn the_code_map_lists_every_source_file() {
    let mut files = Vec::new();
    sources(&Path::new(ROOT).join("src"), &mut files);
    let sections = sections();
    let mut missing = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(ROOT).expect("under the crate").to_string_lossy().replace('\\', "/");
        let parts: Vec<&str> = rel.split('/').collect();
        let listed = if parts.len() == 2 {
            sections.iter().any(|(head, _)| *head == rel)
        } else {
            let section = format!("src/{}/", parts[1]);
            let name = match parts[parts.len() - 1] {
                "mod.rs" if parts.len() > 3 => format!("{}/", parts[parts.len() - 2]),
                "mod.rs" => String::new(),
                other => other.to_string(),
            };
            sections.iter().any(|(head, body)| *head == section && body.contains(&name))
        };
        if !listed {
            missing.push(rel);
        }
    }
    missing.sort();
    assert!(missing.is_empty(), "files the code map in ARCHITECTURE.md does not list:\n{}", missing.join("\n"));
}
