//! The image files CRIU writes: [`ImageKind`], one variant per entry of CRIU's
//! `imgset_template` (`criu/image-desc.c`), with its magic, header and file-name template.
//!
//! A file name is the template with the id substituted and `.img` appended: `core-%u.img`,
//! `pagemap-%lu.img`, `ghost-file-%x.img`, `tmpfs-dev-%u.tar.gz.img`; the service files have no
//! `.img` (`stats-dump`, `stats-restore`, `irmap-cache`). CRIU's `stats-%s` is split into
//! [`ImageKind::StatsDump`] and [`ImageKind::StatsRestore`].
//!
//! Headers (see [`crate::frame`]): inventory has only its own magic; raw images
//! ([`ImageKind::is_raw`]: pages, ifaddr, route, iptables, tarballs, ...) have none; service files
//! (stats, irmap cache: `O_SERVICE` in image-desc.c) start with `IMG_SERVICE_MAGIC`; every other
//! image starts with `IMG_COMMON_MAGIC`, then its own magic.

use crate::error::ImageError;
use crate::magic::*;

/// How a kind's file name carries its id (the printf conversion of CRIU's template).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdFmt {
    /// No id: one file per dump (`pstree.img`).
    None,
    /// `%u`: decimal, at most `u32::MAX`.
    U32,
    /// `%lu`: decimal, any `u64`.
    U64,
    /// `%x`: lower-case hexadecimal, at most `u32::MAX`.
    Hex,
    /// `%d`: decimal, at most `i32::MAX` (legacy kinds only).
    I32,
    /// `%ld`: decimal, at most `i64::MAX` (legacy kinds only).
    I64,
}

impl IdFmt {
    fn max(self) -> u64 {
        match self {
            IdFmt::None => 0,
            IdFmt::U32 | IdFmt::Hex => u64::from(u32::MAX),
            IdFmt::U64 => u64::MAX,
            IdFmt::I32 => i32::MAX as u64,
            IdFmt::I64 => i64::MAX as u64,
        }
    }
}

/// The static description of a kind (one row of CRIU's `imgset_template`).
#[derive(Debug, Clone, Copy)]
struct Desc {
    name: &'static str,
    magic: u32,
    prefix: &'static str,
    id: IdFmt,
    suffix: &'static str,
    legacy: bool,
}

const fn d(
    name: &'static str,
    magic: u32,
    prefix: &'static str,
    id: IdFmt,
    suffix: &'static str,
    legacy: bool,
) -> Desc {
    Desc {
        name,
        magic,
        prefix,
        id,
        suffix,
        legacy,
    }
}

