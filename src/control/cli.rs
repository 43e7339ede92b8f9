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
        Command::Run { .. } | Command::Demo | Command::CheckConfig { .. } => {
            eprintln!("intertrunk: this command is being built");
            ExitCode::from(2)
        }
    }
}
