//! Printing figures: one line per figure, the target next to it when there is one. Nothing here
//! asserts: a benchmark reports, a person judges (timings on a shared 2-core machine are noisy).

use std::time::Duration;

/// What the figures were measured on, printed before them: figures without a machine are
/// meaningless.
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub mem_total_mb: u64,
}

pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_total_mb = proc_kb(&meminfo, "MemTotal:").unwrap_or(0) / 1024;
    Machine {
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        cpu_model,
        mem_total_mb,
    }
}

/// The title of a benchmark and the machine it runs on.
pub fn header(title: &str, params: &str) {
    let m = machine();
    println!("== {title} ==");
    println!(
        "machine: {} CPUs (nproc), {}, {} MB RAM",
        m.cpus, m.cpu_model, m.mem_total_mb
    );
    println!("parameters: {params}");
}

/// A figure without a target.
pub fn figure(label: &str, value: impl AsRef<str>) {
    println!("{label:<44} {}", value.as_ref());
}

/// A figure next to its target, with whether this run met it.
pub fn against(label: &str, value: impl AsRef<str>, target: &str, met: bool) {
    let verdict = if met { "met" } else { "MISSED" };
    println!(
        "{label:<44} {:<28} target {target}: {verdict}",
        value.as_ref()
    );
}

/// The `p`-th percentile (0..=100) of sorted samples, nearest-rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// `n` events in `d`, per second.
pub fn rate(n: usize, d: Duration) -> f64 {
    if d.is_zero() {
        return 0.0;
    }
    n as f64 / d.as_secs_f64()
}

/// CPU time of this process and of every child it has waited for (user + system, with their
/// own waited-for children), in seconds, from `/proc/self/stat` (clock ticks of 1/100 s on
/// Linux); 0 without /proc.
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime, stime, cutime, cstime are fields 14-17 of the line, 12-15 after `) state`.
    let ticks: u64 = (11..15)
        .filter_map(|i| fields.get(i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    ticks as f64 / 100.0
}

/// Resident memory of a process, in KiB (`VmRSS` in `/proc/PID/status`).
pub fn vm_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    proc_kb(&status, "VmRSS:")
}

/// Peak resident memory of a process so far, in KiB (`VmHWM` in `/proc/PID/status`).
pub fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    proc_kb(&status, "VmHWM:")
}

/// Value of a `Key:   1234 kB` line of a /proc file.
fn proc_kb(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&v, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&v, 100.0), Duration::from_millis(100));
        assert_eq!(percentile(&v[..1], 99.0), Duration::from_millis(1));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }

    #[test]
    fn reads_proc_values() {
        let text = "Name:\tx\nVmRSS:\t   12345 kB\n";
        assert_eq!(proc_kb(text, "VmRSS:"), Some(12345));
        assert_eq!(proc_kb(text, "VmHWM:"), None);
        assert!(vm_rss_kb(std::process::id()).unwrap() > 0);
    }
}
