//! The process's memory: how much is resident, and handing back what the allocator keeps after frees.

use anyhow::{Context, Result};

/// Where Linux says how much memory this process holds.
const STATUS_PATH: &str = "/proc/self/status";

/// This process's resident memory (`VmRSS`) in MiB, or `None` where there is no `/proc` (not Linux).
pub fn resident_mib() -> Result<Option<f64>> {
    let status = match std::fs::read_to_string(STATUS_PATH) {
        Ok(status) => status,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).with_context(|| format!("read {STATUS_PATH}")),
    };
    let kib = resident_kib(&status).with_context(|| format!("find the resident memory in {STATUS_PATH}"))?;
    Ok(Some(kib as f64 / 1024.0))
}

/// The `VmRSS` line of a `/proc/<pid>/status` text, in KiB (which the kernel writes as "kB").
fn resident_kib(status: &str) -> Result<u64> {
    let line = status.lines().find_map(|line| line.strip_prefix("VmRSS:")).context("no VmRSS line")?;
    let kib = line.trim().strip_suffix("kB").with_context(|| format!("VmRSS:{line} is not in kB"))?;
    kib.trim().parse().with_context(|| format!("VmRSS:{line} is not a number of kB"))
}

/// Returns to the operating system the memory freed since the allocator last did. glibc keeps freed
/// memory for reuse; without this, the resident memory measured after opening a store in the process
/// that built it would count what the build left behind, which a server opening the store never has.
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only gives back pages no allocation uses; it is safe to call at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_memory_is_read_from_the_vmrss_line() {
        let status = "Name:\tstrata\nVmHWM:\t  900000 kB\nVmRSS:\t  123456 kB\nRssAnon:\t  100000 kB\n";
        assert_eq!(resident_kib(status).unwrap(), 123_456);
        assert!(resident_kib("Name:\tstrata\n").is_err());
        assert!(resident_kib("VmRSS:\t  12 MB\n").is_err());
    }

    #[test]
    fn this_process_has_some_resident_memory() {
        if let Some(mib) = resident_mib().unwrap() {
            assert!(mib > 0.0, "{mib} MiB");
        }
    }
}
