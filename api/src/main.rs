//! The `tributary` binary: parses the command line and runs it. The library (`lib.rs`) holds
//! the layers: the commands of `cli`, the server of `http` (`serve`, `openapi`), both over `app`.

use std::sync::Arc;

use anyhow::Result;
use clap::{Parser, Subcommand};
use tributary::app::App;
use tributary::{cli, http};

#[derive(Parser)]
#[command(name = "tributary", version, about = "Answers that pay their sources")]
struct Args {
    #[command(flatten)]
    global: cli::Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Cli(cli::Command),
    /// The HTTP API (OpenAPI at /openapi.json, docs at /docs, metrics at /metrics).
    Serve(http::ServeArgs),
    /// Print the HTTP API's OpenAPI document (what openapi/openapi.json holds).
    Openapi,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,qdrant_edge=error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    match args.command {
        Command::Openapi => {
            print!("{}", http::openapi_json()?);
            Ok(())
        }
        Command::Serve(serve) => {
            let app = App::open(&args.global.settings()?).await?;
            http::serve(Arc::new(app), serve).await
        }
        Command::Cli(command) => {
            let app = App::open(&args.global.settings()?).await?;
            let result = cli::run(&app, command).await;
            app.store.catalog().close().await;
            result
        }
    }
}
