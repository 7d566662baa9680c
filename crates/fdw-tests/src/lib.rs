//! Tests only: see tests/core.
