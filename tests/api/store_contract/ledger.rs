//! The vendor ledger's contract: call times by kind, the token kept for its owner and forgotten
//! only while current, a pause that only grows — shared by every handle on the store.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fxhook::store::vendor::{CallKind, Pause, StoredToken};
use fxhook::store::{from_unix_ms, unix_ms};
use secrecy::{ExposeSecret, SecretString};

use super::on_both;

#[test]
fn calls_are_counted_by_kind_from_a_moment_on_and_an_hour_is_kept_on_both_stores() {
    on_both(|fresh| {
        let ledger = fresh.open();
        // In the future: a call is never written earlier than the moment it is written.
        let t0 = from_unix_ms(unix_ms(SystemTime::now() + Duration::from_secs(3600)));
        let s = Duration::from_secs;
        for i in 0..5 {
            ledger.record_call(CallKind::Send, t0 + s(i)).unwrap();
        }
        ledger.record_call(CallKind::Token, t0).unwrap();

        let since = ledger.calls_since(CallKind::Send, t0 + s(3)).unwrap();
        let tokens = fresh.open().calls_since(CallKind::Token, t0).unwrap();

        assert_eq!(since, [t0 + s(3), t0 + s(4)]);
        assert_eq!(tokens, [t0], "another handle sees the calls");
        ledger.record_call(CallKind::Send, t0 + s(7200)).unwrap();
        assert_eq!(
            ledger.calls_since(CallKind::Send, t0).unwrap(),
            [t0 + s(7200)],
            "calls older than an hour are dropped"
        );
        assert_eq!(ledger.calls_since(CallKind::Token, t0).unwrap(), [t0]);
    });
}

#[test]
fn a_call_is_never_recorded_before_the_moment_it_is_written_on_both_stores() {
    on_both(|fresh| {
        let ledger = fresh.open();
        let asked = SystemTime::now() - Duration::from_secs(600);
        let written = from_unix_ms(unix_ms(SystemTime::now()));

        ledger.record_call(CallKind::Send, asked).unwrap();

        let calls = ledger.calls_since(CallKind::Send, asked).unwrap();
        assert_eq!(calls.len(), 1);
        assert!(calls[0] >= written, "{:?} is before {written:?}", calls[0]);
    });
}

fn token(owner: &str, access: &str) -> StoredToken {
    StoredToken {
        owner: owner.into(),
        access: SecretString::from(access.to_string()),
        ea: "fs-ea-1".into(),
        fetched_at: UNIX_EPOCH + Duration::from_secs(42),
        lifetime: Duration::from_secs(7200),
    }
}

#[test]
fn a_token_is_kept_for_its_owner_and_forgotten_only_while_it_is_the_current_one_on_both_stores() {
    on_both(|fresh| {
        let (ledger, other_process) = (fresh.open(), fresh.open());
        ledger.save_token(&token("app-1", "tok-1")).unwrap();
        other_process.save_token(&token("app-1", "tok-2")).unwrap();

        ledger.forget_token(&SecretString::from("tok-1")).unwrap();

        assert!(
            ledger.load_token("app-2").unwrap().is_none(),
            "never another app's token"
        );
        let kept = ledger.load_token("app-1").unwrap().expect("tok-2 is kept");
        assert_eq!(kept.access.expose_secret(), "tok-2");
        assert_eq!(kept.owner, "app-1");
        assert_eq!(kept.ea, "fs-ea-1");
        assert_eq!(kept.fetched_at, UNIX_EPOCH + Duration::from_secs(42));
        assert_eq!(kept.lifetime, Duration::from_secs(7200));
        other_process.save_token(&token("app-2", "tok-3")).unwrap();
        assert!(
            ledger.load_token("app-1").unwrap().is_none(),
            "one token: the newest"
        );
        ledger.forget_token(&SecretString::from("tok-3")).unwrap();
        assert!(other_process.load_token("app-2").unwrap().is_none());
    });
}

#[test]
fn a_pause_only_grows_and_ends_on_its_own_on_both_stores() {
    on_both(|fresh| {
        let (ledger, other_process) = (fresh.open(), fresh.open());
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        let pause = |s: u64, why: &str| Pause {
            until: at(s),
            reason: why.into(),
        };
        assert_eq!(ledger.load_pause(at(10)).unwrap(), None);

        ledger.save_pause(&pause(100, "slow down")).unwrap();
        other_process.save_pause(&pause(50, "shorter")).unwrap();

        assert_eq!(
            ledger.load_pause(at(10)).unwrap(),
            Some(pause(100, "slow down"))
        );
        other_process.save_pause(&pause(200, "quota")).unwrap();
        assert_eq!(
            ledger.load_pause(at(10)).unwrap(),
            Some(pause(200, "quota"))
        );
        assert_eq!(
            ledger.load_pause(at(199)).unwrap(),
            Some(pause(200, "quota"))
        );
        assert_eq!(ledger.load_pause(at(200)).unwrap(), None, "ended");
    });
}
