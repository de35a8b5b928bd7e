//! The control protocol: one command per line, one answer per line.
//!
//! ```text
//! set <option> <value>    e.g. `set loss-pct 2`, `set up-delay-ms 30`   -> ok
//! blackout on|off                                                       -> ok
//! udp-block on|off        drop every UDP packet (a TCP-only network)    -> ok
//! roam                    the client moves to its next address          -> ok 10.77.0.2
//! rebind                  the client's NAT makes new port mappings      -> ok
//! stats                   counters per direction                        -> ok {json}
//! ```
//! Anything else is answered `error: <why>`.

/// A parsed control command.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Set { option: String, value: String },
    Blackout(bool),
    UdpBlock(bool),
    Roam,
    Rebind,
    Stats,
}

const USAGE: &str =
    "commands: set <option> <value>, blackout on|off, udp-block on|off, roam, rebind, stats";

/// Longest command line accepted; the longest real one is well under 100 bytes.
pub const MAX_LINE: usize = 1024;

pub fn parse(line: &str) -> Result<Command, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["set", option, value] => Ok(Command::Set {
            option: option.to_string(),
            value: value.to_string(),
        }),
        ["set", ..] => Err("usage: set <option> <value> (e.g. set loss-pct 2)".to_string()),
        ["blackout", "on"] => Ok(Command::Blackout(true)),
        ["blackout", "off"] => Ok(Command::Blackout(false)),
        ["blackout", ..] => Err("usage: blackout on|off".to_string()),
        ["udp-block", "on"] => Ok(Command::UdpBlock(true)),
        ["udp-block", "off"] => Ok(Command::UdpBlock(false)),
        ["udp-block", ..] => Err("usage: udp-block on|off".to_string()),
        ["roam"] => Ok(Command::Roam),
        ["rebind"] => Ok(Command::Rebind),
        ["stats"] => Ok(Command::Stats),
        [word @ ("roam" | "rebind" | "stats"), ..] => Err(format!("'{word}' takes no arguments")),
        [] => Err(format!("empty command ({USAGE})")),
        [other, ..] => Err(format!("unknown command '{other}' ({USAGE})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        assert_eq!(
            parse("set up-delay-ms 30"),
            Ok(Command::Set {
                option: "up-delay-ms".into(),
                value: "30".into()
            })
        );
        assert_eq!(parse("  blackout   on "), Ok(Command::Blackout(true)));
        assert_eq!(parse("blackout off"), Ok(Command::Blackout(false)));
        assert_eq!(parse("udp-block on"), Ok(Command::UdpBlock(true)));
        assert!(parse("udp-block").unwrap_err().contains("on|off"));
        assert_eq!(parse("roam"), Ok(Command::Roam));
        assert_eq!(parse("rebind"), Ok(Command::Rebind));
        assert_eq!(parse("stats"), Ok(Command::Stats));
    }

    #[test]
    fn bad_commands_say_what_is_accepted() {
        assert!(parse("").unwrap_err().contains("commands:"));
        assert!(parse("fly away")
            .unwrap_err()
            .contains("unknown command 'fly'"));
        assert!(parse("set loss-pct").unwrap_err().contains("usage: set"));
        assert!(parse("blackout maybe").unwrap_err().contains("on|off"));
        assert!(parse("roam now")
            .unwrap_err()
            .contains("takes no arguments"));
    }
}
