//! The api crate's layers (ARCHITECTURE.md): `app/` imports neither `cli/` nor `http/`, and the
//! two front ends never import each other. Read from the sources, so a stray `use` fails here.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Lines of files under `layer` that name one of `forbidden` (`crate::cli`, ...).
fn crossings(layer: &str, forbidden: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(layer);
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(!files.is_empty(), "no sources under {}", root.display());
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            // `super::super` would climb out of the layer as surely as `crate::`.
            let climbs = code.contains("super::super");
            if climbs || forbidden.iter().any(|f| code.contains(f)) {
                found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    found
}

#[test]
fn app_imports_neither_front_end() {
    let found = crossings("app", &["crate::cli", "crate::http", "clap::", "axum::", "utoipa"]);
    assert!(found.is_empty(), "app/ reaches into a front end:\n{}", found.join("\n"));
}

#[test]
fn cli_and_http_never_import_each_other() {
    let found = crossings("cli", &["crate::http"]);
    assert!(found.is_empty(), "cli/ reaches into http/:\n{}", found.join("\n"));
    let found = crossings("http", &["crate::cli"]);
    assert!(found.is_empty(), "http/ reaches into cli/:\n{}", found.join("\n"));
}
