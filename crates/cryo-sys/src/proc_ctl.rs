//! prctl(2) calls cryo makes on itself.

/// Make the calling process a child subreaper (`PR_SET_CHILD_SUBREAPER`), so that orphans of the
/// trees it starts or restores are reparented to it.
pub fn set_child_subreaper() -> std::io::Result<()> {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer flag and touches no memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
