//! The memory budget: one pool shared by every running capture, so that the gateway's memory
//! bounds what captures hold, not the number or size of the PLCs it watches.
//!
//! A capture takes a [`Lease`] on the [`MemoryBudget`] and charges it as it accumulates: the
//! bytes of every answer the driver receives (`driver.rs`, for all protocols alike) and a fixed
//! [`ITEM_BYTES`] per item when the capture is assembled (`module.rs`). The lease travels with
//! the [`Capture`](crate::Capture) until the agent has hashed, judged and recorded it, and
//! releases everything when its last clone is dropped.
//!
//! Growth rules (deadlock-free: at most one capture ever waits, and it waits only for others
//! that either finish or give up):
//!
//! 1. a capture whose total would exceed the whole pool can never fit: it fails as a bound
//!    ([`Refusal::TooBig`], `reason = bound`);
//! 2. otherwise, when the pool has room (and, while a capture waits, room beyond what the
//!    waiter asks for), the growth is granted;
//! 3. otherwise, when no capture waits, this one becomes the sole waiter and waits, until its
//!    deadline at the latest, for others to release enough;
//! 4. otherwise (another capture already waits) it gives up at once ([`Refusal::Deferred`]):
//!    not a failure of the device, the scheduler polls it again shortly, and what it held is
//!    released for the waiter.
//!
//! So one large PLC (a 100,000-symbol TwinCAT project) can take most of the pool while the
//! others wait or step aside, and all arithmetic saturates: a hostile size can only make a
//! capture too big, never wrap the pool's count.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// The bytes charged for each item (and each runtime or operating-state entry) of a capture,
/// on top of the answers it came from: the map entry, the item and its path, and the copies
/// the agent makes downstream (the canonical encoding that is hashed, the diff against the
/// baseline, the stored body).
pub const ITEM_BYTES: u64 = 512;

/// The pool a one-shot command uses (`otdrift capture`), and the daemon's when neither the
/// config nor the service's memory limit says otherwise.
pub const DEFAULT_BYTES: u64 = 256 * MIB;

/// The longest a lease without a deadline waits for room (no wait is unbounded).
const LONGEST_WAIT: Duration = Duration::from_secs(60);

const MIB: u64 = 1024 * 1024;

/// Why a capture may not grow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The capture alone needs more than the whole pool: it can never fit (a bound).
    TooBig {
        /// What the capture would hold.
        needed: u64,
        /// The whole pool.
        capacity: u64,
    },
    /// The pool is taken by others and another capture already waits for it, or this capture
    /// waited until its deadline: try again later.
    Deferred {
        /// What the capture asked for.
        wanted: u64,
        /// What the pool had free.
        free: u64,
        /// Whether it gave up after waiting (rather than at once, behind another waiter).
        waited: bool,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::TooBig { needed, capacity } => write!(
                f,
                "memory budget: the capture needs more than the {} pool (at least {})",
                format_bytes(*capacity),
                format_bytes(*needed)
            ),
            Refusal::Deferred {
                wanted,
                free,
                waited: true,
            } => write!(
                f,
                "memory budget: waited until the capture's deadline for {} ({} free); \
                 polled again shortly",
                format_bytes(*wanted),
                format_bytes(*free)
            ),
            Refusal::Deferred { wanted, free, .. } => write!(
                f,
                "memory budget: {} wanted, {} free and another capture waits; polled again \
                 shortly",
                format_bytes(*wanted),
                format_bytes(*free)
            ),
        }
    }
}

/// A size the way operators read it: `256 MiB`, `64 KiB`, or bytes.
pub fn format_bytes(n: u64) -> String {
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= MIB {
        format!("{:.1} MiB", n as f64 / MIB as f64)
    } else if n >= 1024 && n.is_multiple_of(1024) {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} bytes")
    }
}

/// The pool every running capture draws from. Cheap to clone: clones share the pool.
#[derive(Clone, Debug)]
pub struct MemoryBudget {
    pool: Arc<Pool>,
}

#[derive(Debug)]
struct Pool {
    capacity: u64,
    state: Mutex<State>,
    /// Woken whenever bytes are released.
    released: Notify,
    next_id: AtomicU64,
    deferred: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    used: u64,
    /// The one capture waiting for room: its lease and how much it asks for.
    waiter: Option<(u64, u64)>,
}

