//! The peer's requests waiting for our answers, released in request order.
//!
//! SSH answers requests in the order they arrived (RFC 4254 §4 and §5.4;
//! draft §7.6 and §8.7), while the application may decide them in any
//! order: an answer given early waits here until every earlier request is
//! answered too. The control stream (global requests) and every channel
//! stream (channel requests) keep one each, so the rule lives in one place.
//!
//! Beside the queue sits the rule that joins answers and FIN on a channel
//! (draft §8.7): nothing can follow our FIN, so an EOF asked for while
//! answers are owed is held until the last of them is released.

use std::collections::VecDeque;

use super::RequestId;

/// One request of the peer's, and our answer once the application gave it.
#[derive(Debug)]
struct Owed<T> {
    id: RequestId,
    wants_reply: bool,
    answer: Option<T>,
}

/// An answer ready to go out, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released<T> {
    pub id: RequestId,
    /// False for a request that only held its place in the queue (the
    /// control stream counts those too, draft §8.10): nothing is sent.
    pub wants_reply: bool,
    pub answer: T,
}

/// The peer's requests, from arrival until their answers are released.
#[derive(Debug)]
pub struct OrderedAnswers<T> {
    owed: VecDeque<Owed<T>>,
    /// Our FIN was asked for while answers were still owed.
    fin_held: bool,
}

impl<T> Default for OrderedAnswers<T> {
    fn default() -> Self {
        OrderedAnswers {
            owed: VecDeque::new(),
            fin_held: false,
        }
    }
}

impl<T> OrderedAnswers<T> {
    /// The peer's request `id` arrived; its answer goes out after those of
    /// every request before it.
    pub fn arrived(&mut self, id: RequestId, wants_reply: bool) {
        self.owed.push_back(Owed {
            id,
            wants_reply,
            answer: None,
        });
    }

    /// The application's answer to `id`. The first answer counts; an
    /// answer for a request not waiting (already released, or never
    /// arrived) is ignored.
    pub fn answer(&mut self, id: RequestId, answer: T) {
        if let Some(entry) = self.owed.iter_mut().find(|owed| owed.id == id) {
            entry.answer.get_or_insert(answer);
        }
    }

    /// The next answer that may go out: the oldest request's, once given.
    pub fn release(&mut self) -> Option<Released<T>> {
        // Only once the oldest request is answered.
        self.owed.front()?.answer.as_ref()?;
        let owed = self.owed.pop_front()?;
        let answer = owed.answer?;
        Some(Released {
            id: owed.id,
            wants_reply: owed.wants_reply,
            answer,
        })
    }

    /// How many requests wait (answered or not): a bound on this is the
    /// flow control of requests (draft §8.10).
    pub fn len(&self) -> usize {
        self.owed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.owed.is_empty()
    }

    /// Forgets every request: the stream is over, nothing more is sent.
    pub fn clear(&mut self) {
        self.owed.clear();
        self.fin_held = false;
    }

    /// Our FIN is asked for. True if it may go now; false if answers are
    /// still owed, in which case it is held until [`Self::fin_due`].
    pub fn request_fin(&mut self) -> bool {
        if self.owed.is_empty() {
            return true;
        }
        self.fin_held = true;
        false
    }

    /// Whether a FIN is held for answers still owed.
    pub fn fin_held(&self) -> bool {
        self.fin_held
    }

    /// True once, when a held FIN may go: every owed answer is released.
    pub fn fin_due(&mut self) -> bool {
        if self.fin_held && self.owed.is_empty() {
            self.fin_held = false;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn released(answers: &mut OrderedAnswers<bool>) -> Vec<(u64, bool)> {
        std::iter::from_fn(|| answers.release())
            .map(|r| (r.id.0, r.answer))
            .collect()
    }

    #[test]
    fn answers_leave_in_request_order() {
        let mut answers = OrderedAnswers::default();
        for id in 0..3 {
            answers.arrived(RequestId(id), true);
        }
        answers.answer(RequestId(2), true);
        answers.answer(RequestId(1), false);
        assert!(released(&mut answers).is_empty(), "0 is not answered yet");
        answers.answer(RequestId(0), true);
        assert_eq!(
            released(&mut answers),
            vec![(0, true), (1, false), (2, true)]
        );
        assert!(answers.is_empty());
    }

    #[test]
    fn the_first_answer_counts_and_strays_are_ignored() {
        let mut answers = OrderedAnswers::default();
        answers.arrived(RequestId(7), true);
        answers.answer(RequestId(7), true);
        answers.answer(RequestId(7), false);
        answers.answer(RequestId(99), false);
        assert_eq!(released(&mut answers), vec![(7, true)]);
    }

    #[test]
    fn a_fin_waits_for_the_answers_owed() {
        let mut answers = OrderedAnswers::default();
        assert!(answers.request_fin(), "nothing owed: FIN at once");
        answers.arrived(RequestId(0), true);
        assert!(!answers.request_fin());
        assert!(answers.fin_held());
        assert!(!answers.fin_due(), "the answer is still owed");
        answers.answer(RequestId(0), false);
        assert_eq!(released(&mut answers), vec![(0, false)]);
        assert!(answers.fin_due());
        assert!(!answers.fin_due(), "due once");
    }
}
