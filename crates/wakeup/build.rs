//! Names what the target has, once, so the crate, its tests and its docs share one list of
//! targets instead of repeating `target_os` lists:
//!
//! - `cfg(ioman_eventfd)`: `eventfd(2)` (Linux, Android);
//! - `cfg(ioman_pipe2)`: `pipe2(2)`, which sets the flags atomically (all but Apple's);
//! - `cfg(ioman_sigqueue)`: `sigqueue(3)`, which only the tests use;
//! - `cfg(ioman_errno = "...")`: the C library's accessor for this thread's `errno`;
//! - `cfg(ioman_si_codes = "...")`: whose numbering of `si_code` the kernel uses (libc has
//!   the `SI_*` constants for Linux only).
//!
//! A listed OS also gets `cfg(ioman_known_os)`; one not listed gets none of them, and
//! `src/sys/mod.rs` stops the build with a `compile_error!` naming this file.

fn main() {
    println!(
        "cargo::rustc-check-cfg=cfg(ioman_known_os, ioman_eventfd, ioman_pipe2, ioman_sigqueue)"
    );
    println!(
        "cargo::rustc-check-cfg=cfg(ioman_errno, values(\"__errno_location\", \"__errno\", \"__error\", \"___errno\"))"
    );
    println!(
        "cargo::rustc-check-cfg=cfg(ioman_si_codes, values(\"linux\", \"freebsd\", \"netbsd\", \"svr4\"))"
    );
    println!("cargo::rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let vendor = std::env::var("CARGO_CFG_TARGET_VENDOR").unwrap_or_default();
    // (eventfd, pipe2, sigqueue, errno accessor, si_code numbering)
    let (eventfd, pipe2, sigqueue, errno, si_codes) = match os.as_str() {
        "linux" => (true, true, true, "__errno_location", "linux"),
        "android" => (true, true, true, "__errno", "linux"),
        "freebsd" => (false, true, true, "__error", "freebsd"),
        "dragonfly" => (false, true, false, "__errno_location", "freebsd"),
        "netbsd" => (false, true, true, "__errno", "netbsd"),
        "openbsd" => (false, true, false, "__errno", "svr4"),
        "illumos" | "solaris" => (false, true, true, "___errno", "svr4"),
        // macOS, iOS, tvOS, watchOS, visionOS: FreeBSD's signal codes, no pipe2.
        _ if vendor == "apple" => (false, false, false, "__error", "freebsd"),
        _ => return,
    };
    println!("cargo::rustc-cfg=ioman_known_os");
    for (on, name) in [
        (eventfd, "ioman_eventfd"),
        (pipe2, "ioman_pipe2"),
        (sigqueue, "ioman_sigqueue"),
    ] {
        if on {
            println!("cargo::rustc-cfg={name}");
        }
    }
    println!("cargo::rustc-cfg=ioman_errno=\"{errno}\"");
    println!("cargo::rustc-cfg=ioman_si_codes=\"{si_codes}\"");
}
