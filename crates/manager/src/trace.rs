//! Diagnostics through `tracing`, behind the `tracing` feature: one macro, so call sites
//! carry no `cfg`, and nothing is evaluated when the feature is off.
//!
//! Events (target `ioman`): `stale_event` and `stray_fd` (debug/warn) for events the loop
//! drops or answers with a `DEL`, `lazy_trim` (trace) when a spurious event trims a kernel
//! registration, `rearm_failed` (warn) when the loop could not re-arm an fd, `refused`
//! (debug) for a registration the manager or the kernel refused, `panic` (error) for every
//! contained panic, `wake` (trace) for a wake of a blocked loop, `shutdown` (debug).

/// `event!(level, name, fields...)`: a `tracing` event with `name` as its message, or
/// nothing at all without the `tracing` feature.
macro_rules! event {
    ($level:ident, $name:literal $(, $($fields:tt)*)?) => {{
        #[cfg(feature = "tracing")]
        {
            tracing::event!(target: "ioman", tracing::Level::$level, $($($fields)*,)? $name);
        }
    }};
}

pub(crate) use event;
