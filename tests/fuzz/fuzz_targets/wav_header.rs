//! The WAV reader (`switchboard_parsers::wav::decode`, what `load` calls on a
//! file's bytes) on arbitrary bytes: prompts can be uploaded, so the header
//! and chunks are outside input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_parsers::wav;

fuzz_target!(|data: &[u8]| {
    if let Ok(audio) = wav::decode(data) {
        let _ = audio.duration_secs();
    }
});
