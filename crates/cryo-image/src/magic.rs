//! Every magic number of CRIU's image format (`criu/include/magic.h`), and crit's names for them.
//!
//! Names are CRIU's, so one grep spans both projects. Most magics are coordinates of Russian
//! towns in the NNNNEEEE form. An alias (`SHMEM_PAGEMAP_MAGIC = PAGEMAP_MAGIC`) is written as the
//! constant it aliases. Raw images (`pages-N.img`, `ifaddr-N.img`, tarballs, ...) have
//! [`RAW_IMAGE_MAGIC`], which means "no header at all".

/// Image format version 1 (one magic per file); kept for reference, never written.
pub const CRTOOLS_IMAGES_V1: u32 = 1;
/// Image format version 1.1 (a common or service magic before the image's own one).
pub const CRTOOLS_IMAGES_V1_1: u32 = 2;

/// Magic of raw images: they carry no header.
pub const RAW_IMAGE_MAGIC: u32 = 0;
/// First word of every image except inventory, raw and service images.
pub const IMG_COMMON_MAGIC: u32 = 0x5456_4319;
/// First word of service files (stats, irmap cache) instead of [`IMG_COMMON_MAGIC`].
pub const IMG_SERVICE_MAGIC: u32 = 0x5510_5940;
/// Magic of the inventory image.
pub const INVENTORY_MAGIC: u32 = 0x5831_3116;
/// Magic of the pstree image.
pub const PSTREE_MAGIC: u32 = 0x5027_3030;
/// Magic of the fdinfo image.
pub const FDINFO_MAGIC: u32 = 0x5621_3732;
/// Magic of the pagemap image.
pub const PAGEMAP_MAGIC: u32 = 0x5608_4025;
/// Magic of the shmem pagemap image (same value as [`PAGEMAP_MAGIC`]).
pub const SHMEM_PAGEMAP_MAGIC: u32 = PAGEMAP_MAGIC;
/// Magic of the pages image (same value as [`RAW_IMAGE_MAGIC`]).
pub const PAGES_MAGIC: u32 = RAW_IMAGE_MAGIC;
/// Magic of the core image.
pub const CORE_MAGIC: u32 = 0x5505_3847;
/// Magic of the ids image.
pub const IDS_MAGIC: u32 = 0x5443_2030;
/// Magic of the vmas image.
pub const VMAS_MAGIC: u32 = 0x5412_3737;
/// Magic of the pipes image.
pub const PIPES_MAGIC: u32 = 0x5651_3555;
/// Magic of the pipes data image.
pub const PIPES_DATA_MAGIC: u32 = 0x5645_3709;
/// Magic of the fifo image.
pub const FIFO_MAGIC: u32 = 0x5836_4939;
/// Magic of the fifo data image.
pub const FIFO_DATA_MAGIC: u32 = 0x5933_3054;
/// Magic of the sigact image.
pub const SIGACT_MAGIC: u32 = 0x5534_4201;
/// Magic of the unixsk image.
pub const UNIXSK_MAGIC: u32 = 0x5437_3943;
/// Magic of the inetsk image.
pub const INETSK_MAGIC: u32 = 0x5644_3851;
/// Magic of the packetsk image.
pub const PACKETSK_MAGIC: u32 = 0x6045_4618;
/// Magic of the itimers image.
pub const ITIMERS_MAGIC: u32 = 0x5746_4056;
/// Magic of the posix timers image.
pub const POSIX_TIMERS_MAGIC: u32 = 0x5260_3957;
/// Magic of the sk queues image.
pub const SK_QUEUES_MAGIC: u32 = 0x5626_4026;
/// Magic of the utsns image.
pub const UTSNS_MAGIC: u32 = 0x5447_3203;
/// Magic of the creds image.
pub const CREDS_MAGIC: u32 = 0x5402_3547;
/// Magic of the ipc var image.
pub const IPC_VAR_MAGIC: u32 = 0x5311_5007;
/// Magic of the ipcns shm image.
pub const IPCNS_SHM_MAGIC: u32 = 0x4628_3044;
/// Magic of the ipcns msg image.
pub const IPCNS_MSG_MAGIC: u32 = 0x5545_3737;
/// Magic of the ipcns sem image.
pub const IPCNS_SEM_MAGIC: u32 = 0x5957_3019;
/// Magic of the reg files image.
pub const REG_FILES_MAGIC: u32 = 0x5036_3636;
/// Magic of the ext files image.
pub const EXT_FILES_MAGIC: u32 = 0x5925_5641;
/// Magic of the fs image.
pub const FS_MAGIC: u32 = 0x5140_3912;
/// Magic of the mm image.
pub const MM_MAGIC: u32 = 0x5749_2820;
/// Magic of the remap fpath image.
pub const REMAP_FPATH_MAGIC: u32 = 0x5913_3954;
/// Magic of the ghost file image.
pub const GHOST_FILE_MAGIC: u32 = 0x5258_3605;
/// Magic of the tcp stream image.
pub const TCP_STREAM_MAGIC: u32 = 0x5146_5506;
/// Magic of the eventfd file image.
pub const EVENTFD_FILE_MAGIC: u32 = 0x4452_3722;
/// Magic of the eventpoll file image.
pub const EVENTPOLL_FILE_MAGIC: u32 = 0x4502_3858;
/// Magic of the eventpoll tfd image.
pub const EVENTPOLL_TFD_MAGIC: u32 = 0x4443_3746;
/// Magic of the signalfd image.
pub const SIGNALFD_MAGIC: u32 = 0x5732_3820;
/// Magic of the inotify file image.
pub const INOTIFY_FILE_MAGIC: u32 = 0x4842_4431;
/// Magic of the inotify wd image.
pub const INOTIFY_WD_MAGIC: u32 = 0x5456_2009;
/// Magic of the mnts image.
pub const MNTS_MAGIC: u32 = 0x5556_3928;
/// Magic of the netdev image.
pub const NETDEV_MAGIC: u32 = 0x5737_3951;
/// Magic of the netns image.
pub const NETNS_MAGIC: u32 = 0x5593_3752;
/// Magic of the tty files image.
pub const TTY_FILES_MAGIC: u32 = 0x5943_3025;
/// Magic of the tty info image.
pub const TTY_INFO_MAGIC: u32 = 0x5945_3036;
/// Magic of the tty data image.
pub const TTY_DATA_MAGIC: u32 = 0x5941_3026;
/// Magic of the file locks image.
pub const FILE_LOCKS_MAGIC: u32 = 0x5432_3616;
/// Magic of the rlimit image.
pub const RLIMIT_MAGIC: u32 = 0x5711_3925;
/// Magic of the fanotify file image.
pub const FANOTIFY_FILE_MAGIC: u32 = 0x5509_6122;
/// Magic of the fanotify mark image.
pub const FANOTIFY_MARK_MAGIC: u32 = 0x5650_6035;
/// Magic of the signal image.
pub const SIGNAL_MAGIC: u32 = 0x5925_5647;
/// Magic of the psignal image (same value as [`SIGNAL_MAGIC`]).
pub const PSIGNAL_MAGIC: u32 = SIGNAL_MAGIC;
/// Magic of the netlink sk image.
pub const NETLINK_SK_MAGIC: u32 = 0x5800_5614;
/// Magic of the ns files image.
pub const NS_FILES_MAGIC: u32 = 0x6139_4011;
/// Magic of the tunfile image.
pub const TUNFILE_MAGIC: u32 = 0x5714_3751;
/// Magic of the cgroup image.
pub const CGROUP_MAGIC: u32 = 0x5938_3330;
/// Magic of the timerfd image.
pub const TIMERFD_MAGIC: u32 = 0x5049_3712;
/// Magic of the cpuinfo image.
pub const CPUINFO_MAGIC: u32 = 0x6140_4013;
/// Magic of the userns image.
pub const USERNS_MAGIC: u32 = 0x5547_4906;
/// Magic of the seccomp image.
pub const SECCOMP_MAGIC: u32 = 0x6441_3049;
/// Magic of the binfmt misc image.
pub const BINFMT_MISC_MAGIC: u32 = 0x6734_3323;
/// Magic of the autofs image.
pub const AUTOFS_MAGIC: u32 = 0x4935_3943;
/// Magic of the files image.
pub const FILES_MAGIC: u32 = 0x5630_3138;
/// Magic of the memfd inode image.
pub const MEMFD_INODE_MAGIC: u32 = 0x4845_3499;
/// Magic of the timens image.
pub const TIMENS_MAGIC: u32 = 0x4311_4433;
/// Magic of the pidns image.
pub const PIDNS_MAGIC: u32 = 0x6115_7326;
/// Magic of the bpfmap file image.
pub const BPFMAP_FILE_MAGIC: u32 = 0x5750_6142;
/// Magic of the bpfmap data image.
pub const BPFMAP_DATA_MAGIC: u32 = 0x6432_4033;
/// Magic of the apparmor image.
pub const APPARMOR_MAGIC: u32 = 0x5942_3047;
/// Magic of the pidfd image.
pub const PIDFD_MAGIC: u32 = 0x5443_5556;
/// Magic of the ifaddr image (same value as [`RAW_IMAGE_MAGIC`]).
pub const IFADDR_MAGIC: u32 = RAW_IMAGE_MAGIC;
/// Magic of the route image (same value as [`RAW_IMAGE_MAGIC`]).
pub const ROUTE_MAGIC: u32 = RAW_IMAGE_MAGIC;
/// Magic of the route6 image (same value as [`RAW_IMAGE_MAGIC`]).
pub const ROUTE6_MAGIC: u32 = RAW_IMAGE_MAGIC;
/// Magic of the rule image (same value as [`RAW_IMAGE_MAGIC`]).
pub const RULE_MAGIC: u32 = RAW_IMAGE_MAGIC;
/// Magic of the tmpfs img image (same value as [`RAW_IMAGE_MAGIC`]).
pub const TMPFS_IMG_MAGIC: u32 = RAW_IMAGE_MAGIC;
/// Magic of the tmpfs dev image (same value as [`RAW_IMAGE_MAGIC`]).
pub const TMPFS_DEV_MAGIC: u32 = RAW_IMAGE_MAGIC;
/// Magic of the iptables image (same value as [`RAW_IMAGE_MAGIC`]).
pub const IPTABLES_MAGIC: u32 = RAW_IMAGE_MAGIC;
/// Magic of the ip6tables image (same value as [`RAW_IMAGE_MAGIC`]).
pub const IP6TABLES_MAGIC: u32 = RAW_IMAGE_MAGIC;
/// Magic of the nftables image (same value as [`RAW_IMAGE_MAGIC`]).
pub const NFTABLES_MAGIC: u32 = RAW_IMAGE_MAGIC;
/// Magic of the netnf ct image (same value as [`RAW_IMAGE_MAGIC`]).
pub const NETNF_CT_MAGIC: u32 = RAW_IMAGE_MAGIC;
/// Magic of the netnf exp image (same value as [`RAW_IMAGE_MAGIC`]).
pub const NETNF_EXP_MAGIC: u32 = RAW_IMAGE_MAGIC;
/// Magic of the pages old image (same value as [`PAGEMAP_MAGIC`]).
pub const PAGES_OLD_MAGIC: u32 = PAGEMAP_MAGIC;
/// Magic of the shm pages old image (same value as [`PAGEMAP_MAGIC`]).
pub const SHM_PAGES_OLD_MAGIC: u32 = PAGEMAP_MAGIC;
/// Magic of the binfmt misc old image (same value as [`BINFMT_MISC_MAGIC`]).
pub const BINFMT_MISC_OLD_MAGIC: u32 = BINFMT_MISC_MAGIC;
/// Magic of `stats-dump` / `stats-restore` (a service file).
pub const STATS_MAGIC: u32 = 0x5709_3306;
/// Magic of `irmap-cache` (a service file).
pub const IRMAP_CACHE_MAGIC: u32 = 0x5700_4059;
/// Magic of the kerndat cache file (not an image in the dump directory).
pub const KDAT_MAGIC: u32 = 0x5702_3458;

