//! The callback table: fd → registrations, split into lock stripes, and the code that keeps
//! the kernel's view of each fd in step with its registrations.
//!
//! Every change to an fd's registrations and the backend call that follows it happen under
//! that fd's stripe lock, on the calling thread (the Mio design): the kernel and the table
//! never diverge, whatever order one-shot and multi-shot registrations come in (GHC hazard
//! H1: a fired one-shot leaves the fd disarmed in the kernel, so a later registration must
//! `MOD`). A backend call that fails leaves the table as it was, so the table always says
//! what the kernel watches.

use std::io;
use std::os::fd::RawFd;

use ioman_poll::{Backend, Capabilities, Interest, Mode, Readiness};

use crate::sync::{lock, AtomicU64, Mutex, MutexGuard, Ordering};
use crate::{FdCallback, Lifetime};

/// Number of lock stripes; a power of two, as in GHC (`callbackArraySize = 32`).
pub(crate) const STRIPES: usize = 32;

/// One registration of a callback on an fd.
pub(crate) struct Reg<B: Backend + 'static> {
    pub(crate) id: u64,
    pub(crate) interest: Interest,
    pub(crate) lifetime: Lifetime,
    /// Whether it waits for readiness: always, but for a fired `Rearmable` or `Edge` until
    /// `rearm`.
    pub(crate) armed: bool,
    /// `Edge` only: the readiness of edges that came while it was disarmed, so that its
    /// `rearm` knows an edge was missed.
    pub(crate) pending: Readiness,
    /// `None` while a multi-shot or rearmable callback is running on the loop thread.
    pub(crate) cb: Option<FdCallback<B>>,
}

impl<B: Backend + 'static> Reg<B> {
    /// Whether `readiness` wakes this registration: armed, not running, and asking for it.
    #[inline]
    pub(crate) fn wakes(&self, readiness: Readiness) -> bool {
        self.armed && self.cb.is_some() && readiness.satisfies(self.interest)
    }
}

/// What the kernel has been told about an fd.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Held {
    pub(crate) interest: Interest,
    pub(crate) mode: Mode,
    /// `false` once a one-shot registration has fired: still known to the kernel, disarmed.
    pub(crate) armed: bool,
}

/// Everything the manager knows about one fd number.
pub(crate) struct FdEntry<B: Backend + 'static> {
    /// The key given to the backend; bumped on every kernel `ADD` and by `close_fd`, so
    /// events from an earlier kernel registration of the same fd number are recognised as
    /// stale and dropped.
    pub(crate) gen: u32,
    pub(crate) kernel: Option<Held>,
    pub(crate) regs: Vec<Reg<B>>,
}

impl<B: Backend + 'static> Default for FdEntry<B> {
    fn default() -> Self {
        FdEntry {
            gen: 0,
            kernel: None,
            regs: Vec::new(),
        }
    }
}

/// One lock stripe: the entries of every fd with `fd % STRIPES == index`.
pub(crate) struct Stripe<B: Backend + 'static> {
    /// This stripe's number: the low bits of every fd in it.
    index: usize,
    /// Indexed by `fd / STRIPES`. Grown only for an fd the kernel accepted, so its length
    /// is bounded by the highest fd number the process has open, never by a caller's
    /// arbitrary number.
    entries: Vec<FdEntry<B>>,
    next_id: u64,
    /// Ids of multi-shot registrations that `close_fd` removed while their callback was
    /// running; the loop delivers `CLOSED` to them when the callback comes back.
    pub(crate) closed_while_running: Vec<u64>,
}

impl<B: Backend + 'static> Stripe<B> {
    fn new(index: usize) -> Self {
        Stripe {
            index,
            entries: Vec::new(),
            // Ids are unique per manager: the low bits name the stripe.
            next_id: index as u64,
            closed_while_running: Vec::new(),
        }
    }

    pub(crate) fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += STRIPES as u64;
        id
    }

    /// The entry of `fd`, if its slot exists.
    pub(crate) fn get(&mut self, fd: RawFd) -> Option<&mut FdEntry<B>> {
        self.entries.get_mut(slot(fd))
    }

    /// Stores `entry` as the entry of `fd`, growing the stripe to reach its slot. Called
    /// only after the backend accepted `fd`, so the growth is bounded by a real fd number.
    pub(crate) fn insert(&mut self, fd: RawFd, entry: FdEntry<B>) {
        let i = slot(fd);
        if i >= self.entries.len() {
            self.entries.resize_with(i + 1, FdEntry::default);
        }
        self.entries[i] = entry;
    }

    /// The number of live registrations in this stripe.
    pub(crate) fn live_regs(&self) -> usize {
        self.entries.iter().map(|e| e.regs.len()).sum()
    }

    /// Takes every registration of every fd, leaving the stripe empty (shutdown).
    pub(crate) fn drain(&mut self) -> Vec<(RawFd, FdEntry<B>)> {
        let mut out = Vec::new();
        for (i, e) in self.entries.iter_mut().enumerate() {
            if !e.regs.is_empty() || e.kernel.is_some() {
                let fd = (i * STRIPES + self.index) as RawFd;
                out.push((fd, std::mem::take(e)));
            }
        }
        self.entries = Vec::new();
        self.closed_while_running.clear();
        out
    }
}

