//! The interaction lifecycle as a pure state machine: no I/O, no clock.
//!
//! ```text
//! created ──► in_flow ──► queued ──► offered ──► connected ──► wrap_up ──► closed
//!    │           │  ▲        │ ▲        │            │
//!    │           │  └────────┘ └────────┘ reject /   └─ transfer ─► queued | offered | in_flow
//!    │           │   overflow   timeout
//!    └───────────┴──── abandon / close (any state before connected) ──────────────► closed
//! ```

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::{AgentId, QueueId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Created,
    InFlow,
    Queued,
    Offered,
    Connected,
    WrapUp,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Voice,
    Chat,
    Sms,
    Email,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Inbound,
    Outbound,
}

/// Why an interaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// Handled to the end (after wrap-up, or finished in self-service).
    Completed,
    /// The customer left before reaching an agent.
    Abandoned,
    /// A technical failure ended it.
    Failed,
    /// Ended by a supervisor or the system (e.g. maximum wait reached).
    Terminated,
}

/// Where a transfer goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(tag = "to", rename_all = "snake_case")]
pub enum TransferTarget {
    Queue {
        queue_id: QueueId,
    },
    Agent {
        agent_id: AgentId,
    },
    Flow {
        flow: String,
    },
    /// An outside party (a phone number or address); the interaction stays connected.
    External {
        address: String,
    },
}

/// A change of lifecycle state, as requested by a channel, the flow runtime,
/// the ACD or a person. (Serialised as event data; requests use the HTTP
/// layer's own wire type.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Transition {
    /// Start (or switch to) a flow.
    EnterFlow {
        flow: String,
    },
    /// Wait in a queue (also: move to another queue).
    Enqueue {
        queue_id: QueueId,
    },
    /// Reserve an agent and offer the interaction to them.
    Offer {
        agent_id: AgentId,
    },
    /// The offered agent accepted.
    Accept {
        agent_id: AgentId,
    },
    /// The offered agent declined; the interaction waits again.
    Reject {
        agent_id: AgentId,
    },
    /// The offered agent did not answer in time; the interaction waits again.
    OfferTimeout {
        agent_id: AgentId,
    },
    /// The offer was taken back (the agent went away, or the routing
    /// configuration changed); the interaction waits again.
    Withdraw {
        agent_id: AgentId,
    },
    /// Connect directly, without queueing (e.g. an agent's outbound call).
    Connect {
        agent_id: Option<AgentId>,
    },
    Transfer {
        target: TransferTarget,
    },
    /// The conversation ended; the agent does after-contact work.
    WrapUp,
    /// The customer left before reaching an agent.
    Abandon,
    Close {
        reason: CloseReason,
    },
}

impl Transition {
    /// The event kind recorded on the timeline.
    pub fn kind(&self) -> &'static str {
        match self {
            Transition::EnterFlow { .. } => "flow_entered",
            Transition::Enqueue { .. } => "queued",
            Transition::Offer { .. } => "offered",
            Transition::Accept { .. } => "connected",
            Transition::Reject { .. } => "offer_rejected",
            Transition::OfferTimeout { .. } => "offer_timed_out",
            Transition::Withdraw { .. } => "offer_withdrawn",
            Transition::Connect { .. } => "connected",
            Transition::Transfer { .. } => "transferred",
            Transition::WrapUp => "wrap_up_started",
            Transition::Abandon => "abandoned",
            Transition::Close { .. } => "closed",
        }
    }
}

/// The parts of an interaction the lifecycle decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lifecycle {
    pub state: State,
    pub queue_id: Option<QueueId>,
    pub agent_id: Option<AgentId>,
    pub close_reason: Option<CloseReason>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action} an interaction that is {state:?}")]
pub struct InvalidTransition {
    pub state: State,
    pub action: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    #[error(transparent)]
    Invalid(#[from] InvalidTransition),
    #[error("the interaction is offered to another agent")]
    WrongAgent,
}

impl Lifecycle {
    pub fn new() -> Self {
        Self {
            state: State::Created,
            queue_id: None,
            agent_id: None,
            close_reason: None,
        }
    }

