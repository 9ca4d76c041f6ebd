//! The command line: clap definitions of `cryo dump|restore|check`, and the pre-pass that reads
//! argv the way CRIU's `getopt_long` does and rewrites it into spellings clap parses the same way.
//!
//! CRIU parses its options with `getopt_long(argc, argv, "dSsRt:hD:o:v::x::Vr:jJ:lW:L:M:", ...)`
//! (criu/config.c). What the pre-pass reproduces:
//! - options and the command word may come in any order (`criu -D dir dump -t 1` is valid);
//! - short options cluster (`-jR`), and a required argument may be glued (`-t123`, `-Ddir`) or be
//!   the next word;
//! - `-v` takes an *optional* argument that must be glued: `-v` adds one, `-vvv` adds three,
//!   `-v4` sets 4, and anything else glued is read with `atoi`, so `-verbosity=0` sets 0 (the
//!   argument is `erbosity=0`). `-v 4` is `-v` plus a stray word, an error as in CRIU. The same
//!   applies to `--verbosity[=N]`. The default is 2;
//! - long options may be abbreviated to any unambiguous prefix (`--images` is `--images-dir`), and
//!   take their argument as `--opt=value` or `--opt value` (optional ones only with `=`);
//! - `-h`/`--help` anywhere asks for help, `-V`/`--version` prints the version;
//! - `--` ends the options.
//!
//! The output puts the command first, gives every option in its long form with a glued value
//! (`--images-dir=dir`, so a value starting with `-` is never mistaken for an option) and sums
//! all verbosity spellings into one `--verbosity=N`. Options the pre-pass does not know are left
//! as they are for clap to reject.

use clap::{Args, Parser, Subcommand};
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

/// The version of CRIU whose command line cryo speaks.
pub const CRIU_VERSION: &str = "4.2";

/// CRIU's default log level: errors and warnings.
pub const DEFAULT_VERBOSITY: u32 = 2;

/// cryo: checkpoint and restore process trees.
#[derive(Debug, Parser)]
#[command(
    name = "cryo",
    about = "Checkpoint/restore in userspace for Linux, with CRIU's command line",
    long_about = "Checkpoint/restore in userspace for Linux, with CRIU's command line.\n\n\
        cryo saves a running process tree into image files (dump) and brings it back from\n\
        them (restore), here or on another machine. It takes CRIU's commands and options\n\
        and writes CRIU's image format, so tools that run `criu` can run `cryo`.",
    after_help = "Options and the command may come in any order, as with criu.\n\
        `cryo <COMMAND> --help` lists the options of a command.\n\
        `cryo crit --help`: decode, encode and inspect image files (CRIU's crit).",
    disable_version_flag = true,
    disable_help_subcommand = true,
    subcommand_required = true
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// cryo's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Checkpoint the process tree rooted at PID into image files
    #[command(args_override_self = true)]
    Dump(DumpArgs),
    /// Restore a process tree from image files
    #[command(args_override_self = true)]
    Restore(RestoreArgs),
    /// Check that the kernel has what cryo needs
    #[command(args_override_self = true)]
    Check(CheckArgs),
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Directory of the image files
    #[arg(
        short = 'D',
        long = "images-dir",
        value_name = "DIR",
        default_value = "."
    )]
    pub images_dir: PathBuf,

    /// Directory for the log and pid files [default: the images directory]
    #[arg(short = 'W', long = "work-dir", value_name = "DIR")]
    pub work_dir: Option<PathBuf>,

    /// Log to FILE in the work directory ("-" for stdout) [default: stderr]
    #[arg(short = 'o', long = "log-file", value_name = "FILE")]
    pub log_file: Option<PathBuf>,

    /// Verbosity: -v[v...] adds, -vN or --verbosity=N sets [default: 2]
    #[arg(
        short = 'v',
        long = "verbosity",
        value_name = "N",
        num_args = 0..=1,
        require_equals = true,
        default_value_t = DEFAULT_VERBOSITY,
        default_missing_value = "3",
        hide_default_value = true,
        long_help = "Verbosity: each -v adds one (-vvv adds three); -vN or --verbosity=N sets N\n\
            (the number must be glued to -v, as with criu). 0: messages only, 1: errors,\n\
            2: also warnings (the default), 3: also information and timestamps, 4: debug,\n\
            5: trace"
    )]
    pub verbosity: u32,

    /// Do not read configuration files (cryo never reads any)
    #[arg(long = "no-default-config")]
    pub no_default_config: bool,
}

