//! Bootstrap options (CLI flags and environment). Runtime config lives in SQL.
