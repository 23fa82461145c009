//! Given events / when command / then events or error: decider tests with no IO and no runtime.
//!
//! ```ignore
//! given::<Account>([Event::Deposited { amount: 100 }])
//!     .when(Command::Withdraw { amount: 150 })
//!     .then_rejected_with("insufficient funds");
//! ```

use crate::decider::Decider;
use std::fmt;

/// The events that happened before the command.
pub struct Given<D: Decider> {
    state: D::State,
}

/// Starts a decider test from the state `events` fold to.
pub fn given<D: Decider>(events: impl IntoIterator<Item = D::Event>) -> Given<D> {
    let state = events.into_iter().fold(D::initial_state(), |state, event| D::evolve(state, &event));
    Given { state }
}

impl<D: Decider> fmt::Debug for Given<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Given").finish_non_exhaustive()
    }
}

impl<D: Decider> fmt::Debug for Then<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Then").field("refused", &self.decision.is_err()).finish_non_exhaustive()
    }
}

impl<D: Decider> Given<D> {
    /// Decides `command` in the state the given events folded to.
    pub fn when(self, command: D::Command) -> Then<D> {
        // The handler refuses every command in a terminal state before deciding; so does the test.
        let terminal = D::is_terminal(&self.state);
        let decision = D::decide(&command, &self.state);
        Then { state: self.state, decision, terminal }
    }

    /// The folded state, for assertions on `evolve`.
    pub fn state(self) -> D::State {
        self.state
    }
}

/// The decision, to check.
pub struct Then<D: Decider> {
    state: D::State,
    decision: Result<Vec<D::Event>, D::Error>,
    terminal: bool,
}

impl<D: Decider> Then<D>
where
    D::Event: PartialEq + fmt::Debug,
{
    /// The command produced exactly these events; returns the state after them.
    #[track_caller]
    pub fn then(self, expected: impl IntoIterator<Item = D::Event>) -> D::State {
        let expected: Vec<D::Event> = expected.into_iter().collect();
        assert!(
            !self.terminal,
            "expected events {expected:?}, but the state is terminal: the handler refuses every command"
        );
        match self.decision {
            Ok(events) => {
                assert_eq!(events, expected, "the command produced other events than expected");
                events.iter().fold(self.state, D::evolve)
            }
            Err(error) => panic!("expected events {expected:?}, but the command was refused: {error}"),
        }
    }

    /// The state is terminal: the handler refuses the command whatever the decider says.
    #[track_caller]
    pub fn then_terminal(self) {
        assert!(self.terminal, "expected a terminal state, but the handler would decide the command");
    }

    /// The command was refused with an error whose message contains `text`.
    #[track_caller]
    pub fn then_rejected_with(self, text: &str) {
        match self.decision {
            Ok(events) => panic!("expected a refusal containing {text:?}, but the command produced {events:?}"),
            Err(error) => {
                let message = error.to_string();
                assert!(message.contains(text), "the refusal {message:?} does not contain {text:?}");
            }
        }
    }

    /// The command was refused; `check` examines the error.
    #[track_caller]
    pub fn then_rejected(self, check: impl FnOnce(&D::Error) -> bool) {
        match self.decision {
            Ok(events) => panic!("expected a refusal, but the command produced {events:?}"),
            Err(error) => assert!(check(&error), "the command was refused, but not as expected: {error}"),
        }
    }
}
