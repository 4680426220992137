//! Turning the configured per-run limits into the server's cgroup subtree: explicit limits
//! the host can't enforce stop the start, defaults that can't be enforced are warned about,
//! and the active ones are logged.

use std::sync::Arc;

use contree_core::{Error, Result};

use crate::config::{DEFAULT_RUN_MEMORY, DEFAULT_RUN_PIDS, LocalConfig, RunLimit};
use crate::sandbox::cgroup::{CgroupHost, CgroupLimits, Cgroups, Controller};

/// The limits to enforce on `host`, and a warning for each default left out.
pub(crate) fn resolve(config: &LocalConfig, host: &CgroupHost) -> Result<(CgroupLimits, Vec<String>)> {
    let mut warnings = Vec::new();
    let mut pick = |field: &str, c: Controller, limit: RunLimit<()>| -> Result<bool> {
        match (limit, host.unavailable(c)) {
            (RunLimit::Unlimited, _) => Ok(false),
            (RunLimit::Set(()), Some(why)) => {
                Err(Error::config(format!("{field} was asked for but this host can't enforce it: {why}")))
            }
            (RunLimit::Default, Some(why)) => {
                warnings.push(format!("the default {field} is NOT enforced: {why}"));
                Ok(false)
            }
            (_, None) => Ok(true),
        }
    };
    let unit = |l: RunLimit<u64>| match l {
        RunLimit::Default => RunLimit::Default,
        RunLimit::Unlimited => RunLimit::Unlimited,
        RunLimit::Set(_) => RunLimit::Set(()),
    };
    let mut limits = CgroupLimits::default();
    if pick("run_memory", Controller::Memory, unit(config.run_memory))? {
        limits.memory_bytes = Some(match config.run_memory {
            RunLimit::Set(m) => m,
            _ => default_memory(),
        });
    }
    if pick("run_pids", Controller::Pids, unit(config.run_pids))? {
        limits.pids = Some(match config.run_pids {
            RunLimit::Set(n) => n,
            _ => DEFAULT_RUN_PIDS,
        });
    }
    // The default is no quota: nothing to enforce, only the equal weight (best effort).
    if let RunLimit::Set(cpus) = config.run_cpus {
        pick("run_cpus", Controller::Cpu, RunLimit::Set(()))?;
        limits.cpus = Some(cpus);
    }
    Ok((limits, warnings))
}

/// 2 GiB, or half the RAM when that is less.
fn default_memory() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| {
        let line = t.lines().find(|l| l.starts_with("MemTotal:"))?;
        line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
    });
    match total {
        Some(t) if t > 0 => DEFAULT_RUN_MEMORY.min(t / 2),
        _ => DEFAULT_RUN_MEMORY,
    }
}

/// Resolves the limits on this host, removes subtrees of dead servers, creates this
/// server's subtree, and logs which limits are active.
pub(crate) fn setup(config: &LocalConfig) -> Result<Option<Arc<Cgroups>>> {
    let host = CgroupHost::detect().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot read this process' cgroups");
        CgroupHost::from_proc("", "")
    });
    setup_on(config, &host)
}

fn setup_on(config: &LocalConfig, host: &CgroupHost) -> Result<Option<Arc<Cgroups>>> {
    let (limits, warnings) = resolve(config, host)?;
    for w in &warnings {
        tracing::warn!("run limits: {w}");
    }
    host.remove_stale();
    let weight = host.unavailable(Controller::Cpu).is_none();
    if limits == CgroupLimits::default() && !weight {
        tracing::warn!("run limits: none are active (runs are bounded only by the server's own cgroups)");
        return Ok(None);
    }
    let cgroups = Cgroups::create(host, limits)
        .map_err(|e| Error::config(format!("cannot create the cgroups that limit runs: {e}")))?;
    let layout = |c| host.layout(c).unwrap_or("-");
    let show = |v: Option<String>| v.unwrap_or_else(|| "unlimited".to_owned());
    tracing::info!(
        memory_bytes = %show(limits.memory_bytes.map(|m| m.to_string())),
        memory_cgroup = layout(Controller::Memory),
        pids = %show(limits.pids.map(|n| n.to_string())),
        pids_cgroup = layout(Controller::Pids),
        cpus = %show(limits.cpus.map(|c| c.to_string())),
        cpu_equal_weight = weight,
        cpu_cgroup = layout(Controller::Cpu),
        "run limits active"
    );
    Ok(Some(cgroups))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A fake unified hierarchy whose server cgroup delegates only `delegated`.
    fn fake_v2(root: &std::path::Path, delegated: &str) -> CgroupHost {
        fs::create_dir_all(root.join("srv")).unwrap();
        fs::write(root.join("srv/cgroup.subtree_control"), delegated).unwrap();
        let mountinfo = format!("30 1 0:26 / {} rw - cgroup2 cgroup2 rw\n", root.display());
        CgroupHost::from_proc(&mountinfo, "0::/srv\n")
    }

    #[test]
    fn an_explicit_limit_the_host_cannot_enforce_refuses_the_start() {
        let t = tempfile::tempdir().unwrap();
        let host = fake_v2(t.path(), "cpu pids");
        let e = setup_on(&LocalConfig::default().with_run_memory(256 << 20), &host).unwrap_err();
        assert!(e.is_config(), "{e}");
        let msg = e.to_string();
        assert!(msg.contains("run_memory") && msg.contains("memory controller"), "{msg}");
        // Nothing was created for a refused start.
        assert_eq!(fs::read_dir(t.path().join("srv")).unwrap().flatten().filter(|e| e.path().is_dir()).count(), 0);

        let host = fake_v2(t.path(), "memory");
        let e = setup_on(&LocalConfig::default().with_run_cpus(1.0), &host).unwrap_err();
        assert!(e.to_string().contains("run_cpus"), "{e}");
        let e = setup_on(&LocalConfig::default().with_run_pids(64), &host).unwrap_err();
        assert!(e.to_string().contains("run_pids"), "{e}");
    }

    #[test]
    fn defaults_that_cannot_be_enforced_are_named_in_warnings() {
        let t = tempfile::tempdir().unwrap();
        let host = fake_v2(t.path(), "pids");
        let (limits, warnings) = resolve(&LocalConfig::default(), &host).unwrap();
        assert_eq!(limits.memory_bytes, None);
        assert_eq!(limits.pids, Some(DEFAULT_RUN_PIDS));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("run_memory") && warnings[0].contains("NOT enforced"));
        // Unlimited is not a warning.
        let (_, warnings) = resolve(&LocalConfig::default().with_run_memory(RunLimit::Unlimited), &host).unwrap();
        assert!(warnings.is_empty());
        // Nothing usable at all: no limits, no subtree, the start goes on.
        let none = CgroupHost::from_proc("", "");
        assert!(setup_on(&LocalConfig::default(), &none).unwrap().is_none());
    }

    #[test]
    fn default_memory_is_bounded_by_ram() {
        let m = default_memory();
        assert!(m > 0 && m <= DEFAULT_RUN_MEMORY);
    }
}
