//! What one step of this process needs in memory, read from Linux's `/proc/self`: the
//! peak resident set (`VmHWM`) is reset to the current one just before the step (by
//! writing "5" to `/proc/self/clear_refs`) and read right after it. The bench measures
//! our training this way, and its Python peers measure theirs the same way
//! (`benches/peers.py`), so the figures compare. Where there is no `/proc` (or the reset
//! is refused) the figures are `None`.

use std::io::Write;

/// The peak memory of one step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StepMemory {
    /// The process's peak resident set during the step (`VmHWM` after it).
    pub peak_rss_bytes: Option<u64>,
    /// That peak minus the resident set before the step: what the step itself needed.
    pub extra_rss_bytes: Option<u64>,
}

/// Runs `step` and returns its result with its peak memory.
pub fn measure<T>(step: impl FnOnce() -> T) -> (T, StepMemory) {
    let before = rss_bytes();
    let reset = reset_peak();
    let out = step();
    let peak = if reset { peak_rss_bytes() } else { None };
    let extra = peak.zip(before).map(|(p, b)| p.saturating_sub(b));
    (
        out,
        StepMemory {
            peak_rss_bytes: peak,
            extra_rss_bytes: extra,
        },
    )
}

/// The current resident set (`VmRSS`).
pub fn rss_bytes() -> Option<u64> {
    status_field(&std::fs::read_to_string("/proc/self/status").ok()?, "VmRSS")
}

/// The peak resident set since the process started or the last [`reset_peak`] (`VmHWM`).
pub fn peak_rss_bytes() -> Option<u64> {
    status_field(&std::fs::read_to_string("/proc/self/status").ok()?, "VmHWM")
}

/// Resets the peak resident set to the current one; false where that is not possible.
pub fn reset_peak() -> bool {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/self/clear_refs")
        .and_then(|mut f| f.write_all(b"5"))
        .is_ok()
}

/// A `kB` field of `/proc/self/status` (`VmHWM:    1234 kB`), in bytes.
fn status_field(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        let mut parts = rest.split_whitespace();
        let n: u64 = parts.next()?.parse().ok()?;
        (parts.next()? == "kB").then_some(n * 1024)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_are_read_in_bytes() {
        let status = "Name:\tspamscope\nVmHWM:\t  2048 kB\nVmRSS:\t   1024 kB\nThreads:\t3\n";
        assert_eq!(status_field(status, "VmHWM"), Some(2048 * 1024));
        assert_eq!(status_field(status, "VmRSS"), Some(1024 * 1024));
        assert_eq!(status_field(status, "VmSwap"), None);
        // Not a kB field, or a field whose name only starts the same.
        assert_eq!(status_field(status, "Threads"), None);
        assert_eq!(status_field("VmRSSx:\t1 kB\n", "VmRSS"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_peak_of_a_step_is_plausible_on_linux() {
        let rss = rss_bytes().expect("VmRSS on Linux");
        let peak = peak_rss_bytes().expect("VmHWM on Linux");
        // More than a megabyte and less than a terabyte, the peak at least the current.
        assert!(rss > 1 << 20 && rss < 1 << 40, "{rss}");
        assert!(peak >= rss, "{peak} < {rss}");
        let (sum, m) = measure(|| {
            // 64 MB touched page by page: the step's extra memory must see it.
            let v = vec![1u8; 64 << 20];
            std::hint::black_box(&v)
                .iter()
                .step_by(4096)
                .map(|&b| b as u64)
                .sum::<u64>()
        });
        assert_eq!(sum, (64 << 20) / 4096);
        // On Linux the peak can always be reset (clear_refs) and read: both figures
        // must be there.
        let peak = m.peak_rss_bytes.expect("the step's peak on Linux");
        let extra = m.extra_rss_bytes.expect("the step's extra memory on Linux");
        // Other tests run (and free memory) on other threads of this process: a loose
        // lower bound.
        assert!(extra >= 32 << 20, "{extra}");
        assert!(peak >= extra, "{peak} < {extra}");
    }
}