/// `cryo dump`.
#[derive(Debug, Args)]
pub struct DumpArgs {
    /// PID of the root of the tree to checkpoint (not with --cgroup)
    #[arg(short = 't', long = "tree", value_name = "PID",
          required_unless_present = "cgroup", conflicts_with = "cgroup",
          value_parser = clap::value_parser!(i32).range(1..))]
    pub tree: Option<i32>,

    /// Checkpoint every task of the cgroup at PATH (v1 freezer or v2), stopped through its
    /// freezer; several roots are fine (cryo's own option, no -t)
    #[arg(long = "cgroup", value_name = "PATH", conflicts_with = "freeze_cgroup")]
    pub cgroup: Option<PathBuf>,

    /// Stop the tree through the freezer of the cgroup at PATH (v1 or v2)
    #[arg(long = "freeze-cgroup", value_name = "PATH")]
    pub freeze_cgroup: Option<PathBuf>,

    /// Leave the tasks running after the checkpoint
    #[arg(short = 'R', long = "leave-running", overrides_with = "leave_stopped")]
    pub leave_running: bool,

    /// Leave the tasks stopped after the checkpoint
    #[arg(short = 's', long = "leave-stopped", overrides_with = "leave_running")]
    pub leave_stopped: bool,

    /// The tree is a shell job, sharing the caller's terminal and session
    #[arg(short = 'j', long = "shell-job", overrides_with = "no_shell_job")]
    pub shell_job: bool,

    /// Negates --shell-job
    #[arg(long = "no-shell-job", hide = true, overrides_with = "shell_job")]
    pub no_shell_job: bool,

    /// Seconds to wait for the tasks to stop
    #[arg(long = "timeout", value_name = "SECONDS", default_value_t = 10)]
    pub timeout: u64,

    /// Accepted for CRIU compatibility; dump writes no pid file
    #[arg(long = "pidfile", value_name = "FILE")]
    pub pidfile: Option<PathBuf>,

    /// How pre-dumps copy memory (CRIU's splice or read); cryo's own page copy is used either
    /// way, so the value is only checked
    #[arg(long = "pre-dump-mode", value_name = "MODE", value_parser = ["splice", "read"])]
    pub pre_dump_mode: Option<String>,

    #[command(flatten)]
    pub common: CommonArgs,
}

/// `cryo restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Return once the tree runs instead of waiting for it to exit
    #[arg(
        short = 'd',
        long = "restore-detached",
        visible_alias = "daemon",
        overrides_with = "no_restore_detached"
    )]
    pub restore_detached: bool,

    /// Negates --restore-detached
    #[arg(
        long = "no-restore-detached",
        alias = "no-daemon",
        hide = true,
        overrides_with = "restore_detached"
    )]
    pub no_restore_detached: bool,

    /// Write the restored root task's PID to FILE in the work directory
    #[arg(long = "pidfile", value_name = "FILE")]
    pub pidfile: Option<PathBuf>,

    /// Restore a shell job into the caller's terminal and session
    #[arg(short = 'j', long = "shell-job", overrides_with = "no_shell_job")]
    pub shell_job: bool,

    /// Negates --shell-job
    #[arg(long = "no-shell-job", hide = true, overrides_with = "shell_job")]
    pub no_shell_job: bool,

    /// Restore into a new pid namespace, whose init is a small cryo init: the tasks keep their
    /// PIDs inside it, so they can never collide with PIDs in use
    #[arg(long = "new-pidns")]
    pub new_pidns: bool,

    #[command(flatten)]
    pub common: CommonArgs,
}