    /// The lifecycle after `t`, or why `t` is not allowed now.
    pub fn apply(&self, t: &Transition) -> Result<Lifecycle, LifecycleError> {
        use State::*;
        let invalid = |action| {
            Err(LifecycleError::Invalid(InvalidTransition {
                state: self.state,
                action,
            }))
        };
        let mut next = self.clone();
        match (self.state, t) {
            (Closed, _) => return invalid(t.kind()),
            (Created | InFlow | Queued | Connected, Transition::EnterFlow { .. }) => {
                next.state = InFlow;
                next.agent_id = None;
                next.queue_id = None;
            }
            (Created | InFlow | Queued, Transition::Enqueue { queue_id }) => {
                next.state = Queued;
                next.queue_id = Some(*queue_id);
            }
            (Created | Queued, Transition::Offer { agent_id }) => {
                next.state = Offered;
                next.agent_id = Some(*agent_id);
            }
            (Offered, Transition::Accept { agent_id }) => {
                self.offered_to(*agent_id)?;
                next.state = Connected;
            }
            (
                Offered,
                Transition::Reject { agent_id }
                | Transition::OfferTimeout { agent_id }
                | Transition::Withdraw { agent_id },
            ) => {
                self.offered_to(*agent_id)?;
                next.agent_id = None;
                // Offers straight from `created` (no queue) fall back to `created`.
                next.state = if self.queue_id.is_some() {
                    Queued
                } else {
                    Created
                };
            }
            (Created | InFlow, Transition::Connect { agent_id }) => {
                next.state = Connected;
                next.agent_id = *agent_id;
            }
            (Connected | InFlow, Transition::Transfer { target }) => match target {
                TransferTarget::Queue { queue_id } => {
                    next.state = Queued;
                    next.queue_id = Some(*queue_id);
                    next.agent_id = None;
                }
                TransferTarget::Agent { agent_id } => {
                    next.state = Offered;
                    next.agent_id = Some(*agent_id);
                }
                TransferTarget::Flow { .. } => {
                    next.state = InFlow;
                    next.agent_id = None;
                }
                TransferTarget::External { .. } => {
                    if self.state != Connected {
                        return invalid("transfer to an outside party");
                    }
                }
            },
            (Connected, Transition::WrapUp) => next.state = WrapUp,
            (Created | InFlow | Queued | Offered, Transition::Abandon) => {
                next.state = Closed;
                next.close_reason = Some(CloseReason::Abandoned);
            }
            (WrapUp, Transition::Close { reason }) => {
                next.state = Closed;
                next.close_reason = Some(*reason);
            }
            (Created | InFlow | Queued | Offered | Connected, Transition::Close { reason }) => {
                if *reason == CloseReason::Completed && self.state != InFlow {
                    // Only self-service (a flow) completes without an agent's wrap-up.
                    return invalid("complete");
                }
                next.state = Closed;
                next.close_reason = Some(*reason);
            }
            (_, t) => return invalid(t.kind()),
        }
        Ok(next)
    }

    fn offered_to(&self, agent: AgentId) -> Result<(), LifecycleError> {
        if self.agent_id == Some(agent) {
            Ok(())
        } else {
            Err(LifecycleError::WrongAgent)
        }
    }
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(ts: &[Transition]) -> Result<Lifecycle, LifecycleError> {
        ts.iter().try_fold(Lifecycle::new(), |l, t| l.apply(t))
    }

    #[test]
    fn the_happy_path() {
        let q = QueueId::new();
        let a = AgentId::new();
        let l = run(&[
            Transition::EnterFlow {
                flow: "main".into(),
            },
            Transition::Enqueue { queue_id: q },
            Transition::Offer { agent_id: a },
            Transition::Accept { agent_id: a },
            Transition::WrapUp,
            Transition::Close {
                reason: CloseReason::Completed,
            },
        ])
        .unwrap();
        assert_eq!(l.state, State::Closed);
        assert_eq!(l.queue_id, Some(q));
        assert_eq!(l.agent_id, Some(a));
        assert_eq!(l.close_reason, Some(CloseReason::Completed));
    }

