//! Printing to stdout the way command-line tools should: when the reader goes away
//! (`pgdw status | head -2`, `grep -m1`, a closed pager), pgdw neither panics nor stops half-way
//! through its work (`pgdw up | head -1` still starts the server): the rest of its output is
//! dropped quietly. SIGPIPE stays ignored (Rust's default), so a client that drops a socket
//! never kills `pgdw serve`.

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Print one line (`outln!`).
#[macro_export]
macro_rules! outln {
    () => { $crate::out::line(format_args!("")) };
    ($($arg:tt)*) => { $crate::out::line(format_args!($($arg)*)) };
}

static GONE: AtomicBool = AtomicBool::new(false);

/// Write `args` and a newline to stdout, unless nobody reads it any more.
pub fn line(args: fmt::Arguments) {
    if GONE.load(Ordering::Relaxed) {
        return;
    }
    let mut out = io::stdout().lock();
    let result = out
        .write_fmt(args)
        .and_then(|_| out.write_all(b"\n"))
        .and_then(|_| out.flush());
    if let Err(e) = result {
        GONE.store(true, Ordering::Relaxed);
        if e.kind() != io::ErrorKind::BrokenPipe {
            eprintln!("pgdw: cannot write to stdout ({e}); going on without printing");
        }
    }
}
