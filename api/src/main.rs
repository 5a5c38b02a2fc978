//! The `tributary` binary: the command line and the HTTP server (`tributary serve`).

fn main() -> anyhow::Result<()> {
    tributary::main()
}
