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

/// Serve `emu` on a free port of 127.0.0.1 from a background thread with its own runtime
/// (for tests and benchmarks that are not async); returns the port.
pub fn spawn(emu: Emulator) -> u16 {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(l.local_addr().expect("local address").port())
                .expect("report the port");
            axum::serve(l, app(emu)).await.expect("serve");
        });
    });
    rx.recv().expect("the emulator reports its port")
}
