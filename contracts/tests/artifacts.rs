//! The committed ABIs and bytecode are what the committed sources compile to.

use std::path::Path;
use std::process::Command;

#[test]
fn committed_artifacts_match_a_fresh_compile() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(dir.join("node_modules/solc").is_dir(), "solc-js is missing: run scripts/setup.sh (npm ci in contracts/)");
    let out =
        Command::new("node").args(["scripts/compile.mjs", "--check"]).current_dir(dir).output().expect("node runs");
    assert!(
        out.status.success(),
        "the artifacts drifted from the sources:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
