//! The run-time fallback from eventfd to a pipe, through the real decision code.
#![cfg(ioman_eventfd)]

mod util;

use std::io;

use ioman_wakeup::{Wakeup, WakeupKind};
use util::{is_readable, os_error};

#[test]
fn refused_eventfd_falls_back_to_a_working_pipe() -> io::Result<()> {
    for errno in [libc::ENOSYS, libc::EINVAL, libc::EPERM] {
        let w = Wakeup::new_with_eventfd(|| os_error(errno))?;
        assert_eq!(w.kind(), WakeupKind::Pipe, "errno {errno}");
        w.wake()?;
        assert!(is_readable(&w)?);
        w.reset()?;
        assert!(!is_readable(&w)?);
    }
    Ok(())
}

#[test]
fn resource_errors_are_returned_not_hidden() {
    for errno in [libc::EMFILE, libc::ENFILE, libc::ENOMEM] {
        let err = Wakeup::new_with_eventfd(|| os_error(errno)).expect_err("must fail");
        assert_eq!(err.raw_os_error(), Some(errno));
    }
}

#[test]
fn working_eventfd_is_used() -> io::Result<()> {
    let w = Wakeup::new_with_eventfd(|| {
        use std::os::fd::AsFd;
        Wakeup::eventfd()?.as_fd().try_clone_to_owned()
    })?;
    assert_eq!(w.kind(), WakeupKind::EventFd);
    w.wake()?;
    assert!(is_readable(&w)?);
    Ok(())
}
