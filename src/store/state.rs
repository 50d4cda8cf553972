//! The states of what the store keeps, as types: a state is never a string compared in several
//! places. Each has one text form, used in SQL, in the admin API and in metrics labels.

use std::fmt;
use std::str::FromStr;

macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident ($label:literal) { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// Every state, in order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The text form (as stored and shown).
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// Every text form, for error messages.
            pub fn names() -> Vec<&'static str> {
                Self::ALL.iter().map(|s| s.as_str()).collect()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        "unknown {} {other:?} (one of {})",
                        $label,
                        Self::names().join(", ")
                    )),
                }
            }
        }
    };
}

text_enum! {
    /// Where a message is on its way to the vendor.
    MessageState ("state") {
        /// Waiting for its next attempt.
        Queued = "queued",
        /// Taken by the worker, being sent.
        InFlight = "in-flight",
        /// The vendor accepted it (or dry run logged it).
        Delivered = "delivered",
        /// Not deliverable as it stands (no recipients): waits for a re-map.
        Failed = "failed",
        /// Attempts ran out or the vendor refused it: waits for a replay.
        Dead = "dead",
        /// Merged into another message's digest card (`digest_id`), sent with it.
        Coalesced = "coalesced",
        /// Held back as a repeat of a card sent within its rule's `repeat.every`.
        Suppressed = "suppressed",
    }
}

text_enum! {
    /// What mapping made of an event.
    EventState ("state") {
        /// Rendered into messages.
        Mapped = "mapped",
        /// The mapping failed; kept for a re-map.
        Failed = "failed",
    }
}

text_enum! {
    /// What one recorded call (or dry-run step) came to.
    AttemptOutcome ("outcome") {
        /// The vendor accepted the message.
        Delivered = "delivered",
        /// Dry run: logged, not sent.
        DryRun = "dry-run",
        /// A transient failure: tried again later.
        Retry = "retry",
        /// The vendor's rate limit: every send paused.
        SlowDown = "slow-down",
        /// The daily quota is used up.
        Quota = "quota",
        /// A permanent refusal.
        Refused = "refused",
        /// No access token could be had.
        TokenFailed = "token-failed",
        /// The token was stale: refreshed, and the send tried again at once.
        TokenRefresh = "token-refresh",
    }
}

text_enum! {
    /// How an event's payload is stored (see [`crate::store::payload`]).
    PayloadCodec ("payload codec") {
        /// As received (events stored before schema 5, tiny payloads, dropped payloads).
        Identity = "identity",
        /// A zstd frame of the payload.
        Zstd = "zstd",
    }
}

impl MessageState {
    /// True while the message may still be sent without an admin (queued or in flight).
    pub fn is_pending(self) -> bool {
        matches!(self, MessageState::Queued | MessageState::InFlight)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_reads_back_from_its_text_and_a_wrong_one_lists_the_right_ones() {
        for s in MessageState::ALL {
            assert_eq!(s.as_str().parse::<MessageState>(), Ok(*s));
        }
        for s in AttemptOutcome::ALL {
            assert_eq!(s.as_str().parse::<AttemptOutcome>(), Ok(*s));
        }
        let err = "lost".parse::<MessageState>().unwrap_err();
        assert!(
            err.contains("queued, in-flight, delivered, failed, dead"),
            "{err}"
        );
        assert_eq!(EventState::names(), ["mapped", "failed"]);
    }
}
