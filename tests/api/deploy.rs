//! Checks of the deploy files that need no Docker engine (none runs on the
//! machines this is built on): the image's build stage copies everything
//! the build reads.

use std::path::{Path, PathBuf};

/// Every file `include_str!`/`include_bytes!` pulls in, and `build.rs`,
/// lies under a path the Dockerfile's build stage copies.
#[test]
fn the_image_build_copies_what_the_build_reads() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dockerfile = std::fs::read_to_string(root.join("deploy/Dockerfile")).unwrap();
    // The first stage (the text after the first FROM, up to the next).
    let build_stage = dockerfile.split("\nFROM ").nth(1).unwrap_or("");
    let copied: Vec<String> = build_stage
        .lines()
        .filter_map(|l| l.strip_prefix("COPY "))
        .filter(|l| !l.starts_with("--from"))
        .flat_map(|l| {
            let parts: Vec<&str> = l.split_whitespace().collect();
            parts[..parts.len() - 1]
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    let mut needed = vec![root.join("build.rs"), root.join("Cargo.lock")];
    let include = regex::Regex::new(r#"include_(?:str|bytes)!\("([^"]+)"\)"#).unwrap();
    let mut stack = vec![root.join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().map(Result::unwrap) {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for c in include.captures_iter(&text) {
                    let target = path.parent().unwrap().join(&c[1]);
                    needed.push(std::fs::canonicalize(&target).unwrap_or(target));
                }
            }
        }
    }
    let root = std::fs::canonicalize(&root).unwrap();
    let missing: Vec<_> = needed
        .iter()
        .map(|p| std::fs::canonicalize(p).unwrap_or(p.clone()))
        .filter(|p| !p.starts_with(&root) || !covered_in(&root, &copied, p))
        .collect();
    assert!(
        missing.is_empty(),
        "deploy/Dockerfile's build stage does not COPY: {missing:?} (copies {copied:?})"
    );
}

fn covered_in(root: &Path, copied: &[String], p: &Path) -> bool {
    let rel = p.strip_prefix(root).unwrap();
    copied
        .iter()
        .any(|c| rel.starts_with(c.trim_end_matches('/')))
}
