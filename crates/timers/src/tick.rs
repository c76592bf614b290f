//! Instants as ticks: nanoseconds since a queue's epoch, in a `u64`.
//!
//! A [`TimerQueue`](crate::TimerQueue) converts each `Instant` it is given into ticks once,
//! at its edge, and keeps `u64` ticks everywhere inside. The conversion is on the path of
//! every `register_at` and `update_at`, so its cost matters: std's `Instant` arithmetic
//! (`checked_duration_since` and the `Duration` it builds) is compiled out of line in std,
//! about 55 instructions per call, most of an insert's whole budget.
//!
//! [`Epoch`] therefore reads an `Instant`'s two fields, whole seconds and nanoseconds,
//! through its `Hash` impl: std derives `Hash` for `Instant` on every platform, so hashing
//! one writes the seconds and then the nanoseconds into the hasher, and our hasher only
//! records them (about 10 instructions for the whole conversion, inlined). That reading
//! relies on how std lays out `Instant`, which std does not promise, so it is never
//! trusted blindly:
//!
//! - when an `Epoch` is created it checks the reading against std's arithmetic on
//!   instants around the epoch (both sides, both units, a nanosecond carry); if anything
//!   disagrees, or the hasher saw something other than one integer and a nanosecond
//!   count, that epoch uses std's arithmetic for good;
//! - in debug builds (every test) every conversion is checked against std's arithmetic.
//!
//! Rounding: ticks are nanoseconds, the unit of `Duration`, so the conversion is exact
//! on platforms whose `Instant` counts nanoseconds (Linux, macOS, the BSDs); nothing is
//! rounded and no timer can fire early. An instant before the epoch is tick 0.

use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

/// The tick of a timer that never fires.
pub(crate) const NEVER: u64 = u64::MAX;

const NANOS_PER_SEC: i64 = 1_000_000_000;

/// A point in time from which instants are counted in nanosecond ticks.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Epoch {
    instant: Instant,
    /// Whether the fast reading of instants was verified (see the module docs).
    fast: bool,
    /// The epoch's fields as read through `Hash`: whole seconds and nanoseconds.
    secs: i64,
    nanos: i64,
}

/// A hasher that records the integers written into it: how an `Instant`'s fields are
/// read.
#[derive(Default)]
struct Fields {
    words: [u64; 2],
    count: u32,
    /// Something other than the integers below was written.
    odd: bool,
}

impl Fields {
    #[inline(always)]
    fn record(&mut self, word: u64) {
        if let Some(w) = self.words.get_mut(self.count as usize) {
            *w = word;
        }
        self.count += 1;
    }
}

impl Hasher for Fields {
    fn finish(&self) -> u64 {
        0
    }
    #[inline(always)]
    fn write(&mut self, _bytes: &[u8]) {
        self.odd = true;
    }
    #[inline(always)]
    fn write_u32(&mut self, v: u32) {
        self.record(u64::from(v));
    }
    #[inline(always)]
    fn write_u64(&mut self, v: u64) {
        self.record(v);
    }
    #[inline(always)]
    fn write_i64(&mut self, v: i64) {
        self.record(v as u64);
    }
}

/// An instant's whole seconds and nanoseconds, read through `Hash`: `None` unless
/// hashing wrote exactly a seconds count and a nanosecond count below 10⁹.
#[inline(always)]
fn read(t: Instant) -> Option<(i64, i64)> {
    let mut f = Fields::default();
    t.hash(&mut f);
    let [secs, nanos] = f.words;
    if f.odd || f.count != 2 || nanos >= 1_000_000_000 {
        return None;
    }
    // Seconds come as an i64 (Unix `tv_sec`) or a u64 below 2⁶³ (`Duration` based
    // platforms); either reads back as an i64.
    Some((secs as i64, nanos as i64))
}

/// Nanoseconds from `(secs, nanos)` to `t` by the fast reading, when they fit an `i64`
/// (about 292 years either way).
#[inline(always)]
fn fast_delta(secs: i64, nanos: i64, t: Instant) -> Option<i64> {
    let (s, n) = read(t)?;
    s.checked_sub(secs)?
        .checked_mul(NANOS_PER_SEC)?
        .checked_add(n - nanos)
}

/// Nanoseconds from `epoch` to `t` by std's arithmetic: 0 before the epoch, [`NEVER`]
/// past `u64` nanoseconds.
fn slow_ticks(epoch: Instant, t: Instant) -> u64 {
    match t.checked_duration_since(epoch) {
        Some(d) => u64::try_from(d.as_nanos()).unwrap_or(NEVER),
        None => 0,
    }
}

