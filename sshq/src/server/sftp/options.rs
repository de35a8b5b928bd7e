//! internal-sftp's command line, as sftp-server's getopt string
//! `d:ef:hl:P:p:Q:Ru:` reads it: `-d` start directory, `-u` umask, `-R`
//! read-only, `-P`/`-p` request deny/allow lists and `-Q requests`; `-e`,
//! `-l` and `-f` (where and how much it logs) are accepted and have no
//! effect, since the helper keeps no log of its own.

/// What the options ask for.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Options {
    /// `-d`: the directory the session starts in, with `%d` (home), `%u`
    /// (user) and `%%` still to expand.
    pub start_dir: Option<String>,
    /// `-u`: the umask, replacing the one inherited.
    pub umask: Option<u32>,
    /// `-R`: refuse everything that writes.
    pub read_only: bool,
    /// `-P`: requests refused (comma-separated names).
    pub deny: Option<String>,
    /// `-p`: the only requests allowed.
    pub allow: Option<String>,
    /// `-Q requests`: print the request names and exit.
    pub query: bool,
}

/// sftp-server's usage line, printed with an option error.
pub const USAGE: &str = "usage: internal-sftp [-ehR] [-d start_directory] [-f log_facility] \
[-l log_level]\n\t[-P denied_requests] [-p allowed_requests] [-u umask]\n       \
internal-sftp -Q protocol_feature";

impl Options {
    /// Parses `words` (the configured command line without its first word,
    /// `internal-sftp`). The error is what sftp-server says.
    pub fn parse(words: &[String]) -> Result<Options, String> {
        let mut options = Options::default();
        let mut rest = words.iter();
        while let Some(word) = rest.next() {
            let Some(flags) = word.strip_prefix('-').filter(|f| !f.is_empty()) else {
                return Err(format!("unexpected argument \"{word}\"\n{USAGE}"));
            };
            if flags == "-" {
                break;
            }
            for (at, flag) in flags.char_indices() {
                if matches!(flag, 'e' | 'h' | 'R') {
                    match flag {
                        'R' => options.read_only = true,
                        'h' => return Err(USAGE.to_string()),
                        _ => {}
                    }
                    continue;
                }
                if !matches!(flag, 'd' | 'f' | 'l' | 'P' | 'p' | 'Q' | 'u') {
                    return Err(format!("unknown option -- {flag}\n{USAGE}"));
                }
                // The value is the rest of this word, or the next word.
                let inline = &flags[at + flag.len_utf8()..];
                let value = if inline.is_empty() {
                    rest.next()
                        .cloned()
                        .ok_or_else(|| format!("option requires an argument -- {flag}\n{USAGE}"))?
                } else {
                    inline.to_string()
                };
                options.set(flag, value)?;
                break;
            }
        }
        Ok(options)
    }

    fn set(&mut self, flag: char, value: String) -> Result<(), String> {
        match flag {
            'd' => self.start_dir = Some(value),
            'u' => {
                let mask = u32::from_str_radix(&value, 8)
                    .ok()
                    .filter(|mask| *mask <= 0o777)
                    .ok_or_else(|| format!("Invalid umask \"{value}\""))?;
                self.umask = Some(mask);
            }
            'P' => self.deny = Some(value),
            'p' => self.allow = Some(value),
            'Q' if value == "requests" => self.query = true,
            'Q' => return Err(format!("invalid query type \"{value}\"")),
            // -l and -f: checked as sftp-server checks them would need its
            // log tables; any value is taken.
            _ => {}
        }
        Ok(())
    }

    /// Whether the request named `name` (sftp-server's names: "open",
    /// "posix-rename", ...) may run under `-P` and `-p`.
    pub fn permits(&self, name: &str) -> bool {
        let listed = |list: &str| {
            list.split(',')
                .any(|pattern| sshq_core::pattern::matches(pattern, name))
        };
        if let Some(allow) = &self.allow {
            if !listed(allow) {
                return false;
            }
        }
        !self.deny.as_deref().is_some_and(listed)
    }
}

/// `-d`'s tokens: `%d` home, `%u` user, `%%`. `None` names an unknown one.
pub fn expand_start_dir(template: &str, home: &str, user: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            'd' => out.push_str(home),
            'u' => out.push_str(user),
            '%' => out.push('%'),
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Options, String> {
        let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        Options::parse(&words)
    }

    #[test]
    fn options_as_getopt_reads_them() {
        let o = parse("-R -u 027 -d /data/%u -l INFO -f AUTH -e").unwrap();
        assert!(o.read_only);
        assert_eq!(o.umask, Some(0o27));
        assert_eq!(o.start_dir.as_deref(), Some("/data/%u"));
        let o = parse("-Ru002 -d%d").unwrap();
        assert!(o.read_only);
        assert_eq!(o.umask, Some(0o2));
        assert_eq!(o.start_dir.as_deref(), Some("%d"));
    }

    #[test]
    fn bad_options_are_refused() {
        assert!(parse("-u 999").unwrap_err().starts_with("Invalid umask"));
        assert!(parse("-x").unwrap_err().starts_with("unknown option -- x"));
        assert!(parse("-d").unwrap_err().contains("requires an argument"));
    }

    #[test]
    fn request_lists() {
        let o = parse("-P remove,rmdir").unwrap();
        assert!(!o.permits("remove") && o.permits("open"));
        let o = parse("-p open,read,close,realpath,stat,lstat,fstat").unwrap();
        assert!(o.permits("read") && !o.permits("write"));
    }

    #[test]
    fn start_dir_tokens() {
        assert_eq!(
            expand_start_dir("/srv/%u/%%/%d", "/home/a", "a").as_deref(),
            Some("/srv/a/%//home/a")
        );
        assert_eq!(expand_start_dir("%x", "/", "a"), None);
    }
}