fn slot(fd: RawFd) -> usize {
    fd as usize / STRIPES
}

/// The striped table.
pub(crate) struct Table<B: Backend + 'static> {
    stripes: Box<[Mutex<Stripe<B>>]>,
}

impl<B: Backend + 'static> Table<B> {
    pub(crate) fn new() -> Self {
        Table {
            stripes: (0..STRIPES).map(|i| Mutex::new(Stripe::new(i))).collect(),
        }
    }

    pub(crate) fn lock(&self, fd: RawFd) -> MutexGuard<'_, Stripe<B>> {
        lock(&self.stripes[fd as usize % STRIPES])
    }

    pub(crate) fn lock_index(&self, index: usize) -> MutexGuard<'_, Stripe<B>> {
        lock(&self.stripes[index])
    }
}

/// The backend calls a manager makes, counted by kind (see [`Stats`](crate::Stats)).
#[derive(Default)]
pub(crate) struct KernelCalls {
    pub(crate) registers: AtomicU64,
    pub(crate) modifies: AtomicU64,
    pub(crate) deregisters: AtomicU64,
}

/// What `sync` needs of the manager: the backend, its capabilities, the call counters.
pub(crate) struct Kernel<'a, B> {
    pub(crate) backend: &'a B,
    pub(crate) caps: &'a Capabilities,
    pub(crate) calls: &'a KernelCalls,
}

impl<B: Backend> Kernel<'_, B> {
    fn register(&self, fd: RawFd, key: u32, interest: Interest, mode: Mode) -> io::Result<()> {
        self.calls.registers.fetch_add(1, Ordering::Relaxed);
        self.backend.register_raw(fd, key, interest, mode)
    }

    fn modify(&self, fd: RawFd, key: u32, interest: Interest, mode: Mode) -> io::Result<()> {
        self.calls.modifies.fetch_add(1, Ordering::Relaxed);
        self.backend.modify_raw(fd, key, interest, mode)
    }

    pub(crate) fn deregister(&self, fd: RawFd) -> io::Result<()> {
        self.calls.deregisters.fetch_add(1, Ordering::Relaxed);
        self.backend.deregister_raw(fd)
    }
}

/// How closely [`FdEntry::sync`] makes the kernel follow the registrations.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Follow {
    /// A registration was just added: always tell the kernel (exactly what is wanted),
    /// even when the interest it holds already covers it: after a plain `close()` and a
    /// reuse of the number, the kernel no longer watches the new file, and only a syscall
    /// finds that out.
    Fresh,
    /// Only make sure the kernel watches at least what the armed registrations want; a
    /// level-triggered kernel registration may keep watching more (the lazy disarm of
    /// libev: a re-arm then costs no syscall). Used after an event fired and by `rearm`.
    Lazy,
    /// Make the kernel watch exactly what is wanted: after an unregister (so a plain
    /// `close()` afterwards leaves nothing behind) and when an event arrived that no armed
    /// registration wants (so a level-triggered fd is never spun on).
    Exact,
}

