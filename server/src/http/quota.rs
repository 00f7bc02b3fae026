//! Per-device quotas (issue 8.4): how many requests, body bytes and pushed changes one device
//! may send per period. An honest phone, even one back from a week offline with a 20,000-case
//! restore, stays far below the defaults; a stolen token or a looping client does not, and
//! gets 429 with `Retry-After` (the seconds left in its period), which phones honour.
//!
//! Counting is a fixed window per device, in this process's memory: one entry per device that
//! sent a request in the current period (only authenticated devices are counted, so the map
//! is bounded by the enrolled devices; stale windows are dropped as the map grows). Several
//! server processes each count on their own. Pure: `now` comes from the caller.

use std::collections::HashMap;
use std::sync::Mutex;

use gridcase_core::model::Millis;
use serde::Deserialize;

/// The limits of one device per period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaLimits {
    /// Length of a period, milliseconds.
    pub period_ms: u64,
    pub requests: u64,
    /// Request body bytes (as sent, compressed).
    pub bytes: u64,
    /// Changes pushed (each document push's change count).
    pub changes: u64,
}

impl Default for QuotaLimits {
    /// Per minute: 600 requests (10 a second: restore pages come one after another), 256 MiB
    /// (16 maximal bodies), 100,000 changes (ten maximal document pushes).
    fn default() -> Self {
        QuotaLimits {
            period_ms: 60_000,
            requests: 600,
            bytes: 256 * 1024 * 1024,
            changes: 100_000,
        }
    }
}

/// What a request would exceed, and how long the device must wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverQuota {
    pub what: &'static str,
    /// Whole seconds until the device's period ends (at least 1).
    pub retry_after: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Window {
    start: Millis,
    requests: u64,
    bytes: u64,
    changes: u64,
}

/// The counters of every device, behind one short lock.
#[derive(Debug)]
pub struct Quotas {
    limits: QuotaLimits,
    windows: Mutex<HashMap<String, Window>>,
}

/// Past this many devices in the map, windows that ended are dropped.
const PRUNE_AT: usize = 10_000;

impl Quotas {
    pub fn new(limits: QuotaLimits) -> Quotas {
        Quotas {
            limits,
            windows: Mutex::new(HashMap::new()),
        }
    }

    pub fn limits(&self) -> QuotaLimits {
        self.limits
    }

    /// Counts a new request announcing `bytes` of body (its `Content-Length`, or 0). Refused
    /// (and not counted) if the device's requests or bytes would exceed the period's limit,
    /// or its changes already do.
    pub fn request(&self, device: &str, bytes: u64, now: Millis) -> Result<(), OverQuota> {
        self.charge(device, now, |w, l| {
            let over = if w.requests + 1 > l.requests {
                Some("requests")
            } else if w.bytes.saturating_add(bytes) > l.bytes {
                Some("bytes")
            } else if w.changes >= l.changes {
                Some("changes")
            } else {
                None
            };
            if over.is_none() {
                w.requests += 1;
                w.bytes = w.bytes.saturating_add(bytes);
            }
            over
        })
    }

    /// Counts body bytes beyond what [`Quotas::request`] was told (a body sent without
    /// `Content-Length`). Always counted; refused if now over.
    pub fn body(&self, device: &str, extra: u64, now: Millis) -> Result<(), OverQuota> {
        self.charge(device, now, |w, l| {
            w.bytes = w.bytes.saturating_add(extra);
            (w.bytes > l.bytes).then_some("bytes")
        })
    }

    /// Counts the changes a decoded request pushes; refused (before anything is judged or
    /// stored) if that exceeds the period's limit. Counted either way: the device made the
    /// server decode them.
    pub fn changes(&self, device: &str, changes: u64, now: Millis) -> Result<(), OverQuota> {
        self.charge(device, now, |w, l| {
            w.changes = w.changes.saturating_add(changes);
            (w.changes > l.changes).then_some("changes")
        })
    }

    fn charge(
        &self,
        device: &str,
        now: Millis,
        step: impl FnOnce(&mut Window, &QuotaLimits) -> Option<&'static str>,
    ) -> Result<(), OverQuota> {
        let period = self.limits.period_ms as Millis;
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() >= PRUNE_AT {
            windows.retain(|_, w| now < w.start.saturating_add(period));
        }
        let window = windows.entry(device.to_owned()).or_default();
        if now >= window.start.saturating_add(period) || now < window.start {
            *window = Window {
                start: now,
                ..Window::default()
            };
        }
        match step(window, &self.limits) {
            None => Ok(()),
            Some(what) => {
                let left = window.start.saturating_add(period).saturating_sub(now);
                Err(OverQuota {
                    what,
                    retry_after: (left.max(0) as u64).div_ceil(1000).max(1),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Quotas {
        Quotas::new(QuotaLimits {
            period_ms: 10_000,
            requests: 3,
            bytes: 1_000,
            changes: 50,
        })
    }

    #[test]
    fn requests_are_counted_per_device_and_period() {
        let q = small();
        for t in [0, 1, 2] {
            q.request("a", 10, t).unwrap();
        }
        let over = q.request("a", 10, 2_500).unwrap_err();
        assert_eq!(
            over,
            OverQuota {
                what: "requests",
                retry_after: 8
            }
        );
        q.request("b", 10, 2_500).unwrap();
        q.request("a", 10, 10_000).unwrap();
    }

    #[test]
    fn bytes_and_changes_have_their_own_limits() {
        let q = small();
        q.request("a", 900, 0).unwrap();
        assert_eq!(q.request("a", 101, 0).unwrap_err().what, "bytes");
        q.request("a", 100, 0).unwrap();
        assert_eq!(q.body("a", 1, 0).unwrap_err().what, "bytes");
        let q = small();
        q.changes("a", 50, 0).unwrap();
        assert_eq!(q.changes("a", 1, 9_999).unwrap_err().retry_after, 1);
        assert_eq!(q.request("a", 0, 9_999).unwrap_err().what, "changes");
        q.request("a", 0, 10_000).unwrap();
    }

    #[test]
    fn a_clock_going_back_starts_a_new_window() {
        let q = small();
        for _ in 0..3 {
            q.request("a", 0, 50_000).unwrap();
        }
        q.request("a", 0, 40_000).unwrap();
    }

    #[test]
    fn ended_windows_are_dropped_when_the_map_grows() {
        let q = small();
        for i in 0..PRUNE_AT {
            q.request(&format!("d{i}"), 0, 0).unwrap();
        }
        q.request("late", 0, 20_000).unwrap();
        assert_eq!(q.windows.lock().unwrap().len(), 1);
    }
}
