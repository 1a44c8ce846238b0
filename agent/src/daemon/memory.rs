//! How large the captures' memory pool is (`otdrift_protocols::budget`): `[agent]
//! memory_budget` when the config says; otherwise half the memory limit of the service's
//! cgroup (the unit's `MemoryMax=`, which the kernel shows as `memory.max`), leaving the rest
//! for the runtime, SQLite, the API and the push worker; otherwise the fixed default.

use std::path::Path;

use otdrift_protocols::budget::DEFAULT_BYTES;

/// Where the pool's size came from, for the start-up log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// `[agent] memory_budget`.
    Config,
    /// Half the cgroup's `memory.max`.
    MemoryMax,
    /// The fixed default.
    Default,
}

impl Source {
    /// The name the log line uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Config => "[agent] memory_budget",
            Source::MemoryMax => "half of the service's MemoryMax",
            Source::Default => "the default",
        }
    }
}

/// The pool's size: the configured one, else half of `memory_max` (the cgroup's limit, when
/// it has one), else [`DEFAULT_BYTES`].
pub fn pool_size(configured: Option<u64>, memory_max: Option<u64>) -> (u64, Source) {
    match (configured, memory_max) {
        (Some(n), _) => (n, Source::Config),
        (None, Some(max)) => (max / 2, Source::MemoryMax),
        (None, None) => (DEFAULT_BYTES, Source::Default),
    }
}

/// The memory limit of this process's cgroup (v2), when it has a number: the cgroup named in
/// `/proc/self/cgroup` under `/sys/fs/cgroup` (a systemd service's own cgroup), else
/// `/sys/fs/cgroup/memory.max` itself (inside a container's cgroup namespace).
pub fn cgroup_memory_max() -> Option<u64> {
    let root = Path::new("/sys/fs/cgroup");
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|text| unified_path(&text).map(str::to_owned));
    own.iter()
        .map(|p| root.join(p.trim_start_matches('/')).join("memory.max"))
        .chain(std::iter::once(root.join("memory.max")))
        .find_map(|file| parse_memory_max(&std::fs::read_to_string(file).ok()?))
}

/// The cgroup v2 path in `/proc/self/cgroup` (the `0::` line).
fn unified_path(text: &str) -> Option<&str> {
    text.lines().find_map(|l| l.strip_prefix("0::"))
}

/// `memory.max` as a number of bytes; `max` (no limit) or anything else is none.
fn parse_memory_max(text: &str) -> Option<u64> {
    text.trim().parse().ok().filter(|&n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_wins_then_half_of_memory_max_then_the_default() {
        assert_eq!(
            pool_size(Some(64 << 20), Some(1 << 30)),
            (64 << 20, Source::Config)
        );
        // The shipped unit's MemoryMax=256M.
        assert_eq!(
            pool_size(None, Some(256 << 20)),
            (128 << 20, Source::MemoryMax)
        );
        assert_eq!(pool_size(None, None), (DEFAULT_BYTES, Source::Default));
    }

    #[test]
    fn memory_max_is_a_number_or_nothing() {
        assert_eq!(parse_memory_max("268435456\n"), Some(256 << 20));
        assert_eq!(parse_memory_max("max\n"), None);
        assert_eq!(parse_memory_max("0\n"), None);
        assert_eq!(parse_memory_max(""), None);
        assert_eq!(
            unified_path("12:memory:/x\n0::/system.slice/otdrift.service\n"),
            Some("/system.slice/otdrift.service")
        );
        assert_eq!(unified_path("12:memory:/x\n"), None);
    }
}
