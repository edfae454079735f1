//! CLI behaviour tests.
