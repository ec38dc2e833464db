//! What `/proc/<pid>` says about a child process (threads, memory, descriptors, CPU time): the
//! readers the leak tests, the soak and the bench share. Each returns `None` once the process is
//! gone; the caller decides whether that is a failure.

/// A numeric field of `/proc/<pid>/status` (`Threads`, or `VmRSS`/`VmHWM` in KiB).
pub fn status(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// [`status`], 0 once the process is gone.
pub fn status_field(pid: u32, field: &str) -> u64 {
    status(pid, field).unwrap_or(0)
}

/// How many file descriptors the process holds open.
pub fn open_fds(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count())
}

/// User plus system CPU time so far, in clock ticks (100 a second on Linux).
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().skip(11).take(2).collect();
    let [utime, stime] = fields[..] else {
        return None;
    };
    Some(utime.parse::<u64>().ok()? + stime.parse::<u64>().ok()?)
}
