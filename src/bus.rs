//! The event bus: what happened, fanned out to whoever listens on this node
//! (console streams, metrics). Events are stored before they are published,
//! so a subscriber that misses some (it lagged, or it reconnected) catches
//! up from the store; the bus is never the only copy of anything.
//!
//! Embedded mode uses an in-process broadcast channel. In cluster mode each
//! node publishes its own events locally; consoles read the shared store.

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::broadcast;

use crate::ids::TenantId;
use crate::interactions::TimelineEvent;

/// Something published on the bus.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "topic", content = "payload", rename_all = "snake_case")]
pub enum BusMessage {
    Interaction(Arc<TimelineEvent>),
}

impl BusMessage {
    pub fn tenant_id(&self) -> TenantId {
        match self {
            BusMessage::Interaction(e) => e.tenant_id,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Bus {
    tx: broadcast::Sender<BusMessage>,
}

impl Bus {
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity);
        Self { tx }
    }

    /// Publishes to current subscribers; nobody listening is fine.
    pub fn publish(&self, msg: BusMessage) {
        let _ = self.tx.send(msg);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<BusMessage> {
        self.tx.subscribe()
    }
}
