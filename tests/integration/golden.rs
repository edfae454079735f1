//! Dry-run golden tests.
