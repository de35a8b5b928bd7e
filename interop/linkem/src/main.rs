//! `sshq-linkem --name NAME [link options] [--control PATH] [--duration SECS]`
//!
//! See interop/linkem/README.md.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Arg, ArgAction, ArgMatches, Command};

use sshq_linkem::emulator::{self, Settings};
use sshq_linkem::netns;
use sshq_linkem::options::{self, LinkConfigs, Scope, LINK_OPTIONS};
use sshq_linkem::Error;

fn main() -> ExitCode {
    let matches = command().get_matches();
    match settings(&matches).and_then(|settings| {
        netns::check_privileges()?;
        emulator::run(settings)
    }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sshq-linkem: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

fn command() -> Command {
    let mut command = Command::new("sshq-linkem")
        .about(
            "Emulates a network link between two network namespaces, NAME-c (client, \
             10.77.0.1) and NAME-s (server, 10.77.1.1): delay, jitter, loss, bursty loss, \
             rate limits, blackouts, roaming and NAT rebinding. Prints `ready` once packets \
             flow; runs until SIGINT/SIGTERM/SIGHUP or --duration, then deletes both namespaces. \
             Needs root.",
        )
        .arg(
            Arg::new("name")
                .long("name")
                .value_name("NAME")
                .required(true)
                .help("Base name of the namespaces NAME-c and NAME-s (stale ones are replaced)"),
        )
        .arg(
            Arg::new("control")
                .long("control")
                .value_name("PATH")
                .value_parser(clap::value_parser!(PathBuf))
                .help(
                    "Unix socket taking commands, one per line: set <option> <value>, \
                     blackout on|off, roam, rebind, stats",
                ),
        )
        .arg(
            Arg::new("duration")
                .long("duration")
                .value_name("SECS")
                .value_parser(parse_duration)
                .help("Stop after this many seconds"),
        )
        .arg(
            Arg::new("seed")
                .long("seed")
                .value_name("N")
                .value_parser(clap::value_parser!(u64))
                .help("Seed for the random choices (default: a random seed, printed on stderr)"),
        )
        .next_help_heading(
            "Link options (plain: both directions; up-: client→server; down-: server→client)",
        );
    for option in LINK_OPTIONS {
        for scope in Scope::ALL {
            let name = format!("{}{}", scope.prefix(), option.name);
            let help = match scope {
                Scope::Both => option.help.to_string(),
                Scope::Up => format!("--{} for client→server only", option.name),
                Scope::Down => format!("--{} for server→client only", option.name),
            };
            let mut arg = Arg::new(name.clone()).long(name).help(help);
            arg = if option.is_flag {
                arg.action(ArgAction::SetTrue)
            } else {
                arg.value_name(option.value_name)
                    .allow_negative_numbers(true)
            };
            command = command.arg(arg);
        }
    }
    command
}

fn parse_duration(value: &str) -> Result<Duration, String> {
    match value.parse::<f64>() {
        Ok(seconds) if seconds > 0.0 && seconds <= 1e9 => Ok(Duration::from_secs_f64(seconds)),
        _ => Err(format!("'{value}' is not a positive number of seconds")),
    }
}

fn settings(matches: &ArgMatches) -> Result<Settings, Error> {
    let name = matches
        .get_one::<String>("name")
        .cloned()
        .unwrap_or_default();
    netns::check_name(&name)?;
    // Plain options first, then the per-direction ones, so that
    // `--delay-ms 10 --up-delay-ms 30` means 30 up and 10 down in any order.
    let mut configs = LinkConfigs::default();
    for scope in Scope::ALL {
        for option in LINK_OPTIONS {
            let name = format!("{}{}", scope.prefix(), option.name);
            let value = if option.is_flag {
                matches.get_flag(&name).then(|| "on".to_string())
            } else {
                matches.get_one::<String>(&name).cloned()
            };
            if let Some(value) = value {
                options::apply(&mut configs, &name, &value)
                    .map_err(|why| Error::Usage(format!("--{why}")))?;
            }
        }
    }
    Ok(Settings {
        name,
        configs,
        seed: matches
            .get_one::<u64>("seed")
            .copied()
            .unwrap_or_else(rand::random),
        control: matches.get_one::<PathBuf>("control").cloned(),
        duration: matches.get_one::<Duration>("duration").copied(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        command().debug_assert();
    }

    #[test]
    fn direction_options_override_plain_ones_in_any_order() {
        let matches = command()
            .try_get_matches_from([
                "sshq-linkem",
                "--up-delay-ms",
                "30",
                "--name",
                "lab",
                "--delay-ms",
                "10",
                "--down-jitter-reorder",
            ])
            .unwrap();
        let settings = settings(&matches).unwrap();
        assert_eq!(settings.configs.up.delay, Duration::from_millis(30));
        assert_eq!(settings.configs.down.delay, Duration::from_millis(10));
        assert!(settings.configs.down.jitter_reorder);
        assert!(!settings.configs.up.jitter_reorder);
    }

    #[test]
    fn bad_values_are_usage_errors() {
        let matches = command()
            .try_get_matches_from(["sshq-linkem", "--name", "lab", "--loss-pct", "-3"])
            .unwrap();
        let Err(error) = settings(&matches) else {
            panic!("negative loss accepted");
        };
        assert_eq!(error.exit_code(), 2);
        assert!(
            error
                .to_string()
                .contains("--loss-pct: -3% is out of range"),
            "{error}"
        );
        let matches = command()
            .try_get_matches_from(["sshq-linkem", "--name=-x"])
            .unwrap();
        assert!(settings(&matches).is_err());
    }
}
