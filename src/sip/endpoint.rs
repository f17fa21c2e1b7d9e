//! Binding, the guard in front of the transaction layer, and dispatch.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rsipstack::sip::{Header, Method, SipMessage, StatusCode};
use rsipstack::transaction::endpoint::TransportEventInspector;
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::{SipConnection, TcpListenerConnection, TransportEvent, TransportLayer};
use tokio_util::sync::CancellationToken;

use super::guard::{self, Guard};
use super::{Sip, registrar};
use crate::config::SipSettings;

/// Where the endpoint listens (the same port on UDP and TCP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SipAddrs {
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
}

pub struct SipServer {
    addrs: SipAddrs,
    endpoint: rsipstack::transaction::Endpoint,
    sip: Arc<Sip>,
    cancel: CancellationToken,
}

/// Drops what must not reach the transaction layer.
struct Inspector {
    guard: Arc<Guard>,
    max_bytes: usize,
    max_headers: usize,
}

fn headers_of(msg: &SipMessage) -> &rsipstack::sip::Headers {
    match msg {
        SipMessage::Request(r) => &r.headers,
        SipMessage::Response(r) => &r.headers,
    }
}

// The trait is declared with `async_trait`; this is its expansion.
impl TransportEventInspector for Inspector {
    fn handle<'a, 'b>(
        &'a self,
        event: TransportEvent,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<TransportEvent>> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async move {
            let event = self.inspect(event)?;
            // What the RFC says a server must refuse is answered here,
            // statelessly, and goes no further.
            if let TransportEvent::Incoming(SipMessage::Request(req), conn, from) = &event
                && let Some(refusal) = super::sanity::check(req)
            {
                tracing::info!(source = %from, status = %refusal.status, reason = %refusal.reason, "SIP request refused");
                let resp = refuse(req, &refusal);
                if let Err(e) = conn.send(SipMessage::Response(resp), Some(from)).await {
                    tracing::debug!(error = %e, "SIP refusal not sent");
                }
                return None;
            }
            Some(event)
        })
    }
}

/// A stateless answer to a request that failed the checks of
/// `super::sanity`: its Via, From, Call-ID and CSeq, its To with a tag, and
/// the reason in a Warning.
fn refuse(req: &rsipstack::sip::Request, r: &super::sanity::Refusal) -> rsipstack::sip::Response {
    let mut headers: Vec<Header> = Vec::new();
    for h in req.headers.iter() {
        match h {
            Header::Via(_) | Header::CallId(_) | Header::From(_) | Header::CSeq(_) => {
                headers.push(h.clone())
            }
            Header::To(_) => {
                let v = h.value();
                let v = if v.contains(";tag=") {
                    v.to_owned()
                } else {
                    format!("{v};tag={}", &crate::crypto::random_token(8)[..8])
                };
                headers.push(Header::Other("To".into(), v));
            }
            _ => {}
        }
    }
    headers.extend(r.headers.iter().cloned());
    let reason: String = r
        .reason
        .chars()
        .filter(|c| !c.is_control() && *c != '"')
        .take(120)
        .collect();
    headers.push(Header::Other(
        "Warning".into(),
        format!("399 switchboard \"{reason}\""),
    ));
    headers.push(Header::ContentLength(0u32.into()));
    rsipstack::sip::Response {
        status_code: r.status.clone(),
        wire_reason: None,
        version: rsipstack::sip::Version::V2,
        headers: rsipstack::sip::Headers(headers),
        body: Vec::new(),
    }
}

