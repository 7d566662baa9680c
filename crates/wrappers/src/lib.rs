//! The wrappers' logic in plain Rust: what to ask the remote API for, and how to turn its
//! replies into rows. The pgrx extensions only export these through the FDW core.

pub mod checks;
pub mod clerk;
pub mod prometheus;
