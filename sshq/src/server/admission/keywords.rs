//! The sshd_config keywords that bound connections before login, as sshd
//! reads them: MaxStartups, PerSourceMaxStartups, PerSourceNetBlockSize,
//! PerSourcePenalties and PerSourcePenaltyExemptList.
//!
//! Defaults are OpenSSH's (checked against its servconf.c), except
//! PerSourceMaxStartups: sshd has no per-source limit by default, sshqd
//! limits each source to half of MaxStartups' start (see
//! [`PreauthLimits::per_source_limit`]).

use std::net::IpAddr;
use std::time::Duration;

use crate::config_syntax::parse_duration;

/// A bad value for one of these keywords: sshd's texts, without the
/// "file line N:" prefix the configuration reader adds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeywordError {
    #[error("keyword {keyword} extra arguments at end of line")]
    ExtraArguments { keyword: String },
    #[error("Invalid {keyword} spec.")]
    InvalidSpec { keyword: String },
    #[error("{keyword} integer value invalid.")]
    IntegerInvalid { keyword: String },
    #[error("{keyword} integer value too small.")]
    IntegerTooSmall { keyword: String },
    #[error("keyword {keyword} invalid address argument.")]
    InvalidAddress { keyword: String },
    #[error("keyword {keyword} \"{arg}\" argument must appear alone.")]
    MustBeAlone { keyword: String, arg: String },
    #[error("unsupported {keyword} keyword {arg}")]
    UnsupportedPenalty { keyword: String, arg: String },
    #[error("invalid {keyword} time value.")]
    InvalidTime { keyword: String },
    #[error("{keyword} value invalid.")]
    InvalidValue { keyword: String },
}

/// `MaxStartups start:rate:full`: from `start` unauthenticated connections
/// on, new ones are dropped with a probability rising from `rate`% to 100%
/// at `full`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxStartups {
    pub start: u32,
    pub rate: u32,
    pub full: u32,
}

impl Default for MaxStartups {
    fn default() -> Self {
        MaxStartups {
            start: 10,
            rate: 30,
            full: 100,
        }
    }
}

/// `PerSourceMaxStartups`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PerSourceMaxStartups {
    /// Not configured: sshqd's default, half of MaxStartups' start.
    #[default]
    Default,
    /// `none`: no per-source limit (sshd's default).
    Unlimited,
    Limit(u32),
}

/// What PerSourceOverflow modes do when the penalty table is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Forget the penalties closest to expiry to make room (sshd's default).
    #[default]
    Permissive,
    /// Refuse every new connection not exempted until a penalty expires.
    DenyAll,
}

/// `PerSourcePenalties`, as written: `None` fields take sshd's defaults.
/// The first value given for each sub-option wins, across lines, as in sshd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PenaltySettings {
    pub enabled: Option<bool>,
    pub crash: Option<Duration>,
    pub authfail: Option<Duration>,
    pub noauth: Option<Duration>,
    pub grace_exceeded: Option<Duration>,
    pub max: Option<Duration>,
    pub min: Option<Duration>,
    pub max_sources4: Option<u32>,
    pub max_sources6: Option<u32>,
    pub overflow4: Option<Overflow>,
    pub overflow6: Option<Overflow>,
}

/// PerSourcePenalties with every default resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Penalties {
    pub enabled: bool,
    pub crash: Duration,
    pub authfail: Duration,
    pub noauth: Duration,
    pub grace_exceeded: Duration,
    pub max: Duration,
    pub min: Duration,
    pub max_sources4: u32,
    pub max_sources6: u32,
    pub overflow4: Overflow,
    pub overflow6: Overflow,
}

impl PenaltySettings {
    /// OpenSSH's defaults (servconf.c): crash 90 s, authfail 5 s, noauth
    /// 1 s, grace-exceeded 10 s, max 10 min, min 15 s, 65536 sources per
    /// address family, permissive overflow.
    pub fn resolve(&self) -> Penalties {
        let secs = Duration::from_secs;
        let overflow4 = self.overflow4.unwrap_or_default();
        Penalties {
            enabled: self.enabled.unwrap_or(true),
            crash: self.crash.unwrap_or(secs(90)),
            authfail: self.authfail.unwrap_or(secs(5)),
            noauth: self.noauth.unwrap_or(secs(1)),
            grace_exceeded: self.grace_exceeded.unwrap_or(secs(10)),
            max: self.max.unwrap_or(secs(600)),
            min: self.min.unwrap_or(secs(15)),
            max_sources4: self.max_sources4.unwrap_or(65536),
            max_sources6: self.max_sources6.unwrap_or(65536),
            overflow4,
            overflow6: self.overflow6.unwrap_or(overflow4),
        }
    }
}

