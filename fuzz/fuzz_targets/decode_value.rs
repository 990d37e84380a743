//! Any bytes given to `decode_value` give a value or a typed error, never a panic, and a
//! value re-encodes to exactly the bytes it came from (the encoding is canonical).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = cairn_proto::decode_value(data) {
        let bytes = cairn_proto::encode_value(&value);
        assert_eq!(
            bytes, data,
            "decoded {value:?} does not re-encode to its bytes"
        );
        assert_eq!(cairn_proto::decode_value(&bytes).as_ref(), Ok(&value));
    }
});
