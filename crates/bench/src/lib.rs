//! Benchmarks of the ioman crates side by side with their peers; the library holds only the
//! command line the table-printing benches share ([`args`]).
//!
//! Each file in `benches/` measures one component and its peers on the same workload in the
//! same run, so every result reads as a ratio:
//!
//! | bench | ioman | peers | kind |
//! |---|---|---|---|
//! | `poll` | `Epoll`, `PosixPoll` | raw libc epoll (the floor), mio, polling | criterion |
//! | `timers` | `TimerQueue`, `Psq` | `BinaryHeap` (lazy deletion), `BTreeMap` + `HashMap`, priority-queue, tokio-util `DelayQueue` | criterion |
//! | `wakeup` | `Wakeup` (eventfd, pipe) | raw eventfd, mio `Waker`, `thread::park`/`unpark` | criterion |
//! | `manager` | `EventManager` | a hand-written mio loop, tokio `AsyncFd` | criterion |
//! | `lateness` | `EventManager::register_timeout` | `tokio::time::sleep_until`, `thread::sleep` (how late a timer fires) | table |
//! | `echo` | `EventManager`, `Pool` (TCP echo with idle timeouts, server CPU per round trip) | a mio loop, tokio current-thread and multi-thread | table |
//! | `async_echo` | `ioman-async` tasks, a callback `EventManager` server | async-io, tokio | table |
//! | `async_timer` | `ioman_async::Timer` (create, poll, reset, drop) | `async_io::Timer`, tokio `sleep` | criterion |
//! | `http` | the HTTP demo's server (`ioman-examples`) | a tokio server, a mio loop; idle-connection scaling; `Pool` vs tokio multi-thread | table |
//!
//! Run one with `cargo bench -p ioman-bench --bench NAME`, and only some of its benchmarks
//! with `cargo bench -p ioman-bench --bench NAME -- FILTER` (the benchmarks whose names
//! contain `FILTER`; each file's docs give its names, `-- --list` prints them). Criterion
//! writes its reports, with plots, to `target/criterion/report/index.html`; the "table"
//! benches print their tables and take their counts from arguments (`-- --help`) or from
//! `IOMAN_*` environment variables, the argument winning. The README lists the figures
//! measured so far and the machine they came from.

pub mod args;
