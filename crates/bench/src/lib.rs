//! Benchmarks of the ioman crates side by side with their peers; nothing to link against.
//!
//! Each file in `benches/` measures one component and its peers on the same workload in the
//! same run, so every result reads as a ratio:
//!
//! | bench | ioman | peers |
//! |---|---|---|
//! | `poll` | `Epoll`, `PosixPoll` | raw libc epoll (the floor), mio, polling |
//! | `timers` | `TimerQueue`, `Psq` | `BinaryHeap` (lazy deletion), `BTreeMap` + `HashMap`, priority-queue, tokio-util `DelayQueue` |
//! | `lateness` | `EventManager::register_timeout` | `tokio::time::sleep_until`, `thread::sleep` (how late a timer fires, not criterion) |
//! | `wakeup` | `Wakeup` (eventfd, pipe) | raw eventfd, mio `Waker`, `thread::park`/`unpark` |
//! | `manager` | `EventManager` | a hand-written mio loop, tokio `AsyncFd` |
//! | `http` | the HTTP demo's server (`ioman-examples`) | a tokio server, a mio loop; idle-connection scaling; `Pool` vs tokio multi-thread |
//!
//! Run one with `cargo bench -p ioman-bench --bench NAME`; the README lists the figures
//! measured so far and the machine they came from.
