//! The conformance suite against [`Kqueue`]. Untested here: these machines run Linux only.
#![cfg(any(
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
))]

mod conformance;
mod util;

use ioman_poll::Kqueue;

const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Kqueue>();
};

all_conformance_tests!(Kqueue::new);
