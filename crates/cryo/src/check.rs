//! `cryo check`: does this kernel have what cryo needs?
//!
//! Without options the required features are probed (`cryo_sys::probe`); all there prints
//! "Looks good." and exits 0, otherwise each missing one is logged as an error and the exit
//! status is 1. `--extra` (or `--all`) probes the features needed only in some cases too; a missing
//! one is a warning and, as in CRIU, makes the status 1 after "Looks good but some kernel features
//! are missing...". A missing feature that another one replaces (soft-dirty bits, replaced by
//! userfaultfd write-protection with PAGEMAP_SCAN) is only mentioned.
//!
//! `--feature NAME` checks one feature and prints "NAME is supported" (status 0) or logs why not
//! (status 1). NAME is one of CRIU's feature names (criu/cr-check.c, what zdtm asks for) or one of
//! cryo's probe names. CRIU features cryo does not probe yet count as unsupported, so callers such
//! as zdtm skip what depends on them.

use crate::cli::CheckArgs;
use cryo_sys::probe::{self, FeatureReport, Probe, PROBES};

/// How a CRIU feature maps onto cryo's probes.
#[derive(Debug, Clone, Copy)]
enum Need {
    /// Every one of these probes must pass.
    All(&'static [&'static str]),
    /// One of these probes must pass.
    Any(&'static [&'static str]),
    /// cryo does not probe this yet.
    Unchecked,
}

/// CRIU 4.2's feature names (`feature_list` in criu/cr-check.c), in its order.
const CRIU_FEATURES: &[(&str, Need)] = &[
    ("mnt_id", Need::All(&["fdinfo_mnt_id"])),
    (
        "mem_dirty_track",
        Need::Any(&["uffd_wp_async", "soft_dirty"]),
    ),
    ("aio_remap", Need::Unchecked),
    ("timerfd", Need::Unchecked),
    ("tun", Need::Unchecked),
    ("tun_ns", Need::Unchecked),
    ("userns", Need::All(&["user_ns"])),
    ("fdinfo_lock", Need::Unchecked),
    ("seccomp_suspend", Need::All(&["ptrace_suspend_seccomp"])),
    ("seccomp_filters", Need::Unchecked),
    ("loginuid", Need::All(&["loginuid"])),
    ("cgroupns", Need::All(&["cgroup_ns"])),
    ("autofs", Need::Unchecked),
    ("tcp_half_closed", Need::Unchecked),
    ("compat_cr", Need::Unchecked),
    ("uffd", Need::All(&["uffd"])),
    ("uffd-noncoop", Need::All(&["uffd_noncoop"])),
    ("can_map_vdso", Need::Unchecked),
    ("sk_ns", Need::Unchecked),
    ("sk_unix_file", Need::Unchecked),
    ("net_diag_raw", Need::Unchecked),
    ("nsid", Need::Unchecked),
    ("link_nsid", Need::Unchecked),
    ("kcmp_epoll", Need::All(&["kcmp_epoll"])),
    ("timens", Need::All(&["time_ns"])),
    ("external_net_ns", Need::Unchecked),
    ("clone3_set_tid", Need::All(&["clone3_set_tid"])),
    ("newifindex", Need::Unchecked),
    ("nftables", Need::Unchecked),
    ("has_ipt_legacy", Need::Unchecked),
    ("pidfd_store", Need::All(&["pidfd_open", "pidfd_getfd"])),
    ("ns_pid", Need::All(&["ns_pid"])),
    ("apparmor_stacking", Need::Unchecked),
    ("network_lock_nftables", Need::Unchecked),
    ("sockopt_buf_lock", Need::Unchecked),
    ("memfd_hugetlb", Need::All(&["memfd_hugetlb"])),
    ("move_mount_set_group", Need::Unchecked),
    ("openat2", Need::All(&["openat2"])),
    ("get_rseq_conf", Need::All(&["ptrace_get_rseq_conf"])),
    ("ipv6_freebind", Need::Unchecked),
    ("pagemap_scan", Need::All(&["pagemap_scan"])),
    ("timer_cr_ids", Need::Unchecked),
    ("overlayfs_maps", Need::Unchecked),
    ("breakpoints", Need::Unchecked),
    (
        "pagemap_scan_guard_pages",
        Need::All(&["pagemap_scan_guard_pages"]),
    ),
];

/// Optional probes another probe makes unnecessary: (probe, replaced by).
const SUPERSEDED: &[(&str, &str)] = &[
    ("soft_dirty", "uffd_wp_async"),
    ("ns_last_pid", "clone3_set_tid"),
];

const CHECK_GOOD: &str = "Looks good.";
const CHECK_BAD: &str = "Does not look good.";
const CHECK_MAYBE: &str = "Looks good but some kernel features are missing\n\
    which, depending on your process tree, may cause\n\
    dump or restore failure.";

/// The text `cryo check --help` ends with: the feature names `--feature` takes.
pub fn features_help() -> String {
    let mut s = String::from("Features for --feature (CRIU's names):\n");
    s.push_str(&wrap(CRIU_FEATURES.iter().map(|(n, _)| *n)));
    s.push_str("\n\ncryo's probes (also valid for --feature; * = required):\n");
    s.push_str(&wrap(PROBES.iter().map(|p| {
        if p.required {
            format!("{}*", p.name)
        } else {
            p.name.to_string()
        }
    })));
    s
}

fn wrap<I: IntoIterator<Item = S>, S: AsRef<str>>(names: I) -> String {
    let mut out = String::from("  ");
    let mut col = 2;
    for (i, n) in names.into_iter().enumerate() {
        let n = n.as_ref();
        if i > 0 {
            out.push(',');
            col += 1;
            if col + n.len() + 1 > 78 {
                out.push_str("\n  ");
                col = 2;
            } else {
                out.push(' ');
                col += 1;
            }
        }
        out.push_str(n);
        col += n.len();
    }
    out
}

