//! What the kernel says about an operator process: resident memory now and at its peak, and
//! the CPU time it has used, read from `/proc/<pid>/status` and `/proc/<pid>/stat`.

use crate::Result;

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    /// `VmRSS`, MiB.
    pub rss_mib: f64,
    /// `VmHWM`: the peak resident set since the process started, MiB.
    pub peak_rss_mib: f64,
    /// user + system CPU seconds (`utime` + `stime`).
    pub cpu_seconds: f64,
}

pub fn read(pid: u32) -> Result<ProcessStats> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    Ok(ProcessStats {
        rss_mib: status_kib(&status, "VmRSS:").ok_or("no VmRSS")? / 1024.0,
        peak_rss_mib: status_kib(&status, "VmHWM:").ok_or("no VmHWM")? / 1024.0,
        cpu_seconds: cpu_ticks(&stat).ok_or("unreadable /proc/<pid>/stat")? as f64 / clock_ticks(),
    })
}

/// `VmRSS:    51234 kB` → 51234.
fn status_kib(status: &str, key: &str) -> Option<f64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// utime + stime, fields 14 and 15 of `stat`; counted after the `)` that ends the command name,
/// which may itself hold spaces or parentheses.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state), so field n is fields[n - 3].
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_stat_fields_are_read_where_the_kernel_puts_them() {
        let status = "Name:\tflagger\nVmHWM:\t   58368 kB\nVmRSS:\t   51200 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(51200.0));
        assert_eq!(status_kib(status, "VmHWM:"), Some(58368.0));
        // A command name with a space and a parenthesis must not shift the fields.
        let stat = "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 70 0 0 20 0 8 0";
        assert_eq!(cpu_ticks(stat), Some(320));
    }

    #[test]
    fn this_process_can_be_read() {
        let s = read(std::process::id()).unwrap();
        assert!(s.rss_mib > 0.0 && s.peak_rss_mib >= s.rss_mib);
    }
}
