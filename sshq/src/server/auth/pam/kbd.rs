//! Keyboard-interactive through PAM (sshd's `keyboard-interactive/pam`):
//! `pam_authenticate` runs on its own thread, and each prompt or message
//! of its conversation becomes one SSH_MSG_USERAUTH_INFO_REQUEST, as
//! sshd's `sshpam_query` makes them: a prompt goes alone, with an empty
//! name and instruction; a text or error message goes as the instruction
//! of a round without prompts.

use sshq_core::auth::BoxFuture;
use sshq_core::auth_methods::{InfoRequest, KbdInteractive, KbdStep};
use zeroize::Zeroizing;

use super::conversations::{Event, RelayConversation};
use super::{authenticate_flags, fake_password, start, verdict, PamRequest, PamVerdict};

/// Messages the PAM thread may have sent before the client has read them
/// (it waits for an answer after each prompt, so only messages queue).
const EVENT_QUEUE: usize = 8;

/// What the conversation waits for from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    /// Nothing has been asked yet.
    Start,
    /// The answer to one prompt.
    Answer,
    /// The empty answer to a round that only showed a message.
    Acknowledgement,
    /// The conversation is over.
    Ended,
}

/// One keyboard-interactive conversation with PAM. Dropping it ends the
/// PAM transaction: the thread's pending prompt fails with PAM_CONV_ERR.
pub struct PamConversation {
    /// The transaction's thread, for tests that check it ends.
    #[cfg(test)]
    thread: std::thread::JoinHandle<()>,
    events: tokio::sync::mpsc::Receiver<Event>,
    answers: std::sync::mpsc::Sender<Zeroizing<String>>,
    waiting: Waiting,
    /// False for an unknown user, or root where PermitRootLogin forbids
    /// passwords: PAM then gets junk of the same length as each answer
    /// (as sshd's `sshpam_respond`), and the conversation never succeeds.
    genuine: bool,
    /// How PAM's refusal read, for the log (never shown to the client).
    refusal: Option<String>,
}

impl PamConversation {
    /// Starts `pam_authenticate` for `request` on a thread of its own;
    /// `None` when no thread could be started (logged).
    pub fn start(request: PamRequest, allow_empty: bool, genuine: bool) -> Option<Self> {
        let (events, events_received) = tokio::sync::mpsc::channel(EVENT_QUEUE);
        let (answers_sent, answers) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("sshqd-pam".into())
            .spawn(move || {
                let conversation = RelayConversation {
                    events: events.clone(),
                    answers,
                };
                let outcome = match start(&request, conversation) {
                    Ok(mut context) => {
                        verdict(context.authenticate(authenticate_flags(allow_empty)))
                    }
                    Err(reason) => PamVerdict::Refused(reason),
                };
                // Nobody may be listening any more: fine.
                let _ = events.blocking_send(Event::Done(outcome));
            });
        let thread = match spawned {
            Ok(thread) => thread,
            Err(e) => {
                tracing::error!("PAM: cannot start a thread for keyboard-interactive: {e}");
                return None;
            }
        };
        #[cfg(not(test))]
        drop(thread);
        Some(PamConversation {
            #[cfg(test)]
            thread,
            events: events_received,
            answers: answers_sent,
            waiting: Waiting::Start,
            genuine,
            refusal: None,
        })
    }

    /// Drops the conversation (as a transport does at LoginGraceTime) and
    /// returns its thread, to see that it ends.
    #[cfg(test)]
    pub fn end(self) -> std::thread::JoinHandle<()> {
        self.thread
    }

    /// PAM's reason for the refusal, once the conversation has been refused.
    pub fn refusal(&self) -> Option<&str> {
        self.refusal.as_deref()
    }

    async fn next_step(&mut self, answers: Vec<Zeroizing<String>>) -> KbdStep {
        match self.waiting {
            Waiting::Ended => return KbdStep::Refused,
            Waiting::Answer => {
                // One prompt was sent, so one answer is due (sshd refuses
                // any other count).
                let mut answers = answers.into_iter();
                let (Some(answer), None) = (answers.next(), answers.next()) else {
                    return self.refused("the client's answers do not match the prompts");
                };
                let answer = if self.genuine {
                    answer
                } else {
                    fake_password(&answer)
                };
                if self.answers.send(answer).is_err() {
                    return self.refused("the PAM transaction ended");
                }
            }
            // A round that only showed a message needs no answer.
            Waiting::Start | Waiting::Acknowledgement => {}
        }
        match self.events.recv().await {
            Some(Event::Prompt(prompt)) => {
                self.waiting = Waiting::Answer;
                KbdStep::Ask(InfoRequest {
                    name: String::new(),
                    instruction: String::new(),
                    prompts: vec![prompt],
                })
            }
            Some(Event::Text(text)) => {
                self.waiting = Waiting::Acknowledgement;
                KbdStep::Ask(InfoRequest {
                    name: String::new(),
                    instruction: text,
                    prompts: Vec::new(),
                })
            }
            Some(Event::Done(PamVerdict::Success)) if self.genuine => {
                self.waiting = Waiting::Ended;
                KbdStep::Accepted
            }
            Some(Event::Done(PamVerdict::Success)) => self.refused("not a user who may log in"),
            Some(Event::Done(PamVerdict::Refused(reason))) => self.refused(&reason),
            Some(Event::Done(PamVerdict::NewAuthtokRequired)) => {
                self.refused("a new password is required")
            }
            None => self.refused("the PAM transaction ended"),
        }
    }

    fn refused(&mut self, reason: &str) -> KbdStep {
        self.waiting = Waiting::Ended;
        self.refusal = Some(reason.to_string());
        KbdStep::Refused
    }
}

impl KbdInteractive for PamConversation {
    fn step(&mut self, answers: Vec<Zeroizing<String>>) -> BoxFuture<'_, KbdStep> {
        Box::pin(self.next_step(answers))
    }
}
