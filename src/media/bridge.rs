//! Bridging two legs: each leg's incoming RTP is relayed to the other as
//! it arrives (no jitter buffer, no decoding when the codecs match). The
//! relayed packets take the other leg's SSRC; their sequence numbers and
//! timestamps are shifted by offsets fixed when the source starts (or
//! changes SSRC), so gaps and reordering pass through unchanged and the
//! leg's own stream continues where its prompts left off. Payloads are kept
//! when both legs use the same G.711 law and transcoded mu-law <-> A-law
//! otherwise; telephone-events are passed with the other leg's payload type
//! (dropped when that leg did not negotiate them). Each leg still reports
//! its own DTMF, speech and inactivity events and keeps recording.

use super::session::{Relay, RtpSession};
use std::sync::{Arc, Weak};

/// A live bridge; [`Bridge::disconnect`] (or dropping it) ends the relay.
pub struct Bridge {
    a: Weak<super::session::Inner>,
    b: Weak<super::session::Inner>,
}

impl Bridge {
    /// Connects two legs, stopping any prompt playing on either.
    pub fn connect(a: &RtpSession, b: &RtpSession) -> Bridge {
        a.stop_playback();
        b.stop_playback();
        let (ia, ib) = (a.inner(), b.inner());
        ia.set_relay(Some(Relay {
            to: Arc::downgrade(ib),
            map: None,
        }));
        ib.set_relay(Some(Relay {
            to: Arc::downgrade(ia),
            map: None,
        }));
        Bridge {
            a: Arc::downgrade(ia),
            b: Arc::downgrade(ib),
        }
    }

    pub fn disconnect(self) {}
}

impl Drop for Bridge {
    /// Ends this bridge's relays only: a leg bridged elsewhere since (a
    /// transfer) keeps its new relay.
    fn drop(&mut self) {
        for (leg, other) in [(&self.a, &self.b), (&self.b, &self.a)] {
            if let Some(inner) = leg.upgrade() {
                inner.clear_relay_to(other);
            }
        }
    }
}
