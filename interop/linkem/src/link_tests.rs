//! The pipeline in virtual time: every instant below is computed, none is read
//! from a clock, so the results are exact and the same on every run.

use super::*;
use crate::options::GilbertElliott;

/// A packet of `len` bytes whose first 8 bytes carry `id`.
fn packet(id: u64, len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len.max(8)];
    bytes[..8].copy_from_slice(&id.to_be_bytes());
    bytes
}

fn id_of(packet: &[u8]) -> u64 {
    let mut id = [0u8; 8];
    id.copy_from_slice(&packet[..8]);
    u64::from_be_bytes(id)
}

/// Feeds `count` packets of `len` bytes, one every `spacing`, starting at
/// `start`, and runs the link until it is empty, jumping the virtual clock to
/// each wake-up time. Returns `(id, sent, delivered)` in delivery order.
fn run(
    link: &mut Link,
    start: Instant,
    count: u64,
    spacing: Duration,
    len: usize,
) -> Vec<(u64, Instant, Instant)> {
    let mut delivered = Vec::new();
    let drain_until = |link: &mut Link, until: Instant, delivered: &mut Vec<_>| {
        while let Some(wake) = link.poll_timeout().filter(|&wake| wake <= until) {
            while let Some(packet) = link.poll_transmit(wake) {
                let id = id_of(&packet);
                delivered.push((id, start + spacing * id as u32, wake));
            }
        }
    };
    for id in 0..count {
        let now = start + spacing * id as u32;
        drain_until(link, now, &mut delivered);
        link.handle_packet(now, packet(id, len));
    }
    drain_until(link, start + Duration::from_secs(100_000), &mut delivered);
    assert_eq!(link.in_flight(), 0);
    delivered
}

fn config() -> LinkConfig {
    LinkConfig::default()
}

#[test]
fn delay_is_exact() {
    let mut link = Link::new(
        LinkConfig {
            delay: Duration::from_millis(25),
            ..config()
        },
        1,
    );
    let t0 = Instant::now();
    assert_eq!(link.handle_packet(t0, packet(0, 100)), Verdict::Accepted);
    assert_eq!(link.poll_timeout(), Some(t0 + Duration::from_millis(25)));
    assert!(link
        .poll_transmit(t0 + Duration::from_millis(25) - Duration::from_nanos(1))
        .is_none());
    let out = link.poll_transmit(t0 + Duration::from_millis(25)).unwrap();
    assert_eq!(id_of(&out), 0);
    assert_eq!(link.poll_timeout(), None);

    let delivered = run(&mut link, t0, 1000, Duration::from_micros(300), 1200);
    assert_eq!(delivered.len(), 1000);
    for (position, (id, sent, at)) in delivered.into_iter().enumerate() {
        assert_eq!(id, position as u64);
        assert_eq!(at - sent, Duration::from_millis(25));
    }
}

#[test]
fn without_delay_a_packet_is_due_at_once() {
    let mut link = Link::new(config(), 1);
    let t0 = Instant::now();
    link.handle_packet(t0, packet(7, 60));
    assert_eq!(link.poll_timeout(), Some(t0));
    assert_eq!(id_of(&link.poll_transmit(t0).unwrap()), 7);
}

#[test]
fn order_preserving_jitter_stays_in_bounds_and_in_order() {
    let mut link = Link::new(
        LinkConfig {
            delay: Duration::from_millis(50),
            jitter: Duration::from_millis(10),
            ..config()
        },
        7,
    );
    let delivered = run(
        &mut link,
        Instant::now(),
        10_000,
        Duration::from_micros(200),
        100,
    );
    assert_eq!(delivered.len(), 10_000);
    let mut delays = Vec::new();
    for (position, (id, sent, at)) in delivered.into_iter().enumerate() {
        assert_eq!(
            id, position as u64,
            "order-preserving jitter reordered packets"
        );
        let delay = at - sent;
        assert!(
            delay >= Duration::from_millis(40) && delay <= Duration::from_millis(60),
            "delay {delay:?} outside 50 ms ± 10 ms"
        );
        delays.push(delay);
    }
    // Jitter must actually vary the delay, not collapse onto one value.
    let spread = delays
        .iter()
        .max()
        .unwrap()
        .saturating_sub(*delays.iter().min().unwrap());
    assert!(spread > Duration::from_millis(15), "spread {spread:?}");
}

#[test]
fn reordering_jitter_stays_in_bounds_and_reorders() {
    let mut link = Link::new(
        LinkConfig {
            delay: Duration::from_millis(50),
            jitter: Duration::from_millis(10),
            jitter_reorder: true,
            ..config()
        },
        7,
    );
    let delivered = run(
        &mut link,
        Instant::now(),
        10_000,
        Duration::from_micros(200),
        100,
    );
    assert_eq!(delivered.len(), 10_000);
    let mut reordered = 0;
    let mut highest = None;
    let mut total = Duration::ZERO;
    for &(id, sent, at) in &delivered {
        let delay = at - sent;
        assert!(delay >= Duration::from_millis(40) && delay <= Duration::from_millis(60));
        total += delay;
        if highest.is_some_and(|highest| id < highest) {
            reordered += 1;
        }
        highest = highest.max(Some(id));
    }
    // Packets 0.2 ms apart with ±10 ms of uniform jitter overtake each other
    // most of the time; a handful would mean jitter barely applies.
    assert!(reordered > 1000, "only {reordered} packets reordered");
    // Uniform jitter is centred: the mean of 10,000 samples of a ±10 ms
    // uniform (sd 5.8 ms) is within 0.3 ms of 50 ms with overwhelming odds.
    let mean = total / delivered.len() as u32;
    assert!(
        mean > Duration::from_micros(49_700) && mean < Duration::from_micros(50_300),
        "mean delay {mean:?}"
    );
}

