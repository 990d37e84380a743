//! Any bytes given to `cairn_net::frame::decode` give a frame or a typed error, never a
//! panic; a decoded frame re-encodes to exactly the bytes it took.

#![no_main]

use libfuzzer_sys::fuzz_target;

/// A small bound so the fuzzer reaches the too-large branch often.
const MAX: usize = 4096;

fuzz_target!(|data: &[u8]| {
    if let Ok((frame, used)) = cairn_net::frame::decode(data, MAX) {
        let bytes = cairn_net::frame::encode(frame.kind, frame.payload, MAX).expect("fits");
        assert_eq!(&bytes[..], &data[..used]);
    }
});
