//! The admission state machine with virtual time and fixed dice rolls.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::keywords::{PerSourceMaxStartups, PreauthLimits};
use super::{Admission, Ending, PenaltyReason, Refusal};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn limits(lines: &[&str]) -> PreauthLimits {
    let mut limits = PreauthLimits::new();
    for line in lines {
        let mut words = line.split_whitespace();
        let keyword = words.next().expect("keyword");
        let args: Vec<String> = words.map(str::to_string).collect();
        let known = limits
            .apply(&keyword.to_ascii_lowercase(), keyword, &args, true)
            .expect("valid line");
        assert!(known, "{keyword} is one of ours");
    }
    limits
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn defaults_are_sshds_with_a_per_source_limit_below_start() {
    let l = PreauthLimits::new();
    assert_eq!(
        (
            l.max_startups.start,
            l.max_startups.rate,
            l.max_startups.full
        ),
        (10, 30, 100)
    );
    assert_eq!((l.net_block_v4, l.net_block_v6), (32, 128));
    assert_eq!(l.per_source_limit(), Some(5));
    let p = l.penalties.resolve();
    assert!(p.enabled);
    assert_eq!(
        (
            p.authfail,
            p.noauth,
            p.grace_exceeded,
            p.crash,
            p.min,
            p.max
        ),
        (secs(5), secs(1), secs(10), secs(90), secs(15), secs(600))
    );
    assert_eq!((p.max_sources4, p.max_sources6), (65536, 65536));
}

#[test]
fn keywords_parse_and_bad_values_get_sshds_errors() {
    let l = limits(&[
        "MaxStartups 4:50:8",
        "PerSourceMaxStartups none",
        "PerSourceNetBlockSize 24:64",
        "PerSourcePenalties authfail:2s min:1s max:1m overflow:deny-all",
        "PerSourcePenaltyExemptList 10.0.0.0/8,!10.1.2.3",
    ]);
    assert_eq!((l.max_startups.start, l.max_startups.full), (4, 8));
    assert_eq!(l.per_source_max_startups, PerSourceMaxStartups::Unlimited);
    assert_eq!(l.per_source_limit(), None);
    assert_eq!((l.net_block_v4, l.net_block_v6), (24, 64));
    let p = l.penalties.resolve();
    assert_eq!((p.authfail, p.min, p.max), (secs(2), secs(1), secs(60)));
    assert!(l.exempt(ip("10.9.9.9")));
    assert!(!l.exempt(ip("10.1.2.3")), "a negated entry wins");
    assert!(!l.exempt(ip("192.0.2.1")));

    let single = limits(&["MaxStartups 7"]);
    assert_eq!(
        (single.max_startups.start, single.max_startups.full),
        (7, 7)
    );

    let mut l = PreauthLimits::new();
    let err = |l: &mut PreauthLimits, kw: &str, arg: &str| {
        l.apply(&kw.to_ascii_lowercase(), kw, &[arg.to_string()], true)
            .expect_err("must be refused")
            .to_string()
    };
    assert_eq!(
        err(&mut l, "MaxStartups", "10:30"),
        "Invalid MaxStartups spec."
    );
    assert_eq!(
        err(&mut l, "MaxStartups", "20:30:10"),
        "Invalid MaxStartups spec."
    );
    assert_eq!(
        err(&mut l, "MaxStartups", "1:0:10"),
        "Invalid MaxStartups spec."
    );
    assert_eq!(
        err(&mut l, "PerSourceNetBlockSize", "33"),
        "Invalid PerSourceNetBlockSize spec."
    );
    assert_eq!(
        err(&mut l, "PerSourceMaxStartups", "many"),
        "PerSourceMaxStartups integer value invalid."
    );
    assert_eq!(
        err(&mut l, "PerSourcePenalties", "bogus:1s"),
        "unsupported PerSourcePenalties keyword bogus:1s"
    );
    assert_eq!(
        err(&mut l, "PerSourcePenaltyExemptList", "10.0.0.1/8"),
        "keyword PerSourcePenaltyExemptList invalid address argument."
    );
    let alone = l
        .apply(
            "persourcepenalties",
            "PerSourcePenalties",
            &["no".into(), "authfail:1s".into()],
            true,
        )
        .expect_err("no must be alone")
        .to_string();
    assert!(alone.contains("must appear alone"), "{alone}");
    assert_eq!(l.apply("port", "Port", &["22".into()], true), Ok(false));
}

#[test]
fn penalties_no_disables_them_and_first_values_win() {
    let l = limits(&["PerSourcePenalties no"]);
    assert!(!l.penalties.resolve().enabled);
    let l = limits(&[
        "PerSourcePenalties authfail:2s",
        "PerSourcePenalties authfail:9s noauth:3s",
    ]);
    let p = l.penalties.resolve();
    assert_eq!((p.authfail, p.noauth), (secs(2), secs(3)));
}

#[test]
fn below_start_nothing_is_dropped_and_at_full_everything_is() {
    let mut a = Admission::new(limits(&["MaxStartups 2:30:4", "PerSourceMaxStartups none"]));
    let now = Instant::now();
    // The worst roll (0 always drops when dropping is possible).
    let t1 = a.admit(ip("192.0.2.1"), now, 0).expect("below start");
    let t2 = a.admit(ip("192.0.2.2"), now, 0).expect("below start");
    assert_eq!(a.unauthenticated(), 2);
    // At start the drop probability is rate (30%): rolls below it drop.
    assert_eq!(
        a.admit(ip("192.0.2.3"), now, 29).map(|_| ()),
        Err(Refusal::MaxStartups)
    );
    let t3 = a.admit(ip("192.0.2.3"), now, 30).expect("roll above rate");
    // 3 of start 2, full 4: 30 + 70 * 1/2 = 65%.
    assert!(a.admit(ip("192.0.2.4"), now, 64).is_err());
    let t4 = a.admit(ip("192.0.2.4"), now, 65).expect("roll above 65");
    assert_eq!(
        a.admit(ip("192.0.2.5"), now, 99).map(|_| ()),
        Err(Refusal::MaxStartups),
        "at full, refused whatever the roll"
    );
    for t in [t1, t2, t3, t4] {
        assert_eq!(a.finish(t, Ending::Authenticated, now), None);
    }
    assert_eq!(a.unauthenticated(), 0);
    assert_eq!(a.tracked_sources(), 0, "no per-source entry left behind");
}

#[test]
fn one_source_cannot_lock_out_another() {
    // Defaults: per-source limit 5, start 10: one source never reaches start.
    let mut a = Admission::new(PreauthLimits::new());
    let now = Instant::now();
    let mut held = Vec::new();
    for n in 0..400 {
        match a.admit(ip("127.0.0.2"), now, 0) {
            Ok(t) => held.push(t),
            Err(r) => assert_eq!(r, Refusal::PerSource, "connection {n}"),
        }
    }
    assert_eq!(held.len(), 5);
    // The worst roll still admits another source: no random drop below start.
    let other = a.admit(ip("127.0.0.1"), now, 0).expect("another source");
    a.finish(other, Ending::Authenticated, now);
}

#[test]
fn net_block_groups_neighbours_into_one_source() {
    let mut a = Admission::new(limits(&[
        "PerSourceMaxStartups 2",
        "PerSourceNetBlockSize 24:48",
    ]));
    let now = Instant::now();
    let _a = a.admit(ip("198.51.100.1"), now, 99).expect("first");
    let _b = a.admit(ip("198.51.100.200"), now, 99).expect("second");
    assert_eq!(
        a.admit(ip("198.51.100.7"), now, 99).map(|_| ()),
        Err(Refusal::PerSource)
    );
    assert!(a.admit(ip("198.51.101.7"), now, 99).is_ok(), "another /24");
    let _c = a.admit(ip("2001:db8:1:2::1"), now, 99).expect("v6");
    let _d = a
        .admit(ip("2001:db8:1:ffff::2"), now, 99)
        .expect("v6, same /48");
    assert!(a.admit(ip("2001:db8:1::3"), now, 99).is_err());
    // An IPv4-mapped IPv6 peer (dual-stack listener) is its IPv4 address.
    assert!(a.admit(ip("::ffff:198.51.100.9"), now, 99).is_err());
}

#[test]
fn a_failed_login_penalises_its_source_until_expiry() {
    let mut a = Admission::new(limits(&["PerSourcePenalties authfail:5s min:1s"]));
    let t0 = Instant::now();
    let t = a.admit(ip("203.0.113.9"), t0, 99).expect("first");
    let line = a.finish(t, Ending::AuthFailed, t0).expect("logged");
    assert_eq!(
        line,
        "ipv4: new 203.0.113.9/32 active penalty of 5.000 seconds for penalty: failed authentication"
    );
    assert_eq!(
        a.admit(ip("203.0.113.9"), t0 + secs(4), 99).map(|_| ()),
        Err(Refusal::Penalised(PenaltyReason::AuthFail))
    );
    assert!(
        a.admit(ip("203.0.113.10"), t0 + secs(4), 99).is_ok(),
        "only that source"
    );
    let again = a
        .admit(ip("203.0.113.9"), t0 + secs(5), 99)
        .expect("expired");
    assert_eq!(a.tracked_penalties(), 0, "expired penalties are forgotten");
    a.finish(again, Ending::Authenticated, t0 + secs(5));
}

#[test]
fn short_penalties_accumulate_until_they_pass_min() {
    // sshd's defaults: authfail 5 s, min 15 s.
    let mut a = Admission::new(PreauthLimits::new());
    let now = Instant::now();
    let peer = ip("192.0.2.50");
    for n in 0..3 {
        let t = a
            .admit(peer, now, 99)
            .expect("deferred penalties do not refuse");
        let line = a.finish(t, Ending::AuthFailed, now);
        if n == 0 {
            assert!(line.is_some_and(|l| l.contains("deferred")));
        }
    }
    // 15 s accumulated is not more than min; the fourth failure activates.
    let t = a
        .admit(peer, now, 99)
        .expect("still deferred at exactly min");
    let line = a
        .finish(t, Ending::AuthFailed, now)
        .expect("activation logged");
    assert!(
        line.contains("activating ipv4 penalty of 20.000 seconds"),
        "{line}"
    );
    assert!(a.admit(peer, now + secs(19), 99).is_err());
    assert!(a.admit(peer, now + secs(20), 99).is_ok());
}

#[test]
fn penalties_stop_at_max() {
    let mut a = Admission::new(limits(&["PerSourcePenalties grace-exceeded:20s max:30s"]));
    let now = Instant::now();
    let peer = ip("192.0.2.60");
    for _ in 0..10 {
        if let Ok(t) = a.admit(peer, now, 99) {
            a.finish(t, Ending::GraceExceeded, now);
        }
        a.penalise(peer, PenaltyReason::GraceExceeded, now);
    }
    assert_eq!(
        a.admit(peer, now + secs(29), 99).map(|_| ()),
        Err(Refusal::Penalised(PenaltyReason::GraceExceeded))
    );
    assert!(a.admit(peer, now + secs(30), 99).is_ok(), "capped at max");
}

#[test]
fn logins_and_exempt_sources_are_not_penalised() {
    let mut a = Admission::new(limits(&[
        "PerSourcePenalties authfail:60s noauth:60s min:1s",
        "PerSourcePenaltyExemptList 192.0.2.0/24",
    ]));
    let now = Instant::now();
    let t = a.admit(ip("198.51.100.1"), now, 99).expect("admit");
    assert_eq!(a.finish(t, Ending::Authenticated, now), None);
    let t = a.admit(ip("198.51.100.1"), now, 99).expect("admit");
    assert_eq!(a.finish(t, Ending::HandedOff, now), None);
    let t = a.admit(ip("192.0.2.1"), now, 99).expect("admit");
    assert_eq!(a.finish(t, Ending::AuthFailed, now), None, "exempt");
    assert!(a.admit(ip("192.0.2.1"), now, 99).is_ok());
    assert!(a.admit(ip("198.51.100.1"), now, 99).is_ok());
    assert_eq!(a.tracked_penalties(), 0);
}

#[test]
fn the_penalty_table_is_bounded_and_evicts_the_soonest_to_expire() {
    let mut a = Admission::new(limits(&[
        "PerSourcePenalties noauth:100s min:1s max-sources4:3",
        "PerSourceMaxStartups none",
    ]));
    let now = Instant::now();
    for n in 0..1000u32 {
        let peer = IpAddr::from(n.to_be_bytes().map(|b| b | 1));
        let at = now + Duration::from_millis(u64::from(n));
        if let Ok(t) = a.admit(peer, at, 99) {
            a.finish(t, Ending::NoAuth, at);
        }
        assert!(a.tracked_penalties() <= 3, "bounded");
    }
    // The newest three are kept (they expire last).
    let newest = IpAddr::from(999u32.to_be_bytes().map(|b| b | 1));
    assert!(a.admit(newest, now + secs(2), 99).is_err());
    assert_eq!(a.tracked_sources(), 0);
}

#[test]
fn deny_all_overflow_refuses_everyone_but_the_exempt() {
    let mut a = Admission::new(limits(&[
        "PerSourcePenalties noauth:100s min:1s max-sources4:2 overflow:deny-all",
        "PerSourcePenaltyExemptList 192.0.2.1",
    ]));
    let now = Instant::now();
    for peer in ["198.51.100.1", "198.51.100.2"] {
        let t = a.admit(ip(peer), now, 99).expect("admit");
        a.finish(t, Ending::NoAuth, now);
    }
    assert_eq!(
        a.admit(ip("203.0.113.1"), now, 99).map(|_| ()),
        Err(Refusal::TooManyPenalised)
    );
    assert!(a.admit(ip("192.0.2.1"), now, 99).is_ok(), "exempt");
    assert!(
        a.admit(ip("2001:db8::1"), now, 99).is_ok(),
        "IPv6 is counted apart"
    );
}

#[test]
fn retry_starts_at_half_of_start() {
    let mut a = Admission::new(limits(&["MaxStartups 6:30:60"]));
    let now = Instant::now();
    let mut held = Vec::new();
    for n in 0..3u8 {
        assert!(!a.wants_address_validation(), "at {n}");
        held.push(
            a.admit(IpAddr::from([192, 0, 2, n]), now, 99)
                .expect("admit"),
        );
    }
    assert!(a.wants_address_validation());
    for t in held {
        a.finish(t, Ending::Authenticated, now);
    }
    assert!(!a.wants_address_validation());
}

#[tokio::test]
async fn permits_return_their_slot_and_penalise_by_how_the_connection_ended() {
    use super::gate::Gate;
    use std::net::SocketAddr;

    let gate = Gate::new(limits(&[
        "PerSourcePenalties authfail:60s noauth:0s grace-exceeded:60s min:1s",
    ]));
    let from = |last: u8| SocketAddr::from(([192, 0, 2, last], 40000));
    let local = Some(SocketAddr::from(([192, 0, 2, 254], 22)));

    let permit = gate.admit(from(1), local).expect("admitted");
    assert_eq!(gate.unauthenticated(), 1);
    permit.authenticated();
    assert_eq!(gate.unauthenticated(), 0, "slot back at login");
    assert!(
        gate.admit(from(1), local).is_some(),
        "no penalty after a login"
    );

    // Keys refused, then the client goes away: noauth, as in sshd (its
    // monitor counts no attempt for a key it does not allow).
    let permit = gate.admit(from(2), local).expect("admitted");
    drop(permit);
    assert_eq!(gate.unauthenticated(), 0);
    assert!(
        gate.admit(from(2), local).is_some(),
        "noauth (0 s here), not authfail"
    );

    // LoginGraceTime: grace-exceeded.
    let mut permit = gate.admit(from(3), local).expect("admitted");
    permit.ended(Ending::GraceExceeded);
    drop(permit);
    assert!(gate.admit(from(3), local).is_none(), "penalised for grace");

    // Gone without a word: noauth (1 s, below min 1 s: deferred, not refused).
    let permit = gate.admit(from(4), local).expect("admitted");
    drop(permit);
    assert!(
        gate.admit(from(4), local).is_some(),
        "a deferred penalty does not refuse"
    );
    assert_eq!(gate.unauthenticated(), 0, "every slot came back");
}
