//! Which cgroup file system a directory is on: statfs(2) (`man 2 statfs`), with the magics of
//! `include/uapi/linux/magic.h`. `dump --cgroup` and `--freeze-cgroup` tell the v1 freezer
//! (`freezer.state`) from the v2 one (`cgroup.freeze`) by it.

use std::ffi::CString;
use std::io;
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `CGROUP_SUPER_MAGIC`: a cgroup v1 hierarchy.
pub const CGROUP_SUPER_MAGIC: u64 = 0x0027_e0eb;
/// `CGROUP2_SUPER_MAGIC`: the cgroup v2 (unified) hierarchy.
pub const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;

/// The type (`f_type` of statfs(2)) of the file system `path` is on.
pub fn fs_type(path: &Path) -> io::Result<u64> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let mut buf = MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: `c_path` is NUL-terminated and outlives the call; `buf` is a writable `struct
    // statfs` the kernel fills.
    let rc = unsafe { libc::statfs(c_path.as_ptr(), buf.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statfs returned 0, so it filled the struct (which was zeroed before anyway).
    let st = unsafe { buf.assume_init() };
    Ok(st.f_type as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_is_no_cgroup() {
        let t = fs_type(Path::new("/proc")).expect("statfs /proc");
        assert_ne!(t, CGROUP_SUPER_MAGIC);
        assert_ne!(t, CGROUP2_SUPER_MAGIC);
        let e = fs_type(Path::new("/no/such/dir")).expect_err("statfs of nothing");
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
    }
}