impl Pool {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Nothing panics while holding the lock; a poisoned count is still a count.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn release(&self, bytes: u64) {
        if bytes == 0 {
            return;
        }
        {
            let mut s = self.state();
            s.used = s.used.saturating_sub(bytes);
        }
        self.released.notify_waiters();
    }
}

impl Default for MemoryBudget {
    /// A pool of [`DEFAULT_BYTES`].
    fn default() -> Self {
        MemoryBudget::new(DEFAULT_BYTES)
    }
}

impl MemoryBudget {
    /// A pool of `capacity` bytes.
    pub fn new(capacity: u64) -> Self {
        MemoryBudget {
            pool: Arc::new(Pool {
                capacity,
                state: Mutex::new(State::default()),
                released: Notify::new(),
                next_id: AtomicU64::new(1),
                deferred: AtomicU64::new(0),
            }),
        }
    }

    /// The whole pool, in bytes.
    pub fn capacity(&self) -> u64 {
        self.pool.capacity
    }

    /// The bytes running captures hold now.
    pub fn in_use(&self) -> u64 {
        self.pool.state().used
    }

    /// How many growths were deferred since the pool was made.
    pub fn deferred(&self) -> u64 {
        self.pool.deferred.load(Ordering::Relaxed)
    }

    /// A new, empty lease for one capture; it waits for room until `deadline` at the latest
    /// (or a minute, without one).
    pub fn lease(&self, deadline: Option<Instant>) -> Lease {
        Lease {
            inner: Some(Arc::new(LeaseInner {
                pool: self.pool.clone(),
                id: self.pool.next_id.fetch_add(1, Ordering::Relaxed),
                held: AtomicU64::new(0),
                deadline,
            })),
        }
    }
}

/// One capture's share of a [`MemoryBudget`], released when the last clone is dropped. A
/// [`Lease::unbounded`] one belongs to no pool and grants everything (tests, benchmarks).
#[derive(Clone, Debug)]
pub struct Lease {
    inner: Option<Arc<LeaseInner>>,
}

#[derive(Debug)]
struct LeaseInner {
    pool: Arc<Pool>,
    id: u64,
    held: AtomicU64,
    deadline: Option<Instant>,
}

impl Drop for LeaseInner {
    fn drop(&mut self) {
        self.pool.release(*self.held.get_mut());
    }
}

impl Lease {
    /// A lease on no pool: every growth is granted.
    pub fn unbounded() -> Self {
        Lease { inner: None }
    }

    /// The bytes this lease holds.
    pub fn held(&self) -> u64 {
        self.inner
            .as_ref()
            .map_or(0, |l| l.held.load(Ordering::Relaxed))
    }

    /// Grows the lease by `bytes`, under the rules of the module docs.
    pub async fn charge(&self, bytes: u64) -> Result<(), Refusal> {
        match &self.inner {
            Some(inner) => grow(inner, bytes).await,
            None => Ok(()),
        }
    }

    /// A handle that charges this lease without keeping it alive: when the capture that owns
    /// the lease is abandoned, its bytes are released even though the driver still has the
    /// meter.
    pub(crate) fn meter(&self) -> Meter {
        Meter {
            inner: self.inner.as_ref().map(Arc::downgrade),
        }
    }
}

/// Charges a [`Lease`] it does not own (see [`Lease::meter`]).
#[derive(Clone, Debug, Default)]
pub(crate) struct Meter {
    inner: Option<Weak<LeaseInner>>,
}

impl Meter {
    /// Grows the lease by `bytes`; a lease already dropped (or none) grants everything.
    pub(crate) async fn charge(&self, bytes: u64) -> Result<(), Refusal> {
        match self.inner.as_ref().and_then(Weak::upgrade) {
            Some(inner) => grow(&inner, bytes).await,
            None => Ok(()),
        }
    }

    /// Gives back everything the lease holds (a capture run again from the start).
    pub(crate) fn release_all(&self) {
        if let Some(inner) = self.inner.as_ref().and_then(Weak::upgrade) {
            let bytes = inner.held.swap(0, Ordering::Relaxed);
            inner.pool.release(bytes);
        }
    }
}

/// Clears the pool's waiter slot when the waiting capture stops waiting for any reason
/// (granted, deadline, or its future dropped at the capture's deadline).
struct WaiterSlot<'a> {
    pool: &'a Pool,
    id: u64,
}

