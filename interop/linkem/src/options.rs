//! Link settings and the option names that change them.
//!
//! One table ([`LINK_OPTIONS`]) serves both the command line (`--delay-ms 25`,
//! `--up-loss-pct 1`) and the control socket (`set delay-ms 25`), so the two
//! always accept the same names, values and ranges.

use std::time::Duration;

/// The impairments of one direction of the link.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkConfig {
    /// One-way propagation delay added to every packet.
    pub delay: Duration,
    /// Each packet's delay varies uniformly within `delay ± jitter`.
    pub jitter: Duration,
    /// Whether jitter may reorder packets. When false (the default) a packet
    /// is never delivered before the one sent ahead of it, as on a real path
    /// whose delay varies with queueing rather than with routing.
    pub jitter_reorder: bool,
    /// Probability (0..=1) that a packet is lost, independently of the others.
    pub loss: f64,
    /// Bursty loss; applied on top of `loss`.
    pub gilbert_elliott: Option<GilbertElliott>,
    /// Bottleneck rate in bits per second; `None` is unlimited.
    pub rate_bits_per_sec: Option<f64>,
    /// How many packets may wait at (or be serialized onto) the bottleneck;
    /// more are dropped (drop-tail). Only matters with a rate.
    pub queue_packets: usize,
}

/// Default queue: 1000 packets, Linux's default `txqueuelen` and netem's default limit.
pub const DEFAULT_QUEUE_PACKETS: usize = 1000;

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            jitter_reorder: false,
            loss: 0.0,
            gilbert_elliott: None,
            rate_bits_per_sec: None,
            queue_packets: DEFAULT_QUEUE_PACKETS,
        }
    }
}

/// The two-state Gilbert-Elliott loss model: the link is either in a good or
/// a bad state, switches state with a fixed probability per packet, and loses
/// packets with a probability that depends on the state. All values are
/// probabilities in 0..=1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GilbertElliott {
    pub good_to_bad: f64,
    pub bad_to_good: f64,
    pub loss_in_good: f64,
    pub loss_in_bad: f64,
}

/// Settings for both directions: up is client→server, down is server→client.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LinkConfigs {
    pub up: LinkConfig,
    pub down: LinkConfig,
}

/// One link option, e.g. `delay-ms`; it also exists as `up-delay-ms` and
/// `down-delay-ms`.
pub struct LinkOption {
    pub name: &'static str,
    pub value_name: &'static str,
    pub help: &'static str,
    /// A flag takes no value on the command line; over the control socket it
    /// takes `on` or `off`.
    pub is_flag: bool,
    apply: fn(&mut LinkConfig, &str) -> Result<(), String>,
}

pub const LINK_OPTIONS: &[LinkOption] = &[
    LinkOption {
        name: "delay-ms",
        value_name: "MS",
        help: "One-way delay in milliseconds",
        is_flag: false,
        apply: |config, value| {
            config.delay = parse_millis(value)?;
            Ok(())
        },
    },
    LinkOption {
        name: "jitter-ms",
        value_name: "MS",
        help: "Delay varies uniformly within delay ± this many milliseconds",
        is_flag: false,
        apply: |config, value| {
            config.jitter = parse_millis(value)?;
            Ok(())
        },
    },
    LinkOption {
        name: "jitter-reorder",
        value_name: "on|off",
        help: "Let jitter reorder packets (default: jitter preserves order)",
        is_flag: true,
        apply: |config, value| {
            config.jitter_reorder = parse_on_off(value)?;
            Ok(())
        },
    },
    LinkOption {
        name: "loss-pct",
        value_name: "PCT",
        help: "Random loss, percent of packets",
        is_flag: false,
        apply: |config, value| {
            config.loss = parse_percent(value)?;
            Ok(())
        },
    },
    LinkOption {
        name: "ge",
        value_name: "P_GB,P_BG,LOSS_GOOD,LOSS_BAD",
        help: "Gilbert-Elliott bursty loss: per-packet transition probabilities good→bad and \
               bad→good, and the loss in each state, all in percent; `off` disables it",
        is_flag: false,
        apply: |config, value| {
            config.gilbert_elliott = parse_gilbert_elliott(value)?;
            Ok(())
        },
    },
    LinkOption {
        name: "rate-mbit",
        value_name: "MBIT",
        help: "Bottleneck rate in Mbit/s counting whole IP packets (default: unlimited; `off` \
               removes the limit)",
        is_flag: false,
        apply: |config, value| {
            config.rate_bits_per_sec = parse_rate(value)?;
            Ok(())
        },
    },
    LinkOption {
        name: "queue-packets",
        value_name: "N",
        help: "Packets that may wait at the bottleneck before drop-tail (default 1000)",
        is_flag: false,
        apply: |config, value| {
            config.queue_packets = parse_queue(value)?;
            Ok(())
        },
    },
];

