//! With the `tracing` feature, what the loop handles silently is reported as events.
//! `cargo test -p ioman --features tracing --test tracing`
#![cfg(feature = "tracing")]

mod util;

use std::io::{self, Write};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ioman::{EventManager, Interest, Lifetime};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Collects the message of every `ioman` event.
#[derive(Default, Clone)]
struct Collect(Arc<Mutex<Vec<String>>>);

struct Message<'a>(&'a mut String);

impl Visit for Message<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            *self.0 = format!("{value:?}");
        }
    }
}

impl Subscriber for Collect {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.target() == "ioman"
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, e: &Event<'_>) {
        let mut msg = String::new();
        e.record(&mut Message(&mut msg));
        self.0.lock().unwrap().push(msg);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn silent_paths_are_reported() -> io::Result<()> {
    let collect = Collect::default();
    tracing::subscriber::with_default(collect.clone(), || -> io::Result<()> {
        let faulty = Arc::new(util::Faulty::new(ioman::DefaultBackend::new()?));
        let m = EventManager::builder()
            .backend(faulty.clone())
            .panic_hook(|_| {})
            .build()?;
        // Refused.
        let _ = m.register_fd(-1, Interest::READ, Lifetime::OneShot, |_, _, _| {});
        // A stray fd: the kernel still watches what the table believes removed.
        let (mut a, b) = util::pair()?;
        let key = m.register_fd(&b, Interest::READ, Lifetime::MultiShot, |_, _, _| {})?;
        faulty.lie_deregister.store(true, Ordering::SeqCst);
        m.unregister_fd(key)?;
        a.write_all(b"x")?;
        m.step(Some(Duration::from_secs(10)))?;
        // A panic, and a wake.
        m.register_timeout(Duration::ZERO, |_| panic!("traced"))?;
        m.step(Some(Duration::ZERO))?;
        m.wake();
        m.shutdown();
        Ok(())
    })?;
    let seen = collect.0.lock().unwrap().clone();
    for want in ["refused", "stray_fd", "panic", "wake", "shutdown"] {
        assert!(
            seen.iter().any(|s| s == want),
            "no {want} event in {seen:?}"
        );
    }
    Ok(())
}
