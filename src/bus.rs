//! The event bus: what happened, fanned out to whoever listens (console
//! streams, later the ACD and dashboards). Events are stored before they are
//! published, so a subscriber that misses some (it lagged, reconnected, or a
//! node was cut off from Redis) catches up from the store; the bus is never
//! the only copy of anything.
//!
//! Every node has an in-process broadcast channel. In cluster mode
//! (`bus.backend = "redis"`) a bridge also publishes each local message to a
//! Redis channel and re-publishes other nodes' messages locally, so a console
//! connected to one node sees what happened on all of them.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::ids::TenantId;
use crate::interactions::TimelineEvent;

/// Something published on the bus.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// Messages to forward to other nodes, when bridged.
    outbound: Option<mpsc::Sender<BusMessage>>,
}

/// A message as it travels between nodes.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    node: String,
    msg: BusMessage,
}

impl Bus {
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity);
        Self { tx, outbound: None }
    }

    /// Publishes to this node's subscribers (and, when bridged, to the other
    /// nodes'). Nobody listening is fine; a full bridge queue drops the
    /// message for other nodes (they catch up from the store) rather than
    /// slowing the caller.
    pub fn publish(&self, msg: BusMessage) {
        if let Some(out) = &self.outbound
            && out.try_send(msg.clone()).is_err()
        {
            tracing::warn!("bus bridge queue full: a message was not forwarded to other nodes");
        }
        let _ = self.tx.send(msg);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<BusMessage> {
        self.tx.subscribe()
    }

    /// Connects this bus to the other nodes through Redis pub/sub on
    /// `channel`. Returns the bridge task; it runs until `stop`.
    pub async fn bridge_redis(
        &mut self,
        url: &str,
        channel: String,
        node: String,
        stop: CancellationToken,
    ) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        let client =
            redis::Client::open(url).map_err(|e| anyhow::anyhow!("redis.url is invalid: {e}"))?;
        let publisher = client
            .get_connection_manager()
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to Redis for the bus: {e}"))?;
        // Subscribe before returning, so nothing published after start-up is missed.
        let pubsub = subscribe(&client, &channel).await?;
        let (out_tx, out_rx) = mpsc::channel(10_000);
        self.outbound = Some(out_tx);
        let local = self.tx.clone();
        Ok(tokio::spawn(run_bridge(
            client, publisher, pubsub, channel, node, local, out_rx, stop,
        )))
    }
}

async fn subscribe(client: &redis::Client, channel: &str) -> anyhow::Result<redis::aio::PubSub> {
    let mut pubsub = client
        .get_async_pubsub()
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to Redis for the bus: {e}"))?;
    pubsub
        .subscribe(channel)
        .await
        .map_err(|e| anyhow::anyhow!("cannot subscribe to {channel}: {e}"))?;
    Ok(pubsub)
}

#[allow(clippy::too_many_arguments)]
async fn run_bridge(
    client: redis::Client,
    mut publisher: redis::aio::ConnectionManager,
    first: redis::aio::PubSub,
    channel: String,
    node: String,
    local: broadcast::Sender<BusMessage>,
    mut out_rx: mpsc::Receiver<BusMessage>,
    stop: CancellationToken,
) {
    // Outbound: local messages to Redis.
    let out_node = node.clone();
    let out_channel = channel.clone();
    let out_stop = stop.clone();
    let outbound = tokio::spawn(async move {
        loop {
            let msg = tokio::select! {
                _ = out_stop.cancelled() => return,
                m = out_rx.recv() => match m { Some(m) => m, None => return },
            };
            let body = serde_json::to_string(&Envelope {
                node: out_node.clone(),
                msg,
            })
            .expect("bus messages serialise");
            let r: redis::RedisResult<i64> = redis::cmd("PUBLISH")
                .arg(&out_channel)
                .arg(body)
                .query_async(&mut publisher)
                .await;
            if let Err(e) = r {
                tracing::warn!(error = %e, "publishing to the Redis bus failed; other nodes catch up from the store");
            }
        }
    });
    // Inbound: other nodes' messages to local subscribers, reconnecting as needed.
    let mut pubsub = Some(first);
    loop {
        if let Some(mut ps) = pubsub.take() {
            let mut stream = ps.on_message();
            loop {
                let item = tokio::select! {
                    _ = stop.cancelled() => { outbound.abort(); return; }
                    m = stream.next() => m,
                };
                let Some(m) = item else { break };
                let Ok(payload) = m.get_payload::<String>() else {
                    continue;
                };
                match serde_json::from_str::<Envelope>(&payload) {
                    Ok(env) if env.node != node => {
                        let _ = local.send(env.msg);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "ignoring a malformed bus message"),
                }
            }
            tracing::warn!("lost the Redis bus subscription; reconnecting");
        }
        tokio::select! {
            _ = stop.cancelled() => { outbound.abort(); return; }
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        match subscribe(&client, &channel).await {
            Ok(ps) => pubsub = Some(ps),
            Err(e) => tracing::warn!(error = %e, "reconnecting the Redis bus failed"),
        }
    }
}
