//! The conformance suite against [`Kqueue`]. Untested here: these machines run Linux only.
#![cfg(ioman_kqueue)]

mod conformance;
mod util;

use ioman_poll::Kqueue;

const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Kqueue>();
};

all_conformance_tests!(Kqueue::new);
