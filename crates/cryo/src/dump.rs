//! `cryo dump`: checkpoint a process tree into an images directory.

use crate::cli::DumpArgs;
use crate::Paths;
use anyhow::Context;
use std::time::Duration;

/// Run `cryo dump`; returns the exit status.
pub fn run(args: &DumpArgs, paths: &Paths) -> anyhow::Result<u8> {
    paths.check_images_dir()?;
    if let Some(p) = &args.pidfile {
        // CRIU accepts --pidfile on dump and writes nothing; zdtm passes it.
        tracing::debug!("--pidfile {} is not used by dump", p.display());
    }
    let opts = cryo_engine::DumpOptions {
        pid: args.tree.unwrap_or(0),
        images_dir: paths.images_dir.clone(),
        leave_running: args.leave_running,
        leave_stopped: args.leave_stopped,
        shell_job: args.shell_job,
        timeout: Some(Duration::from_secs(args.timeout)),
        cgroup: args.cgroup.clone(),
        freeze_cgroup: args.freeze_cgroup.clone(),
    };
    let what = match (&opts.cgroup, &opts.freeze_cgroup) {
        (Some(cg), _) => format!("the tasks of cgroup {}", cg.display()),
        (None, Some(cg)) => format!(
            "tree of pid {} (frozen through cgroup {})",
            opts.pid,
            cg.display()
        ),
        (None, None) => format!("tree of pid {}", opts.pid),
    };
    tracing::info!(
        "dumping {what} into {}{}",
        opts.images_dir.display(),
        match (opts.leave_running, opts.leave_stopped) {
            (true, _) => ", leaving it running",
            (_, true) => ", leaving it stopped",
            _ => "",
        }
    );
    cryo_engine::dump(&opts).with_context(|| format!("dump {what}"))?;
    tracing::info!("dumping finished successfully");
    Ok(0)
}