/// One kind of image file (CRIU's `CR_FD_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ImageKind {
    /// `inventory.img` (`CR_FD_INVENTORY`).
    Inventory,
    /// `fdinfo-%u.img` (`CR_FD_FDINFO`).
    Fdinfo,
    /// `pagemap-%lu.img` (`CR_FD_PAGEMAP`).
    Pagemap,
    /// `pagemap-shmem-%lu.img` (`CR_FD_SHMEM_PAGEMAP`).
    ShmemPagemap,
    /// `reg-files.img` (`CR_FD_REG_FILES`).
    RegFiles,
    /// `ext-files.img` (`CR_FD_EXT_FILES`).
    ExtFiles,
    /// `ns-files.img` (`CR_FD_NS_FILES`).
    NsFiles,
    /// `eventfd.img` (`CR_FD_EVENTFD_FILE`).
    EventfdFile,
    /// `eventpoll.img` (`CR_FD_EVENTPOLL_FILE`).
    EventpollFile,
    /// `eventpoll-tfd.img` (`CR_FD_EVENTPOLL_TFD`).
    EventpollTfd,
    /// `signalfd.img` (`CR_FD_SIGNALFD`).
    Signalfd,
    /// `inotify.img` (`CR_FD_INOTIFY_FILE`).
    InotifyFile,
    /// `inotify-wd.img` (`CR_FD_INOTIFY_WD`).
    InotifyWd,
    /// `fanotify.img` (`CR_FD_FANOTIFY_FILE`).
    FanotifyFile,
    /// `fanotify-mark.img` (`CR_FD_FANOTIFY_MARK`).
    FanotifyMark,
    /// `core-%u.img` (`CR_FD_CORE`).
    Core,
    /// `ids-%u.img` (`CR_FD_IDS`).
    Ids,
    /// `mm-%u.img` (`CR_FD_MM`).
    Mm,
    /// `vmas-%u.img` (`CR_FD_VMAS`; legacy, only old CRIU versions write it).
    Vmas,
    /// `pipes.img` (`CR_FD_PIPES`).
    Pipes,
    /// `pipes-data.img` (`CR_FD_PIPES_DATA`).
    PipesData,
    /// `fifo.img` (`CR_FD_FIFO`).
    Fifo,
    /// `fifo-data.img` (`CR_FD_FIFO_DATA`).
    FifoData,
    /// `pstree.img` (`CR_FD_PSTREE`).
    Pstree,
    /// `sigacts-%u.img` (`CR_FD_SIGACT`; legacy, only old CRIU versions write it).
    Sigact,
    /// `unixsk.img` (`CR_FD_UNIXSK`).
    Unixsk,
    /// `inetsk.img` (`CR_FD_INETSK`).
    Inetsk,
    /// `packetsk.img` (`CR_FD_PACKETSK`).
    Packetsk,
    /// `netlinksk.img` (`CR_FD_NETLINK_SK`).
    NetlinkSk,
    /// `sk-queues.img` (`CR_FD_SK_QUEUES`).
    SkQueues,
    /// `itimers-%u.img` (`CR_FD_ITIMERS`; legacy, only old CRIU versions write it).
    Itimers,
    /// `posix-timers-%u.img` (`CR_FD_POSIX_TIMERS`; legacy, only old CRIU versions write it).
    PosixTimers,
    /// `creds-%u.img` (`CR_FD_CREDS`; legacy, only old CRIU versions write it).
    Creds,
    /// `utsns-%u.img` (`CR_FD_UTSNS`).
    Utsns,
    /// `ipcns-var-%u.img` (`CR_FD_IPC_VAR`).
    IpcVar,
    /// `ipcns-shm-%u.img` (`CR_FD_IPCNS_SHM`).
    IpcnsShm,
    /// `ipcns-msg-%u.img` (`CR_FD_IPCNS_MSG`).
    IpcnsMsg,
    /// `ipcns-sem-%u.img` (`CR_FD_IPCNS_SEM`).
    IpcnsSem,
    /// `fs-%u.img` (`CR_FD_FS`).
    Fs,
    /// `remap-fpath.img` (`CR_FD_REMAP_FPATH`).
    RemapFpath,
    /// `ghost-file-%x.img` (`CR_FD_GHOST_FILE`).
    GhostFile,
    /// `memfd.img` (`CR_FD_MEMFD_INODE`).
    MemfdInode,
    /// `tcp-stream-%x.img` (`CR_FD_TCP_STREAM`).
    TcpStream,
    /// `mountpoints-%u.img` (`CR_FD_MNTS`).
    Mnts,
    /// `netdev-%u.img` (`CR_FD_NETDEV`).
    Netdev,
    /// `netns-%u.img` (`CR_FD_NETNS`).
    Netns,
    /// `ifaddr-%u.img` (`CR_FD_IFADDR`; raw, no header).
    Ifaddr,
    /// `route-%u.img` (`CR_FD_ROUTE`; raw, no header).
    Route,
    /// `route6-%u.img` (`CR_FD_ROUTE6`; raw, no header).
    Route6,
    /// `rule-%u.img` (`CR_FD_RULE`; raw, no header).
    Rule,
    /// `iptables-%u.img` (`CR_FD_IPTABLES`; raw, no header).
    Iptables,
    /// `ip6tables-%u.img` (`CR_FD_IP6TABLES`; raw, no header).
    Ip6tables,
    /// `nftables-%u.img` (`CR_FD_NFTABLES`; raw, no header).
    Nftables,
    /// `tmpfs-%u.tar.gz.img` (`CR_FD_TMPFS_IMG`; raw, no header).
    TmpfsImg,
    /// `tmpfs-dev-%u.tar.gz.img` (`CR_FD_TMPFS_DEV`; raw, no header).
    TmpfsDev,
    /// `autofs-%u.img` (`CR_FD_AUTOFS`).
    Autofs,
    /// `binfmt-misc-%u.img` (`CR_FD_BINFMT_MISC_OLD`; legacy, only old CRIU versions write it).
    BinfmtMiscOld,
    /// `binfmt-misc.img` (`CR_FD_BINFMT_MISC`).
    BinfmtMisc,
    /// `tty.img` (`CR_FD_TTY_FILES`).
    TtyFiles,
    /// `tty-info.img` (`CR_FD_TTY_INFO`).
    TtyInfo,
    /// `tty-data.img` (`CR_FD_TTY_DATA`).
    TtyData,
    /// `filelocks.img` (`CR_FD_FILE_LOCKS`).
    FileLocks,
    /// `rlimit-%u.img` (`CR_FD_RLIMIT`; legacy, only old CRIU versions write it).
    Rlimit,
    /// `pages-%u.img` (`CR_FD_PAGES`; raw, no header).
    Pages,
    /// `pages-%d.img` (`CR_FD_PAGES_OLD`; legacy, only old CRIU versions write it).
    PagesOld,
    /// `pages-shmem-%ld.img` (`CR_FD_SHM_PAGES_OLD`; legacy, only old CRIU versions write it).
    ShmPagesOld,
    /// `signal-s-%u.img` (`CR_FD_SIGNAL`; legacy, only old CRIU versions write it).
    Signal,
    /// `signal-p-%u.img` (`CR_FD_PSIGNAL`; legacy, only old CRIU versions write it).
    Psignal,
    /// `tunfile.img` (`CR_FD_TUNFILE`).
    Tunfile,
    /// `cgroup.img` (`CR_FD_CGROUP`).
    Cgroup,
    /// `timerfd.img` (`CR_FD_TIMERFD`).
    Timerfd,
    /// `cpuinfo.img` (`CR_FD_CPUINFO`).
    Cpuinfo,
    /// `seccomp.img` (`CR_FD_SECCOMP`).
    Seccomp,
    /// `userns-%u.img` (`CR_FD_USERNS`).
    Userns,
    /// `netns-ct-%u.img` (`CR_FD_NETNF_CT`; raw, no header).
    NetnfCt,
    /// `netns-exp-%u.img` (`CR_FD_NETNF_EXP`; raw, no header).
    NetnfExp,
    /// `files.img` (`CR_FD_FILES`).
    Files,
    /// `timens-%u.img` (`CR_FD_TIMENS`).
    Timens,
    /// `pidns-%u.img` (`CR_FD_PIDNS`).
    Pidns,
    /// `bpfmap-file.img` (`CR_FD_BPFMAP_FILE`).
    BpfmapFile,
    /// `bpfmap-data.img` (`CR_FD_BPFMAP_DATA`).
    BpfmapData,
    /// `apparmor.img` (`CR_FD_APPARMOR`).
    Apparmor,
    /// `pidfd.img` (`CR_FD_PIDFD`).
    Pidfd,
    /// `stats-dump` (`CR_FD_STATS`; service file, no `.img`).
    StatsDump,
    /// `stats-restore` (`CR_FD_STATS`; service file, no `.img`).
    StatsRestore,
    /// `irmap-cache` (`CR_FD_IRMAP_CACHE`; service file, no `.img`).
    IrmapCache,
}