/// `cryo check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Check only FEATURE (see the list below)
    #[arg(long = "feature", value_name = "FEATURE")]
    pub feature: Option<String>,

    /// Also check the features needed only in specific cases
    #[arg(long = "extra", overrides_with = "no_extra")]
    pub extra: bool,

    /// Negates --extra
    #[arg(long = "no-extra", hide = true, overrides_with = "extra")]
    pub no_extra: bool,

    /// Also check experimental features (cryo has none)
    #[arg(long = "experimental", overrides_with = "no_experimental")]
    pub experimental: bool,

    /// Negates --experimental
    #[arg(long = "no-experimental", hide = true, overrides_with = "experimental")]
    pub no_experimental: bool,

    /// Same as --extra --experimental
    #[arg(long = "all")]
    pub all: bool,

    #[command(flatten)]
    pub common: CommonArgs,
}

impl Command {
    /// The options every command takes.
    pub fn common(&self) -> &CommonArgs {
        match self {
            Command::Dump(a) => &a.common,
            Command::Restore(a) => &a.common,
            Command::Check(a) => &a.common,
        }
    }
}

/// What the pre-pass found the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Prepass {
    /// Parse these arguments with clap (`argv[0]`, the command, the options).
    Parse(Vec<OsString>),
    /// Print the version and exit.
    Version,
}

/// A command line CRIU's getopt would reject, said the way getopt says it.
#[derive(Debug, PartialEq, Eq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Whether an option takes an argument (`struct option.has_arg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HasArg {
    /// A flag.
    No,
    /// `--opt VALUE`, `--opt=VALUE`, `-oVALUE`, `-o VALUE`.
    Required,
    /// Only `--opt=VALUE` or `-oVALUE`.
    Optional,
}

/// The options the pre-pass knows: all the options of all commands.
#[derive(Debug, Default)]
pub struct OptionTable {
    /// Short option letter, its long name and whether it takes an argument.
    shorts: Vec<(char, String, HasArg)>,
    /// Long names (and aliases), the canonical long name, and whether they take an argument.
    longs: Vec<(String, String, HasArg)>,
}

impl OptionTable {
    /// Collect the options of every subcommand of `cmd`.
    pub fn from_command(cmd: &clap::Command) -> OptionTable {
        let mut t = OptionTable::default();
        for sub in cmd.get_subcommands() {
            for arg in sub.get_arguments() {
                if arg.is_positional() {
                    continue;
                }
                let Some(long) = arg.get_long() else { continue };
                let has_arg = if !arg.get_action().takes_values() {
                    HasArg::No
                } else if arg.get_num_args().is_some_and(|r| r.min_values() == 0) {
                    HasArg::Optional
                } else {
                    HasArg::Required
                };
                if let Some(c) = arg.get_short() {
                    if !t.shorts.iter().any(|(s, _, _)| *s == c) {
                        t.shorts.push((c, long.to_string(), has_arg));
                    }
                }
                let names = std::iter::once(long).chain(arg.get_all_aliases().unwrap_or_default());
                for name in names {
                    if !t.longs.iter().any(|(n, _, _)| n == name) {
                        t.longs.push((name.to_string(), long.to_string(), has_arg));
                    }
                }
            }
        }
        t
    }

    fn short(&self, c: char) -> Option<(&str, HasArg)> {
        self.shorts
            .iter()
            .find(|(s, _, _)| *s == c)
            .map(|(_, l, h)| (l.as_str(), *h))
    }

    /// Resolve a long option name as getopt_long does: an exact match, or else a prefix of
    /// exactly one option. `Ok(None)` when nothing matches.
    fn long(&self, name: &str) -> Result<Option<(String, HasArg)>, UsageError> {
        if let Some((_, canon, h)) = self.longs.iter().find(|(n, _, _)| n == name) {
            return Ok(Some((canon.clone(), *h)));
        }
        let mut hits: Vec<&(String, String, HasArg)> = self
            .longs
            .iter()
            .filter(|(n, _, _)| n.starts_with(name))
            .collect();
        hits.dedup_by(|a, b| a.1 == b.1);
        let mut canon: Vec<&str> = hits.iter().map(|h| h.1.as_str()).collect();
        canon.sort_unstable();
        canon.dedup();
        match canon.len() {
            0 => Ok(None),
            1 => Ok(hits.first().map(|h| (h.1.clone(), h.2))),
            _ => {
                let names: Vec<String> = canon.iter().map(|c| format!("'--{c}'")).collect();
                Err(UsageError(format!(
                    "option '--{name}' is ambiguous; possibilities: {}",
                    names.join(" ")
                )))
            }
        }
    }
}

