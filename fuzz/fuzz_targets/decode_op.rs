//! Any bytes given to `decode_op` give an operation or a typed error, never a panic, and an
//! operation re-encodes to exactly the bytes it came from (the encoding is canonical).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(op) = cairn_proto::decode_op(data) {
        let bytes = cairn_proto::encode_op(&op);
        assert_eq!(
            bytes, data,
            "decoded {op:?} does not re-encode to its bytes"
        );
        assert_eq!(cairn_proto::decode_op(&bytes).as_ref(), Ok(&op));
    }
});
