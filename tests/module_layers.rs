//! The layer table in ARCHITECTURE.md is the rule, and this test enforces it: every
//! `crate::X` a top-level module of `src/` names must be in a lower layer, and every
//! top-level module must be in the table. The table is read from the document, so the
//! two cannot drift apart.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Layer of each top-level module, from the table between the `layers` markers.
fn layer_table() -> BTreeMap<String, u32> {
    let doc = std::fs::read_to_string(Path::new(ROOT).join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let start = doc.find("<!-- layers -->").expect("a <!-- layers --> marker in ARCHITECTURE.md");
    let end = doc.find("<!-- /layers -->").expect("a <!-- /layers --> marker in ARCHITECTURE.md");
    let mut layers = BTreeMap::new();
    for row in doc[start..end].lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let Ok(layer) = cells.get(1).unwrap_or(&"").parse::<u32>() else { continue };
        for module in cells.get(2).unwrap_or(&"").split(',') {
            let module = module.trim().trim_matches('`');
            if !module.is_empty() {
                assert!(layers.insert(module.to_string(), layer).is_none(), "{module} is in the table twice");
            }
        }
    }
    layers
}

/// Every top-level module and the top-level modules its files name through `crate::`.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(ROOT).join("src");
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("src is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let rel = path.strip_prefix(&src).expect("under src");
            let top = rel.components().next().and_then(|c| c.as_os_str().to_str()).unwrap_or_default();
            let top = top.trim_end_matches(".rs").to_string();
            if top == "lib" || top == "main" {
                continue;
            }
            let named = out.entry(top.clone()).or_default();
            let text = std::fs::read_to_string(&path).expect("a source file");
            for line in text.lines() {
                let code = line.split("//").next().unwrap_or_default();
                let mut rest = code;
                while let Some(at) = rest.find("crate::") {
                    rest = &rest[at + "crate::".len()..];
                    let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                    if !name.is_empty() && name != top {
                        named.insert(name);
                    }
                }
            }
        }
    }
    out
}

#[test]
fn every_import_goes_to_a_lower_layer() {
    let layers = layer_table();
    let imports = imports();
    let mut broken = Vec::new();
    for (module, named) in &imports {
        let Some(&own) = layers.get(module) else {
            broken.push(format!("{module} is not in the layer table"));
            continue;
        };
        for other in named.iter().filter(|n| imports.contains_key(*n)) {
            match layers.get(other) {
                Some(&l) if l < own => {}
                Some(&l) => broken.push(format!("{module} (layer {own}) imports {other} (layer {l})")),
                None => broken.push(format!("{other} is not in the layer table")),
            }
        }
    }
    assert!(broken.is_empty(), "the layer table in ARCHITECTURE.md is broken:\n{}", broken.join("\n"));
    assert!(imports["wire"].iter().all(|n| !imports.contains_key(n)), "wire imports nothing of the crate");
}
