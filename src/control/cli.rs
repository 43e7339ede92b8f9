//! The command line (DESIGN section 3, a contract): `run`, `demo`, `check-config`, `ctl`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "intertrunk",
    version,
    about = "SIP/RTP relay doing intertrunk routing"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the relay in the foreground; without --config, the built-in configuration.
    Run {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run the relay with a simulated gateway and PBXs on loopback, placing real calls.
    Demo,
    /// Validate a configuration file; print every error with its line.
    CheckConfig { file: PathBuf },
    /// Talk to a running relay's admin API.
    Ctl {
        /// The relay's admin_listen address.
        #[arg(long, default_value = "127.0.0.1:8060")]
        admin: String,
        /// Print the raw JSON answer instead of Identity blocks.
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        verb: Box<super::ctl::Verb>,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Ctl { admin, json, verb } => super::ctl::run(&admin, json, &verb),
        Command::CheckConfig { file } => check_config(&file),
        Command::Run { .. } | Command::Demo => {
            eprintln!("intertrunk: this command is being built");
            ExitCode::from(2)
        }
    }
}

/// `intertrunk check-config FILE`: every problem with its line; exit 1 when there is one.
pub fn check_config(file: &std::path::Path) -> ExitCode {
    match crate::config::Config::load(file) {
        Ok(cfg) => match crate::route::RouteTable::build(std::sync::Arc::new(cfg)) {
            Ok(table) => {
                let (routes, _) = table.route_counts();
                println!(
                    "{}: valid ({} trunks, {} voice routes)",
                    file.display(),
                    table.trunks().count(),
                    routes
                );
                ExitCode::SUCCESS
            }
            Err(diags) => report(file, &diags),
        },
        Err(diags) => report(file, &diags),
    }
}

fn report(file: &std::path::Path, diags: &[crate::config::Diagnostic]) -> ExitCode {
    for d in diags {
        eprintln!("{}: {d}", file.display());
    }
    eprintln!(
        "{}: {} problem{}",
        file.display(),
        diags.len(),
        if diags.len() == 1 { "" } else { "s" }
    );
    ExitCode::from(1)
}
