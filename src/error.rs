//! Top-level error kinds of the daemon, and which are worth a retry.
