//! clerk_fdw: Clerk's Backend API (users, organizations, memberships, invitations) as foreign
//! tables.

mod client;
mod objects;
mod wrapper;

pub use client::{Budget, RateLimit};
pub use objects::Object;
pub use wrapper::ClerkFdw;
