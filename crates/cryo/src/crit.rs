//! `cryo crit`: CRIU's crit image tool. `decode` and `show` print an image as the JSON
//! CRIU's crit prints, `encode` writes an image back from it, `info` prints its magic and entry
//! count. Input from `-i FILE` or stdin, output to `-o FILE` or stdout (with a final newline on
//! stdout only, as crit). The conversion itself is `cryo_image::crit`. `core-dump` writes ELF
//! core files from a dump directory (`cryo_image::coredump`).

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use cryo_image::coredump;
use cryo_image::crit::{self, Json};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::PathBuf;

/// cryo crit: read, convert and check CRIU image files (CRIU's crit, plus validate and core-dump).
#[derive(Debug, Parser)]
#[command(
    name = "cryo crit",
    disable_version_flag = true,
    disable_help_subcommand = true,
    after_help = "Examples:
  cryo crit show DIR/core-1234.img         an image as JSON
  cryo crit decode -i DIR/mm-1234.img | cryo crit encode -o mm-1234.img
                                           JSON and back, byte for byte
  cryo crit x DIR ps                       the process tree of a dump
  cryo crit validate DIR                   can this dump be restored? if not, why?
  cryo crit core-dump -i DIR -o cores      ELF core files, for gdb PROGRAM cores/core.1234"
)]
struct CritCli {
    #[command(subcommand)]
    command: CritCommand,
}

#[derive(Debug, Subcommand)]
enum CritCommand {
    /// Print an image as JSON (the JSON CRIU's crit prints)
    Decode(DecodeArgs),
    /// Write an image back from its JSON
    Encode(InOut),
    /// Print an image's kind and number of entries
    Info {
        /// The image
        #[arg(value_name = "IN")]
        input: PathBuf,
    },
    /// Print an image as indented JSON, addresses in hex
    Show {
        /// The image
        #[arg(value_name = "IN")]
        input: PathBuf,
        /// Do not show entry payload (if any)
        #[arg(long = "nopl")]
        nopl: bool,
    },
    /// Summarise a dump: its processes (ps), open files (fds), mappings (mems) or resident pages (rss)
    X {
        /// The image directory
        dir: PathBuf,
        /// What to explore
        #[arg(value_parser = ["ps", "fds", "mems", "rss"])]
        what: String,
    },
    /// Write an ELF core file per process of a dump, for gdb
    #[command(
        name = "core-dump",
        long_about = "Write an ELF core file per process of a dump, as the kernel would have \
written it at the moment of the checkpoint: core.PID in OUTDIR (mode 0600), to open with \
`gdb PROGRAM OUTDIR/core.PID`.

Every thread is there with its registers (FPU, AVX and AVX-512 state included), with the \
auxiliary vector, the list of mapped files and the memory of the dump. A thread that was \
inside a system call shows its instruction pointer on the `syscall` instruction, 2 bytes \
before the return address, and rax holding the syscall number: the dump prepared it to restart \
the call. Memory the process never wrote to is not in a dump; gdb reads it from the program \
and its libraries, so run gdb where those are the files that were mapped when the dump was \
taken. Zombies are skipped. A process whose main thread has exited while others run on gets \
a core of its live threads, as the kernel would write it."
    )]
    CoreDump(CoreDumpArgs),
    /// Check whether a dump can be restored; exit 1 and list the reasons when not
    Validate {
        /// The image directory
        dir: PathBuf,
        /// Print the problems as a JSON list
        #[arg(long = "json")]
        json: bool,
    },
}

#[derive(Debug, Args)]
struct InOut {
    /// Input file [default: stdin]
    #[arg(short = 'i', long = "in", value_name = "IN")]
    input: Option<PathBuf>,
    /// Output file [default: stdout]
    #[arg(short = 'o', long = "out", value_name = "OUT")]
    output: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct CoreDumpArgs {
    /// The images directory of the dump
    #[arg(short = 'i', long = "in", value_name = "DIR", default_value = ".")]
    input: PathBuf,
    /// Where to write the core files (created if missing)
    #[arg(short = 'o', long = "out", value_name = "OUTDIR", default_value = ".")]
    output: PathBuf,
    /// Only this process [default: every process of the dump]
    #[arg(short = 'p', long = "pid", value_name = "PID")]
    pid: Option<u32>,
}

#[derive(Debug, Args)]
struct DecodeArgs {
    #[command(flatten)]
    io: InOut,
    /// Multiline with indents and some numerical fields in field-specific format
    #[arg(long = "pretty")]
    pretty: bool,
}

fn read_input(path: Option<&PathBuf>) -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    match path {
        Some(p) => {
            buf = std::fs::read(p).with_context(|| format!("read {}", p.display()))?;
        }
        None => {
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("read stdin")?;
        }
    }
    Ok(buf)
}

