//! Media primitives for calls: G.711, RTP and RTCP, a jitter buffer,
//! RFC 4733 and in-band DTMF, WAV prompts and recordings, speech/silence
//! detection.
//!
//! The primitives are pure (no sockets, no clock, no tasks; only `wav`
//! touches files). `session` puts them on real sockets and a clock: one
//! call leg's RTP/RTCP, playback, recording and events; `bridge` joins two
//! legs; `prompt` loads and caches prompts. The SIP call legs drive these.

pub mod bridge;
pub mod dtmf;
pub mod energy;
pub mod g711;
pub mod jitter;
pub mod prompt;
pub mod rtcp;
pub mod rtp;
pub mod session;
pub mod wav;
