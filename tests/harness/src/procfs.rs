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

/// CPU time a process has used so far, in nanoseconds: what each of its threads has run
/// (`/proc/<pid>/task/<tid>/schedstat`), where [`cpu_ticks`] counts in 10 ms steps. A thread
/// that exits takes its count with it, so the counts are remembered from one reading to the
/// next: a thread that is gone counts what it had run at the last reading, and only what it
/// ran after that reading and before exiting is missed (tokio's and Go's idle threads exit
/// idle, so that is nothing for the processes measured here). Readings of one process must
/// come from one caller at a time for that to hold; `None` once the process is gone.
pub fn cpu_ns(pid: u32) -> Option<u64> {
    use std::collections::HashMap;
    use std::sync::Mutex;
    /// Per process (id and start time, so that a reused id is another process): the last
    /// count of each thread seen, and the counts of threads whose ids were since reused.
    type Seen = HashMap<(u32, u64), (HashMap<u32, u64>, u64)>;
    static SEEN: Mutex<Option<Seen>> = Mutex::new(None);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22, counted after the command name (which may hold spaces).
    let started: u64 = stat
        .rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()?;
    let mut live = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Some(tid) = entry
            .ok()
            .and_then(|e| e.file_name().to_str()?.parse().ok())
        else {
            continue;
        };
        // A thread may exit between the listing and the read: its last count stays.
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat")) {
            if let Some(ns) = stat.split_whitespace().next().and_then(|n| n.parse().ok()) {
                live.push((tid, ns));
            }
        }
    }
    let mut guard = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    let (threads, retired) = guard
        .get_or_insert_with(HashMap::new)
        .entry((pid, started))
        .or_default();
    for (tid, ns) in live {
        let last = threads.entry(tid).or_insert(0);
        if ns < *last {
            // Not the thread seen before: a new one with a reused id.
            *retired += *last;
        }
        *last = ns;
    }
    Some(*retired + threads.values().sum::<u64>())
}
