//! The `kinescope` binary: parses the command line and hands over to the library.

use clap::Parser;
use kinescope::cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Command::QueryWorker = cli.command {
        // Before any thread or runtime: the worker limits its own address space.
        return kinescope::delivery_streams::query_sandbox::worker_main();
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KINESCOPE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(kinescope::embedded::DEFAULT_LOG_FILTER)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kinescope: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result: Result<(), String> = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => {
                let config = (*args).into_config().map_err(|e| e.to_string())?;
                kinescope::app::run(config).await.map_err(|e| e.to_string())
            }
            Command::Put(args) => kinescope::cli::put(args).await.map_err(|e| e.to_string()),
            Command::Health(args) => kinescope::cli::health(args).await,
            Command::QueryWorker => Ok(()),
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kinescope: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