impl Inspector {
    fn inspect(&self, event: TransportEvent) -> Option<TransportEvent> {
        let TransportEvent::Incoming(msg, conn, from) = event else {
            return Some(event);
        };
        let ip = from.get_socketaddr().ok().map(|a| a.ip());
        if let Some(ip) = ip
            && !self.guard.admit(ip, Instant::now())
        {
            tracing::debug!(source = %from, "SIP message dropped (banned or over the rate)");
            return None;
        }
        // Responses go on to the transaction layer, which drops those that
        // answer no request of ours (we send BYE).
        let headers = headers_of(&msg);
        if headers.iter().count() > self.max_headers {
            tracing::info!(source = %from, "SIP message dropped: too many header fields");
            return None;
        }
        if msg.to_string().len() > self.max_bytes {
            tracing::info!(source = %from, "SIP message dropped: larger than sip.max_message_bytes");
            return None;
        }
        let scanner = headers
            .iter()
            .filter(|h| h.name().eq_ignore_ascii_case("User-Agent"))
            .any(|h| guard::is_scanner(h.value()));
        if scanner {
            tracing::info!(source = %from, "SIP scanner dropped");
            return None;
        }
        Some(TransportEvent::Incoming(msg, conn, from))
    }
}

impl SipServer {
    /// Binds UDP and TCP (port 0 picks one free port for both).
    pub async fn bind(
        settings: &SipSettings,
        db: sea_orm::DatabaseConnection,
        master_key: &[u8],
    ) -> anyhow::Result<Self> {
        let cancel = CancellationToken::new();
        let bind = settings.bind;
        // Try a few times: the UDP port picked for port 0 may be taken on TCP.
        let mut attempt = 0;
        let (udp, port) = loop {
            attempt += 1;
            let udp = UdpConnection::create_connection(bind, None, Some(cancel.child_token()))
                .await
                .with_context(|| format!("cannot listen on {bind}/udp (sip.bind)"))?;
            let port = udp
                .get_addr()
                .get_socketaddr()
                .context("the SIP UDP socket has no address")?
                .port();
            // rsipstack binds TCP when it starts serving: check the port now.
            match std::net::TcpListener::bind(SocketAddr::new(bind.ip(), port)) {
                Ok(probe) => {
                    drop(probe);
                    break (udp, port);
                }
                Err(e) if bind.port() != 0 || attempt >= 5 => {
                    return Err(e).with_context(|| {
                        format!("cannot listen on {}:{port}/tcp (sip.bind)", bind.ip())
                    });
                }
                Err(_) => continue,
            }
        };
        let addrs = SipAddrs {
            udp: SocketAddr::new(bind.ip(), port),
            tcp: SocketAddr::new(bind.ip(), port),
        };
        let tcp = TcpListenerConnection::new(addrs.tcp, None)
            .await
            .context("SIP TCP listener")?;
        let layer = TransportLayer::new(cancel.clone());
        layer.add_transport(SipConnection::Udp(udp));
        layer.add_transport(SipConnection::TcpListener(tcp));
        let guard = Arc::new(Guard::new(
            settings.requests_per_source_per_sec,
            settings.auth_failures,
            Duration::from_secs(settings.auth_failure_window_secs),
            Duration::from_secs(settings.ban_secs),
        ));
        let endpoint = rsipstack::EndpointBuilder::new()
            .with_user_agent(concat!("Switchboard/", env!("CARGO_PKG_VERSION")))
            .with_transport_layer(layer)
            .with_cancel_token(cancel.clone())
            .with_allows(vec![
                Method::Register,
                Method::Options,
                Method::Invite,
                Method::Ack,
                Method::Bye,
                Method::Cancel,
                Method::Refer,
            ])
            .with_transport_inspector(Box::new(Inspector {
                guard: guard.clone(),
                max_bytes: settings.max_message_bytes,
                max_headers: settings.max_headers,
            }))
            .build();
        let sip = Arc::new(Sip {
            settings: settings.clone(),
            db,
            nonces: super::digest::NonceKey::new(master_key, settings.nonce_ttl_secs),
            counts: registrar::NonceCounts::default(),
            guard,
            calls: super::call::Calls::new(endpoint.inner.clone(), addrs.udp, cancel.child_token()),
            uac: super::uac::Uac::new(endpoint.inner.clone(), addrs.udp),
            legs: super::agent_leg::Legs::default(),
            outbound: super::outbound::Outbound::default(),
            health: super::keepalive::Health::default(),
            registrations: super::trunk_reg::Registrations::default(),
            sealer: crate::crypto::Sealer::new(master_key),
            prompts: crate::media::prompt::PromptCache::new(),
        });
        super::outbound::register(addrs.udp, &sip);
        tracing::info!(udp = %addrs.udp, tcp = %addrs.tcp, "SIP endpoint bound");
        Ok(Self {
            addrs,
            endpoint,
            sip,
            cancel,
        })
    }

