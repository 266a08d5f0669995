//! Failpoints for tests of the crash windows and of stage supervision: named
//! places where a debug build (every test) fails on purpose when the
//! `WALHOOK_FAILPOINTS` environment variable lists the name (comma
//! separated). Release builds compile every check to `false`.

/// Whether the failpoint `name` is armed (debug builds only).
pub fn armed(name: &str) -> bool {
    cfg!(debug_assertions)
        && std::env::var("WALHOOK_FAILPOINTS")
            .is_ok_and(|names| names.split(',').any(|n| n.trim() == name))
}
