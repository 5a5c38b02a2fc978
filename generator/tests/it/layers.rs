//! The generator's layers (issue #22, "Shape"): no source file imports from a file that imports
//! it back, directly or through others, and none imports from the crate root (which only
//! declares modules and re-exports). Read from the sources, as rust-analyzer's tidy tests do.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, by module path (`runtime::model`; `""` for lib.rs).
fn modules(dir: &Path, prefix: &str, out: &mut BTreeMap<String, PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let join = |name: &str| if prefix.is_empty() { name.to_string() } else { format!("{prefix}::{name}") };
        if path.is_dir() {
            modules(&path, &join(&name), out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let module = match name.as_str() {
                "lib" | "mod" => prefix.to_string(),
                _ => join(&name),
            };
            out.insert(module, path);
        }
    }
}

/// The modules a file's code (not its comments) names through `crate::`.
fn imports(source: &str, known: &BTreeMap<String, PathBuf>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in source.lines().filter(|l| !l.trim_start().starts_with("//")) {
        for (at, _) in line.match_indices("crate::") {
            let rest = &line[at + "crate::".len()..];
            // `runtime::model::{Model, ..}` -> [runtime, model]: lowercase segments, up to an item.
            let lower: String = rest.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_' || *c == ':').collect();
            let path: Vec<&str> = lower.split("::").filter(|s| !s.is_empty()).collect();
            // The longest known module the path starts with; none is the crate root.
            let module = (0..=path.len())
                .rev()
                .map(|n| path[..n].join("::"))
                .find(|m| known.contains_key(m))
                .unwrap_or_default();
            found.insert(module);
        }
    }
    found
}

#[test]
fn the_generators_modules_import_downward_only() {
    let mut known = BTreeMap::new();
    modules(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), "", &mut known);
    assert!(known.contains_key("serving::scheduler") && known.contains_key("runtime::model"), "{known:?}");
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, path) in &known {
        let source = std::fs::read_to_string(path).unwrap();
        let mut targets = imports(&source, &known);
        targets.remove(module);
        if !module.is_empty() {
            assert!(!targets.contains(""), "{module} imports from the crate root; name the module instead");
        }
        edges.insert(module.clone(), targets);
    }
    // Depth-first search for a cycle.
    fn visit(
        m: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, bool>,
        path: &mut Vec<String>,
    ) {
        match state.get(m) {
            Some(true) => return,
            Some(false) => panic!("import cycle: {} -> {m}", path.join(" -> ")),
            None => {}
        }
        state.insert(m.to_string(), false);
        path.push(m.to_string());
        for next in edges.get(m).into_iter().flatten() {
            visit(next, edges, state, path);
        }
        path.pop();
        state.insert(m.to_string(), true);
    }
    let mut state = BTreeMap::new();
    for module in edges.keys() {
        visit(module, &edges, &mut state, &mut Vec::new());
    }
}