fn write_output(
    path: Option<&PathBuf>,
    data: &[u8],
    newline_on_stdout: bool,
) -> anyhow::Result<()> {
    match path {
        Some(p) => std::fs::write(p, data).with_context(|| format!("write {}", p.display())),
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(data)
                .and_then(|()| {
                    if newline_on_stdout {
                        out.write_all(b"\n")
                    } else {
                        Ok(())
                    }
                })
                .and_then(|()| out.flush())
                .context("write stdout")
        }
    }
}

/// What an input is called in errors: its path, or stdin.
fn input_name(path: Option<&PathBuf>) -> String {
    path.map_or_else(|| "stdin".to_string(), |p| p.display().to_string())
}

fn decode_to(
    data: &[u8],
    name: &str,
    pretty: bool,
    nopl: bool,
    output: Option<&PathBuf>,
) -> anyhow::Result<()> {
    let img = crit::decode(data, pretty, nopl).with_context(|| format!("decode {name}"))?;
    let text = img.to_python_string(if pretty { Some(4) } else { None });
    write_output(output, text.as_bytes(), true)
}

/// `crit validate`: prints the problems (text or JSON); 0 when there are none, else 1.
fn validate(dir: &std::path::Path, json: bool) -> anyhow::Result<u8> {
    let problems =
        crit::validate::validate(dir).with_context(|| format!("read {}", dir.display()))?;
    let text = if json {
        let list = Json::Array(problems.iter().map(|p| p.to_json()).collect());
        list.to_python_string(Some(4))
    } else if problems.is_empty() {
        "restorable".to_string()
    } else {
        let mut t = format!("not restorable: {} problem(s)", problems.len());
        for p in &problems {
            t.push('\n');
            t.push_str(&p.to_string());
        }
        t
    };
    write_output(None, text.as_bytes(), true)?;
    Ok(u8::from(!problems.is_empty()))
}

/// `crit core-dump`: writes the core files, prints their paths on stdout, and on stderr what
/// they lack and which processes had none.
fn core_dump(a: &CoreDumpArgs) -> anyhow::Result<()> {
    let done = coredump::write_core_dumps(&a.input, a.pid, &a.output)
        .with_context(|| format!("core dump of {}", a.input.display()))?;
    for c in &done.written {
        println!("{}", c.path.display());
        for w in &c.stats.warnings {
            eprintln!("warning: {}: {w}", c.path.display());
        }
    }
    for (pid, why) in &done.skipped {
        eprintln!("no core for pid {pid}: {why}");
    }
    Ok(())
}

/// Runs `cryo crit ARGS...` (`args` without `cryo crit`); the exit status.
pub fn run(args: &[OsString]) -> u8 {
    let argv = std::iter::once(OsString::from("cryo crit")).chain(args.iter().cloned());
    let cli = match CritCli::try_parse_from(argv) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 1 } else { 0 };
        }
    };
    let result = match &cli.command {
        CritCommand::Decode(a) => read_input(a.io.input.as_ref()).and_then(|d| {
            let name = input_name(a.io.input.as_ref());
            decode_to(&d, &name, a.pretty, false, a.io.output.as_ref())
        }),
        CritCommand::Show { input, nopl } => read_input(Some(input)).and_then(|d| {
            decode_to(&d, &input_name(Some(input)), true, *nopl, None)
        }),
        CritCommand::Encode(io) => read_input(io.input.as_ref()).and_then(|d| {
            let text = String::from_utf8(d).context(
                "cannot read JSON; maybe this is an image with protobuf data? encode expects JSON input",
            )?;
            let name = input_name(io.input.as_ref());
            let json =
                Json::parse(&text).map_err(|e| anyhow::anyhow!("parse the JSON of {name}: {e}"))?;
            let img = crit::encode(&json).with_context(|| format!("encode {name}"))?;
            write_output(io.output.as_ref(), &img, false)
        }),
        CritCommand::Info { input } => read_input(Some(input)).and_then(|d| {
            let info = crit::info(&d).with_context(|| format!("read {}", input.display()))?;
            write_output(None, info.to_python_string(Some(4)).as_bytes(), true)
        }),
        CritCommand::CoreDump(a) => core_dump(a),
        CritCommand::X { dir, what } => crit::explore::explore(dir, what)
            .with_context(|| format!("explore {}", dir.display()))
            .and_then(|text| write_output(None, text.as_bytes(), false)),
        CritCommand::Validate { dir, json } => {
            return match validate(dir, *json) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("Error: {e:#}");
                    1
                }
            }
        }
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("Error: {e:#}");
            1
        }
    }
}
