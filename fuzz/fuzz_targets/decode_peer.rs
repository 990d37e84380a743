//! Any bytes given to `cairn_core::wire::decode_peer` give a peer message or a typed
//! error, never a panic; a decoded message re-encodes to bytes that decode to it again.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((from, msg)) = cairn_core::wire::decode_peer(data) {
        let bytes = cairn_core::wire::encode_peer(from, &msg);
        assert_eq!(cairn_core::wire::decode_peer(&bytes), Ok((from, msg)));
    }
});
