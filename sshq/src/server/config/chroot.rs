//! `ChrootDirectory`: sshd's value (a path with `%h`, `%u`, `%U`, `%%` and
//! `~`, or `none`); applied to internal-sftp sessions by `server::sftp`.

/// The keyword this module takes.
pub const KEYWORD: &str = "chrootdirectory";

/// Applies a `ChrootDirectory` line to `slot` (first value wins, as in
/// sshd: `fresh` is false once it was set). The error is sshd's message.
pub fn apply(slot: &mut Option<String>, args: &[String], fresh: bool) -> Result<(), String> {
    let [value] = args else {
        return Err("ChrootDirectory: expected one argument".to_string());
    };
    if let Some(token) = unknown_token(value) {
        return Err(format!(
            "ChrootDirectory: unknown token %{token} in \"{value}\""
        ));
    }
    if fresh {
        *slot = (value != "none").then(|| value.clone());
    }
    Ok(())
}

/// The first `%` token sshd would not expand.
fn unknown_token(value: &str) -> Option<char> {
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.next() {
                Some('h' | 'u' | 'U' | '%') => {}
                other => return Some(other.unwrap_or(' ')),
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        let mut slot = None;
        apply(&mut slot, &["/srv/%u".into()], true).unwrap();
        assert_eq!(slot.as_deref(), Some("/srv/%u"));
        apply(&mut slot, &["/other".into()], false).unwrap();
        assert_eq!(slot.as_deref(), Some("/srv/%u"));
        let mut none = Some("x".to_string());
        apply(&mut none, &["none".into()], true).unwrap();
        assert_eq!(none, None);
        assert!(apply(&mut slot, &["/srv/%q".into()], true).is_err());
    }
}
