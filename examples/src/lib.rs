//! Programs that combine several ioman crates, and the HTTP demo as a small library.
//!
//! This package is not published (`publish = false`): it holds what needs more than one of
//! the crates, so that no published crate's tests or examples depend on a sibling they do
//! not otherwise need (`ioman-poll`, `ioman-timers` and `ioman-wakeup` depend on nothing of
//! each other).
//!
//! - The library is the keep-alive HTTP/1.1 demo on [`ioman::EventManager`]: the protocol
//!   subset ([`http`]), the server ([`server`]), an ioman load generator ([`loadgen`]) and
//!   the self-driving run that ties them together ([`demo`]). The `http_server` example,
//!   this package's integration test and the `http` benchmark of `ioman-bench` use it.
//! - `examples/http_server.rs`: the demonstration,
//!   `cargo run --release -p ioman-examples --example http_server`.
//! - `examples/custom_manager.rs`: an event loop assembled by hand from `ioman-poll`,
//!   `ioman-timers` and `ioman-wakeup`, without the `ioman` crate,
//!   `cargo run -p ioman-examples --example custom_manager`.

pub mod demo;
pub mod http;
pub mod loadgen;
pub mod server;
pub mod sys;

/// The workspace README, compiled as doc tests from here (a package that is never
/// published may reach outside itself; the published crates each test their own README).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct WorkspaceReadme;

/// `ioman-timers`' README, whose crate leaves its doc tests to its own docs.
#[cfg(doctest)]
#[doc = include_str!("../../crates/timers/README.md")]
struct TimersReadme;
