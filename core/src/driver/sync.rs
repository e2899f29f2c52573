//! The synchronization primitives the split halves share
//! ([`split`](super::split)): `std::sync`'s, or under `--cfg shuttle`
//! shuttle's, so that its model checker schedules every lock and atomic
//! access (core/tests/driver_shuttle.rs). `Arc` is std's in both cases
//! (shuttle re-exports it; `Wake` needs it).

#[cfg(shuttle)]
pub(crate) use shuttle::sync::{atomic::AtomicBool, Mutex, MutexGuard};
#[cfg(not(shuttle))]
pub(crate) use std::sync::{atomic::AtomicBool, Mutex, MutexGuard};
pub(crate) use std::sync::{Arc, PoisonError};
