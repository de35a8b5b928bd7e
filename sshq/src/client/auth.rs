//! The client's authentication options as ssh_config gives them
//! (PreferredAuthentications, PubkeyAuthentication, PasswordAuthentication,
//! KbdInteractiveAuthentication, NumberOfPasswordPrompts, BatchMode), made
//! into what both transports follow: `sshq_core`'s `ClientAuthOptions`.

use std::sync::Arc;

use sshq_core::auth_methods::{parse_name_list, AuthMethod, ClientAuthOptions};

use super::config::ClientOptions;
use super::prompt::TerminalPrompter;
use super::Plan;

/// ssh's PreferredAuthentications default without the methods sshq does
/// not speak (gssapi-with-mic, hostbased).
pub const DEFAULT_PREFERRED: [AuthMethod; 3] = [
    AuthMethod::PublicKey,
    AuthMethod::KeyboardInteractive,
    AuthMethod::Password,
];

/// ssh's NumberOfPasswordPrompts default.
pub const DEFAULT_PASSWORD_PROMPTS: u32 = 3;

/// Whether a login may ask the user anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompts {
    /// As ssh_config says (BatchMode still rules them out).
    Allowed,
    /// Keys only: a reconnect under a reattachable session, whose terminal
    /// is in raw mode and read for the session, so nobody could answer.
    Never,
}

/// The methods to try, in order: PreferredAuthentications (names sshq
/// does not speak never match, as in ssh) less the ones switched off.
pub fn preferred_methods(options: &ClientOptions) -> Vec<AuthMethod> {
    let listed = match &options.preferred_authentications {
        Some(list) => parse_name_list(list),
        None => DEFAULT_PREFERRED.to_vec(),
    };
    listed
        .into_iter()
        .filter(|method| {
            let enabled = match method {
                AuthMethod::PublicKey => options.pubkey_authentication,
                AuthMethod::KeyboardInteractive => options.kbd_interactive_authentication,
                AuthMethod::Password => options.password_authentication,
            };
            enabled.unwrap_or(true)
        })
        .collect()
}

/// Whether anyone may be asked: not in BatchMode (ssh then skips password
/// and keyboard-interactive altogether), nor when `prompts` forbids it.
pub fn may_ask(options: &ClientOptions, prompts: Prompts) -> bool {
    prompts == Prompts::Allowed && options.batch_mode != Some(true)
}

/// The options for logging in as `plan` says.
pub fn client_auth_options(plan: &Plan, prompts: Prompts) -> ClientAuthOptions {
    let preferred = preferred_methods(&plan.options);
    let wants_answers = preferred
        .iter()
        .any(|m| matches!(m, AuthMethod::Password | AuthMethod::KeyboardInteractive));
    let prompter = (wants_answers && may_ask(&plan.options, prompts)).then(|| {
        // ssh names the host it connected to (HostName) in its prompts.
        Arc::new(TerminalPrompter::new(
            &plan.user,
            &plan.hostname,
            plan.quiet,
        )) as Arc<dyn sshq_core::auth_methods::Prompter>
    });
    ClientAuthOptions {
        preferred,
        password_prompts: plan
            .options
            .number_of_password_prompts
            .unwrap_or(DEFAULT_PASSWORD_PROMPTS),
        prompter,
    }
}

/// Whether ssh_config leaves public keys in play: if not, no key is
/// loaded (and no passphrase asked for).
pub fn uses_keys(options: &ClientOptions) -> bool {
    preferred_methods(options).contains(&AuthMethod::PublicKey)
}

#[cfg(test)]
mod tests {
    use super::*;
    use AuthMethod::{KeyboardInteractive, Password, PublicKey};

    fn options(lines: &[&str]) -> ClientOptions {
        let mut options = ClientOptions::default();
        for line in lines {
            options.apply_option_str(line).unwrap();
        }
        options
    }

    fn plan(lines: &[&str]) -> Plan {
        Plan {
            host: "alias".into(),
            hostname: "real.example".into(),
            port: 22,
            user: "alice".into(),
            options: options(lines),
            quiet: false,
            exposure: super::super::hostkeys::Exposure::default(),
            host_key_trust: Arc::default(),
            reattachable: Arc::default(),
        }
    }

    #[test]
    fn default_order_is_ssh_s_without_gssapi_and_hostbased() {
        let auth = client_auth_options(&plan(&[]), Prompts::Allowed);
        assert_eq!(auth.preferred, [PublicKey, KeyboardInteractive, Password]);
        assert_eq!(auth.password_prompts, 3);
        assert!(auth.prompter.is_some());
    }

    #[test]
    fn preferred_authentications_orders_and_filters() {
        let listed = ["PreferredAuthentications=password,gssapi-with-mic,hostbased,publickey"];
        assert_eq!(preferred_methods(&options(&listed)), [Password, PublicKey]);
        // Repeats count once; unknown names never match.
        let repeated = ["PreferredAuthentications=password,password,none,x"];
        assert_eq!(preferred_methods(&options(&repeated)), [Password]);
        let off = ["PubkeyAuthentication=no", "KbdInteractiveAuthentication=no"];
        assert_eq!(preferred_methods(&options(&off)), [Password]);
        let off = [
            "PasswordAuthentication=no",
            "ChallengeResponseAuthentication=no",
        ];
        assert_eq!(preferred_methods(&options(&off)), [PublicKey]);
        assert!(!uses_keys(&options(&["PubkeyAuthentication=no"])));
        assert!(uses_keys(&options(&["PubkeyAuthentication=host-bound"])));
        assert!(!uses_keys(&options(&["PreferredAuthentications=password"])));
    }

    #[test]
    fn number_of_password_prompts_is_passed_on() {
        let auth = client_auth_options(&plan(&["NumberOfPasswordPrompts=1"]), Prompts::Allowed);
        assert_eq!(auth.password_prompts, 1);
        let auth = client_auth_options(&plan(&["NumberOfPasswordPrompts=0"]), Prompts::Allowed);
        assert_eq!(auth.password_prompts, 0);
    }

    #[test]
    fn batch_mode_asks_nobody() {
        let auth = client_auth_options(&plan(&["BatchMode=yes"]), Prompts::Allowed);
        assert!(auth.prompter.is_none());
        // The order stays: keys are still tried.
        assert_eq!(auth.preferred, [PublicKey, KeyboardInteractive, Password]);
        let auth = client_auth_options(&plan(&["BatchMode=no"]), Prompts::Allowed);
        assert!(auth.prompter.is_some());
    }

    #[test]
    fn reconnects_and_key_only_orders_ask_nobody() {
        assert!(client_auth_options(&plan(&[]), Prompts::Never)
            .prompter
            .is_none());
        let keys_only = plan(&["PreferredAuthentications=publickey"]);
        let auth = client_auth_options(&keys_only, Prompts::Allowed);
        assert!(auth.prompter.is_none());
        assert_eq!(auth.preferred, [PublicKey]);
    }
}
