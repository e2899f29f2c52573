//! One bound on the memory that incoming messages hold across many
//! connections.
//!
//! A limit per message stops one connection from taking everything, but not
//! a few hundred connections that each hold a large unfinished message (or
//! inflate a compressed one) and then wait. A [`MemoryBudget`] is shared by
//! every connection built from the same [`crate::Config`] — or from configs
//! holding clones of it — and each connection reserves from it before its
//! unfinished message grows past a small free allowance.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use crate::config::Config;
use crate::error::ProtocolError;

/// Bytes a connection may hold for its message in progress without
/// reserving anything: every message up to this size flows whatever the
/// budget's state, so small traffic is never refused because large
/// messages elsewhere took the budget.
pub(crate) const ALLOWANCE: usize = 16 << 10;

/// Reservations are taken in steps of this size, so a message that grows a
/// read at a time touches the shared counter once per step, not per read.
const STEP: usize = 64 << 10;

/// What [`Config::default`] uses: one budget for the whole process.
pub(crate) const DEFAULT_LIMIT: usize = 256 << 20;

/// A memory budget shared by many connections: the bytes that all their
/// unfinished incoming messages (and the output of inflating them) may hold
/// at once.
///
/// Each connection holds up to 16 KiB of a message in progress for free.
/// Past that it reserves from the budget, in steps of 64 KiB, before its
/// input buffer, its reassembly buffer or its inflate output grows; what it
/// reserved returns when the message is delivered, when the connection fails
/// and when it is dropped (an abrupt reset included). A message that cannot
/// reserve what it needs fails its connection with
/// [`ProtocolError::MemoryBudget`], sent as close code 1013 (Try Again
/// Later): the message was within the limits, the process was not.
///
/// Cloning shares the budget. [`Config::default`] holds
/// [`MemoryBudget::process_default`] (256 MiB for the whole process); a
/// server that wants its own gives each listener a budget of its own.
///
/// ```
/// use std::sync::Arc;
/// use wsmachine::{Config, MemoryBudget};
/// let budget = MemoryBudget::new(64 << 20);
/// let cfg = Arc::new(Config { memory_budget: Some(budget.clone()), ..Config::default() });
/// // every connection accepted with `cfg` reserves from `budget`
/// assert_eq!(budget.in_use(), 0);
/// assert_eq!(budget.limit(), 64 << 20);
/// # let _ = cfg;
/// ```
#[derive(Clone)]
pub struct MemoryBudget(Arc<Inner>);

struct Inner {
    limit: usize,
    used: AtomicUsize,
    refused: AtomicU64,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        MemoryBudget(Arc::new(Inner {
            limit,
            used: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
        }))
    }

    /// The budget every [`Config::default`] shares: 256 MiB for the process.
    ///
    /// ```
    /// use wsmachine::MemoryBudget;
    /// assert!(MemoryBudget::process_default().same_as(&MemoryBudget::process_default()));
    /// ```
    pub fn process_default() -> Self {
        static DEFAULT: OnceLock<MemoryBudget> = OnceLock::new();
        DEFAULT
            .get_or_init(|| MemoryBudget::new(DEFAULT_LIMIT))
            .clone()
    }

    /// The limit, in bytes.
    pub fn limit(&self) -> usize {
        self.0.limit
    }

    /// Bytes reserved now, over all connections.
    pub fn in_use(&self) -> usize {
        self.0.used.load(Ordering::Relaxed)
    }

    /// How many reservations were refused so far (each failed a connection).
    pub fn refusals(&self) -> u64 {
        self.0.refused.load(Ordering::Relaxed)
    }

    /// Whether `self` and `other` are the same budget (clones of one).
    pub fn same_as(&self, other: &MemoryBudget) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    fn try_reserve(&self, n: usize) -> bool {
        let inner = &*self.0;
        let mut used = inner.used.load(Ordering::Relaxed);
        loop {
            let next = match used.checked_add(n) {
                Some(next) if next <= inner.limit => next,
                _ => {
                    inner.refused.fetch_add(1, Ordering::Relaxed);
                    return false;
                }
            };
            match inner
                .used
                .compare_exchange_weak(used, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => used = now,
            }
        }
    }

    fn release(&self, n: usize) {
        let before = self.0.used.fetch_sub(n, Ordering::Relaxed);
        debug_assert!(before >= n, "released {n} of {before} reserved");
    }
}

