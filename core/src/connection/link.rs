//! What the receiving half tells the sending half, and the reverse. Touched
//! only for control traffic, never on the data path, and no lock is held
//! beyond a queue operation.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use bytes::Bytes;

use crate::close::CloseFrame;

/// A control frame the receiving half needs sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    Pong(Bytes),
    Ping(Bytes),
    /// A Close frame to send, with the time the decision was made (the
    /// closing-handshake timer starts then).
    Close(CloseFrame, Instant),
    /// Not a frame: the connection is idle, free the compressor's zlib
    /// stream (`DeflateConfig::release_after_idle`).
    ReleaseCompressor,
}

/// Pongs waiting to be sent, at most. RFC 6455 §5.5.3 allows answering only
/// the most recent Ping, which bounds what a Ping flood can queue.
const MAX_PENDING_PONGS: usize = 16;

#[derive(Debug, Default)]
pub(crate) struct Link {
    /// When the sending half queued its Close frame.
    pub(crate) close_sent_at: OnceLock<Instant>,
    has_replies: AtomicBool,
    /// The receiving half is done (failure, end of stream, timeout): the
    /// sending half refuses new frames.
    finished: AtomicBool,
    /// The sending half dropped its output at `Config::max_pending_output`:
    /// the receiving half reports it and is done with the transport.
    aborted: AtomicBool,
    /// The sending half sent a message since the receiving half last
    /// looked (only noted when compression is on: it keeps idle zlib
    /// streams from being released while the application only sends).
    sent: AtomicBool,
    /// The application sent a Ping since the receiving half's last
    /// keepalive Ping: a peer may answer only that one (RFC 6455 §5.5.3).
    app_ping: AtomicBool,
    replies: Mutex<VecDeque<Reply>>,
}

impl Link {
    pub(crate) fn push(&self, reply: Reply) {
        let mut q = self.replies.lock().unwrap_or_else(|e| e.into_inner());
        if let Reply::Pong(_) = reply {
            let pongs = q.iter().filter(|r| matches!(r, Reply::Pong(_))).count();
            if pongs >= MAX_PENDING_PONGS {
                if let Some(last) = q.iter_mut().rev().find(|r| matches!(r, Reply::Pong(_))) {
                    *last = reply;
                }
                return;
            }
        }
        q.push_back(reply);
        self.has_replies.store(true, Ordering::Release);
    }

    pub(crate) fn has_replies(&self) -> bool {
        self.has_replies.load(Ordering::Acquire)
    }

    pub(crate) fn take_replies(&self) -> VecDeque<Reply> {
        let mut q = self.replies.lock().unwrap_or_else(|e| e.into_inner());
        self.has_replies.store(false, Ordering::Release);
        std::mem::take(&mut *q)
    }

    pub(crate) fn note_sent(&self) {
        // A load first: the common case (already set) costs no write to a
        // cache line the receiving half reads.
        if !self.sent.load(Ordering::Relaxed) {
            self.sent.store(true, Ordering::Relaxed);
        }
    }

    pub(crate) fn sent_since_check(&self) -> bool {
        self.sent.load(Ordering::Relaxed)
    }

    pub(crate) fn take_sent(&self) -> bool {
        self.sent.swap(false, Ordering::Relaxed)
    }

    pub(crate) fn note_app_ping(&self) {
        self.app_ping.store(true, Ordering::Relaxed);
    }

    /// Whether the application sent a Ping since the last call (the
    /// receiving half calls it as it sends a keepalive Ping).
    pub(crate) fn take_app_ping(&self) -> bool {
        self.app_ping.swap(false, Ordering::Relaxed)
    }

    pub(crate) fn app_ping_sent(&self) -> bool {
        self.app_ping.load(Ordering::Relaxed)
    }

    pub(crate) fn set_finished(&self) {
        self.finished.store(true, Ordering::Release);
    }

    pub(crate) fn set_aborted(&self) {
        self.aborted.store(true, Ordering::Release);
        self.set_finished();
    }

    pub(crate) fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::Acquire)
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    pub(crate) fn close_sent_at(&self) -> Option<Instant> {
        self.close_sent_at.get().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pong_flood_is_bounded_and_keeps_latest() {
        let link = Link::default();
        for i in 0..1000u32 {
            link.push(Reply::Pong(Bytes::copy_from_slice(&i.to_be_bytes())));
        }
        let q = link.take_replies();
        assert_eq!(q.len(), MAX_PENDING_PONGS);
        assert_eq!(
            q.back(),
            Some(&Reply::Pong(Bytes::copy_from_slice(&999u32.to_be_bytes())))
        );
        assert!(!link.has_replies());
    }
}
