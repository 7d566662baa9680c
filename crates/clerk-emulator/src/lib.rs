#![recursion_limit = "256"]
//! An emulator of Clerk's Backend API for tests and the demo.
//!
//! `data` generates a deterministic population from a seed (the warehouse's control-plane
//! generator reuses it, so ids match across sources); `server` serves it with Clerk's JSON
//! shapes, pagination, Bearer auth, a per-key rate limit and faults tests can switch on.

pub mod data;
pub mod server;

pub use data::{Dataset, Spec};
pub use server::{app, Emulator, Faults};