/// Which directions a prefixed option name applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Both,
    Up,
    Down,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Both, Scope::Up, Scope::Down];

    pub fn prefix(self) -> &'static str {
        match self {
            Scope::Both => "",
            Scope::Up => "up-",
            Scope::Down => "down-",
        }
    }
}

/// Splits `up-delay-ms` into the `delay-ms` option and [`Scope::Up`].
pub fn lookup(full_name: &str) -> Option<(&'static LinkOption, Scope)> {
    let (scope, name) = if let Some(rest) = full_name.strip_prefix("up-") {
        (Scope::Up, rest)
    } else if let Some(rest) = full_name.strip_prefix("down-") {
        (Scope::Down, rest)
    } else {
        (Scope::Both, full_name)
    };
    LINK_OPTIONS
        .iter()
        .find(|option| option.name == name)
        .map(|option| (option, scope))
}

/// Applies `value` to the option called `full_name` (e.g. `up-delay-ms`).
/// On error nothing changes, and the message says what was wrong.
pub fn apply(configs: &mut LinkConfigs, full_name: &str, value: &str) -> Result<(), String> {
    let Some((option, scope)) = lookup(full_name) else {
        return Err(format!(
            "unknown option '{full_name}' (options: {}, each also with an up- or down- prefix)",
            LINK_OPTIONS
                .iter()
                .map(|option| option.name)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    };
    let targets: &mut [&mut LinkConfig] = match scope {
        Scope::Both => &mut [&mut configs.up, &mut configs.down],
        Scope::Up => &mut [&mut configs.up],
        Scope::Down => &mut [&mut configs.down],
    };
    for config in targets.iter_mut() {
        (option.apply)(config, value).map_err(|why| format!("{full_name}: {why}"))?;
    }
    Ok(())
}

/// Longest accepted delay or jitter: an hour is far beyond any real path, and
/// the bound keeps every later time computation far from overflow.
const MAX_MILLIS: f64 = 3_600_000.0;

fn parse_number(value: &str, what: &str) -> Result<f64, String> {
    match value.trim().parse::<f64>() {
        Ok(number) if number.is_finite() => Ok(number),
        _ => Err(format!("'{value}' is not a number of {what}")),
    }
}

fn parse_millis(value: &str) -> Result<Duration, String> {
    let millis = parse_number(value, "milliseconds")?;
    if !(0.0..=MAX_MILLIS).contains(&millis) {
        return Err(format!("{millis} ms is out of range (0 to {MAX_MILLIS})"));
    }
    Ok(Duration::from_nanos((millis * 1e6).round() as u64))
}

fn parse_percent(value: &str) -> Result<f64, String> {
    let percent = parse_number(value, "percent")?;
    if !(0.0..=100.0).contains(&percent) {
        return Err(format!("{percent}% is out of range (0 to 100)"));
    }
    Ok(percent / 100.0)
}

fn parse_on_off(value: &str) -> Result<bool, String> {
    match value.trim() {
        "on" | "true" | "1" | "yes" => Ok(true),
        "off" | "false" | "0" | "no" => Ok(false),
        other => Err(format!("'{other}' is neither on nor off")),
    }
}

fn parse_gilbert_elliott(value: &str) -> Result<Option<GilbertElliott>, String> {
    if value.trim() == "off" {
        return Ok(None);
    }
    let fields: Vec<&str> = value.split(',').collect();
    let [good_to_bad, bad_to_good, loss_in_good, loss_in_bad] = fields.as_slice() else {
        return Err(format!(
            "'{value}' is not four comma-separated percentages P_GB,P_BG,LOSS_GOOD,LOSS_BAD \
             (e.g. 1,30,0,50)"
        ));
    };
    let model = GilbertElliott {
        good_to_bad: parse_percent(good_to_bad)?,
        bad_to_good: parse_percent(bad_to_good)?,
        loss_in_good: parse_percent(loss_in_good)?,
        loss_in_bad: parse_percent(loss_in_bad)?,
    };
    if model.bad_to_good == 0.0 && model.good_to_bad > 0.0 {
        return Err("P_BG is 0, so the link would stay in the bad state forever".to_string());
    }
    Ok(Some(model))
}

/// Slowest accepted rate: 1 kbit/s (a 1500-byte packet then takes 12 s).
const MIN_RATE_MBIT: f64 = 0.001;
/// Fastest accepted rate; far beyond what the emulator can forward.
const MAX_RATE_MBIT: f64 = 1_000_000.0;

fn parse_rate(value: &str) -> Result<Option<f64>, String> {
    if matches!(value.trim(), "off" | "unlimited") {
        return Ok(None);
    }
    let mbit = parse_number(value, "Mbit/s")?;
    if !(MIN_RATE_MBIT..=MAX_RATE_MBIT).contains(&mbit) {
        return Err(format!(
            "{mbit} Mbit/s is out of range ({MIN_RATE_MBIT} to {MAX_RATE_MBIT}; `off` for unlimited)"
        ));
    }
    Ok(Some(mbit * 1e6))
}

/// Largest accepted queue: bounds the memory one direction can hold
/// (at 64 KiB per packet, about 6 GiB in the worst case; 150 MB at 1500 bytes).
const MAX_QUEUE_PACKETS: usize = 100_000;

fn parse_queue(value: &str) -> Result<usize, String> {
    match value.trim().parse::<usize>() {
        Ok(packets) if (1..=MAX_QUEUE_PACKETS).contains(&packets) => Ok(packets),
        Ok(packets) => Err(format!(
            "{packets} packets is out of range (1 to {MAX_QUEUE_PACKETS})"
        )),
        Err(_) => Err(format!("'{value}' is not a whole number of packets")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_set_both_directions_and_prefixes_one() {
        let mut configs = LinkConfigs::default();
        apply(&mut configs, "delay-ms", "25").unwrap();
        apply(&mut configs, "up-loss-pct", "1.5").unwrap();
        apply(&mut configs, "down-rate-mbit", "20").unwrap();
        assert_eq!(configs.up.delay, Duration::from_millis(25));
        assert_eq!(configs.down.delay, Duration::from_millis(25));
        assert_eq!(configs.up.loss, 0.015);
        assert_eq!(configs.down.loss, 0.0);
        assert_eq!(configs.up.rate_bits_per_sec, None);
        assert_eq!(configs.down.rate_bits_per_sec, Some(20e6));
        apply(&mut configs, "rate-mbit", "off").unwrap();
        assert_eq!(configs.down.rate_bits_per_sec, None);
    }

    #[test]
    fn gilbert_elliott_takes_four_percentages_or_off() {
        let mut configs = LinkConfigs::default();
        apply(&mut configs, "ge", "1,30,0,50").unwrap();
        let model = configs.up.gilbert_elliott.unwrap();
        assert_eq!(model.good_to_bad, 0.01);
        assert_eq!(model.bad_to_good, 0.3);
        assert_eq!(model.loss_in_bad, 0.5);
        apply(&mut configs, "up-ge", "off").unwrap();
        assert_eq!(configs.up.gilbert_elliott, None);
        assert!(configs.down.gilbert_elliott.is_some());
    }

    #[test]
    fn bad_values_are_refused_with_a_reason_and_change_nothing() {
        let mut configs = LinkConfigs::default();
        for (name, value, expected) in [
            ("loss-pct", "200", "out of range"),
            ("loss-pct", "abc", "not a number"),
            ("delay-ms", "-1", "out of range"),
            ("delay-ms", "NaN", "not a number"),
            ("ge", "1,2,3", "four comma-separated"),
            ("ge", "1,0,0,100", "bad state forever"),
            ("rate-mbit", "0", "out of range"),
            ("queue-packets", "0", "out of range"),
            ("queue-packets", "1.5", "whole number"),
            ("jitter-reorder", "maybe", "neither on nor off"),
            ("sideways-delay-ms", "1", "unknown option"),
        ] {
            let error = apply(&mut configs, name, value).unwrap_err();
            assert!(error.contains(expected), "{name} {value}: {error}");
        }
        assert_eq!(configs, LinkConfigs::default());
    }
}
