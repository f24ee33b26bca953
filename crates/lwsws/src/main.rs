//! The `lwsws` command: parses the command line, loads the configuration,
//! and wires the crates together. It holds no serving logic of its own.

mod bind;
mod cli;

use clap::Parser;
use cli::{Cli, exit};
use lwsws_config::{Diagnostic, LoadOptions};
use std::process::ExitCode;
use std::sync::Arc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logging(cli.log_level);

    let opts = LoadOptions {
        data_dir: lwsws_config::default_data_dir(),
        protocols: lwsws_ws::Registry::builtin().specs(),
        as_root: nix::unistd::geteuid().is_root(),
    };
    let loaded = match lwsws_config::load(&cli.config_dir, &opts) {
        Ok(l) => l,
        Err(lwsws_config::ConfigError::Invalid { errors, warnings }) => {
            print_diagnostics(&warnings);
            print_diagnostics(&errors);
            eprintln!(
                "lwsws: {} error(s) in the configuration in {}",
                errors.len(),
                cli.config_dir.display()
            );
            return ExitCode::from(exit::CONFIG);
        }
    };
    print_diagnostics(&loaded.warnings);

    if cli.check {
        println!("configuration ok");
        return ExitCode::SUCCESS;
    }
    if cli.print_config {
        let json = lwsws_config::print_config(&loaded.config);
        match serde_json::to_string_pretty(&json) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("lwsws: cannot render the configuration: {e}");
                return ExitCode::from(exit::CONFIG);
            }
        }
        return ExitCode::SUCCESS;
    }
    serve(&cli, loaded.config)
}

fn print_diagnostics(list: &[Diagnostic]) {
    for d in list {
        eprintln!("lwsws: {d}");
    }
}

/// Binds every listener, then serves until SIGTERM or SIGINT.
fn serve(cli: &Cli, config: lwsws_config::Config) -> ExitCode {
    let config = Arc::new(config);
    let resources = match lwsws_server::Resources::load(&config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("lwsws: {e}");
            return ExitCode::from(exit::STARTUP);
        }
    };
    let (listeners, pending) = match bind::bind_all(&config) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("lwsws: {e}");
            return ExitCode::from(exit::STARTUP);
        }
    };
    if cli.daemon
        && let Err(e) = cli::daemonize()
    {
        eprintln!("lwsws: cannot detach from the terminal: {e}");
        return ExitCode::from(exit::STARTUP);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.global.count_threads)
        .thread_name("lwsws-worker")
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("lwsws: cannot start the runtime: {e}");
            return ExitCode::from(exit::STARTUP);
        }
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let grace = config
        .global
        .drain_timeout
        .min(std::time::Duration::from_secs(10));
    runtime.block_on(async {
        tokio::spawn(cli::stop_on_signals(shutdown.clone()));
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            vhosts = config.vhosts.len(),
            config = %cli.config_dir.display(),
            "lwsws serving"
        );
        let (late_tx, late_rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(bind::watch_interfaces(pending, late_tx, shutdown.clone()));
        let server = lwsws_server::run(
            listeners,
            late_rx,
            config.clone(),
            resources,
            shutdown.clone(),
        );
        tokio::pin!(server);
        tokio::select! {
            r = &mut server => return finish(r),
            _ = shutdown.cancelled() => {}
        }
        match tokio::time::timeout(grace, server).await {
            Ok(r) => finish(r),
            Err(_) => {
                tracing::warn!(
                    seconds = grace.as_secs(),
                    "requests still in flight after the grace period; exiting"
                );
                ExitCode::SUCCESS
            }
        }
    })
}

fn finish(r: Result<(), lwsws_server::ServerError>) -> ExitCode {
    match r {
        Ok(()) => {
            tracing::info!("lwsws stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lwsws: {e}");
            ExitCode::from(exit::STARTUP)
        }
    }
}
