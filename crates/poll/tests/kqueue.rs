//! The conformance suite against [`Kqueue`], through the entry point any backend uses.
//! Never run: these machines run Linux only.
#![cfg(ioman_kqueue)]

use ioman_poll::Kqueue;

const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Kqueue>();
};

ioman_poll::conformance_tests!(Kqueue::new);
