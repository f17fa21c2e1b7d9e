//! Media primitives for calls: G.711, RTP and RTCP, a jitter buffer,
//! RFC 4733 and in-band DTMF, WAV prompts and recordings, speech/silence
//! detection.
//!
//! Everything here is pure (no sockets, no clock, no tasks); only `wav`
//! touches files. The SIP endpoint and call legs drive these types.

pub mod dtmf;
pub mod energy;
pub mod g711;
pub mod jitter;
pub mod rtcp;
pub mod rtp;
pub mod wav;