impl Drop for WaiterSlot<'_> {
    fn drop(&mut self) {
        let mut s = self.pool.state();
        if s.waiter.is_some_and(|(id, _)| id == self.id) {
            s.waiter = None;
        }
    }
}

async fn grow(lease: &LeaseInner, bytes: u64) -> Result<(), Refusal> {
    if bytes == 0 {
        return Ok(());
    }
    let pool = &lease.pool;
    let needed = lease.held.load(Ordering::Relaxed).saturating_add(bytes);
    if needed > pool.capacity {
        return Err(Refusal::TooBig {
            needed,
            capacity: pool.capacity,
        });
    }
    let deadline = lease
        .deadline
        .unwrap_or_else(|| Instant::now() + LONGEST_WAIT);
    let mut slot = None;
    loop {
        let released = pool.released.notified();
        tokio::pin!(released);
        // Registered before the pool is looked at, so a release in between is not missed.
        released.as_mut().enable();
        {
            let mut s = pool.state();
            let free = pool.capacity.saturating_sub(s.used);
            let room = match s.waiter {
                Some((id, wanted)) if id != lease.id => free.saturating_sub(wanted),
                _ => free,
            };
            if bytes <= room {
                s.used = s.used.saturating_add(bytes);
                lease.held.fetch_add(bytes, Ordering::Relaxed);
                drop(s);
                drop(slot);
                return Ok(());
            }
            match s.waiter {
                None => {
                    s.waiter = Some((lease.id, bytes));
                    slot = Some(WaiterSlot { pool, id: lease.id });
                    tracing::debug!(
                        wanted = bytes,
                        free,
                        "memory budget: waiting for other captures to release"
                    );
                }
                Some((id, _)) if id == lease.id => {}
                Some(_) => {
                    pool.deferred.fetch_add(1, Ordering::Relaxed);
                    return Err(Refusal::Deferred {
                        wanted: bytes,
                        free,
                        waited: false,
                    });
                }
            }
        }
        if tokio::time::timeout_at(deadline, released).await.is_err() {
            let free = pool.capacity.saturating_sub(pool.state().used);
            drop(slot);
            pool.deferred.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::Deferred {
                wanted: bytes,
                free,
                waited: true,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: u64 = 1024;

    fn far() -> Option<Instant> {
        Some(Instant::now() + Duration::from_secs(3600))
    }

    #[tokio::test]
    async fn growth_is_granted_while_the_pool_has_room() {
        let budget = MemoryBudget::new(100 * KIB);
        let a = budget.lease(far());
        let b = budget.lease(far());
        a.charge(60 * KIB).await.expect("granted");
        b.charge(40 * KIB).await.expect("granted: exactly full");
        assert_eq!(budget.in_use(), 100 * KIB);
        assert_eq!((a.held(), b.held()), (60 * KIB, 40 * KIB));
        a.charge(0).await.expect("nothing is always granted");
    }

    #[tokio::test]
    async fn a_capture_bigger_than_the_pool_is_a_bound() {
        let budget = MemoryBudget::new(100 * KIB);
        let a = budget.lease(far());
        a.charge(70 * KIB).await.expect("granted");
        let refused = a.charge(31 * KIB).await.expect_err("too big alone");
        assert_eq!(
            refused,
            Refusal::TooBig {
                needed: 101 * KIB,
                capacity: 100 * KIB
            }
        );
        assert_eq!(
            refused.to_string(),
            "memory budget: the capture needs more than the 100 KiB pool (at least 101 KiB)"
        );
        // A refused growth holds nothing more, and a hostile size saturates.
        assert_eq!(budget.in_use(), 70 * KIB);
        assert!(matches!(
            a.charge(u64::MAX).await,
            Err(Refusal::TooBig {
                needed: u64::MAX,
                ..
            })
        ));
        assert_eq!(budget.in_use(), 70 * KIB);
    }

    #[tokio::test]
    async fn dropping_the_last_clone_releases_the_lease() {
        let budget = MemoryBudget::new(100 * KIB);
        let a = budget.lease(far());
        a.charge(30 * KIB).await.expect("granted");
        let clone = a.clone();
        drop(a);
        assert_eq!(budget.in_use(), 30 * KIB, "a clone still holds it");
        let meter = clone.meter();
        drop(clone);
        assert_eq!(budget.in_use(), 0);
        meter
            .charge(99 * KIB)
            .await
            .expect("a dropped lease grants");
        assert_eq!(budget.in_use(), 0, "and charges nothing");
    }

    #[tokio::test]
    async fn release_all_gives_everything_back() {
        let budget = MemoryBudget::new(100 * KIB);
        let a = budget.lease(far());
        let meter = a.meter();
        meter.charge(80 * KIB).await.expect("granted");
        meter.release_all();
        assert_eq!((budget.in_use(), a.held()), (0, 0));
        meter.charge(100 * KIB).await.expect("the whole pool again");
    }

    #[tokio::test(start_paused = true)]
    async fn the_sole_waiter_proceeds_when_another_releases_and_a_second_defers() {
        let budget = MemoryBudget::new(100 * KIB);
        let small = budget.lease(far());
        small.charge(60 * KIB).await.expect("granted");
        let large = budget.lease(far());
        let waiting = {
            let large = large.clone();
            tokio::spawn(async move { large.charge(70 * KIB).await })
        };
        // Let the large capture register as the waiter.
        while budget.pool.state().waiter.is_none() {
            tokio::task::yield_now().await;
        }
        assert!(!waiting.is_finished());

        // A third capture that cannot grow while a capture waits gives up at once...
        let third = budget.lease(far());
        let deferred = third.charge(30 * KIB).await.expect_err("deferred");
        assert_eq!(
            deferred,
            Refusal::Deferred {
                wanted: 30 * KIB,
                free: 40 * KIB,
                waited: false
            }
        );
        assert!(deferred.to_string().contains("another capture waits"));
        // ...and so does the small one, which may not eat into what the waiter asked for.
        assert!(matches!(
            small.charge(KIB).await,
            Err(Refusal::Deferred { .. })
        ));
        assert_eq!(budget.deferred(), 2);

        drop(small);
        waiting
            .await
            .expect("joined")
            .expect("the waiter proceeds once the small capture released");
        assert_eq!((budget.in_use(), large.held()), (70 * KIB, 70 * KIB));
        assert!(budget.pool.state().waiter.is_none());
        third
            .charge(30 * KIB)
            .await
            .expect("nobody waits: room is granted again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_gives_up_at_its_deadline_and_frees_the_slot() {
        let budget = MemoryBudget::new(100 * KIB);
        let holder = budget.lease(far());
        holder.charge(90 * KIB).await.expect("granted");
        let started = Instant::now();
        let waiter = budget.lease(Some(started + Duration::from_secs(5)));
        let refused = waiter.charge(20 * KIB).await.expect_err("waited in vain");
        assert_eq!(
            refused,
            Refusal::Deferred {
                wanted: 20 * KIB,
                free: 10 * KIB,
                waited: true
            }
        );
        assert_eq!(Instant::now() - started, Duration::from_secs(5));
        assert!(budget.pool.state().waiter.is_none());
        holder.charge(10 * KIB).await.expect("no waiter any more");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_dropped_mid_wait_frees_the_slot() {
        let budget = MemoryBudget::new(100 * KIB);
        let holder = budget.lease(far());
        holder.charge(90 * KIB).await.expect("granted");
        let waiter = budget.lease(None);
        let abandoned = tokio::time::timeout(Duration::from_secs(1), waiter.charge(20 * KIB)).await;
        assert!(abandoned.is_err(), "still waiting when abandoned");
        assert!(budget.pool.state().waiter.is_none());
        assert_eq!(budget.in_use(), 90 * KIB);
        // Without a deadline, the wait still ends.
        let started = Instant::now();
        assert!(matches!(
            waiter.charge(20 * KIB).await,
            Err(Refusal::Deferred { waited: true, .. })
        ));
        assert_eq!(Instant::now() - started, LONGEST_WAIT);
    }

    #[test]
    fn sizes_read_the_way_operators_write_them() {
        assert_eq!(format_bytes(256 * MIB), "256 MiB");
        assert_eq!(format_bytes(3 * MIB / 2), "1.5 MiB");
        assert_eq!(format_bytes(64 * KIB), "64 KiB");
        assert_eq!(format_bytes(1000), "1000 bytes");
    }
}