    pub fn addrs(&self) -> SipAddrs {
        self.addrs
    }

    /// Lets calls reach the spine and routing (INVITEs get 503 until then).
    pub fn attach_calls(&self, ctx: super::call::CallContext) {
        // Offers to agents with a registered phone ring it (`agent_leg`).
        ctx.acd.on_action(self.sip.legs.hook());
        self.sip.calls.attach(ctx);
    }

    /// Serves until `stop` is cancelled, then closes the sockets.
    pub async fn run(self, stop: CancellationToken) {
        let SipServer {
            endpoint,
            sip,
            cancel,
            ..
        } = self;
        let calls_stop = sip.calls.stop_token();
        let mut incoming = match endpoint.incoming_transactions() {
            Ok(i) => i,
            Err(e) => {
                tracing::error!(error = %e, "SIP endpoint has no incoming queue");
                return;
            }
        };
        let tasks = tokio_util::task::TaskTracker::new();
        if let Some(inbox) = sip.legs.take_inbox() {
            tasks.spawn(super::agent_leg::dispatch(
                sip.clone(),
                inbox,
                calls_stop.clone(),
            ));
        }
        tasks.spawn(super::keepalive::run(sip.clone(), calls_stop.clone()));
        tasks.spawn(super::trunk_reg::run(sip.clone(), calls_stop.clone()));
        let serve = async {
            endpoint.serve().await;
        };
        let accept = async {
            while let Some(tx) = incoming.recv().await {
                let sip = sip.clone();
                tasks.spawn(handle(sip, tx));
            }
        };
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = serve => { tracing::warn!("SIP endpoint stopped by itself"); }
            _ = accept => {}
        }
        // Calls hang up (BYE) while the transport still runs.
        calls_stop.cancel();
        tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), tasks.wait()).await;
        sip.outbound.wait(Duration::from_secs(5)).await;
        cancel.cancel();
        tracing::info!("SIP endpoint stopped");
    }
}

const ALLOW: &str = "REGISTER, OPTIONS, INVITE, ACK, BYE, CANCEL, REFER";

async fn handle(sip: Arc<Sip>, mut tx: rsipstack::transaction::Transaction) {
    let (from, transport) = match tx.connection.as_ref() {
        Some(c) => (
            c.get_remote_addr().and_then(|a| a.get_socketaddr().ok()),
            if c.is_reliable() { "tcp" } else { "udp" },
        ),
        None => (None, "udp"),
    };
    let Some(from) = from else {
        return;
    };
    let reply = match tx.original.method {
        Method::Register => registrar::register(&sip, &tx.original, from, transport).await,
        Method::Invite => {
            // A re-INVITE in one of the dialogs we started goes to its owner.
            let Some(tx) = sip.uac.dispatch(tx).await else {
                return;
            };
            return super::call::invite(sip, tx, from, transport).await;
        }
        Method::Refer => {
            let Some(tx) = sip.uac.dispatch(tx).await else {
                return;
            };
            return super::call::in_dialog(&sip, tx).await;
        }
        Method::Bye => {
            // Our own calls' dialogs first (agents' phones hanging up).
            let Some(tx) = sip.uac.dispatch(tx).await else {
                return;
            };
            return super::call::bye(&sip, tx).await;
        }
        Method::Options => registrar::Reply {
            status: StatusCode::OK,
            headers: vec![
                Header::Other("Allow".into(), ALLOW.into()),
                Header::Other("Accept".into(), "application/sdp".into()),
            ],
        },
        // Answered by the transaction layer (or absorbed).
        Method::Ack | Method::Cancel => return,
        _ => registrar::Reply {
            status: StatusCode::NotImplemented,
            headers: vec![Header::Other("Allow".into(), ALLOW.into())],
        },
    };
    if let Err(e) = tx.reply_with(reply.status, reply.headers, None).await {
        tracing::debug!(error = %e, "SIP reply not sent");
    }
}
