//! OpenSSH's wildcard patterns (`*` any run, `?` one character), as used by
//! known_hosts host patterns, AcceptEnv, SendEnv and Host blocks.

/// Whether `text` matches the wildcard `pattern`, case-sensitively.
pub fn matches(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    // Iterative matching with backtracking to the last '*': linear in
    // practice and never recursive, so hostile patterns cannot blow the stack.
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || Some(&c) == text.get(t) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern
        .get(p..)
        .is_some_and(|rest| rest.iter().all(|&c| c == '*'))
}

/// Whether `text` matches any pattern of a comma-separated list, where a
/// pattern starting with `!` excludes (a negated match wins), as OpenSSH's
/// match_pattern_list.
pub fn matches_list(list: &str, text: &str) -> bool {
    let mut matched = false;
    for pattern in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some(negated) = pattern.strip_prefix('!') {
            if matches(negated, text) {
                return false;
            }
        } else if matches(pattern, text) {
            matched = true;
        }
    }
    matched
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(matches("LC_*", "LC_ALL"));
        assert!(matches("*", ""));
        assert!(matches("a?c", "abc"));
        assert!(!matches("a?c", "ac"));
        assert!(matches("*.example.com", "x.example.com"));
        assert!(!matches("*.example.com", "example.com"));
        assert!(matches("a*b*c", "aXXbYYc"));
        assert!(!matches("a*b*c", "aXXbYY"));
        assert!(matches("LANG", "LANG"));
        assert!(!matches("LANG", "LANGUAGE"));
        assert!(matches("[10.0.0.?]:22*", "[10.0.0.5]:2222"));
        // A pathological pattern finishes quickly, and correctly.
        let pattern = "*a".repeat(200);
        assert!(!matches(&pattern, &"a".repeat(199)));
    }

    #[test]
    fn lists_with_negation() {
        assert!(matches_list("*.lan,!bad.lan", "good.lan"));
        assert!(!matches_list("*.lan,!bad.lan", "bad.lan"));
        assert!(!matches_list("!bad.lan", "other"));
        assert!(!matches_list("", "x"));
    }
}