/// C's `atoi`: optional blanks, an optional sign, then digits up to the first non-digit.
pub fn atoi(s: &[u8]) -> i64 {
    let mut i = 0;
    while i < s.len() && matches!(s[i], b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
        i += 1;
    }
    let mut neg = false;
    if i < s.len() && (s[i] == b'+' || s[i] == b'-') {
        neg = s[i] == b'-';
        i += 1;
    }
    let mut v: i64 = 0;
    while i < s.len() && s[i].is_ascii_digit() {
        v = v.saturating_mul(10).saturating_add(i64::from(s[i] - b'0'));
        i += 1;
    }
    if neg {
        -v
    } else {
        v
    }
}

/// CRIU's handling of `-v` / `--verbosity` with its optional argument.
fn apply_verbosity(level: &mut i64, optarg: Option<&[u8]>) {
    match optarg {
        None => *level += 1,
        Some(a) if a.first() == Some(&b'v') => *level += a.len() as i64 + 1,
        Some(a) => *level = atoi(a),
    }
}

fn glue(long: &str, value: &[u8]) -> OsString {
    let mut v = format!("--{long}=").into_bytes();
    v.extend_from_slice(value);
    OsString::from_vec(v)
}

/// Read `argv` as CRIU's getopt_long would, and rewrite it for clap (see the module docs).
pub fn prepass(argv: &[OsString], table: &OptionTable) -> Result<Prepass, UsageError> {
    let prog = argv
        .first()
        .cloned()
        .unwrap_or_else(|| OsString::from("cryo"));
    let args = argv.get(1..).unwrap_or_default();

    // Like CRIU's pre_parse(): -h or --help anywhere, even as an option's argument, means help.
    let mut wants_help = args.iter().any(|a| a == "-h" || a == "--help");

    let mut out: Vec<OsString> = Vec::new();
    let mut positionals: Vec<OsString> = Vec::new();
    let mut level: i64 = i64::from(DEFAULT_VERBOSITY);
    let mut level_given = false;
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_bytes();
        i += 1;
        if arg == b"--" {
            positionals.extend(args[i..].iter().cloned());
            break;
        }
        if let Some(body) = arg.strip_prefix(b"--") {
            let (name, value) = match body.iter().position(|&b| b == b'=') {
                Some(p) => (&body[..p], Some(&body[p + 1..])),
                None => (body, None),
            };
            let name_str = String::from_utf8_lossy(name);
            if name_str == "help" {
                wants_help = true;
                continue;
            }
            if name_str == "version" {
                return Ok(Prepass::Version);
            }
            let Some((canon, has_arg)) = table.long(&name_str)? else {
                // Unknown: leave it for clap, which says so with suggestions.
                out.push(args[i - 1].clone());
                continue;
            };
            let value: Option<&[u8]> = match (has_arg, value) {
                (HasArg::No, Some(_)) => {
                    return Err(UsageError(format!(
                        "option '--{canon}' doesn't allow an argument"
                    )))
                }
                (HasArg::No, None) | (HasArg::Optional, None) => None,
                (_, Some(v)) => Some(v),
                (HasArg::Required, None) => match args.get(i) {
                    Some(v) => {
                        i += 1;
                        Some(v.as_bytes())
                    }
                    None => {
                        return Err(UsageError(format!(
                            "option '--{canon}' requires an argument"
                        )))
                    }
                },
            };
            if canon == "verbosity" {
                apply_verbosity(&mut level, value);
                level_given = true;
            } else {
                out.push(match value {
                    Some(v) => glue(&canon, v),
                    None => OsString::from(format!("--{canon}")),
                });
            }
            continue;
        }
        if arg.len() > 1 && arg[0] == b'-' {
            let mut j = 1;
            while j < arg.len() {
                let c = char::from(arg[j]);
                let rest = &arg[j + 1..];
                if c == 'V' {
                    return Ok(Prepass::Version);
                }
                if c == 'h' {
                    wants_help = true;
                    j += 1;
                    continue;
                }
                let Some((long, has_arg)) = table.short(c).filter(|_| arg[j].is_ascii()) else {
                    // Unknown: hand the rest of the cluster to clap, which rejects it.
                    let mut v = b"-".to_vec();
                    v.extend_from_slice(&arg[j..]);
                    out.push(OsString::from_vec(v));
                    break;
                };
                match has_arg {
                    HasArg::No => {
                        out.push(OsString::from(format!("--{long}")));
                        j += 1;
                        continue;
                    }
                    HasArg::Optional => {
                        let optarg = (!rest.is_empty()).then_some(rest);
                        if long == "verbosity" {
                            apply_verbosity(&mut level, optarg);
                            level_given = true;
                        } else {
                            out.push(match optarg {
                                Some(v) => glue(long, v),
                                None => OsString::from(format!("--{long}")),
                            });
                        }
                    }
                    HasArg::Required => {
                        let value = if !rest.is_empty() {
                            rest
                        } else if let Some(v) = args.get(i) {
                            i += 1;
                            v.as_bytes()
                        } else {
                            return Err(UsageError(format!(
                                "option requires an argument -- '{c}'"
                            )));
                        };
                        out.push(glue(long, value));
                    }
                }
                break;
            }
            continue;
        }
        positionals.push(args[i - 1].clone());
    }

    if level_given {
        out.push(OsString::from(format!(
            "--verbosity={}",
            level.clamp(0, i64::from(u32::MAX))
        )));
    }

    let mut result = vec![prog];
    let mut positionals = positionals.into_iter();
    if wants_help {
        result.extend(positionals.next());
        result.push(OsString::from("--help"));
        return Ok(Prepass::Parse(result));
    }
    match positionals.next() {
        Some(cmd) => result.push(cmd),
        None => return Err(UsageError("command is required".into())),
    }
    result.extend(out);
    let rest: Vec<OsString> = positionals.collect();
    if !rest.is_empty() {
        // Stray words: clap reports them as unexpected arguments.
        result.push(OsString::from("--"));
        result.extend(rest);
    }
    Ok(Prepass::Parse(result))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn table() -> OptionTable {
        OptionTable::from_command(&Cli::command())
    }

    fn pre(args: &[&str]) -> Result<Prepass, UsageError> {
        let mut argv = vec![OsString::from("cryo")];
        argv.extend(args.iter().map(OsString::from));
        prepass(&argv, &table())
    }

    fn canon(args: &[&str]) -> Vec<String> {
        match pre(args) {
            Ok(Prepass::Parse(v)) => v
                .into_iter()
                .skip(1)
                .map(|s| s.to_string_lossy().into_owned())
                .collect(),
            other => panic!("{args:?}: {other:?}"),
        }
    }

    fn parse(args: &[&str]) -> Result<Cli, String> {
        match pre(args) {
            Ok(Prepass::Parse(v)) => Cli::try_parse_from(v).map_err(|e| e.to_string()),
            Ok(Prepass::Version) => Err("version".into()),
            Err(e) => Err(e.0),
        }
    }

    fn verbosity(args: &[&str]) -> u32 {
        parse(args)
            .map(|c| c.command.common().verbosity)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn dump(args: &[&str]) -> DumpArgs {
        match parse(args) {
            Ok(Cli {
                command: Command::Dump(d),
            }) => d,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn verbosity_spellings() {
        assert_eq!(verbosity(&["check"]), 2);
        assert_eq!(verbosity(&["check", "-v"]), 3);
        assert_eq!(verbosity(&["check", "-v", "-v"]), 4);
        assert_eq!(verbosity(&["check", "-vv"]), 4);
        assert_eq!(verbosity(&["check", "-vvvv"]), 6);
        assert_eq!(verbosity(&["check", "-v4"]), 4);
        assert_eq!(verbosity(&["check", "-v0"]), 0);
        assert_eq!(verbosity(&["check", "--verbosity=4"]), 4);
        assert_eq!(verbosity(&["check", "--verbosity"]), 3);
        assert_eq!(verbosity(&["check", "--verb=1"]), 1);
        // getopt reads "-verbosity=0" as -v with the glued argument "erbosity=0": atoi gives 0.
        assert_eq!(verbosity(&["check", "-verbosity=0"]), 0);
        // Order matters as in CRIU: a later absolute value wins, later increments add.
        assert_eq!(verbosity(&["check", "-v4", "-v"]), 5);
        assert_eq!(verbosity(&["check", "-v", "-v1"]), 1);
        // -v takes the rest of the cluster as its argument: -vj is atoi("j") = 0.
        assert_eq!(verbosity(&["check", "-vj"]), 0);
        // Options may precede the command.
        assert_eq!(verbosity(&["-v4", "check"]), 4);
    }

    #[test]
    fn verbosity_argument_must_be_glued() {
        // As in CRIU, "-v 4" is -v and a stray "4".
        let e = parse(&["check", "-v", "4"]).expect_err("stray word accepted");
        assert!(e.contains("unexpected argument '4'"), "{e}");
        let e = parse(&["check", "--verbosity", "4"]).expect_err("stray word accepted");
        assert!(e.contains("unexpected argument '4'"), "{e}");
    }

    #[test]
    fn zdtm_dump_line() {
        let d = dump(&[
            "dump",
            "--no-default-config",
            "--log-file",
            "dump.log",
            "--images-dir",
            "/tmp/img",
            "--verbosity=4",
            "--tree",
            "42",
            "--pidfile",
            "/tmp/x.pid",
            "--timeout",
            "10",
            "--leave-stopped",
            "--pre-dump-mode",
            "splice",
        ]);
        assert_eq!(d.tree, Some(42));
        assert_eq!(d.pre_dump_mode.as_deref(), Some("splice"));
        assert_eq!(d.common.images_dir, PathBuf::from("/tmp/img"));
        assert_eq!(d.common.log_file, Some(PathBuf::from("dump.log")));
        assert_eq!(d.common.verbosity, 4);
        assert_eq!(d.timeout, 10);
        assert!(d.leave_stopped && !d.leave_running);
        assert!(d.common.no_default_config);
    }

    #[test]
    fn zdtm_check_line() {
        // zdtm passes --no-default-config twice and -verbosity=0.
        let c = parse(&[
            "check",
            "--no-default-config",
            "--no-default-config",
            "-verbosity=0",
            "--feature",
            "uffd",
        ])
        .expect("zdtm check line");
        let Command::Check(c) = c.command else {
            panic!("not check")
        };
        assert_eq!(c.feature.as_deref(), Some("uffd"));
        assert_eq!(c.common.verbosity, 0);
    }

    #[test]
    fn short_forms() {
        let d = dump(&["dump", "-t123", "-Dimg", "-o", "d.log", "-W", "wd", "-jR"]);
        assert_eq!(d.tree, Some(123));
        assert_eq!(d.common.images_dir, PathBuf::from("img"));
        assert_eq!(d.common.work_dir, Some(PathBuf::from("wd")));
        assert!(d.shell_job && d.leave_running);
        // A cluster ending in an option with an argument takes the next word.
        let d = dump(&["dump", "-jt", "7"]);
        assert_eq!(d.tree, Some(7));
        assert!(d.shell_job);
        // Values that look like options are still values.
        let d = dump(&["dump", "-t", "1", "-o", "-weird.log"]);
        assert_eq!(d.common.log_file, Some(PathBuf::from("-weird.log")));
    }

    #[test]
    fn long_forms_and_prefixes() {
        let d = dump(&[
            "dump",
            "--tree=5",
            "--images-dir=/a",
            "--log-file=x",
            "--work-dir=/w",
        ]);
        assert_eq!(
            (d.tree, d.common.images_dir.clone()),
            (Some(5), PathBuf::from("/a"))
        );
        assert_eq!(d.common.work_dir, Some(PathBuf::from("/w")));
        let d = dump(&[
            "dump",
            "--tr",
            "5",
            "--images",
            "/b",
            "--leave-r",
            "--shell",
        ]);
        assert_eq!(
            (d.tree, d.common.images_dir.clone()),
            (Some(5), PathBuf::from("/b"))
        );
        assert!(d.leave_running && d.shell_job);
        let e = pre(&["dump", "--leave", "-t", "1"]).expect_err("ambiguous prefix accepted");
        assert!(e.0.contains("ambiguous"), "{}", e.0);
    }

    #[test]
    fn options_before_command() {
        assert_eq!(
            canon(&["-D", "img", "-t", "3", "dump"]),
            ["dump", "--images-dir=img", "--tree=3"]
        );
        let d = dump(&["-D", "dump", "dump", "-t", "3"]);
        assert_eq!(d.common.images_dir, PathBuf::from("dump"));
    }

    #[test]
    fn last_one_wins() {
        let d = dump(&["dump", "-t", "1", "-R", "-s"]);
        assert!(d.leave_stopped && !d.leave_running);
        let d = dump(&["dump", "-t", "1", "-s", "-R"]);
        assert!(!d.leave_stopped && d.leave_running);
        let d = dump(&["dump", "-t", "1", "-D", "a", "-D", "b"]);
        assert_eq!(d.common.images_dir, PathBuf::from("b"));
        let d = dump(&["dump", "-t", "1", "-j", "--no-shell-job"]);
        assert!(!d.shell_job);
    }

    #[test]
    fn restore_options() {
        let r = parse(&["restore", "-d", "--pidfile", "p", "-j", "-D", "i"]).expect("restore");
        let Command::Restore(r) = r.command else {
            panic!("not restore")
        };
        assert!(r.restore_detached && r.shell_job);
        assert_eq!(r.pidfile, Some(PathBuf::from("p")));
        let r = parse(&["restore", "--daemon"]).expect("restore --daemon");
        let Command::Restore(r) = r.command else {
            panic!("not restore")
        };
        assert!(r.restore_detached);
        let r = parse(&["restore", "--restore-detached", "--no-restore-detached"]).expect("no-");
        let Command::Restore(r) = r.command else {
            panic!("not restore")
        };
        assert!(!r.restore_detached);
    }

    #[test]
    fn check_options() {
        let c = parse(&["check", "--all"]).expect("check --all");
        let Command::Check(c) = c.command else {
            panic!("not check")
        };
        assert!(c.all);
        let c = parse(&["check", "--extra", "--feature=mem_dirty_track"]).expect("check");
        let Command::Check(c) = c.command else {
            panic!("not check")
        };
        assert!(c.extra);
        assert_eq!(c.feature.as_deref(), Some("mem_dirty_track"));
    }

    #[test]
    fn rejected() {
        let e = parse(&["dump", "-t", "1", "--bogus"]).expect_err("--bogus accepted");
        assert!(e.contains("unexpected argument '--bogus'"), "{e}");
        let e = parse(&["dump", "-t", "1", "-q"]).expect_err("-q accepted");
        assert!(e.contains("unexpected argument '-q'"), "{e}");
        let e = parse(&["dump", "-t1", "-jq"]).expect_err("-jq accepted");
        assert!(e.contains("unexpected argument '-q'"), "{e}");
        let e = parse(&["restore", "-t", "1"]).expect_err("restore -t accepted");
        assert!(e.contains("unexpected argument '--tree"), "{e}");
        let e = parse(&["dump"]).expect_err("dump without -t accepted");
        assert!(e.contains("--tree"), "{e}");
        let e = parse(&["dump", "-t", "0"]).expect_err("pid 0 accepted");
        assert!(e.contains("invalid value '0'"), "{e}");
        let e = parse(&["dump", "-t", "abc"]).expect_err("pid abc accepted");
        assert!(e.contains("invalid value 'abc'"), "{e}");
        let e = parse(&["dump", "-t"]).expect_err("-t without argument accepted");
        assert_eq!(e, "option requires an argument -- 't'");
        let e = parse(&["dump", "-t", "1", "--images-dir"]).expect_err("missing argument");
        assert_eq!(e, "option '--images-dir' requires an argument");
        let e = parse(&["dump", "-t", "1", "--leave-running=yes"]).expect_err("flag argument");
        assert_eq!(e, "option '--leave-running' doesn't allow an argument");
        let e = parse(&["-v4"]).expect_err("no command accepted");
        assert_eq!(e, "command is required");
        let e = parse(&["frobnicate"]).expect_err("unknown command accepted");
        assert!(e.contains("unrecognized subcommand 'frobnicate'"), "{e}");
        let e = parse(&["dump", "-t", "1", "extra"]).expect_err("stray word accepted");
        assert!(e.contains("unexpected argument 'extra'"), "{e}");
    }

    #[test]
    fn version_and_help() {
        assert_eq!(pre(&["-V"]), Ok(Prepass::Version));
        assert_eq!(pre(&["dump", "--version"]), Ok(Prepass::Version));
        assert_eq!(pre(&["dump", "-jV"]), Ok(Prepass::Version));
        assert_eq!(canon(&["dump", "-h"]), ["dump", "--help"]);
        assert_eq!(canon(&["--help"]), ["--help"]);
        assert_eq!(
            canon(&["-t", "1", "--help", "restore"]),
            ["restore", "--help"]
        );
    }

    #[test]
    fn double_dash_ends_options() {
        let e = parse(&["check", "--", "-v"]).expect_err("word after -- accepted");
        assert!(e.contains("unexpected argument '-v'"), "{e}");
    }

    #[test]
    fn cgroup_options() {
        let d = dump(&["dump", "--cgroup", "/sys/fs/cgroup/unified/job", "-D", "i"]);
        assert_eq!(d.tree, None);
        assert_eq!(d.cgroup, Some(PathBuf::from("/sys/fs/cgroup/unified/job")));
        assert_eq!(d.freeze_cgroup, None);
        let d = dump(&[
            "dump",
            "-t",
            "9",
            "--freeze-cgroup=/sys/fs/cgroup/freezer/job",
            "-R",
        ]);
        assert_eq!(d.tree, Some(9));
        assert_eq!(
            d.freeze_cgroup,
            Some(PathBuf::from("/sys/fs/cgroup/freezer/job"))
        );
        assert!(d.leave_running && d.cgroup.is_none());
        // CRIU's spelling, abbreviated as getopt_long allows.
        let d = dump(&["dump", "-t", "9", "--freeze", "/cg"]);
        assert_eq!(d.freeze_cgroup, Some(PathBuf::from("/cg")));
        let e = parse(&["dump", "--cgroup", "/cg", "-t", "1"]).expect_err("-t with --cgroup");
        assert!(e.contains("cannot be used with"), "{e}");
        let e = parse(&["dump", "--cgroup", "/cg", "--freeze-cgroup", "/cg"])
            .expect_err("--cgroup with --freeze-cgroup");
        assert!(e.contains("cannot be used with"), "{e}");
        let e = parse(&["dump", "--freeze-cgroup", "/cg"]).expect_err("--freeze-cgroup alone");
        assert!(e.contains("--tree"), "{e}");
        let e = parse(&["dump", "--cgroup"]).expect_err("--cgroup without a path");
        assert_eq!(e, "option '--cgroup' requires an argument");
    }

    #[test]
    fn atoi_is_c_atoi() {
        assert_eq!(atoi(b"4"), 4);
        assert_eq!(atoi(b" 12x"), 12);
        assert_eq!(atoi(b"-3"), -3);
        assert_eq!(atoi(b"erbosity=0"), 0);
        assert_eq!(atoi(b""), 0);
    }

    #[test]
    fn option_kinds_agree_across_commands() {
        let t = table();
        assert_eq!(t.short('v'), Some(("verbosity", HasArg::Optional)));
        assert_eq!(t.short('t'), Some(("tree", HasArg::Required)));
        assert_eq!(t.short('R'), Some(("leave-running", HasArg::No)));
        for sub in Cli::command().get_subcommands() {
            for arg in sub.get_arguments() {
                if let (Some(long), Some(short)) = (arg.get_long(), arg.get_short()) {
                    assert_eq!(t.short(short).map(|s| s.0), Some(long));
                }
            }
        }
    }

    #[test]
    fn clap_definition_is_valid() {
        Cli::command().debug_assert();
    }
}