impl Epoch {
    /// An epoch at `instant`; checks the fast reading of instants once (see the module
    /// docs).
    pub(crate) fn new(instant: Instant) -> Self {
        let (secs, nanos) = read(instant).unwrap_or((0, 0));
        let mut epoch = Epoch {
            instant,
            fast: false,
            secs,
            nanos,
        };
        epoch.fast = read(instant).is_some() && epoch.verify();
        epoch
    }

    /// Whether the fast reading agrees with std's arithmetic around the epoch.
    fn verify(&self) -> bool {
        let probes = [
            Duration::from_nanos(1),
            Duration::from_nanos(999_999_999),
            Duration::from_secs(1),
            Duration::new(1, 500_000_001),
            Duration::new(86_400 * 365, 123_456_789),
        ];
        probes.iter().all(|&d| {
            let ns = d.as_nanos() as i64;
            let later = self.instant.checked_add(d).map(|t| (t, ns));
            let earlier = self.instant.checked_sub(d).map(|t| (t, -ns));
            [later, earlier]
                .into_iter()
                .flatten()
                .all(|(t, want)| fast_delta(self.secs, self.nanos, t) == Some(want))
        })
    }

    /// The epoch itself.
    #[inline]
    pub(crate) fn instant(&self) -> Instant {
        self.instant
    }

    /// Nanoseconds from the epoch to `t`: 0 for an instant before the epoch, [`NEVER`]
    /// for one more than `u64::MAX` nanoseconds (about 584 years) after it.
    #[inline]
    pub(crate) fn ticks(&self, t: Instant) -> u64 {
        let fast = if self.fast {
            fast_delta(self.secs, self.nanos, t)
        } else {
            None
        };
        let ticks = match fast {
            Some(d) => d.max(0) as u64,
            // Not verified, or more than 292 years away.
            None => slow_ticks(self.instant, t),
        };
        debug_assert_eq!(
            ticks,
            slow_ticks(self.instant, t),
            "ioman-timers: fast tick reading of {t:?} disagrees with std (epoch {:?})",
            self.instant
        );
        ticks
    }

    /// The instant at tick `ticks`; `None` for [`NEVER`] (or an instant the platform
    /// cannot represent).
    #[inline]
    pub(crate) fn instant_at(&self, ticks: u64) -> Option<Instant> {
        if ticks == NEVER {
            return None;
        }
        self.instant.checked_add(Duration::from_nanos(ticks))
    }

    /// Whether conversions take the fast reading (for tests).
    #[cfg(test)]
    pub(crate) fn is_fast(&self) -> bool {
        self.fast
    }
}

/// A duration in ticks, saturating to [`NEVER`].
#[inline]
pub(crate) fn duration_ticks(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(NEVER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_reading_is_verified_on_this_platform() {
        let epoch = Epoch::new(Instant::now());
        assert!(
            epoch.is_fast(),
            "Instant's Hash no longer reads as seconds + nanoseconds here"
        );
    }

    #[test]
    fn ticks_agree_with_std_on_both_sides_of_the_epoch() {
        let t0 = Instant::now();
        let epoch = Epoch::new(t0);
        let mut d = Duration::from_nanos(1);
        while let Some(t) = t0.checked_add(d) {
            assert_eq!(epoch.ticks(t), slow_ticks(t0, t), "{d:?}");
            if let Some(t) = t0.checked_sub(d) {
                assert_eq!(epoch.ticks(t), 0, "-{d:?}");
            }
            match d
                .checked_mul(3)
                .and_then(|d| d.checked_add(Duration::from_nanos(7)))
            {
                Some(next) if next < Duration::from_secs(1 << 40) => d = next,
                _ => break,
            }
        }
        assert_eq!(epoch.ticks(t0), 0);
        let far = Duration::from_nanos(u64::MAX) + Duration::from_nanos(1);
        if let Some(t) = t0.checked_add(far) {
            assert_eq!(epoch.ticks(t), NEVER);
        }
        assert_eq!(epoch.instant_at(NEVER), None);
        assert_eq!(
            epoch.instant_at(12_345),
            Some(t0 + Duration::from_nanos(12_345))
        );
    }

    #[test]
    fn durations_saturate_to_never() {
        assert_eq!(duration_ticks(Duration::from_nanos(5)), 5);
        assert_eq!(duration_ticks(Duration::MAX), NEVER);
    }
}