#[test]
fn random_loss_matches_the_setting_within_binomial_tolerance() {
    const PACKETS: u64 = 100_000;
    let mut link = Link::new(
        LinkConfig {
            loss: 0.01,
            ..config()
        },
        42,
    );
    let delivered = run(
        &mut link,
        Instant::now(),
        PACKETS,
        Duration::from_micros(10),
        100,
    );
    let lost = PACKETS - delivered.len() as u64;
    assert_eq!(link.stats().dropped_loss, lost);
    // Binomial(100000, 0.01): mean 1000, sd 31.5. Five sd (±158) makes a
    // false failure practically impossible for any seed.
    assert!((842..=1158).contains(&lost), "lost {lost} of {PACKETS}");
}

#[test]
fn same_seed_same_losses() {
    let losses = |seed| {
        let mut link = Link::new(
            LinkConfig {
                loss: 0.05,
                ..config()
            },
            seed,
        );
        run(
            &mut link,
            Instant::now(),
            2000,
            Duration::from_micros(10),
            100,
        )
        .into_iter()
        .map(|(id, _, _)| id)
        .collect::<Vec<_>>()
    };
    assert_eq!(losses(3), losses(3));
    assert_ne!(losses(3), losses(4));
}

/// Lengths of the runs of consecutive lost packets.
fn loss_bursts(delivered: &[(u64, Instant, Instant)], count: u64) -> Vec<u64> {
    let mut arrived = vec![false; count as usize];
    for &(id, _, _) in delivered {
        arrived[id as usize] = true;
    }
    let mut bursts = Vec::new();
    let mut current = 0;
    for got in arrived {
        if got {
            if current > 0 {
                bursts.push(current);
            }
            current = 0;
        } else {
            current += 1;
        }
    }
    if current > 0 {
        bursts.push(current);
    }
    bursts
}

#[test]
fn gilbert_elliott_mean_loss_and_burst_length_match_the_model() {
    const PACKETS: u64 = 200_000;
    // Good→bad 1%, bad→good 25%, no loss when good, all lost when bad:
    // the bad state's share is 0.01 / (0.01 + 0.25) = 3.85%, and a stay in
    // it (a loss burst) lasts 1 / 0.25 = 4 packets on average.
    let model = GilbertElliott {
        good_to_bad: 0.01,
        bad_to_good: 0.25,
        loss_in_good: 0.0,
        loss_in_bad: 1.0,
    };
    let mut link = Link::new(
        LinkConfig {
            gilbert_elliott: Some(model),
            ..config()
        },
        11,
    );
    let delivered = run(
        &mut link,
        Instant::now(),
        PACKETS,
        Duration::from_micros(10),
        100,
    );
    let loss = 1.0 - delivered.len() as f64 / PACKETS as f64;
    let bursts = loss_bursts(&delivered, PACKETS);
    let mean_burst = bursts.iter().sum::<u64>() as f64 / bursts.len() as f64;
    // About 1900 bursts, each geometric with mean 4 and sd 3.5: the mean
    // burst length has an sd of ~0.08 and the loss rate a relative sd of ~3%;
    // ±10% on both is more than three sd.
    assert!((0.0346..=0.0423).contains(&loss), "mean loss {loss}");
    assert!((3.6..=4.4).contains(&mean_burst), "mean burst {mean_burst}");

    // The same mean loss drawn independently comes in bursts of ~1.04.
    let mut random = Link::new(LinkConfig { loss, ..config() }, 11);
    let delivered = run(
        &mut random,
        Instant::now(),
        PACKETS,
        Duration::from_micros(10),
        100,
    );
    let bursts = loss_bursts(&delivered, PACKETS);
    let random_mean_burst = bursts.iter().sum::<u64>() as f64 / bursts.len() as f64;
    assert!(
        random_mean_burst < 1.2,
        "random loss bursts {random_mean_burst}"
    );
}

