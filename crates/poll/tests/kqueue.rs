//! The conformance suite against [`Kqueue`], through the entry point any backend uses.
//! Never run: these machines run Linux only.
// `conformance` is on through the crate's dev-dependency on itself.
#![cfg(all(ioman_kqueue, feature = "conformance"))]

use ioman_poll::Kqueue;

const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Kqueue>();
};

ioman_poll::conformance_tests!(Kqueue::new);
