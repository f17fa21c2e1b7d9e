//! The modules of Switchboard that parse network input, compiled from the
//! very same source files (`#[path]`) without the rest of the crate.
//!
//! Why not depend on `switchboard`: a libFuzzer build instruments every
//! crate with coverage counters in release mode, and the whole crate's
//! dependency tree (actix-web, sea-orm, sqlx, apalis, ...) took over 12
//! minutes to build that way on a 2-core machine. These modules need only
//! std, `thiserror` and rsipstack, so they build in a fraction of that.
//! They sit at the root here because they name each other as `super::`
//! (e.g. `jitter` uses `super::rtp`); a module that starts using `crate::`
//! paths of the main crate must be given a stand-in here, and the build of
//! this crate in `scripts/fuzz.sh` says so at once.

#[path = "../../../src/media/dtmf.rs"]
pub mod dtmf;
#[path = "../../../src/media/energy.rs"]
pub mod energy;
#[path = "../../../src/media/g711.rs"]
pub mod g711;
#[path = "../../../src/media/jitter.rs"]
pub mod jitter;
#[path = "../../../src/media/rtcp.rs"]
pub mod rtcp;
#[path = "../../../src/media/rtp.rs"]
pub mod rtp;
#[path = "../../../src/media/wav.rs"]
pub mod wav;

#[path = "../../../src/sip/sdp.rs"]
pub mod sdp;

#[path = "../../../src/sip/guard.rs"]
pub mod guard;
#[path = "../../../src/sip/sanity.rs"]
pub mod sanity;

/// Stand-in for the main crate's `crate::media` (`sdp` names
/// `crate::media::g711::Law`).
pub mod media {
    pub use crate::g711;
}