/// One `PerSourcePenaltyExemptList` entry: `[!]address[/bits]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExemptEntry {
    pub negated: bool,
    pub network: IpAddr,
    pub bits: u8,
}

/// Every pre-authentication limit of sshqd's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PreauthLimits {
    pub max_startups: MaxStartups,
    pub per_source_max_startups: PerSourceMaxStartups,
    /// `PerSourceNetBlockSize v4[:v6]`: how many leading bits make a source.
    pub net_block_v4: u8,
    pub net_block_v6: u8,
    pub penalties: PenaltySettings,
    /// `None` until PerSourcePenaltyExemptList is given.
    pub penalty_exempt: Option<Vec<ExemptEntry>>,
}

impl PreauthLimits {
    /// sshd's defaults, plus sshqd's per-source default.
    pub fn new() -> Self {
        PreauthLimits {
            net_block_v4: 32,
            net_block_v6: 128,
            ..Default::default()
        }
    }

    /// The per-source limit in force; `None` for no limit. Unset, it is half
    /// of MaxStartups' start (at least 1): one source then never holds
    /// enough unauthenticated connections to push the server into random
    /// early drop, so it cannot make logins from elsewhere fail.
    pub fn per_source_limit(&self) -> Option<u32> {
        match self.per_source_max_startups {
            PerSourceMaxStartups::Default => Some((self.max_startups.start / 2).max(1)),
            PerSourceMaxStartups::Unlimited => None,
            PerSourceMaxStartups::Limit(n) => Some(n),
        }
    }

    /// Whether `addr` is in PerSourcePenaltyExemptList (as sshd's
    /// addr_match_list: a negated entry that matches wins over any other).
    pub fn exempt(&self, addr: IpAddr) -> bool {
        let Some(list) = &self.penalty_exempt else {
            return false;
        };
        let matching = |e: &&ExemptEntry| mask(addr, e.bits) == Some(e.network);
        if list.iter().filter(|e| e.negated).any(|e| matching(&e)) {
            return false;
        }
        list.iter().filter(|e| !e.negated).any(|e| matching(&e))
    }

    /// Applies one of this module's keywords (`kw` lower-case, `keyword` as
    /// written); `Ok(false)` if `kw` is not one of them. `fresh` is false
    /// when the keyword was seen before (the first value wins). Errors are
    /// sshd's texts, without the "file line N:" prefix.
    pub fn apply(
        &mut self,
        kw: &str,
        keyword: &str,
        args: &[String],
        fresh: bool,
    ) -> Result<bool, KeywordError> {
        let keyword_ = || keyword.to_string();
        let one = || match args {
            [one] => Ok(one.as_str()),
            _ => Err(KeywordError::ExtraArguments {
                keyword: keyword_(),
            }),
        };
        match kw {
            "maxstartups" => {
                let spec = parse_max_startups(one()?).ok_or_else(|| KeywordError::InvalidSpec {
                    keyword: keyword_(),
                })?;
                if fresh {
                    self.max_startups = spec;
                }
            }
            "persourcemaxstartups" => {
                let v = one()?;
                let limit = if v == "none" {
                    PerSourceMaxStartups::Unlimited
                } else {
                    let n: i64 = v.parse().map_err(|_| KeywordError::IntegerInvalid {
                        keyword: keyword_(),
                    })?;
                    let n = u32::try_from(n).map_err(|_| KeywordError::IntegerTooSmall {
                        keyword: keyword_(),
                    })?;
                    PerSourceMaxStartups::Limit(n)
                };
                if fresh {
                    self.per_source_max_startups = limit;
                }
            }
            "persourcenetblocksize" => {
                let (v4, v6) =
                    parse_net_block(one()?).ok_or_else(|| KeywordError::InvalidSpec {
                        keyword: keyword_(),
                    })?;
                if fresh {
                    self.net_block_v4 = v4;
                    if let Some(v6) = v6 {
                        self.net_block_v6 = v6;
                    }
                }
            }
            "persourcepenaltyexemptlist" => {
                let list =
                    parse_exempt_list(one()?).ok_or_else(|| KeywordError::InvalidAddress {
                        keyword: keyword_(),
                    })?;
                if fresh {
                    self.penalty_exempt = Some(list);
                }
            }
            "persourcepenalties" => parse_penalties(&mut self.penalties, keyword, args)?,
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// `start:rate:full`, or one number meaning start = full.
fn parse_max_startups(spec: &str) -> Option<MaxStartups> {
    let numbers: Vec<u32> = spec
        .split(':')
        .map(|n| n.parse().ok())
        .collect::<Option<_>>()?;
    let parsed = match *numbers.as_slice() {
        [start, rate, full] => MaxStartups { start, rate, full },
        [n] => MaxStartups {
            start: n,
            rate: 30,
            full: n,
        },
        _ => return None,
    };
    let valid = parsed.start > 0
        && parsed.full > 0
        && parsed.start <= parsed.full
        && (1..=100).contains(&parsed.rate);
    valid.then_some(parsed)
}

fn parse_net_block(spec: &str) -> Option<(u8, Option<u8>)> {
    let (v4, v6) = match spec.split_once(':') {
        Some((v4, v6)) => (v4, Some(v6)),
        None => (spec, None),
    };
    let v4: u8 = v4.parse().ok().filter(|b| *b <= 32)?;
    let v6 = match v6 {
        Some(v6) => Some(v6.parse().ok().filter(|b: &u8| *b <= 128)?),
        None => None,
    };
    Some((v4, v6))
}

/// A comma-separated list of `[!]address[/bits]`.
fn parse_exempt_list(list: &str) -> Option<Vec<ExemptEntry>> {
    list.split(',')
        .map(|entry| {
            let (negated, entry) = match entry.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, entry),
            };
            let (addr, bits) = match entry.split_once('/') {
                Some((addr, bits)) => (addr, Some(bits)),
                None => (entry, None),
            };
            let addr: IpAddr = addr.parse().ok()?;
            let width = if addr.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                Some(bits) => bits.parse().ok().filter(|b| *b <= width)?,
                None => width,
            };
            // Like sshd, an address with bits set beyond the mask is a mistake.
            let network = mask(addr, bits).filter(|n| *n == addr)?;
            Some(ExemptEntry {
                negated,
                network,
                bits,
            })
        })
        .collect()
}

