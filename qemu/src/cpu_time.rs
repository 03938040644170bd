//! How much host CPU a guest has used: the QEMU process's user plus system time.
//!
//! An idle guest whose cores halt costs QEMU almost nothing; one that polls costs a
//! whole host CPU per polling vCPU. Tests sample [`Guest::qemu_cpu_time`] twice and
//! compare the difference with the wall-clock time between the samples.
//!
//! QEMU is found as the `qemu-system-*` child of `run.sh` in the guest's process group
//! (`run.sh` waits for QEMU rather than `exec`ing it), and its time is read from
//! `/proc/PID/stat`, whose `utime` and `stime` cover every thread (vCPUs included).

use std::fs;
use std::process::Command;
use std::time::Duration;

use crate::failure::Failure;
use crate::guest::Guest;

/// The fields of `/proc/PID/stat` a test needs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stat {
    /// The executable name, as the kernel truncates it (15 bytes).
    comm: String,
    /// One letter: `R`unning, `S`leeping, `Z`ombie, ...
    state: char,
    parent: u32,
    process_group: u32,
    /// User plus system time, in clock ticks (`CLK_TCK` per second).
    ticks: u64,
}

/// Parses one `/proc/PID/stat` line: `pid (comm) state ppid pgrp ... utime stime ...`.
/// `comm` may hold spaces and parentheses, so the fields start after its last `)`.
fn parse_stat(stat: &str) -> Option<Stat> {
    let (head, fields) = stat.rsplit_once(')')?;
    let (_, comm) = head.split_once('(')?;
    let fields: Vec<&str> = fields.split_whitespace().collect();
    // Counting from `state` (field 3 in proc(5)): ppid is 4, pgrp 5, utime 14, stime 15.
    let field = |number: usize| fields.get(number - 3).copied();
    let state = field(3)?.chars().next()?;
    let parent = field(4)?.parse().ok()?;
    let process_group = field(5)?.parse().ok()?;
    let user: u64 = field(14)?.parse().ok()?;
    let system: u64 = field(15)?.parse().ok()?;
    Some(Stat {
        comm: comm.to_string(),
        state,
        parent,
        process_group,
        ticks: user + system,
    })
}

/// Clock ticks per second, the unit of `utime` and `stime` (`getconf CLK_TCK`).
fn clock_ticks_per_second() -> Result<u64, String> {
    let output = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .map_err(|error| format!("cannot run `getconf CLK_TCK`: {error}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.trim()
        .parse()
        .ok()
        .filter(|&ticks| ticks > 0)
        .ok_or_else(|| format!("`getconf CLK_TCK` printed `{}`", text.trim()))
}

/// Every live (not zombie) `qemu-system-*` process whose parent is `run_sh` and whose
/// process group is `group`, with its stat.
fn qemu_processes(run_sh: u32, group: u32) -> Vec<(u32, Stat)> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = parse_stat(&fs::read_to_string(entry.path().join("stat")).ok()?)?;
            (stat.parent == run_sh
                && stat.process_group == group
                && stat.state != 'Z'
                && stat.comm.starts_with("qemu-system"))
            .then_some((pid, stat))
        })
        .collect()
}

impl Guest {
    /// The host CPU time (user plus system, all threads) the guest's QEMU process has
    /// used so far. The resolution is one clock tick (10 ms on Linux).
    ///
    /// # Errors
    ///
    /// A [`Failure`] with the console when no running QEMU process belongs to this guest
    /// (it has exited, or `run.sh` has not started it yet), when there is more than one,
    /// or when `CLK_TCK` cannot be had.
    pub fn qemu_cpu_time(&self) -> Result<Duration, Failure> {
        let group = self.process_group();
        // run.sh leads its process group, so its pid is the group id.
        let processes = qemu_processes(group, group);
        let stat = match processes.as_slice() {
            [(_, stat)] => stat,
            [] => {
                return Err(self.failure(format!(
                    "no running QEMU process in process group {group} (QEMU has exited?)"
                )));
            }
            several => {
                let pids: Vec<u32> = several.iter().map(|(pid, _)| *pid).collect();
                return Err(self.failure(format!(
                    "several QEMU processes in process group {group}: {pids:?}"
                )));
            }
        };
        let per_second = clock_ticks_per_second().map_err(|reason| self.failure(reason))?;
        Ok(Duration::from_nanos(
            stat.ticks * 1_000_000_000 / per_second,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_whose_name_holds_spaces_and_parentheses() {
        // Fields after the name: state ppid pgrp session tty tpgid flags minflt cminflt
        // majflt cmajflt utime stime ...
        let line = "4242 (qemu (x) 86) S 17 17 17 0 -1 4194560 100 0 0 0 250 31 0 0 20 0";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                comm: "qemu (x) 86".into(),
                state: 'S',
                parent: 17,
                process_group: 17,
                ticks: 281,
            })
        );
        assert_eq!(parse_stat("4242 (cut short) S 17"), None);
    }

    #[test]
    fn this_process_has_a_readable_stat() {
        let stat = fs::read_to_string("/proc/self/stat").unwrap();
        let stat = parse_stat(&stat).unwrap();
        assert_ne!(stat.state, 'Z');
        assert!(clock_ticks_per_second().unwrap() > 0);
    }
}
