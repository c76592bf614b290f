//! Names the target's readiness mechanism once, as `cfg(ioman_epoll)` or `cfg(ioman_kqueue)`
//! (neither: poll(2) only), so the crate, its tests and its benches share one list of
//! targets instead of repeating it.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(ioman_epoll, ioman_kqueue)");
    println!("cargo::rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    match os.as_str() {
        "linux" | "android" => println!("cargo::rustc-cfg=ioman_epoll"),
        "macos" | "ios" | "freebsd" | "netbsd" | "openbsd" | "dragonfly" => {
            println!("cargo::rustc-cfg=ioman_kqueue")
        }
        _ => {}
    }
}