fn find_probe(name: &str) -> Option<&'static Probe> {
    PROBES.iter().find(|p| p.name == name)
}

/// Run `cryo check`; returns the exit status.
pub fn run(args: &CheckArgs) -> anyhow::Result<u8> {
    if let Some(name) = &args.feature {
        return check_feature(name);
    }
    let extra = args.extra || args.all;
    if args.experimental || args.all {
        tracing::debug!("cryo has no experimental features to check");
    }
    let reports: Vec<FeatureReport> = PROBES
        .iter()
        .filter(|p| p.required || extra)
        .map(Probe::report)
        .collect();
    Ok(judge(&reports))
}

/// Log what the reports say, print the verdict on stdout and return the exit status.
fn judge(reports: &[FeatureReport]) -> u8 {
    let ok = |name: &str| reports.iter().any(|r| r.name == name && r.ok);
    let what = |name: &str| find_probe(name).map_or("", |p| p.what);
    let mut missing_required = 0;
    let mut missing_optional = 0;
    for r in reports {
        if r.ok {
            tracing::info!("{}: ok: {}", r.name, r.detail);
            continue;
        }
        if r.required {
            missing_required += 1;
            tracing::error!(
                "required kernel feature {} ({}) is missing: {}",
                r.name,
                what(r.name),
                r.detail
            );
        } else if let Some((_, by)) = SUPERSEDED.iter().find(|(n, by)| *n == r.name && ok(by)) {
            tracing::info!("{}: missing ({}), not needed: {by} works", r.name, r.detail);
        } else {
            missing_optional += 1;
            tracing::warn!(
                "kernel feature {} ({}) is missing: {}",
                r.name,
                what(r.name),
                r.detail
            );
        }
    }
    if missing_required > 0 {
        tracing::warn!("{CHECK_BAD}");
        return 1;
    }
    if missing_optional > 0 {
        println!("{CHECK_MAYBE}");
        return 1;
    }
    println!("{CHECK_GOOD}");
    0
}

/// `--feature NAME`.
fn check_feature(name: &str) -> anyhow::Result<u8> {
    let need = match CRIU_FEATURES.iter().find(|(n, _)| *n == name) {
        Some((_, need)) => *need,
        None => match find_probe(name) {
            Some(p) => Need::All(std::slice::from_ref(&p.name)),
            None => anyhow::bail!("unknown feature {name} (see 'cryo check --help')"),
        },
    };
    let (supported, why) = match need {
        Need::Unchecked => (false, "cryo does not check it yet".to_string()),
        Need::All(names) | Need::Any(names) => {
            let reports: Vec<FeatureReport> =
                names.iter().filter_map(|n| probe::probe_named(n)).collect();
            for r in &reports {
                tracing::info!(
                    "{}: {}: {}",
                    r.name,
                    if r.ok { "ok" } else { "missing" },
                    r.detail
                );
            }
            let supported = !reports.is_empty()
                && match need {
                    Need::Any(_) => reports.iter().any(|r| r.ok),
                    _ => reports.iter().all(|r| r.ok),
                };
            let why: Vec<String> = reports
                .iter()
                .filter(|r| !r.ok)
                .map(|r| {
                    if r.name == name {
                        r.detail.clone()
                    } else {
                        format!("{}: {}", r.name, r.detail)
                    }
                })
                .collect();
            (supported, why.join("; "))
        }
    };
    if supported {
        println!("{name} is supported");
        Ok(0)
    } else {
        tracing::warn!("{name} is not supported: {why}");
        Ok(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mapped_probe_exists() {
        for (name, need) in CRIU_FEATURES {
            if let Need::All(p) | Need::Any(p) = need {
                for p in *p {
                    assert!(find_probe(p).is_some(), "{name} needs unknown probe {p}");
                }
            }
        }
        for (a, b) in SUPERSEDED {
            assert!(find_probe(a).is_some() && find_probe(b).is_some());
        }
    }

    #[test]
    fn criu_feature_list_is_complete() {
        // The 45 names of CRIU 4.2's feature_list.
        assert_eq!(CRIU_FEATURES.len(), 45);
    }

    fn report(name: &'static str, required: bool, ok: bool) -> FeatureReport {
        FeatureReport {
            name,
            required,
            ok,
            detail: "x".into(),
        }
    }

    #[test]
    fn verdicts() {
        assert_eq!(judge(&[report("kcmp", true, true)]), 0);
        assert_eq!(judge(&[report("kcmp", true, false)]), 1);
        assert_eq!(
            judge(&[report("kcmp", true, true), report("uffd", false, false)]),
            1
        );
        // Soft-dirty missing does not matter when uffd-wp dirty tracking works.
        assert_eq!(
            judge(&[
                report("uffd_wp_async", false, true),
                report("soft_dirty", false, false)
            ]),
            0
        );
        assert_eq!(
            judge(&[
                report("uffd_wp_async", false, false),
                report("soft_dirty", false, false)
            ]),
            1
        );
    }

    #[test]
    fn feature_answers() {
        assert!(check_feature("no_such_feature").is_err());
        assert_eq!(check_feature("aio_remap").ok(), Some(1));
        assert!(check_feature("uffd").is_ok());
        assert!(check_feature("kcmp").is_ok());
    }

    #[test]
    fn help_lists_features() {
        let h = features_help();
        assert!(h.contains("mem_dirty_track") && h.contains("uffd_wp_async"));
        assert!(h.lines().all(|l| l.len() <= 80), "{h}");
    }
}