    #[test]
    fn reject_and_timeout_requeue() {
        let q = QueueId::new();
        let (a, b) = (AgentId::new(), AgentId::new());
        let l = run(&[
            Transition::Enqueue { queue_id: q },
            Transition::Offer { agent_id: a },
            Transition::OfferTimeout { agent_id: a },
            Transition::Offer { agent_id: b },
            Transition::Reject { agent_id: b },
            Transition::Offer { agent_id: a },
            Transition::Withdraw { agent_id: a },
        ])
        .unwrap();
        assert_eq!(l.state, State::Queued);
        assert_eq!(l.agent_id, None);
        let e = run(&[
            Transition::Enqueue { queue_id: q },
            Transition::Offer { agent_id: a },
            Transition::Withdraw { agent_id: b },
        ])
        .unwrap_err();
        assert_eq!(
            e,
            LifecycleError::WrongAgent,
            "only the offered agent's offer"
        );
    }

    #[test]
    fn only_the_offered_agent_may_accept() {
        let q = QueueId::new();
        let (a, b) = (AgentId::new(), AgentId::new());
        let e = run(&[
            Transition::Enqueue { queue_id: q },
            Transition::Offer { agent_id: a },
            Transition::Accept { agent_id: b },
        ])
        .unwrap_err();
        assert_eq!(e, LifecycleError::WrongAgent);
    }

    #[test]
    fn abandon_paths() {
        let q = QueueId::new();
        for prefix in [
            vec![],
            vec![Transition::EnterFlow { flow: "f".into() }],
            vec![Transition::Enqueue { queue_id: q }],
            vec![
                Transition::Enqueue { queue_id: q },
                Transition::Offer {
                    agent_id: AgentId::new(),
                },
            ],
        ] {
            let mut ts = prefix.clone();
            ts.push(Transition::Abandon);
            let l = run(&ts).unwrap();
            assert_eq!(
                (l.state, l.close_reason),
                (State::Closed, Some(CloseReason::Abandoned)),
                "{prefix:?}"
            );
        }
        // Once connected, leaving is not abandoning: it goes through wrap-up.
        let a = AgentId::new();
        let e = run(&[
            Transition::Connect { agent_id: Some(a) },
            Transition::Abandon,
        ])
        .unwrap_err();
        assert!(matches!(e, LifecycleError::Invalid(_)));
    }

    #[test]
    fn transfers() {
        let (q1, q2) = (QueueId::new(), QueueId::new());
        let (a, b) = (AgentId::new(), AgentId::new());
        let connected = [
            Transition::Enqueue { queue_id: q1 },
            Transition::Offer { agent_id: a },
            Transition::Accept { agent_id: a },
        ];
        let to = |target| {
            let mut ts = connected.to_vec();
            ts.push(Transition::Transfer { target });
            run(&ts).unwrap()
        };
        let l = to(TransferTarget::Queue { queue_id: q2 });
        assert_eq!(
            (l.state, l.queue_id, l.agent_id),
            (State::Queued, Some(q2), None)
        );
        let l = to(TransferTarget::Agent { agent_id: b });
        assert_eq!((l.state, l.agent_id), (State::Offered, Some(b)));
        let l = to(TransferTarget::Flow {
            flow: "survey".into(),
        });
        assert_eq!(l.state, State::InFlow);
        let l = to(TransferTarget::External {
            address: "+15551234567".into(),
        });
        assert_eq!(l.state, State::Connected);
    }

    #[test]
    fn closed_is_final_and_invalid_moves_are_refused() {
        let closed = run(&[Transition::Abandon]).unwrap();
        for t in [
            Transition::WrapUp,
            Transition::Enqueue {
                queue_id: QueueId::new(),
            },
            Transition::Close {
                reason: CloseReason::Completed,
            },
        ] {
            assert!(closed.apply(&t).is_err(), "{t:?}");
        }
        assert!(Lifecycle::new().apply(&Transition::WrapUp).is_err());
        assert!(
            Lifecycle::new()
                .apply(&Transition::Accept {
                    agent_id: AgentId::new()
                })
                .is_err()
        );
        // A queued call cannot be "completed" without an agent or a flow.
        let queued = run(&[Transition::Enqueue {
            queue_id: QueueId::new(),
        }])
        .unwrap();
        assert!(
            queued
                .apply(&Transition::Close {
                    reason: CloseReason::Completed
                })
                .is_err()
        );
        assert!(
            queued
                .apply(&Transition::Close {
                    reason: CloseReason::Terminated
                })
                .is_ok()
        );
    }
}