impl ImageKind {
    /// Every kind, in `image-desc.c` order (legacy kinds after the current kind sharing their
    /// file name, so [`ImageKind::from_file_name`] prefers the current one).
    pub const ALL: &'static [ImageKind] = &[
        Self::Inventory,
        Self::Fdinfo,
        Self::Pagemap,
        Self::ShmemPagemap,
        Self::RegFiles,
        Self::ExtFiles,
        Self::NsFiles,
        Self::EventfdFile,
        Self::EventpollFile,
        Self::EventpollTfd,
        Self::Signalfd,
        Self::InotifyFile,
        Self::InotifyWd,
        Self::FanotifyFile,
        Self::FanotifyMark,
        Self::Core,
        Self::Ids,
        Self::Mm,
        Self::Vmas,
        Self::Pipes,
        Self::PipesData,
        Self::Fifo,
        Self::FifoData,
        Self::Pstree,
        Self::Sigact,
        Self::Unixsk,
        Self::Inetsk,
        Self::Packetsk,
        Self::NetlinkSk,
        Self::SkQueues,
        Self::Itimers,
        Self::PosixTimers,
        Self::Creds,
        Self::Utsns,
        Self::IpcVar,
        Self::IpcnsShm,
        Self::IpcnsMsg,
        Self::IpcnsSem,
        Self::Fs,
        Self::RemapFpath,
        Self::GhostFile,
        Self::MemfdInode,
        Self::TcpStream,
        Self::Mnts,
        Self::Netdev,
        Self::Netns,
        Self::Ifaddr,
        Self::Route,
        Self::Route6,
        Self::Rule,
        Self::Iptables,
        Self::Ip6tables,
        Self::Nftables,
        Self::TmpfsImg,
        Self::TmpfsDev,
        Self::Autofs,
        Self::BinfmtMiscOld,
        Self::BinfmtMisc,
        Self::TtyFiles,
        Self::TtyInfo,
        Self::TtyData,
        Self::FileLocks,
        Self::Rlimit,
        Self::Pages,
        Self::PagesOld,
        Self::ShmPagesOld,
        Self::Signal,
        Self::Psignal,
        Self::Tunfile,
        Self::Cgroup,
        Self::Timerfd,
        Self::Cpuinfo,
        Self::Seccomp,
        Self::Userns,
        Self::NetnfCt,
        Self::NetnfExp,
        Self::Files,
        Self::Timens,
        Self::Pidns,
        Self::BpfmapFile,
        Self::BpfmapData,
        Self::Apparmor,
        Self::Pidfd,
        Self::StatsDump,
        Self::StatsRestore,
        Self::IrmapCache,
    ];

    fn desc(self) -> Desc {
        match self {
            Self::Inventory => d(
                "INVENTORY",
                INVENTORY_MAGIC,
                "inventory",
                IdFmt::None,
                "",
                false,
            ),
            Self::Fdinfo => d("FDINFO", FDINFO_MAGIC, "fdinfo-", IdFmt::U32, "", false),
            Self::Pagemap => d("PAGEMAP", PAGEMAP_MAGIC, "pagemap-", IdFmt::U64, "", false),
            Self::ShmemPagemap => d(
                "SHMEM_PAGEMAP",
                SHMEM_PAGEMAP_MAGIC,
                "pagemap-shmem-",
                IdFmt::U64,
                "",
                false,
            ),
            Self::RegFiles => d(
                "REG_FILES",
                REG_FILES_MAGIC,
                "reg-files",
                IdFmt::None,
                "",
                false,
            ),
            Self::ExtFiles => d(
                "EXT_FILES",
                EXT_FILES_MAGIC,
                "ext-files",
                IdFmt::None,
                "",
                false,
            ),
            Self::NsFiles => d(
                "NS_FILES",
                NS_FILES_MAGIC,
                "ns-files",
                IdFmt::None,
                "",
                false,
            ),
            Self::EventfdFile => d(
                "EVENTFD_FILE",
                EVENTFD_FILE_MAGIC,
                "eventfd",
                IdFmt::None,
                "",
                false,
            ),
            Self::EventpollFile => d(
                "EVENTPOLL_FILE",
                EVENTPOLL_FILE_MAGIC,
                "eventpoll",
                IdFmt::None,
                "",
                false,
            ),
            Self::EventpollTfd => d(
                "EVENTPOLL_TFD",
                EVENTPOLL_TFD_MAGIC,
                "eventpoll-tfd",
                IdFmt::None,
                "",
                false,
            ),
            Self::Signalfd => d(
                "SIGNALFD",
                SIGNALFD_MAGIC,
                "signalfd",
                IdFmt::None,
                "",
                false,
            ),
            Self::InotifyFile => d(
                "INOTIFY_FILE",
                INOTIFY_FILE_MAGIC,
                "inotify",
                IdFmt::None,
                "",
                false,
            ),
            Self::InotifyWd => d(
                "INOTIFY_WD",
                INOTIFY_WD_MAGIC,
                "inotify-wd",
                IdFmt::None,
                "",
                false,
            ),
            Self::FanotifyFile => d(
                "FANOTIFY_FILE",
                FANOTIFY_FILE_MAGIC,
                "fanotify",
                IdFmt::None,
                "",
                false,
            ),
            Self::FanotifyMark => d(
                "FANOTIFY_MARK",
                FANOTIFY_MARK_MAGIC,
                "fanotify-mark",
                IdFmt::None,
                "",
                false,
            ),
            Self::Core => d("CORE", CORE_MAGIC, "core-", IdFmt::U32, "", false),
            Self::Ids => d("IDS", IDS_MAGIC, "ids-", IdFmt::U32, "", false),
            Self::Mm => d("MM", MM_MAGIC, "mm-", IdFmt::U32, "", false),
            Self::Vmas => d("VMAS", VMAS_MAGIC, "vmas-", IdFmt::U32, "", true),
            Self::Pipes => d("PIPES", PIPES_MAGIC, "pipes", IdFmt::None, "", false),
            Self::PipesData => d(
                "PIPES_DATA",
                PIPES_DATA_MAGIC,
                "pipes-data",
                IdFmt::None,
                "",
                false,
            ),
            Self::Fifo => d("FIFO", FIFO_MAGIC, "fifo", IdFmt::None, "", false),
            Self::FifoData => d(
                "FIFO_DATA",
                FIFO_DATA_MAGIC,
                "fifo-data",
                IdFmt::None,
                "",
                false,
            ),
            Self::Pstree => d("PSTREE", PSTREE_MAGIC, "pstree", IdFmt::None, "", false),
            Self::Sigact => d("SIGACT", SIGACT_MAGIC, "sigacts-", IdFmt::U32, "", true),
            Self::Unixsk => d("UNIXSK", UNIXSK_MAGIC, "unixsk", IdFmt::None, "", false),
            Self::Inetsk => d("INETSK", INETSK_MAGIC, "inetsk", IdFmt::None, "", false),
            Self::Packetsk => d(
                "PACKETSK",
                PACKETSK_MAGIC,
                "packetsk",
                IdFmt::None,
                "",
                false,
            ),
            Self::NetlinkSk => d(
                "NETLINK_SK",
                NETLINK_SK_MAGIC,
                "netlinksk",
                IdFmt::None,
                "",
                false,
            ),
            Self::SkQueues => d(
                "SK_QUEUES",
                SK_QUEUES_MAGIC,
                "sk-queues",
                IdFmt::None,
                "",
                false,
            ),
            Self::Itimers => d("ITIMERS", ITIMERS_MAGIC, "itimers-", IdFmt::U32, "", true),
            Self::PosixTimers => d(
                "POSIX_TIMERS",
                POSIX_TIMERS_MAGIC,
                "posix-timers-",
                IdFmt::U32,
                "",
                true,
            ),
            Self::Creds => d("CREDS", CREDS_MAGIC, "creds-", IdFmt::U32, "", true),
            Self::Utsns => d("UTSNS", UTSNS_MAGIC, "utsns-", IdFmt::U32, "", false),
            Self::IpcVar => d(
                "IPC_VAR",
                IPC_VAR_MAGIC,
                "ipcns-var-",
                IdFmt::U32,
                "",
                false,
            ),
            Self::IpcnsShm => d(
                "IPCNS_SHM",
                IPCNS_SHM_MAGIC,
                "ipcns-shm-",
                IdFmt::U32,
                "",
                false,
            ),
            Self::IpcnsMsg => d(
                "IPCNS_MSG",
                IPCNS_MSG_MAGIC,
                "ipcns-msg-",
                IdFmt::U32,
                "",
                false,
            ),
            Self::IpcnsSem => d(
                "IPCNS_SEM",
                IPCNS_SEM_MAGIC,
                "ipcns-sem-",
                IdFmt::U32,
                "",
                false,
            ),
            Self::Fs => d("FS", FS_MAGIC, "fs-", IdFmt::U32, "", false),
            Self::RemapFpath => d(
                "REMAP_FPATH",
                REMAP_FPATH_MAGIC,
                "remap-fpath",
                IdFmt::None,
                "",
                false,
            ),
            Self::GhostFile => d(
                "GHOST_FILE",
                GHOST_FILE_MAGIC,
                "ghost-file-",
                IdFmt::Hex,
                "",
                false,
            ),
            Self::MemfdInode => d(
                "MEMFD_INODE",
                MEMFD_INODE_MAGIC,
                "memfd",
                IdFmt::None,
                "",
                false,
            ),
            Self::TcpStream => d(
                "TCP_STREAM",
                TCP_STREAM_MAGIC,
                "tcp-stream-",
                IdFmt::Hex,
                "",
                false,
            ),
            Self::Mnts => d("MNTS", MNTS_MAGIC, "mountpoints-", IdFmt::U32, "", false),
            Self::Netdev => d("NETDEV", NETDEV_MAGIC, "netdev-", IdFmt::U32, "", false),
            Self::Netns => d("NETNS", NETNS_MAGIC, "netns-", IdFmt::U32, "", false),
            Self::Ifaddr => d("IFADDR", IFADDR_MAGIC, "ifaddr-", IdFmt::U32, "", false),
            Self::Route => d("ROUTE", ROUTE_MAGIC, "route-", IdFmt::U32, "", false),
            Self::Route6 => d("ROUTE6", ROUTE6_MAGIC, "route6-", IdFmt::U32, "", false),
            Self::Rule => d("RULE", RULE_MAGIC, "rule-", IdFmt::U32, "", false),
            Self::Iptables => d(
                "IPTABLES",
                IPTABLES_MAGIC,
                "iptables-",
                IdFmt::U32,
                "",
                false,
            ),
            Self::Ip6tables => d(
                "IP6TABLES",
                IP6TABLES_MAGIC,
                "ip6tables-",
                IdFmt::U32,
                "",
                false,
            ),
            Self::Nftables => d(
                "NFTABLES",
                NFTABLES_MAGIC,
                "nftables-",
                IdFmt::U32,
                "",
                false,
            ),
            Self::TmpfsImg => d(
                "TMPFS_IMG",
                TMPFS_IMG_MAGIC,
                "tmpfs-",
                IdFmt::U32,
                ".tar.gz",
                false,
            ),
            Self::TmpfsDev => d(
                "TMPFS_DEV",
                TMPFS_DEV_MAGIC,
                "tmpfs-dev-",
                IdFmt::U32,
                ".tar.gz",
                false,
            ),
            Self::Autofs => d("AUTOFS", AUTOFS_MAGIC, "autofs-", IdFmt::U32, "", false),
            Self::BinfmtMiscOld => d(
                "BINFMT_MISC_OLD",
                BINFMT_MISC_OLD_MAGIC,
                "binfmt-misc-",
                IdFmt::U32,
                "",
                true,
            ),
            Self::BinfmtMisc => d(
                "BINFMT_MISC",
                BINFMT_MISC_MAGIC,
                "binfmt-misc",
                IdFmt::None,
                "",
                false,
            ),
            Self::TtyFiles => d("TTY_FILES", TTY_FILES_MAGIC, "tty", IdFmt::None, "", false),
            Self::TtyInfo => d(
                "TTY_INFO",
                TTY_INFO_MAGIC,
                "tty-info",
                IdFmt::None,
                "",
                false,
            ),
            Self::TtyData => d(
                "TTY_DATA",
                TTY_DATA_MAGIC,
                "tty-data",
                IdFmt::None,
                "",
                false,
            ),
            Self::FileLocks => d(
                "FILE_LOCKS",
                FILE_LOCKS_MAGIC,
                "filelocks",
                IdFmt::None,
                "",
                false,
            ),
            Self::Rlimit => d("RLIMIT", RLIMIT_MAGIC, "rlimit-", IdFmt::U32, "", true),
            Self::Pages => d("PAGES", PAGES_MAGIC, "pages-", IdFmt::U32, "", false),
            Self::PagesOld => d("PAGES_OLD", PAGES_OLD_MAGIC, "pages-", IdFmt::I32, "", true),
            Self::ShmPagesOld => d(
                "SHM_PAGES_OLD",
                SHM_PAGES_OLD_MAGIC,
                "pages-shmem-",
                IdFmt::I64,
                "",
                true,
            ),
            Self::Signal => d("SIGNAL", SIGNAL_MAGIC, "signal-s-", IdFmt::U32, "", true),
            Self::Psignal => d("PSIGNAL", PSIGNAL_MAGIC, "signal-p-", IdFmt::U32, "", true),
            Self::Tunfile => d("TUNFILE", TUNFILE_MAGIC, "tunfile", IdFmt::None, "", false),
            Self::Cgroup => d("CGROUP", CGROUP_MAGIC, "cgroup", IdFmt::None, "", false),
            Self::Timerfd => d("TIMERFD", TIMERFD_MAGIC, "timerfd", IdFmt::None, "", false),
            Self::Cpuinfo => d("CPUINFO", CPUINFO_MAGIC, "cpuinfo", IdFmt::None, "", false),
            Self::Seccomp => d("SECCOMP", SECCOMP_MAGIC, "seccomp", IdFmt::None, "", false),
            Self::Userns => d("USERNS", USERNS_MAGIC, "userns-", IdFmt::U32, "", false),
            Self::NetnfCt => d(
                "NETNF_CT",
                NETNF_CT_MAGIC,
                "netns-ct-",
                IdFmt::U32,
                "",
                false,
            ),
            Self::NetnfExp => d(
                "NETNF_EXP",
                NETNF_EXP_MAGIC,
                "netns-exp-",
                IdFmt::U32,
                "",
                false,
            ),
            Self::Files => d("FILES", FILES_MAGIC, "files", IdFmt::None, "", false),
            Self::Timens => d("TIMENS", TIMENS_MAGIC, "timens-", IdFmt::U32, "", false),
            Self::Pidns => d("PIDNS", PIDNS_MAGIC, "pidns-", IdFmt::U32, "", false),
            Self::BpfmapFile => d(
                "BPFMAP_FILE",
                BPFMAP_FILE_MAGIC,
                "bpfmap-file",
                IdFmt::None,
                "",
                false,
            ),
            Self::BpfmapData => d(
                "BPFMAP_DATA",
                BPFMAP_DATA_MAGIC,
                "bpfmap-data",
                IdFmt::None,
                "",
                false,
            ),
            Self::Apparmor => d(
                "APPARMOR",
                APPARMOR_MAGIC,
                "apparmor",
                IdFmt::None,
                "",
                false,
            ),
            Self::Pidfd => d("PIDFD", PIDFD_MAGIC, "pidfd", IdFmt::None, "", false),
            Self::StatsDump => d("STATS", STATS_MAGIC, "stats-dump", IdFmt::None, "", false),
            Self::StatsRestore => d(
                "STATS",
                STATS_MAGIC,
                "stats-restore",
                IdFmt::None,
                "",
                false,
            ),
            Self::IrmapCache => d(
                "IRMAP_CACHE",
                IRMAP_CACHE_MAGIC,
                "irmap-cache",
                IdFmt::None,
                "",
                false,
            ),
        }
    }

    /// CRIU's name of the kind: `CR_FD_` + this (`"CORE"`, `"SHMEM_PAGEMAP"`, `"STATS"`).
    pub fn name(self) -> &'static str {
        self.desc().name
    }

    /// The image's own magic (the second header word; the only one for inventory).
    /// [`RAW_IMAGE_MAGIC`] (0) for raw images, which have no header.
    pub fn magic(self) -> u32 {
        self.desc().magic
    }

    /// The first header word: `IMG_SERVICE_MAGIC` for service files, `None` for inventory and raw
    /// images, `IMG_COMMON_MAGIC` for the rest.
    pub fn head_magic(self) -> Option<u32> {
        if self == ImageKind::Inventory || self.is_raw() {
            None
        } else if self.is_service() {
            Some(IMG_SERVICE_MAGIC)
        } else {
            Some(IMG_COMMON_MAGIC)
        }
    }

    /// crit's name of the image (the `magic` field of its JSON), `None` for raw images.
    pub fn crit_name(self) -> Option<&'static str> {
        magic_name(self.magic())
    }

    /// Raw images have no header and no framing: `pages-N.img`, network dumps, tarballs.
    pub fn is_raw(self) -> bool {
        self.magic() == RAW_IMAGE_MAGIC
    }

    /// Service files (stats, irmap cache) start with `IMG_SERVICE_MAGIC`.
    pub fn is_service(self) -> bool {
        matches!(self.magic(), STATS_MAGIC | IRMAP_CACHE_MAGIC)
    }

    /// Whether the file name carries an id (`core-%u`): [`ImageKind::file_name`] then needs one.
    pub fn needs_id(self) -> bool {
        self.desc().id != IdFmt::None
    }

    /// How the file name carries its id.
    pub fn id_fmt(self) -> IdFmt {
        self.desc().id
    }

    /// Only older CRIU versions write this kind (its content moved elsewhere, e.g. `creds-N`
    /// into `core-N`); cryo reads it at most.
    pub fn is_legacy(self) -> bool {
        self.desc().legacy
    }

    /// Whether a restore may find this image missing. CRIU reads a missing image as an empty
    /// one; only inventory, pstree and core images must exist.
    pub fn is_optional(self) -> bool {
        !matches!(
            self,
            ImageKind::Inventory | ImageKind::Pstree | ImageKind::Core
        )
    }

    /// The file name for `id`: `core-42.img`, `ghost-file-1f.img`, `pstree.img`.
    ///
    /// Fails with [`ImageError::BadId`] when a kind with an id gets none, a kind without one
    /// gets one, or the id is out of the template's range (above `u32::MAX` for `%u`).
    pub fn file_name(self, id: Option<u64>) -> Result<String, ImageError> {
        let desc = self.desc();
        let bad = || ImageError::BadId {
            kind: desc.name,
            id,
        };
        let id_text = match (desc.id, id) {
            (IdFmt::None, None) => String::new(),
            (IdFmt::None, Some(_)) | (_, None) => return Err(bad()),
            (fmt, Some(v)) if v > fmt.max() => return Err(bad()),
            (IdFmt::Hex, Some(v)) => format!("{v:x}"),
            (_, Some(v)) => v.to_string(),
        };
        // CRIU's service files have no `.img` (image-desc.c: "stats-%s", "irmap-cache").
        let ext = if self.is_service() { "" } else { ".img" };
        Ok(format!("{}{}{}{ext}", desc.prefix, id_text, desc.suffix))
    }

    /// The kind and id of a file name written by [`ImageKind::file_name`], `None` for a name no
    /// kind makes. `pages-N.img` is [`ImageKind::Pages`] (not the legacy `PagesOld`).
    pub fn from_file_name(name: &str) -> Option<(ImageKind, Option<u64>)> {
        ImageKind::ALL.iter().find_map(|&kind| {
            let stem = if kind.is_service() {
                name
            } else {
                name.strip_suffix(".img")?
            };
            let desc = kind.desc();
            let rest = stem.strip_prefix(desc.prefix)?.strip_suffix(desc.suffix)?;
            let id = match desc.id {
                IdFmt::None if rest.is_empty() => None,
                IdFmt::None => return None,
                fmt => {
                    let canonical = rest.bytes().all(|b| b.is_ascii_hexdigit())
                        && !rest.is_empty()
                        && (rest == "0" || !rest.starts_with('0'));
                    if !canonical {
                        return None;
                    }
                    let v = if fmt == IdFmt::Hex {
                        if rest.bytes().any(|b| b.is_ascii_uppercase()) {
                            return None;
                        }
                        u64::from_str_radix(rest, 16).ok()?
                    } else {
                        rest.parse::<u64>().ok()?
                    };
                    if v > fmt.max() {
                        return None;
                    }
                    Some(v)
                }
            };
            Some((kind, id))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_follow_criu_templates() {
        let cases: &[(ImageKind, Option<u64>, &str)] = &[
            (ImageKind::Inventory, None, "inventory.img"),
            (ImageKind::Pstree, None, "pstree.img"),
            (ImageKind::Core, Some(42), "core-42.img"),
            (ImageKind::Ids, Some(1), "ids-1.img"),
            (ImageKind::Mm, Some(7), "mm-7.img"),
            (ImageKind::Pagemap, Some(7), "pagemap-7.img"),
            (
                ImageKind::ShmemPagemap,
                Some(1 << 40),
                "pagemap-shmem-1099511627776.img",
            ),
            (ImageKind::Pages, Some(3), "pages-3.img"),
            (ImageKind::Fs, Some(9), "fs-9.img"),
            (ImageKind::Files, None, "files.img"),
            (ImageKind::Fdinfo, Some(2), "fdinfo-2.img"),
            (ImageKind::GhostFile, Some(0x1f), "ghost-file-1f.img"),
            (ImageKind::TcpStream, Some(255), "tcp-stream-ff.img"),
            (ImageKind::RemapFpath, None, "remap-fpath.img"),
            (ImageKind::TtyInfo, None, "tty-info.img"),
            (ImageKind::TtyData, None, "tty-data.img"),
            (ImageKind::Sigact, Some(5), "sigacts-5.img"),
            (ImageKind::Signal, Some(5), "signal-s-5.img"),
            (ImageKind::Psignal, Some(5), "signal-p-5.img"),
            (ImageKind::TmpfsDev, Some(12), "tmpfs-dev-12.tar.gz.img"),
            (ImageKind::StatsDump, None, "stats-dump"),
            (ImageKind::StatsRestore, None, "stats-restore"),
            (ImageKind::IrmapCache, None, "irmap-cache"),
            (ImageKind::Mnts, Some(3), "mountpoints-3.img"),
            (ImageKind::Unixsk, None, "unixsk.img"),
            (ImageKind::Seccomp, None, "seccomp.img"),
        ];
        for (kind, id, name) in cases {
            assert_eq!(kind.file_name(*id).ok().as_deref(), Some(*name), "{kind:?}");
            let back = ImageKind::from_file_name(name);
            assert_eq!(back, Some((*kind, *id)), "{name}");
        }
    }

    #[test]
    fn bad_ids_are_errors() {
        assert!(ImageKind::Core.file_name(None).is_err());
        assert!(ImageKind::Pstree.file_name(Some(1)).is_err());
        assert!(ImageKind::Core.file_name(Some(1 << 32)).is_err());
        assert!(ImageKind::GhostFile.file_name(Some(1 << 32)).is_err());
        assert!(ImageKind::Pagemap.file_name(Some(u64::MAX)).is_ok());
        assert_eq!(ImageKind::from_file_name("core-.img"), None);
        assert_eq!(ImageKind::from_file_name("core-01.img"), None);
        assert_eq!(ImageKind::from_file_name("core-4294967296.img"), None);
        assert_eq!(ImageKind::from_file_name("ghost-file-1F.img"), None);
        assert_eq!(ImageKind::from_file_name("core-1a.img"), None);
        assert_eq!(ImageKind::from_file_name("nothing.img"), None);
        assert_eq!(ImageKind::from_file_name("pstree"), None);
    }

    #[test]
    fn every_kind_round_trips_its_name() {
        for &kind in ImageKind::ALL {
            let id = kind.needs_id().then_some(17);
            let name = kind.file_name(id).unwrap_or_default();
            let back = ImageKind::from_file_name(&name);
            if kind == ImageKind::PagesOld {
                assert_eq!(back, Some((ImageKind::Pages, id)));
            } else {
                assert_eq!(back, Some((kind, id)), "{name}");
            }
        }
    }

    #[test]
    fn headers_and_crit_names() {
        assert_eq!(ImageKind::Inventory.head_magic(), None);
        assert_eq!(ImageKind::Inventory.magic(), INVENTORY_MAGIC);
        assert_eq!(ImageKind::Pages.head_magic(), None);
        assert!(ImageKind::Pages.is_raw());
        assert_eq!(ImageKind::Pages.crit_name(), None);
        assert_eq!(ImageKind::Core.head_magic(), Some(IMG_COMMON_MAGIC));
        assert_eq!(ImageKind::StatsDump.head_magic(), Some(IMG_SERVICE_MAGIC));
        assert_eq!(ImageKind::IrmapCache.head_magic(), Some(IMG_SERVICE_MAGIC));
        assert_eq!(ImageKind::ShmemPagemap.crit_name(), Some("PAGEMAP"));
        assert_eq!(ImageKind::Core.crit_name(), Some("CORE"));
        assert_eq!(ImageKind::Core.name(), "CORE");
        assert!(!ImageKind::Core.is_optional());
        assert!(ImageKind::Fdinfo.is_optional());
        assert!(ImageKind::Creds.is_legacy());
        assert!(!ImageKind::Core.is_legacy());
        let service: Vec<_> = ImageKind::ALL.iter().filter(|k| k.is_service()).collect();
        assert_eq!(service.len(), 3);
        for &kind in ImageKind::ALL {
            assert_eq!(kind.is_raw(), kind.crit_name().is_none(), "{kind:?}");
        }
    }
}
