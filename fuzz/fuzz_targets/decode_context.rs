//! Any bytes given to `decode_context` give a context or a typed error, never a panic, and
//! a context re-encodes to exactly the bytes it came from (the encoding is canonical).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ctx) = cairn_proto::decode_context(data) {
        let bytes = cairn_proto::encode_context(&ctx);
        assert_eq!(
            bytes, data,
            "decoded {ctx:?} does not re-encode to its bytes"
        );
        assert_eq!(cairn_proto::decode_context(&bytes).as_ref(), Ok(&ctx));
    }
});
