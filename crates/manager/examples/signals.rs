//! Clean shutdown on `SIGINT` or `SIGTERM`, through `ioman-wakeup`'s control channel and an
//! [`EventManager`].
//!
//! What it shows:
//!
//! - [`signal::subscribe`] forwarding `SIGINT` and `SIGTERM` into a [`Control`] channel from
//!   an async-signal-safe handler, so no Rust code runs in signal context;
//! - the `Control`'s fd registered in the manager as [`Lifetime::MultiShot`] `READ`; its
//!   callback [`drain`](Control::drain)s the messages on the loop thread and, on a signal,
//!   calls [`shutdown`](EventManager::shutdown): the loop returns, every registration is
//!   dropped, and the program exits 0;
//! - a periodic timeout (a "heartbeat") that keeps re-registering itself until then.
//!
//! By default it runs to completion by itself: after 300 ms a helper thread sends `SIGTERM`
//! to this process with the `kill` command (no `unsafe` needed). With `--wait` it waits for
//! you instead: press Ctrl-C (`SIGINT`) in the terminal, or run `kill -TERM <pid>` from
//! another one.
//!
//! ```text
//! cargo run -p ioman --example signals            # sends itself SIGTERM, exits 0
//! cargo run -p ioman --example signals -- --wait  # waits for Ctrl-C or SIGTERM
//! ```

use std::io;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ioman::{EventManager, Interest, Lifetime};
use ioman_wakeup::{signal, Control, Message, Signal, SignalInfo};

/// Heartbeat period.
const BEAT: Duration = Duration::from_millis(100);
/// Without `--wait`, how long before the program signals itself.
const SELF_SIGNAL_AFTER: Duration = Duration::from_millis(300);
/// Without `--wait`, give up (exit 1) if no signal arrived by then.
const GIVE_UP_AFTER: Duration = Duration::from_secs(10);

fn main() -> io::Result<()> {
    let wait_mode = std::env::args().skip(1).any(|a| a == "--wait");
    let pid = std::process::id();
    let started = Instant::now();

    let manager = Arc::new(EventManager::new()?);
    let control = Control::new()?;
    let sender = control.sender();
    // Held until the end: dropping a subscription stops the forwarding.
    let _int = signal::subscribe(Signal::INT, &sender)?;
    let _term = signal::subscribe(Signal::TERM, &sender)?;

    // The loop thread is the only one that reads the channel. The callback owns the
    // `Control`, so the fd stays open as long as it is registered; the manager drops the
    // callback (and so closes the fd) after deregistering it at shutdown.
    let received: Arc<Mutex<Option<SignalInfo>>> = Arc::new(Mutex::new(None));
    let got = Arc::clone(&received);
    let control_fd = control.as_raw_fd();
    let mut messages = Vec::new();
    manager.register_fd(
        control_fd,
        Interest::READ,
        Lifetime::MultiShot,
        move |mgr, _key, readiness| {
            if readiness.is_closed() {
                return;
            }
            messages.clear();
            if let Err(e) = control.drain(&mut messages) {
                eprintln!("signals: drain failed: {e}");
            }
            for m in &messages {
                match m {
                    Message::Signal(info) => {
                        println!(
                            "loop thread: got {} (signo {}, from pid {}), shutting down",
                            info.signal(),
                            info.signal().as_raw(),
                            info.pid()
                        );
                        let mut g = got.lock().unwrap_or_else(|e| e.into_inner());
                        g.get_or_insert(*info);
                        mgr.shutdown();
                    }
                    Message::Die => mgr.shutdown(),
                    _ => {} // Wakeup
                }
            }
        },
    )?;

    // A heartbeat, to show that the loop is busy with other work until the signal.
    let beats = Arc::new(AtomicU64::new(0));
    heartbeat(&manager, Arc::clone(&beats))?;

    if wait_mode {
        println!("pid {pid}: press Ctrl-C, or run `kill -TERM {pid}`, to stop");
    } else {
        println!("pid {pid}: will send itself SIGTERM in {SELF_SIGNAL_AFTER:?}");
        thread::spawn(move || {
            thread::sleep(SELF_SIGNAL_AFTER);
            if let Err(e) = send_sigterm(pid) {
                eprintln!("signals: could not send SIGTERM: {e}");
            }
        });
        // A safety net so that the program never hangs in CI: a timeout that gives up.
        manager.register_timeout(GIVE_UP_AFTER, |mgr| {
            eprintln!("signals: no signal arrived in {GIVE_UP_AFTER:?}; giving up");
            mgr.shutdown();
        })?;
    }

    // The loop runs on this thread until a callback shuts the manager down.
    manager.run()?;

    let stats = manager.stats();
    let info = *received.lock().unwrap_or_else(|e| e.into_inner());
    println!(
        "loop returned after {:.1?}: {} heartbeats, {} loop iterations, {} fd callbacks, \
         {} timeout callbacks; manager state {:?}, live registrations {:?}",
        started.elapsed(),
        beats.load(Ordering::Relaxed),
        stats.iterations,
        stats.fd_callbacks,
        stats.timeout_callbacks,
        manager.state(),
        manager.live(),
    );
    match info {
        Some(info) => {
            println!("clean shutdown on {}", info.signal());
            Ok(())
        }
        None => Err(io::Error::other("the loop stopped without a signal")),
    }
}

/// Registers a timeout that prints a beat and registers the next one.
fn heartbeat(manager: &EventManager, beats: Arc<AtomicU64>) -> io::Result<()> {
    manager.register_timeout(BEAT, move |mgr| {
        let n = beats.fetch_add(1, Ordering::Relaxed) + 1;
        println!("loop thread: heartbeat {n}");
        // Fails only once the manager is shutting down, which is fine.
        let _ = heartbeat(mgr, beats);
    })?;
    Ok(())
}

/// Sends `SIGTERM` to `pid` with the `kill` command (falling back to the shell's builtin).
fn send_sigterm(pid: u32) -> io::Result<()> {
    let status = match Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
    {
        Ok(s) => s,
        Err(_) => Command::new("sh")
            .arg("-c")
            .arg(format!("kill -TERM {pid}"))
            .status()?,
    };
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("kill exited with {status}")))
    }
}