impl fmt::Debug for MemoryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBudget")
            .field("limit", &self.limit())
            .field("in_use", &self.in_use())
            .finish()
    }
}

/// What one connection reserved from its config's budget. Plain bytes: the
/// budget itself is read from the shared `Config`, so a connection carries
/// one word for it.
#[derive(Debug, Default)]
pub(crate) struct Held(usize);

impl Held {
    /// Makes sure `total` bytes held for the message in progress are
    /// covered, reserving more when they are not.
    pub(crate) fn cover(&mut self, config: &Config, total: usize) -> Result<(), ProtocolError> {
        let need = reservation_for(total);
        if need <= self.0 {
            return Ok(());
        }
        let Some(budget) = &config.memory_budget else {
            return Ok(());
        };
        if budget.try_reserve(need - self.0) {
            self.0 = need;
            Ok(())
        } else {
            Err(ProtocolError::MemoryBudget {
                needed: total,
                limit: budget.limit(),
            })
        }
    }

    /// Gives back what is no longer needed now that `total` bytes are held.
    #[inline]
    pub(crate) fn settle(&mut self, config: &Config, total: usize) {
        if self.0 == 0 {
            return;
        }
        let keep = reservation_for(total);
        if keep < self.0 {
            if let Some(budget) = &config.memory_budget {
                budget.release(self.0 - keep);
            }
            self.0 = keep;
        }
    }

    /// Bytes reserved.
    pub(crate) fn bytes(&self) -> usize {
        self.0
    }
}

/// The reservation `total` held bytes need: what passes the allowance,
/// rounded up to a whole step.
fn reservation_for(total: usize) -> usize {
    match total.checked_sub(ALLOWANCE) {
        None | Some(0) => 0,
        Some(over) => over.div_ceil(STEP).saturating_mul(STEP),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(limit: usize) -> (Config, MemoryBudget) {
        let b = MemoryBudget::new(limit);
        (
            Config {
                memory_budget: Some(b.clone()),
                ..Config::default()
            },
            b,
        )
    }

    #[test]
    fn the_allowance_is_free_and_steps_round_up() {
        let (c, b) = cfg(1 << 20);
        let mut h = Held::default();
        h.cover(&c, ALLOWANCE).unwrap();
        assert_eq!(b.in_use(), 0);
        h.cover(&c, ALLOWANCE + 1).unwrap();
        assert_eq!(b.in_use(), STEP);
        h.cover(&c, ALLOWANCE + STEP).unwrap();
        assert_eq!(b.in_use(), STEP);
        h.cover(&c, ALLOWANCE + STEP + 1).unwrap();
        assert_eq!(b.in_use(), 2 * STEP);
        h.settle(&c, ALLOWANCE + 10);
        assert_eq!(b.in_use(), STEP);
        h.settle(&c, 0);
        assert_eq!((b.in_use(), h.bytes()), (0, 0));
    }

    #[test]
    fn a_refusal_reserves_nothing_and_is_counted() {
        let (c, b) = cfg(2 * STEP);
        let mut one = Held::default();
        let mut two = Held::default();
        one.cover(&c, ALLOWANCE + STEP).unwrap();
        let err = two.cover(&c, ALLOWANCE + 2 * STEP).unwrap_err();
        assert_eq!(
            err,
            ProtocolError::MemoryBudget {
                needed: ALLOWANCE + 2 * STEP,
                limit: 2 * STEP
            }
        );
        assert_eq!((b.in_use(), two.bytes(), b.refusals()), (STEP, 0, 1));
        // What is left still serves a smaller request.
        two.cover(&c, ALLOWANCE + STEP).unwrap();
        assert_eq!(b.in_use(), 2 * STEP);
        one.settle(&c, 0);
        two.settle(&c, 0);
        assert_eq!(b.in_use(), 0);
    }

    #[test]
    fn without_a_budget_nothing_is_counted_or_refused() {
        let c = Config {
            memory_budget: None,
            ..Config::default()
        };
        let mut h = Held::default();
        h.cover(&c, usize::MAX).unwrap();
        assert_eq!(h.bytes(), 0);
    }

    #[test]
    fn huge_requests_do_not_overflow() {
        let (c, b) = cfg(usize::MAX);
        let mut h = Held::default();
        h.cover(&c, usize::MAX).unwrap();
        let mut other = Held::default();
        assert!(other.cover(&c, ALLOWANCE + STEP).is_err());
        h.settle(&c, 0);
        assert_eq!(b.in_use(), 0);
    }
}
