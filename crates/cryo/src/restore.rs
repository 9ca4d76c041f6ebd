//! `cryo restore`: bring a process tree back from an images directory, then either return
//! (`-d`) or wait for the restored root task, which is cryo's child, and exit with its status
//! (128 + the signal number when a signal killed it).
//!
//! With `--new-pidns` cryo forks into a new pid namespace (and a private copy of the mounts
//! with its own /proc) and that child, PID 1 there, does the restore: the tasks get their
//! dumped PIDs inside the namespace, which are always free. It tells the waiting cryo how it
//! went through a pipe, then stays as the namespace's init ([`cryo_sys::pidns::run_init`]):
//! it reaps orphans, passes SIGTERM/SIGINT/SIGHUP to the root task and exits with the root's
//! status, which the waiting cryo (without `-d`) gives as its own.
//!
//! A tree dumped with its own pid namespace is always restored into a new one, with its root
//! as the namespace's init (see `cryo_engine::pid_ns`); `--new-pidns` changes nothing then.

use crate::cli::RestoreArgs;
use crate::Paths;
use anyhow::{bail, Context};
use cryo_sys::ptrace::{wait_flags, WaitStatus};
use cryo_sys::Pid;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Run `cryo restore`; returns the exit status.
pub fn run(args: &RestoreArgs, paths: &Paths) -> anyhow::Result<u8> {
    paths.check_images_dir()?;
    let pidfile = args.pidfile.as_ref().map(|p| paths.in_work_dir(p));
    if let Some(p) = &pidfile {
        // Like CRIU, never overwrite a pid file; find out before restoring anything.
        if p.symlink_metadata().is_ok() {
            bail!("pid file {} already exists", p.display());
        }
    }
    let opts = cryo_engine::RestoreOptions {
        images_dir: paths.images_dir.clone(),
        detached: args.restore_detached,
        shell_job: args.shell_job,
    };
    if args.new_pidns {
        // A tree dumped with its own pid namespace gets a new one anyway, its root as init.
        if cryo_engine::pid_ns::images_in_have_own_pidns(&opts.images_dir)
            .with_context(|| format!("read {}", opts.images_dir.display()))?
        {
            tracing::info!(
                "the images hold a pid namespace of their own: its init is the root, \
                 --new-pidns adds nothing"
            );
        } else {
            return restore_in_new_pidns(&opts, args, pidfile.as_deref());
        }
    }
    tracing::info!("restoring from {}", opts.images_dir.display());
    let restored = cryo_engine::restore(&opts)
        .with_context(|| format!("restore from {}", opts.images_dir.display()))?;
    tracing::info!(
        "restore finished successfully, root task is pid {}",
        restored.root_pid
    );
    if let Some(p) = &pidfile {
        write_pidfile(p, restored.root_pid)
            .with_context(|| format!("write pid file {}", p.display()))?;
        tracing::debug!("wrote pid {} to {}", restored.root_pid, p.display());
    }
    if args.restore_detached {
        return Ok(0);
    }
    wait_for_tree(restored.root_pid)
}

/// `--new-pidns`: restore in a child that is PID 1 of a new pid namespace; see the module doc.
fn restore_in_new_pidns(
    opts: &cryo_engine::RestoreOptions,
    args: &RestoreArgs,
    pidfile: Option<&Path>,
) -> anyhow::Result<u8> {
    use cryo_sys::pidns::{self, Forked};
    use std::io::Read;
    let (mut rx, mut tx) = std::io::pipe().context("create a pipe")?;
    match pidns::fork_into_new_pidns().context("create a pid namespace")? {
        Forked::Child => {
            drop(rx);
            let res = pidns::mount_own_proc()
                .context("mount /proc for the new pid namespace")
                .and_then(|()| {
                    tracing::info!(
                        "restoring from {} into a new pid namespace",
                        opts.images_dir.display()
                    );
                    cryo_engine::restore(opts)
                        .with_context(|| format!("restore from {}", opts.images_dir.display()))
                });
            match res {
                Ok(restored) => {
                    let _ = tx.write_all(b"ok");
                    drop(tx);
                    pidns::run_init(Pid(restored.root_pid))
                }
                Err(e) => {
                    let _ = tx.write_all(format!("{e:#}").as_bytes());
                    drop(tx);
                    std::process::exit(1)
                }
            }
        }
        Forked::Parent { pid: init } => {
            drop(tx);
            let mut said = String::new();
            rx.read_to_string(&mut said)
                .context("read how the restore went")?;
            if said != "ok" {
                // The child has exited; reap it.
                let _ = wait_flags(init, 0);
                if said.is_empty() {
                    bail!("the restore in the new pid namespace ended without a word");
                }
                bail!("{said}");
            }
            // The root task is the init's only child; its PID out here is what a caller can
            // signal.
            let children = fs::read_to_string(format!("/proc/{init}/task/{init}/children"))
                .with_context(|| format!("list the children of the init {init}"))?;
            let root: i32 = children
                .split_whitespace()
                .next()
                .and_then(|c| c.parse().ok())
                .context("the restored root task is gone already")?;
            tracing::info!(
                "restore finished successfully, init is pid {init}, root task is pid {root} (here)"
            );
            if let Some(p) = pidfile {
                write_pidfile(p, root)
                    .with_context(|| format!("write pid file {}", p.display()))?;
            }
            if args.restore_detached {
                return Ok(0);
            }
            wait_for_tree(init.0)
        }
    }
}

/// Write `pid` in decimal (no newline, as CRIU) to a new file at `path`: written whole under a
/// temporary name and linked into place, so a reader never sees a partial file, and an existing
/// file is never replaced (CRIU opens with O_EXCL).
fn write_pidfile(path: &Path, pid: i32) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".cryo-{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let create = |p: &Path| -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(p)?;
        write!(f, "{pid}")?;
        f.flush()
    };
    create(&tmp)?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
        // A file system without hard links: create it in place.
        Err(_) => create(path),
    }
}

/// Wait for the restored root task and return the exit status cryo should give; then reap any
/// other children, as CRIU does before exiting.
fn wait_for_tree(root: i32) -> anyhow::Result<u8> {
    let code = loop {
        match wait_flags(Pid(root), 0).with_context(|| format!("wait for restored pid {root}"))? {
            Some(WaitStatus::Exited(c)) => {
                tracing::info!("restored pid {root} exited with status {c}");
                break (c & 0xff) as u8;
            }
            Some(WaitStatus::Signaled(s)) => {
                tracing::info!("restored pid {root} was killed by signal {s}");
                break (128 + (s & 0x7f)) as u8;
            }
            _ => continue,
        }
    };
    while let Ok(Some(_)) = wait_flags(Pid(-1), 0) {}
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pidfile_is_written_once() {
        let dir = std::env::temp_dir().join(format!("cryo-pidfile-test-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("temp dir");
        let p = dir.join("root.pid");
        let _ = fs::remove_file(&p);
        write_pidfile(&p, 4321).expect("first write");
        assert_eq!(fs::read_to_string(&p).expect("read back"), "4321");
        let e = write_pidfile(&p, 1).expect_err("overwrote an existing pid file");
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(
            fs::read_dir(&dir).expect("list").count(),
            1,
            "temporary file left behind"
        );
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