/// crit's name of a magic (the `magic` field of its JSON: `"INVENTORY"`, `"CORE"`, `"PAGEMAP"`,
/// `"IMG_COMMON"`, ...): CRIU's constant name without `_MAGIC`. An aliased value gives the name of
/// the constant it aliases (`SHMEM_PAGEMAP_MAGIC` is `"PAGEMAP"`). Raw (0) and unknown values give
/// `None`.
pub fn magic_name(magic: u32) -> Option<&'static str> {
    MAGIC_NAMES
        .iter()
        .find(|(m, _)| *m == magic)
        .map(|(_, n)| *n)
}

/// The magic crit calls `name` (the inverse of [`magic_name`]).
pub fn magic_by_name(name: &str) -> Option<u32> {
    MAGIC_NAMES
        .iter()
        .find(|(_, n)| *n == name)
        .map(|(m, _)| *m)
}

/// Every distinct magic with crit's name for it, in `magic.h` order.
pub const MAGIC_NAMES: &[(u32, &str)] = &[
    (IMG_COMMON_MAGIC, "IMG_COMMON"),
    (IMG_SERVICE_MAGIC, "IMG_SERVICE"),
    (INVENTORY_MAGIC, "INVENTORY"),
    (PSTREE_MAGIC, "PSTREE"),
    (FDINFO_MAGIC, "FDINFO"),
    (PAGEMAP_MAGIC, "PAGEMAP"),
    (CORE_MAGIC, "CORE"),
    (IDS_MAGIC, "IDS"),
    (VMAS_MAGIC, "VMAS"),
    (PIPES_MAGIC, "PIPES"),
    (PIPES_DATA_MAGIC, "PIPES_DATA"),
    (FIFO_MAGIC, "FIFO"),
    (FIFO_DATA_MAGIC, "FIFO_DATA"),
    (SIGACT_MAGIC, "SIGACT"),
    (UNIXSK_MAGIC, "UNIXSK"),
    (INETSK_MAGIC, "INETSK"),
    (PACKETSK_MAGIC, "PACKETSK"),
    (ITIMERS_MAGIC, "ITIMERS"),
    (POSIX_TIMERS_MAGIC, "POSIX_TIMERS"),
    (SK_QUEUES_MAGIC, "SK_QUEUES"),
    (UTSNS_MAGIC, "UTSNS"),
    (CREDS_MAGIC, "CREDS"),
    (IPC_VAR_MAGIC, "IPC_VAR"),
    (IPCNS_SHM_MAGIC, "IPCNS_SHM"),
    (IPCNS_MSG_MAGIC, "IPCNS_MSG"),
    (IPCNS_SEM_MAGIC, "IPCNS_SEM"),
    (REG_FILES_MAGIC, "REG_FILES"),
    (EXT_FILES_MAGIC, "EXT_FILES"),
    (FS_MAGIC, "FS"),
    (MM_MAGIC, "MM"),
    (REMAP_FPATH_MAGIC, "REMAP_FPATH"),
    (GHOST_FILE_MAGIC, "GHOST_FILE"),
    (TCP_STREAM_MAGIC, "TCP_STREAM"),
    (EVENTFD_FILE_MAGIC, "EVENTFD_FILE"),
    (EVENTPOLL_FILE_MAGIC, "EVENTPOLL_FILE"),
    (EVENTPOLL_TFD_MAGIC, "EVENTPOLL_TFD"),
    (SIGNALFD_MAGIC, "SIGNALFD"),
    (INOTIFY_FILE_MAGIC, "INOTIFY_FILE"),
    (INOTIFY_WD_MAGIC, "INOTIFY_WD"),
    (MNTS_MAGIC, "MNTS"),
    (NETDEV_MAGIC, "NETDEV"),
    (NETNS_MAGIC, "NETNS"),
    (TTY_FILES_MAGIC, "TTY_FILES"),
    (TTY_INFO_MAGIC, "TTY_INFO"),
    (TTY_DATA_MAGIC, "TTY_DATA"),
    (FILE_LOCKS_MAGIC, "FILE_LOCKS"),
    (RLIMIT_MAGIC, "RLIMIT"),
    (FANOTIFY_FILE_MAGIC, "FANOTIFY_FILE"),
    (FANOTIFY_MARK_MAGIC, "FANOTIFY_MARK"),
    (SIGNAL_MAGIC, "SIGNAL"),
    (NETLINK_SK_MAGIC, "NETLINK_SK"),
    (NS_FILES_MAGIC, "NS_FILES"),
    (TUNFILE_MAGIC, "TUNFILE"),
    (CGROUP_MAGIC, "CGROUP"),
    (TIMERFD_MAGIC, "TIMERFD"),
    (CPUINFO_MAGIC, "CPUINFO"),
    (USERNS_MAGIC, "USERNS"),
    (SECCOMP_MAGIC, "SECCOMP"),
    (BINFMT_MISC_MAGIC, "BINFMT_MISC"),
    (AUTOFS_MAGIC, "AUTOFS"),
    (FILES_MAGIC, "FILES"),
    (MEMFD_INODE_MAGIC, "MEMFD_INODE"),
    (TIMENS_MAGIC, "TIMENS"),
    (PIDNS_MAGIC, "PIDNS"),
    (BPFMAP_FILE_MAGIC, "BPFMAP_FILE"),
    (BPFMAP_DATA_MAGIC, "BPFMAP_DATA"),
    (APPARMOR_MAGIC, "APPARMOR"),
    (PIDFD_MAGIC, "PIDFD"),
    (STATS_MAGIC, "STATS"),
    (IRMAP_CACHE_MAGIC, "IRMAP_CACHE"),
    (KDAT_MAGIC, "KDAT"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_crit() {
        assert_eq!(magic_name(INVENTORY_MAGIC), Some("INVENTORY"));
        assert_eq!(magic_name(CORE_MAGIC), Some("CORE"));
        assert_eq!(magic_name(PAGEMAP_MAGIC), Some("PAGEMAP"));
        assert_eq!(magic_name(SHMEM_PAGEMAP_MAGIC), Some("PAGEMAP"));
        assert_eq!(magic_name(PSIGNAL_MAGIC), Some("SIGNAL"));
        assert_eq!(magic_name(IMG_COMMON_MAGIC), Some("IMG_COMMON"));
        assert_eq!(magic_name(IMG_SERVICE_MAGIC), Some("IMG_SERVICE"));
        assert_eq!(magic_name(STATS_MAGIC), Some("STATS"));
        assert_eq!(magic_name(IRMAP_CACHE_MAGIC), Some("IRMAP_CACHE"));
        assert_eq!(magic_name(KDAT_MAGIC), Some("KDAT"));
        assert_eq!(magic_name(RAW_IMAGE_MAGIC), None);
        assert_eq!(magic_name(0xdead_beef), None);
        assert_eq!(magic_by_name("FDINFO"), Some(FDINFO_MAGIC));
        assert_eq!(magic_by_name("nope"), None);
    }

    #[test]
    fn values_are_distinct_and_round_trip() {
        assert_eq!(INVENTORY_MAGIC, 0x5831_3116);
        assert_eq!(IMG_COMMON_MAGIC, 0x5456_4319);
        assert_eq!(IMG_SERVICE_MAGIC, 0x5510_5940);
        assert_eq!(MAGIC_NAMES.len(), 71);
        for (i, (m, n)) in MAGIC_NAMES.iter().enumerate() {
            assert_ne!(*m, 0);
            assert_eq!(magic_by_name(n), Some(*m));
            assert!(MAGIC_NAMES[i + 1..].iter().all(|(o, on)| o != m && on != n));
        }
    }
}
