//! One sender at a time. The vendor's limits are per app, so with several replicas on one
//! store exactly one delivers: the holder of a lease in the store, renewed every third of
//! `delivery.lease` and measured by the store's clock, not the replicas'.
//!
//! The holder counts its lease from the moment it *sent* the renewal (never later than the
//! store's own reckoning) and stops sending a margin before it could lapse; a successor takes
//! it only a margin after it lapsed. A replica that takes the lease — and only then, never a
//! replica merely starting — queues again the messages left in flight, re-reads the pacing
//! window and the kept token from the store, and starts sending. On a clean stop the holder
//! gives the lease up once its sends are done, so the next takes over at once.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How a replica stands towards delivery.
#[derive(Debug, Default)]
pub struct Role {
    /// Until when this replica may send (its lease less the margin); `None` while standby.
    valid_until: Mutex<Option<Instant>>,
}

impl Role {
    /// True while this replica holds a lease that cannot have lapsed.
    pub fn is_active(&self) -> bool {
        self.valid_until
            .lock()
            .map(|v| v.is_some_and(|t| Instant::now() < t))
            .unwrap_or(false)
    }

    /// `active` or `standby`, for `/readyz`.
    pub fn name(&self) -> &'static str {
        if self.is_active() {
            "active"
        } else {
            "standby"
        }
    }

    pub(super) fn hold_until(&self, until: Option<Instant>) {
        if let Ok(mut v) = self.valid_until.lock() {
            *v = until;
        }
        crate::metrics::delivery_role(until.is_some_and(|t| Instant::now() < t));
    }
}

/// The lease's timing, from `delivery.lease`.
#[derive(Debug, Clone, Copy)]
pub struct LeaseTiming {
    /// How long a lease lasts without renewal.
    pub lease: Duration,
    /// Kept on both sides: the holder stops this long before its lease could lapse; a
    /// successor starts this long after it lapsed.
    pub margin: Duration,
}

impl LeaseTiming {
    /// The timing of a `lease`: margins of a fifth of it.
    pub fn of(lease: Duration) -> LeaseTiming {
        LeaseTiming {
            lease,
            margin: lease / 5,
        }
    }

    /// How often the holder renews.
    pub fn renew_every(self) -> Duration {
        self.lease / 3
    }

    /// How often a standby replica tries to take the lease.
    pub fn poll_every(self) -> Duration {
        (self.lease / 5).max(Duration::from_millis(200))
    }

    /// Until when a lease renewed by a request sent at `sent` may be used.
    pub fn valid_until(self, sent: Instant) -> Instant {
        sent + self.lease.saturating_sub(self.margin)
    }
}

/// This process's name as a lease holder: host, process id, and a random part (a restarted
/// process with the same id is another holder).
pub fn holder_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}:{}:{}", std::process::id(), &nonce[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_stops_a_margin_before_its_lease_could_lapse() {
        let t = LeaseTiming::of(Duration::from_secs(15));
        let sent = Instant::now();
        assert_eq!(t.valid_until(sent), sent + Duration::from_secs(12));
        assert_eq!(t.renew_every(), Duration::from_secs(5));
        assert_eq!(t.margin, Duration::from_secs(3));
        // Renewed every 5 s, a lease of 15 s survives two missed renewals before the holder
        // stops (at 12 s), and the successor waits 3 s more after it lapsed (at 18 s).
        assert!(t.renew_every() * 2 < t.lease - t.margin);
    }

    #[test]
    fn a_role_is_active_only_until_its_lease_is_due_to_stop() {
        let role = Role::default();
        assert_eq!(role.name(), "standby");
        role.hold_until(Some(Instant::now() + Duration::from_secs(60)));
        assert!(role.is_active());
        role.hold_until(Some(Instant::now() - Duration::from_millis(1)));
        assert!(!role.is_active(), "a lease past its time is not held");
        role.hold_until(None);
        assert_eq!(role.name(), "standby");
        assert!(holder_name().split(':').count() >= 3);
    }
}