#[test]
fn rate_serializes_packets_and_the_queue_drops_at_the_tail() {
    // 8 Mbit/s: a 1000-byte packet takes exactly 1 ms.
    let mut link = Link::new(
        LinkConfig {
            rate_bits_per_sec: Some(8e6),
            queue_packets: 10,
            delay: Duration::from_millis(5),
            ..config()
        },
        1,
    );
    let t0 = Instant::now();
    let verdicts: Vec<Verdict> = (0..100)
        .map(|id| link.handle_packet(t0, packet(id, 1000)))
        .collect();
    assert!(verdicts[..10].iter().all(|v| *v == Verdict::Accepted));
    assert!(verdicts[10..]
        .iter()
        .all(|v| *v == Verdict::Dropped(DropReason::Queue)));
    for id in 0..10u64 {
        let due = t0 + Duration::from_millis(5 + 1 + id);
        assert_eq!(link.poll_timeout(), Some(due));
        assert_eq!(id_of(&link.poll_transmit(due).unwrap()), id);
    }
    let stats = link.stats();
    assert_eq!((stats.forwarded, stats.dropped_queue), (10, 90));

    // Once the first packet has left the bottleneck there is room for one more.
    let t1 = t0 + Duration::from_millis(1);
    assert_eq!(link.handle_packet(t1, packet(100, 1000)), Verdict::Accepted);
    assert_eq!(
        link.handle_packet(t1, packet(101, 1000)),
        Verdict::Dropped(DropReason::Queue)
    );
}

#[test]
fn offered_twice_the_rate_delivers_the_rate() {
    let mut link = Link::new(
        LinkConfig {
            rate_bits_per_sec: Some(20e6),
            queue_packets: 50,
            ..config()
        },
        1,
    );
    // 1500-byte packets every 300 us is 40 Mbit/s offered for 3 s.
    let t0 = Instant::now();
    let delivered = run(&mut link, t0, 10_000, Duration::from_micros(300), 1500);
    let first = delivered.first().unwrap().2;
    let last = delivered.last().unwrap().2;
    let bits = (delivered.len() - 1) as f64 * 1500.0 * 8.0;
    let rate = bits / (last - first).as_secs_f64();
    // Serialization times are whole nanoseconds, so the rate is exact to
    // within rounding; 0.1% allows for it.
    assert!((rate / 20e6 - 1.0).abs() < 0.001, "rate {rate}");
    let stats = link.stats();
    assert!(stats.dropped_queue > 4000, "{stats:?}");
    assert_eq!(stats.forwarded + stats.dropped_queue, 10_000);
}

#[test]
fn blackout_drops_arrivals_and_packets_in_flight_then_recovers() {
    let mut link = Link::new(
        LinkConfig {
            delay: Duration::from_millis(10),
            ..config()
        },
        1,
    );
    let t0 = Instant::now();
    assert_eq!(link.handle_packet(t0, packet(0, 100)), Verdict::Accepted);
    link.set_blackout(true);
    assert_eq!(
        link.handle_packet(t0 + Duration::from_millis(1), packet(1, 100)),
        Verdict::Dropped(DropReason::Blackout)
    );
    // Packet 0 comes due during the blackout: the cut path loses it.
    assert!(link.poll_transmit(t0 + Duration::from_millis(20)).is_none());
    assert_eq!(link.in_flight(), 0);
    link.set_blackout(false);
    let t1 = t0 + Duration::from_millis(30);
    assert_eq!(link.handle_packet(t1, packet(2, 100)), Verdict::Accepted);
    let out = link.poll_transmit(t1 + Duration::from_millis(10)).unwrap();
    assert_eq!(id_of(&out), 2);
    let stats = link.stats();
    assert_eq!(
        (stats.received, stats.forwarded, stats.dropped_blackout),
        (3, 1, 2)
    );
}

#[test]
fn lowering_the_delay_does_not_reorder_packets_in_flight() {
    let mut link = Link::new(
        LinkConfig {
            delay: Duration::from_millis(100),
            ..config()
        },
        1,
    );
    let t0 = Instant::now();
    link.handle_packet(t0, packet(0, 100));
    link.set_config(LinkConfig {
        delay: Duration::from_millis(10),
        ..config()
    });
    link.handle_packet(t0 + Duration::from_millis(1), packet(1, 100));
    let due = t0 + Duration::from_millis(100);
    assert_eq!(link.poll_timeout(), Some(due));
    assert_eq!(id_of(&link.poll_transmit(due).unwrap()), 0);
    assert_eq!(id_of(&link.poll_transmit(due).unwrap()), 1);
}

#[test]
fn udp_block_drops_udp_only() {
    let mut link = Link::new(config(), 1);
    let now = Instant::now();
    let mut udp4 = vec![0x45; 28];
    udp4[9] = 17;
    let mut tcp4 = vec![0x45; 40];
    tcp4[9] = 6;
    let mut udp6 = vec![0x60; 48];
    udp6[6] = 17;
    assert_eq!(link.handle_packet(now, udp4.clone()), Verdict::Accepted);
    link.set_udp_blocked(true);
    let dropped = Verdict::Dropped(DropReason::UdpBlocked);
    assert_eq!(link.handle_packet(now, udp4), dropped);
    assert_eq!(link.handle_packet(now, udp6), dropped);
    assert_eq!(link.handle_packet(now, tcp4.clone()), Verdict::Accepted);
    assert_eq!(link.stats().dropped_udp_blocked, 2);
    link.set_udp_blocked(false);
    assert_eq!(link.handle_packet(now, tcp4), Verdict::Accepted);
}
