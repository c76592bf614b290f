//! [`Ready`], the future of `readable` and `writable`: any number of them wait on one
//! direction, each with an entry in the direction's list of waiter wakers.

use std::io;
use std::task::{Context, Poll};

use super::{store_waker, Dir, DirState, Source};

impl Source {
    /// The state of a [`Ready`] future: its waiter index and the event count it started at,
    /// and (before its first poll) the tick of the `WouldBlock` it waits after.
    fn poll_waiter(
        &self,
        dir: Dir,
        cx: &mut Context<'_>,
        waiter: &mut Option<(usize, u64)>,
        seen: &mut Option<u64>,
    ) -> Poll<io::Result<()>> {
        let mut st = self.state(dir);
        if let Some((i, since)) = *waiter {
            if st.events != since {
                remove_waiter(&mut st, i);
                *waiter = None;
                return Poll::Ready(Ok(()));
            }
        }
        if let Some(gone) = st.gone {
            if let Some((i, _)) = waiter.take() {
                remove_waiter(&mut st, i);
            }
            return Poll::Ready(Err(self.gone_error(gone)));
        }
        // A waiter that waits already saw the fd not ready at `since`, with no event since.
        let tick = match *waiter {
            Some((_, since)) => Some(since),
            None => seen.take(),
        };
        let done = match self.start_wait(dir, st, tick) {
            Ok(Some(mut st)) => {
                add_waiter(&mut st, cx, waiter);
                return Poll::Pending;
            }
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        if let Some((i, _)) = waiter.take() {
            remove_waiter(&mut self.state(dir), i);
        }
        Poll::Ready(done)
    }
}

/// Stores `cx`'s waker for a [`Ready`] future that waits (`st` locked, the direction
/// waiting): in its entry, or in a new one that remembers the event count.
fn add_waiter(st: &mut DirState, cx: &Context<'_>, waiter: &mut Option<(usize, u64)>) {
    match *waiter {
        Some((i, _)) => store_waker(&mut st.waiters[i], cx),
        None => {
            let w = Some(cx.waker().clone());
            let i = match st.free.pop() {
                Some(i) => {
                    st.waiters[i] = w;
                    i
                }
                None => {
                    st.waiters.push(w);
                    st.waiters.len() - 1
                }
            };
            st.live_waiters += 1;
            *waiter = Some((i, st.events));
        }
    }
}

fn remove_waiter(st: &mut DirState, i: usize) {
    if let Some(w) = st.waiters.get_mut(i) {
        *w = None;
        st.free.push(i);
        st.live_waiters = st.live_waiters.saturating_sub(1);
    }
}

/// The future of [`Async::readable`](crate::Async::readable) and
/// [`Async::writable`](crate::Async::writable): ready when a read (write) would not block.
///
/// At its first poll it completes at once when the fd is ready: unless an attempt found the
/// direction not ready since the last readiness event (then it waits for the next one), it
/// asks the fd with one zero-timeout `poll(2)`. Otherwise it waits for the next readiness
/// event in its direction.
///
/// Any number of them may wait on one `Async` at a time, from any tasks: an event wakes them
/// all. Dropping one before it completes removes its waker; an event it was woken for but
/// did not observe is not lost for the others: the direction stays "maybe ready" until an
/// attempt says `WouldBlock`, so the next waiter finds the fd ready.
#[must_use = "futures do nothing unless polled"]
pub struct Ready<'a> {
    source: &'a Source,
    dir: Dir,
    waiter: Option<(usize, u64)>,
    /// For the wait of `read_with`/`write_with`: the tick at which their attempt said
    /// `WouldBlock` (so no probe is made, and the readiness is cleared unless an event came).
    seen: Option<u64>,
}

impl<'a> Ready<'a> {
    pub(crate) fn new(source: &'a Source, dir: Dir) -> Ready<'a> {
        Ready {
            source,
            dir,
            waiter: None,
            seen: None,
        }
    }

    /// Waits for the next event after an attempt that started at `tick` said `WouldBlock`
    /// (completes at once if an event came since).
    pub(crate) fn after_would_block(source: &'a Source, dir: Dir, tick: u64) -> Ready<'a> {
        Ready {
            seen: Some(tick),
            ..Ready::new(source, dir)
        }
    }
}

impl std::future::Future for Ready<'_> {
    type Output = io::Result<()>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        this.source
            .poll_waiter(this.dir, cx, &mut this.waiter, &mut this.seen)
    }
}

impl Drop for Ready<'_> {
    fn drop(&mut self) {
        if let Some((i, _)) = self.waiter.take() {
            remove_waiter(&mut self.source.state(self.dir), i);
        }
    }
}

impl std::fmt::Debug for Ready<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ready")
            .field("fd", &self.source.fd)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}
