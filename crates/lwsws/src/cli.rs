//! Command line (SPEC §1), log set-up, daemon mode and stop signals.

use clap::Parser;
use std::path::PathBuf;
use tracing_subscriber::filter::LevelFilter;

/// Exit statuses (SPEC §1).
pub mod exit {
    pub const CONFIG: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const STARTUP: u8 = 3;
}

/// lwsws: web server for static sites, CGI, reverse proxies and WebSocket protocols.
#[derive(Debug, Parser)]
#[command(name = "lwsws", version, about)]
pub struct Cli {
    /// Configuration directory (holds `conf` and `conf.d/`).
    #[arg(
        short = 'c',
        long = "config-dir",
        value_name = "DIR",
        default_value = "/etc/lwsws"
    )]
    pub config_dir: PathBuf,

    /// Log level: libwebsockets bitfield (1 err, 2 warn, 4 notice, 8 info, 16 debug)
    /// or error, warn, info, debug, trace.
    #[arg(short = 'd', value_name = "LEVEL", default_value = "7", value_parser = parse_level, global = true)]
    pub log_level: LevelFilter,

    /// Detach from the terminal (classic init scripts; not under systemd).
    #[arg(short = 'D', long = "daemon")]
    pub daemon: bool,

    /// Read and validate the whole configuration, then exit.
    #[arg(long, conflicts_with = "print_config")]
    pub check: bool,

    /// Print the merged, validated configuration with every default filled in.
    #[arg(long = "print-config")]
    pub print_config: bool,

    /// Print the JSON Schema (draft 2020-12) of a configuration file and exit.
    #[arg(long)]
    pub schema: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// A serving process, started by the supervisor with its descriptors.
    #[command(hide = true)]
    Worker,
    /// The ACME process, started by the supervisor when a vhost has `acme`.
    #[command(hide = true)]
    Acme,
    /// Print a signed token for WebSocket authentication (`auth-hmac-key-file`).
    Token(TokenArgs),
}

/// `lwsws token --key-file FILE --user NAME [--ttl SECS]`.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// The key: this file's bytes as they are (the protocol's `auth-hmac-key-file`).
    #[arg(long = "key-file", value_name = "FILE")]
    pub key_file: PathBuf,

    /// The user name the token carries (not empty, no ';').
    #[arg(long, value_name = "NAME")]
    pub user: String,

    /// Seconds the token stays valid.
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    pub ttl: u64,
}

/// The `-d` level as a name the worker's command line accepts.
pub fn level_name(level: LevelFilter) -> String {
    level.to_string().to_ascii_lowercase()
}

/// `-d`: the libwebsockets bitfield or a level name.
fn parse_level(s: &str) -> Result<LevelFilter, String> {
    match s.to_ascii_lowercase().as_str() {
        "error" | "err" => return Ok(LevelFilter::ERROR),
        "warn" | "warning" => return Ok(LevelFilter::WARN),
        "notice" | "info" => return Ok(LevelFilter::INFO),
        "debug" => return Ok(LevelFilter::DEBUG),
        "trace" => return Ok(LevelFilter::TRACE),
        "off" | "none" => return Ok(LevelFilter::OFF),
        _ => {}
    }
    let bits: u32 = s.parse().map_err(|_| {
        format!("\"{s}\" is not a log level: use a bitfield like 7 or 15, or error, warn, info, debug, trace")
    })?;
    // The highest bit set decides; notice (4) and info (8) both map to INFO.
    Ok(match bits {
        0 => LevelFilter::OFF,
        1 => LevelFilter::ERROR,
        2..=3 => LevelFilter::WARN,
        4..=15 => LevelFilter::INFO,
        16..=31 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    })
}

/// Logs to stderr through `tracing`; colours only on a terminal without `NO_COLOR`.
pub fn init_logging(level: LevelFilter) {
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_max_level(level)
        .with_target(false)
        .init();
}
