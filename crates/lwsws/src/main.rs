//! The `lwsws` command: parses the command line, loads the configuration,
//! and hands over to the supervisor — or, re-executed as `lwsws worker`,
//! serves. It holds no serving or supervising logic of its own.

mod acme;
mod cli;
mod worker;

use clap::Parser;
use cli::{Cli, exit};
use lwsws_config::{Diagnostic, LoadOptions};
use std::process::ExitCode;

fn main() -> ExitCode {
    // rustls is built with two providers (lwsws_tls::provider() combines
    // them); libraries that ask for the process default (the ACME and Redis
    // clients) get the same one.
    let _ = lwsws_tls::provider().install_default();
    let cli = Cli::parse();
    cli::init_logging(cli.log_level);
    match &cli.command {
        Some(cli::Command::Worker) => return worker::run(),
        Some(cli::Command::Acme) => return acme::run(),
        Some(cli::Command::Token(args)) => return token(args),
        None => {}
    }

    if cli.schema {
        print!("{}", lwsws_config::schema::render());
        return ExitCode::SUCCESS;
    }

    let opts = LoadOptions {
        data_dir: lwsws_config::default_data_dir(),
        protocols: lwsws_ws::Registry::builtin().specs(),
        as_root: nix::unistd::geteuid().is_root(),
        plugins: Some(lwsws_plugin::config_hooks()),
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
    serve(&cli, opts, loaded.config)
}

/// `lwsws token`: prints a signed token (SPEC §6.5).
fn token(args: &cli::TokenArgs) -> ExitCode {
    use lwsws_ws::token::{SignError, TokenKey};
    let bytes = match std::fs::read(&args.key_file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!(
                "lwsws: {}: cannot read the key ({e})",
                args.key_file.display()
            );
            return ExitCode::from(exit::CONFIG);
        }
    };
    if bytes.ends_with(b"\n") {
        eprintln!(
            "lwsws: warning: {} ends in a newline, which is part of the key",
            args.key_file.display()
        );
    }
    match TokenKey::new(&bytes).sign_for(&args.user, args.ttl) {
        Ok(t) => {
            println!("{t}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            let hint = match e {
                SignError::EmptyUser | SignError::BadUser => {
                    "give --user a name without ';' or control characters"
                }
                SignError::Expiry => "give a smaller --ttl",
            };
            eprintln!("lwsws: {e} ({hint})");
            ExitCode::from(exit::USAGE)
        }
    }
}

fn print_diagnostics(list: &[Diagnostic]) {
    for d in list {
        eprintln!("lwsws: {d}");
    }
}

/// Hands the validated configuration to the supervisor, which binds,
/// starts workers and runs until stopped.
fn serve(cli: &Cli, opts: LoadOptions, config: lwsws_config::Config) -> ExitCode {
    // The binary on disk, re-executed for every worker (an upgraded binary
    // takes effect at the next reload).
    let binary = match binary_path() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("lwsws: cannot find the lwsws binary to start workers: {e}");
            return ExitCode::from(exit::STARTUP);
        }
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        vhosts = config.vhosts.len(),
        config = %cli.config_dir.display(),
        "lwsws starting"
    );
    let code = lwsws_supervisor::run(
        lwsws_supervisor::Options {
            config_dir: cli.config_dir.clone(),
            load: opts,
            binary,
            log_level: cli::level_name(cli.log_level),
            daemon: cli.daemon,
        },
        config,
    );
    ExitCode::from(code)
}

/// The path this binary was started by, symlinks not followed, so that an
/// upgrade that switches a link (update-alternatives, a deploy's `current`)
/// takes effect at the next reload. It must name the running binary now;
/// otherwise the resolved `/proc/self/exe` path is used.
fn binary_path() -> std::io::Result<std::path::PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let resolved = std::env::current_exe()?;
    let running = std::fs::metadata("/proc/self/exe")?;
    let Some(arg0) = std::env::args_os().next().map(std::path::PathBuf::from) else {
        return Ok(resolved);
    };
    let candidate = if arg0.components().count() > 1 {
        std::path::absolute(&arg0).ok()
    } else {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join(&arg0))
                .find(|p| p.is_file())
                .and_then(|p| std::path::absolute(p).ok())
        })
    };
    Ok(candidate
        .filter(|c| {
            std::fs::metadata(c).is_ok_and(|m| m.dev() == running.dev() && m.ino() == running.ino())
        })
        .unwrap_or(resolved))
}