fn parse_penalties(
    settings: &mut PenaltySettings,
    keyword: &str,
    args: &[String],
) -> Result<(), KeywordError> {
    fn first<T>(slot: &mut Option<T>, value: T, enabled: &mut Option<bool>) {
        if slot.is_none() {
            *slot = Some(value);
            // Any setting turns penalties on, as in sshd.
            enabled.get_or_insert(true);
        }
    }
    for arg in args {
        if arg.eq_ignore_ascii_case("yes") || arg.eq_ignore_ascii_case("no") {
            if args.len() > 1 {
                return Err(KeywordError::MustBeAlone {
                    keyword: keyword.to_string(),
                    arg: arg.clone(),
                });
            }
            settings
                .enabled
                .get_or_insert(arg.eq_ignore_ascii_case("yes"));
            continue;
        }
        let unsupported = || KeywordError::UnsupportedPenalty {
            keyword: keyword.to_string(),
            arg: arg.clone(),
        };
        let (name, value) = arg.split_once(':').ok_or_else(unsupported)?;
        let time = || {
            parse_duration(value).ok_or_else(|| KeywordError::InvalidTime {
                keyword: keyword.to_string(),
            })
        };
        let count = || {
            value
                .parse::<u32>()
                .map_err(|_| KeywordError::InvalidValue {
                    keyword: keyword.to_string(),
                })
        };
        let overflow = || match value {
            "deny-all" => Ok(Overflow::DenyAll),
            "permissive" => Ok(Overflow::Permissive),
            _ => Err(unsupported()),
        };
        let s = &mut *settings;
        match name {
            "crash" => first(&mut s.crash, time()?, &mut s.enabled),
            "authfail" => first(&mut s.authfail, time()?, &mut s.enabled),
            "noauth" => first(&mut s.noauth, time()?, &mut s.enabled),
            "grace-exceeded" => first(&mut s.grace_exceeded, time()?, &mut s.enabled),
            "max" => first(&mut s.max, time()?, &mut s.enabled),
            "min" => first(&mut s.min, time()?, &mut s.enabled),
            "max-sources4" => first(&mut s.max_sources4, count()?, &mut s.enabled),
            "max-sources6" => first(&mut s.max_sources6, count()?, &mut s.enabled),
            "overflow" => first(&mut s.overflow4, overflow()?, &mut s.enabled),
            "overflow6" => first(&mut s.overflow6, overflow()?, &mut s.enabled),
            // sshd's invaliduser and refuseconnection: sshqd tells no
            // invalid user from a refused key (both are an authfail) and
            // has no RefuseConnection; accepted so sshd files load.
            "invaliduser" | "refuseconnection" => {
                time()?;
            }
            _ => return Err(unsupported()),
        }
    }
    Ok(())
}

/// `addr` with all but its first `bits` bits cleared; `None` if `bits` is
/// too many for its family.
pub fn mask(addr: IpAddr, bits: u8) -> Option<IpAddr> {
    match addr {
        IpAddr::V4(v4) if bits <= 32 => {
            let keep = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            Some(IpAddr::V4((u32::from(v4) & keep).into()))
        }
        IpAddr::V6(v6) if bits <= 128 => {
            let keep = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            Some(IpAddr::V6((u128::from(v6) & keep).into()))
        }
        _ => None,
    }
}