impl<B: Backend + 'static> FdEntry<B> {
    /// What the kernel should be told, given the live registrations, and in which mode:
    /// one-shot only if every registration is one-shot (GHC's `EventLifetime` supremum),
    /// edge-triggered only if every registration is `Edge`, both only if the backend has the
    /// mode; level-triggered otherwise. The interest is the union of the armed registrations'
    /// (a fired `Rearmable` waits for its `rearm`); in edge mode every registration's, armed
    /// or not, so the kernel registration never changes. `None` when nothing is wanted.
    fn desired(&self, caps: &Capabilities) -> Option<(Interest, Mode)> {
        let (mut oneshot, mut edge) = (true, true);
        for r in &self.regs {
            oneshot &= r.lifetime == Lifetime::OneShot;
            edge &= r.lifetime == Lifetime::Edge;
        }
        let mode = if oneshot && caps.one_shot {
            Mode::OneShot
        } else if edge && caps.edge {
            Mode::Edge
        } else {
            Mode::Level
        };
        let mut interest: Option<Interest> = None;
        for r in &self.regs {
            if r.armed || mode == Mode::Edge {
                interest = Some(interest.map_or(r.interest, |i| i | r.interest));
            }
        }
        interest.map(|i| (i, mode))
    }

    /// Whether the kernel holds an edge-triggered registration for the fd.
    pub(crate) fn is_edge(&self) -> bool {
        self.kernel.is_some_and(|k| k.mode == Mode::Edge)
    }

    /// Brings the kernel in line with the registrations, as closely as `how` says, with the
    /// fewest syscalls: none when nothing changed, one `MOD` to re-arm a one-shot or change
    /// the interest, `ADD` only when the kernel does not know the fd (or a `MOD` finds it
    /// absent). An fd left without armed registrations stays in the kernel if it is
    /// one-shot (it is disarmed or disarms itself after one event, and re-arming later is a
    /// single `MOD`), stays there under `Follow::Lazy`, and is removed otherwise.
    ///
    /// Returns whether a backend call was made. On error the kernel and the table are as
    /// before.
    pub(crate) fn sync(&mut self, fd: RawFd, k: &Kernel<'_, B>, how: Follow) -> io::Result<bool> {
        let want = self.desired(k.caps);
        let (interest, mode) = match (self.kernel, want) {
            (None, None) => return Ok(false),
            (Some(held), None) => {
                if held.mode == Mode::OneShot || how == Follow::Lazy {
                    return Ok(false);
                }
                match k.deregister(fd) {
                    // The fd may already be closed (the user closed it without `close_fd`):
                    // the kernel forgot it then, which is exactly what we wanted.
                    Ok(()) => {}
                    Err(e) if gone(&e) => {}
                    Err(e) => return Err(e),
                }
                self.kernel = None;
                return Ok(true);
            }
            (None, Some((interest, mode))) => {
                self.add(fd, k, interest, mode)?;
                self.kernel = Some(Held {
                    interest,
                    mode,
                    armed: true,
                });
                return Ok(true);
            }
            (Some(held), Some((interest, mode))) => {
                let same_mode = held.armed && held.mode == mode;
                match how {
                    Follow::Fresh => (interest, mode),
                    Follow::Exact if same_mode && held.interest == interest => return Ok(false),
                    Follow::Exact => (interest, mode),
                    Follow::Lazy if same_mode && covers(held.interest, interest) => {
                        return Ok(false)
                    }
                    // Growing a level registration: keep what it watched, so flipping
                    // between interests does not cost a syscall each way.
                    Follow::Lazy if mode == Mode::Level && held.mode == Mode::Level => {
                        (held.interest | interest, mode)
                    }
                    Follow::Lazy => (interest, mode),
                }
            }
        };
        match k.modify(fd, self.gen, interest, mode) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // The fd was closed behind our back and its number reused: the kernel does
                // not know this one yet.
                self.add(fd, k, interest, mode)?;
            }
            Err(e) => return Err(e),
        }
        self.kernel = Some(Held {
            interest,
            mode,
            armed: true,
        });
        Ok(true)
    }

    /// `ADD` under a new generation. The kernel set holds only what this table added and
    /// the manager's own wakeup fd, which `register_fd` refuses before it gets here; so an
    /// `ADD` that finds the fd present (`AlreadyExists`) meets an old registration of the
    /// same file under the same number that the table lost track of (its fd was closed
    /// while a `dup` kept the file open, then the `dup` was moved back onto the number):
    /// take it over with a `MOD`.
    fn add(
        &mut self,
        fd: RawFd,
        k: &Kernel<'_, B>,
        interest: Interest,
        mode: Mode,
    ) -> io::Result<()> {
        let gen = self.gen.wrapping_add(1);
        match k.register(fd, gen, interest, mode) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                k.modify(fd, gen, interest, mode)?
            }
            Err(e) => return Err(e),
        }
        self.gen = gen;
        Ok(())
    }

    /// The ids of the registrations `readiness` wakes, in registration order.
    pub(crate) fn woken(&self, readiness: Readiness) -> smallvec::SmallVec<[u64; 4]> {
        self.regs
            .iter()
            .filter(|r| r.wakes(readiness))
            .map(|r| r.id)
            .collect()
    }

    /// `rearm`'s fast path: arming registration `i` for `interest` costs nothing but the
    /// flag when the kernel already watches `interest` for this fd, level-triggered (it
    /// reports a ready fd again), or edge-triggered with no edge missed while it was disarmed
    /// (the next edge will come). Returns whether it did.
    pub(crate) fn rearm_in_place(&mut self, i: usize, interest: Interest) -> bool {
        let missed = self.regs[i].pending.satisfies(interest);
        let covered = self.kernel.is_some_and(|k| {
            k.armed
                && covers(k.interest, interest)
                && (k.mode == Mode::Level || (k.mode == Mode::Edge && !missed))
        });
        if covered {
            let r = &mut self.regs[i];
            (r.interest, r.armed) = (interest, true);
        }
        covered
    }
}

/// Whether interest `a` includes all of `b`.
fn covers(a: Interest, b: Interest) -> bool {
    a | b == a
}

/// What a registration is told: the readiness it asked for, plus error, hang-up and close,
/// which concern everyone (GHC over-delivered the kernel's whole mask, hazard H6).
pub(crate) fn mask(readiness: Readiness, interest: Interest) -> Readiness {
    let mut bits =
        readiness.bits() & (Readiness::ERROR | Readiness::HANGUP | Readiness::CLOSED).bits();
    if interest.is_readable() {
        bits |= readiness.bits() & Readiness::READABLE.bits();
    }
    if interest.is_writable() {
        bits |= readiness.bits() & Readiness::WRITABLE.bits();
    }
    Readiness::from_bits(bits)
}

/// Whether a backend error means the fd is no longer known (closed, or never registered).
pub(crate) fn gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::EBADF)
}
