//! The cryo command line: `cryo dump|restore|check` with CRIU's options (see `cli`), one module per
//! command. Exit status: 0 on success; 1 on a bad command line (as CRIU); on a failure, its
//! class (`cryo_engine::error::ErrorClass`: an errno value, such as 3 (ESRCH) for a process
//! that does not exist, 95 (EOPNOTSUPP) for a resource cryo refuses, or 1); and for a restore
//! that waits, the restored root task's own status.
#![forbid(unsafe_code)]

mod check;
mod cli;
mod crit;
mod dump;
mod log;
mod restore;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches};
use cli::{Cli, Command, CommonArgs, OptionTable, Prepass};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// The directories a command works with, as CRIU resolves them.
#[derive(Debug, Clone)]
pub struct Paths {
    /// Where images are (`-D`, default the current directory).
    pub images_dir: PathBuf,
    /// Where the log and pid files go (`-W`, default the images directory).
    pub work_dir: PathBuf,
}

impl Paths {
    fn new(common: &CommonArgs) -> Paths {
        let images_dir = common.images_dir.clone();
        let work_dir = common
            .work_dir
            .clone()
            .unwrap_or_else(|| images_dir.clone());
        Paths {
            images_dir,
            work_dir,
        }
    }

    /// Fail unless the images directory is a directory (CRIU's `open_image_dir`).
    pub fn check_images_dir(&self) -> anyhow::Result<()> {
        let dir = &self.images_dir;
        let meta = std::fs::metadata(dir)
            .with_context(|| format!("open images directory {}", dir.display()))?;
        if !meta.is_dir() {
            anyhow::bail!("images directory {} is not a directory", dir.display());
        }
        Ok(())
    }

    /// `path` relative to the work directory (absolute paths stay as they are).
    pub fn in_work_dir(&self, path: &Path) -> PathBuf {
        self.work_dir.join(path)
    }
}

fn main() -> ExitCode {
    let start = Instant::now();
    let argv: Vec<OsString> = std::env::args_os().collect();
    // `cryo crit ...` is crit's own command line (its -i/-o are not CRIU's options).
    if argv.get(1).is_some_and(|a| a == "crit") {
        return ExitCode::from(crit::run(&argv[2..]));
    }
    ExitCode::from(run(&argv, start))
}

/// The clap command, with the list of check features in `cryo check --help`.
fn cli_command() -> clap::Command {
    Cli::command().mut_subcommand("check", |c| c.after_help(check::features_help()))
}

fn print_version() {
    println!("Version: {}", cli::CRIU_VERSION);
    println!("cryo {}", env!("CARGO_PKG_VERSION"));
}

fn run(argv: &[OsString], start: Instant) -> u8 {
    let table = OptionTable::from_command(&Cli::command());
    let args = match cli::prepass(argv, &table) {
        Ok(Prepass::Version) => {
            print_version();
            return 0;
        }
        Ok(Prepass::Parse(args)) => args,
        Err(e) => {
            eprintln!("Error: {e}");
            eprintln!("\nFor more information, try 'cryo --help'.");
            return 1;
        }
    };
    let parsed = cli_command()
        .try_get_matches_from(args)
        .and_then(|m| Cli::from_arg_matches(&m));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            // Help goes to stdout with status 0; a usage error to stderr with status 1, as CRIU.
            let _ = e.print();
            return if e.use_stderr() { 1 } else { 0 };
        }
    };

    let common = cli.command.common();
    let paths = Paths::new(common);
    let target = match &common.log_file {
        None => log::LogTarget::Stderr,
        Some(p) if p.as_os_str() == "-" => log::LogTarget::Stdout,
        Some(p) => log::LogTarget::File(paths.in_work_dir(p)),
    };
    let logging = match log::init(common.verbosity, &target, start) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("Error: {e:#}");
            return 1;
        }
    };
    tracing::info!(
        "cryo {} (CRIU {} command line), kernel {}",
        env!("CARGO_PKG_VERSION"),
        cli::CRIU_VERSION,
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into())
    );
    if common.no_default_config {
        tracing::debug!("--no-default-config: cryo reads no configuration files anyway");
    }

    let result = match &cli.command {
        Command::Dump(a) => dump::run(a, &paths),
        Command::Restore(a) => restore::run(a, &paths),
        Command::Check(a) => check::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if logging.separate_from_stderr && logging.keeps_errors {
                tracing::error!(target: log::SUMMARY_TARGET, "{e:#}");
            }
            eprintln!("Error: {e:#}");
            exit_code(&e)
        }
    }
}

/// The exit status of a failed command: the class of the engine's error (see
/// [`cryo_engine::error::ErrorClass`]), else 1.
fn exit_code(e: &anyhow::Error) -> u8 {
    e.chain()
        .find_map(|c| c.downcast_ref::<cryo_engine::Error>())
        .map_or(1, |e| e.class().code())
}
