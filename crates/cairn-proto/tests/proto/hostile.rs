//! Hostile and damaged input: every case is a typed error (or, for bit flips, possibly a
//! value whose encoding is exactly the flipped bytes), never a panic.

use proptest::prelude::*;
use proptest::sample::Index;

use cairn_crdt::limits::MAP_DEPTH_MAX;
use cairn_crdt::{
    Actor, CausalContext, Counter, CounterOp, Crdt, Dot, FieldOp, FieldType, Flag, FlagOp, Map,
    MapOp, MvReg, MvRegOp, Op, Register, RegisterOp, Replica, Set, SetOp, Timestamp, Value,
};
use cairn_proto::{
    decode_context, decode_op, decode_value, encode_context, encode_op, encode_value, DecodeError,
    Kind, FORMAT_VERSION,
};

fn at(actor: u64) -> Replica {
    Replica {
        actor: Actor(actor),
        now: Timestamp {
            wall_ms: 1_700_000_000_000 + actor,
            logical: 0,
        },
    }
}

fn set_with_deferred_remove() -> Set {
    let mut ahead = Set::default();
    for (i, m) in ["apple", "apricot", "banana"].iter().enumerate() {
        ahead
            .apply(&SetOp::Add(vec![m.as_bytes().to_vec()]), at(i as u64 + 1))
            .unwrap();
    }
    let mut behind = Set::default();
    behind
        .apply(&SetOp::Add(vec![b"cherry".to_vec()]), at(7))
        .unwrap();
    let read = Some(ahead.context().clone());
    let op = SetOp::Remove {
        members: vec![b"apple".to_vec()],
        context: read,
    };
    behind.apply(&op, at(7)).unwrap();
    assert_eq!(behind.deferred().count(), 1);
    behind
}

fn nested_update(leaf: FieldOp) -> FieldOp {
    FieldOp::Update(vec![(
        "inner".into(),
        FieldOp::Update(vec![("leaf".into(), leaf)]),
    )])
}

fn map_with_everything() -> Map {
    let mut ahead = Map::default();
    let updates = vec![
        ("views".to_string(), FieldOp::Increment(-3)),
        (
            "tags".to_string(),
            FieldOp::Add(vec![b"x".to_vec(), b"y".to_vec()]),
        ),
        ("name".to_string(), FieldOp::Assign(b"cairn".to_vec())),
        ("on".to_string(), FieldOp::Enable),
        (
            "deep".to_string(),
            nested_update(FieldOp::Add(vec![b"z".to_vec()])),
        ),
    ];
    ahead
        .apply(
            &MapOp {
                updates,
                context: None,
            },
            at(1),
        )
        .unwrap();
    let mut behind = Map::default();
    let mine = vec![("views".to_string(), FieldOp::Increment(9))];
    behind
        .apply(
            &MapOp {
                updates: mine,
                context: None,
            },
            at(2),
        )
        .unwrap();
    let removes = vec![
        (
            "tags".to_string(),
            FieldOp::RemoveMembers(vec![b"x".to_vec()]),
        ),
        (
            "deep".to_string(),
            nested_update(FieldOp::Remove(FieldType::Set)),
        ),
    ];
    let read = Some(ahead.context().clone());
    behind
        .apply(
            &MapOp {
                updates: removes,
                context: read,
            },
            at(2),
        )
        .unwrap();
    assert!(behind.deferred().count() >= 2);
    behind
}

fn context_with_cloud() -> CausalContext {
    let d = |a, c| Dot::new(Actor(a), c);
    CausalContext::from_dots([d(1, 1), d(1, 2), d(1, 5), d(300, 1), d(1 << 40, 9)])
}

pub(crate) fn sample_values() -> Vec<Value> {
    let mut counter = Counter::default();
    counter
        .apply(&CounterOp::Increment(i64::MAX), at(1))
        .unwrap();
    counter.apply(&CounterOp::Increment(-7), at(2)).unwrap();
    let mut register = Register::default();
    register
        .apply(&RegisterOp::Assign(b"v".to_vec()), at(3))
        .unwrap();
    let mut flag = Flag::default();
    flag.apply(&FlagOp::Enable, at(1)).unwrap();
    let (mut a, mut b) = (MvReg::default(), MvReg::default());
    a.apply(
        &MvRegOp::Write {
            value: b"left".to_vec(),
            context: None,
        },
        at(1),
    )
    .unwrap();
    b.apply(
        &MvRegOp::Write {
            value: b"right".to_vec(),
            context: None,
        },
        at(2),
    )
    .unwrap();
    a.merge(&b);
    vec![
        Value::Counter(counter),
        Value::Set(set_with_deferred_remove()),
        Value::Map(map_with_everything()),
        Value::Register(register),
        Value::Flag(flag),
        Value::MvReg(a),
    ]
}

pub(crate) fn sample_ops() -> Vec<Op> {
    let ctx = Some(context_with_cloud());
    vec![
        Op::Counter(CounterOp::Increment(-42)),
        Op::Set(SetOp::Remove {
            members: vec![b"a".to_vec(), vec![]],
            context: ctx.clone(),
        }),
        Op::Map(MapOp {
            updates: vec![
                ("a".into(), nested_update(FieldOp::Remove(FieldType::Flag))),
                ("b".into(), FieldOp::Update(vec![])),
                ("c".into(), FieldOp::Assign(b"x".to_vec())),
            ],
            context: ctx.clone(),
        }),
        Op::Register(RegisterOp::Assign(b"value".to_vec())),
        Op::Flag(FlagOp::Disable),
        Op::MvReg(MvRegOp::Write {
            value: b"v".to_vec(),
            context: ctx,
        }),
    ]
}

/// Every sample encoding, with the decoder that reads it.
fn samples() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = sample_values().iter().map(encode_value).collect();
    out.extend(sample_ops().iter().map(encode_op));
    out.push(encode_context(&context_with_cloud()));
    out
}

/// Runs every decoder; any success must re-encode to exactly the input.
pub(crate) fn decode_any(bytes: &[u8]) -> bool {
    let mut ok = false;
    if let Ok(v) = decode_value(bytes) {
        assert_eq!(encode_value(&v), bytes, "value {v:?} is not canonical");
        ok = true;
    }
    if let Ok(op) = decode_op(bytes) {
        assert_eq!(encode_op(&op), bytes, "op {op:?} is not canonical");
        ok = true;
    }
    if let Ok(ctx) = decode_context(bytes) {
        assert_eq!(
            encode_context(&ctx),
            bytes,
            "context {ctx:?} is not canonical"
        );
        ok = true;
    }
    ok
}

#[test]
fn samples_decode() {
    for v in sample_values() {
        assert_eq!(decode_value(&encode_value(&v)), Ok(v));
    }
    for op in sample_ops() {
        assert_eq!(decode_op(&encode_op(&op)), Ok(op));
    }
    assert!(decode_any(&encode_context(&context_with_cloud())));
}

#[test]
fn empty_input() {
    assert_eq!(decode_value(&[]), Err(DecodeError::Empty));
    assert_eq!(decode_op(&[]), Err(DecodeError::Empty));
    assert_eq!(decode_context(&[]), Err(DecodeError::Empty));
}

#[test]
fn unknown_version() {
    let mut bytes = encode_value(&Value::Counter(Counter::default()));
    for version in [0, 2, 0x80, 0xff] {
        bytes[0] = version;
        let expected = DecodeError::UnknownVersion {
            found: version,
            supported: 1,
        };
        assert_eq!(decode_value(&bytes), Err(expected.clone()));
        assert_eq!(decode_op(&bytes).unwrap_err(), expected);
        assert_eq!(decode_context(&[version]).unwrap_err(), expected);
    }
}

#[test]
fn version_without_tag_is_malformed() {
    assert!(matches!(
        decode_value(&[FORMAT_VERSION]),
        Err(DecodeError::Malformed(_))
    ));
}

#[test]
fn wrong_kind() {
    let value = encode_value(&Value::Flag(Flag::default()));
    let op = encode_op(&Op::Flag(FlagOp::Enable));
    let ctx = encode_context(&CausalContext::new());
    let wrong = |expected, found| DecodeError::WrongKind { expected, found };
    assert_eq!(decode_op(&value).unwrap_err(), wrong(Kind::Op, 5));
    assert_eq!(decode_context(&value).unwrap_err(), wrong(Kind::Context, 5));
    assert_eq!(decode_value(&op).unwrap_err(), wrong(Kind::Value, 20));
    assert_eq!(decode_context(&op).unwrap_err(), wrong(Kind::Context, 20));
    assert_eq!(decode_value(&ctx).unwrap_err(), wrong(Kind::Value, 32));
    assert_eq!(decode_op(&ctx).unwrap_err(), wrong(Kind::Op, 32));
    for tag in [0, 7, 15, 22, 31, 33, 255] {
        assert_eq!(
            decode_value(&[FORMAT_VERSION, tag, 0, 0]).unwrap_err(),
            wrong(Kind::Value, tag)
        );
        assert_eq!(
            decode_op(&[FORMAT_VERSION, tag, 0, 0]).unwrap_err(),
            wrong(Kind::Op, tag)
        );
    }
    let shown = decode_op(&value).unwrap_err().to_string();
    assert_eq!(
        shown,
        "wrong kind: expected an operation, found tag 5 (a value)"
    );
}

#[test]
fn truncated_at_every_byte() {
    for bytes in samples() {
        for len in 0..bytes.len() {
            assert!(
                !decode_any(&bytes[..len]),
                "prefix {len} of {bytes:02x?} decoded"
            );
        }
    }
}

#[test]
fn bit_flips_never_panic() {
    for bytes in samples() {
        for i in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[i / 8] ^= 1 << (i % 8);
            decode_any(&flipped);
        }
    }
}

#[test]
fn trailing_bytes() {
    for mut bytes in samples() {
        bytes.extend([0, 0, 0]);
        let errors = [
            decode_value(&bytes).err(),
            decode_op(&bytes).err(),
            decode_context(&bytes).err(),
        ];
        assert!(
            errors.contains(&Some(DecodeError::TrailingBytes { count: 3 })),
            "{errors:?}"
        );
        assert!(!decode_any(&bytes));
    }
}

#[test]
fn overlong_varint() {
    // A counter with no entries, its length (0) written in two bytes, and no floors.
    let bytes = [FORMAT_VERSION, 1, 0x80, 0x00, 0x00];
    assert_eq!(
        decode_value(&bytes),
        Err(DecodeError::Malformed(
            postcard::Error::DeserializeBadVarint
        ))
    );
    assert_eq!(
        decode_value(&[FORMAT_VERSION, 1, 0x00, 0x00]),
        Ok(Value::Counter(Counter::default()))
    );
}

#[test]
fn huge_claimed_lengths_fail_fast() {
    // A counter claiming 2^63 entries, and a set claiming a 2^62-byte member.
    let huge = [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01];
    let mut counter = vec![FORMAT_VERSION, 1];
    counter.extend(huge);
    assert!(matches!(
        decode_value(&counter),
        Err(DecodeError::Malformed(_))
    ));
    let mut set = vec![FORMAT_VERSION, 2, 0, 0, 1, 1, 1, 0];
    set.extend([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40]);
    assert!(matches!(decode_value(&set), Err(DecodeError::Malformed(_))));
}

#[test]
fn invariant_breaks_are_invalid() {
    // Context: vv [(1, 2)], cloud [(1, 3)] -- the cloud dot should have been folded in.
    let ctx = [FORMAT_VERSION, 32, 1, 1, 2, 1, 1, 3];
    assert!(matches!(decode_context(&ctx), Err(DecodeError::Invalid(_))));
    // Set: empty context, actor 1, member "a" with dot (1, 1) outside the context.
    let set = [FORMAT_VERSION, 2, 0, 0, 1, 1, 1, 0, 1, b'a', 1, 4, 0];
    assert!(matches!(decode_value(&set), Err(DecodeError::Invalid(_))));
    // The same with the dot in the context decodes.
    let ok = [FORMAT_VERSION, 2, 1, 1, 1, 0, 1, 1, 1, 0, 1, b'a', 1, 4, 0];
    assert!(matches!(decode_value(&ok), Ok(Value::Set(s)) if s.contains(b"a")));
    // One dot code whose counter step does not fit a u64.
    let mut wide = ok[..13].to_vec();
    wide.extend([0xff; 18]);
    wide.extend([0x03, 0]);
    assert!(
        matches!(decode_value(&wide), Err(DecodeError::Invalid(_))),
        "{:?}",
        decode_value(&wide)
    );
}

fn varint(mut n: u64, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// A map value whose field records nest `levels` maps, each inside the previous one.
fn nested_map_value(levels: u64) -> Vec<u8> {
    let mut bytes = vec![FORMAT_VERSION, 3, 0, 0]; // empty context
    varint(levels, &mut bytes);
    for parent in 0..levels {
        varint(parent, &mut bytes);
        bytes.extend([1, b'm', 4]); // name "m", body: map
    }
    bytes.push(0); // no deferred removes
    bytes
}

/// A map operation whose update records nest `levels` updates.
fn nested_map_op(levels: u64) -> Vec<u8> {
    let mut bytes = vec![FORMAT_VERSION, 18];
    varint(levels, &mut bytes);
    for parent in 0..levels {
        varint(parent, &mut bytes);
        bytes.extend([1, b'm', 6]); // name "m", op: update
    }
    bytes.push(0); // no context
    bytes
}

#[test]
fn deeply_nested_map_is_refused() {
    let err = decode_value(&nested_map_value(10_000)).unwrap_err();
    assert!(matches!(err, DecodeError::Invalid(_)), "{err}");
    let err = decode_op(&nested_map_op(10_000)).unwrap_err();
    assert!(matches!(err, DecodeError::Invalid(_)), "{err}");
    // Exactly MAP_DEPTH_MAX nested updates is an operation a map can apply.
    let op = decode_op(&nested_map_op(MAP_DEPTH_MAX as u64)).unwrap();
    assert_eq!(encode_op(&op), nested_map_op(MAP_DEPTH_MAX as u64));
    assert!(decode_op(&nested_map_op(MAP_DEPTH_MAX as u64 + 1)).is_err());
}

#[test]
fn deepest_map_a_client_can_build_round_trips() {
    let mut op = FieldOp::Increment(1);
    for _ in 1..MAP_DEPTH_MAX {
        op = FieldOp::Update(vec![("m".into(), op)]);
    }
    let mut map = Map::default();
    map.apply(
        &MapOp {
            updates: vec![("top".into(), op)],
            context: None,
        },
        at(1),
    )
    .unwrap();
    let value = Value::Map(map);
    assert_eq!(decode_value(&encode_value(&value)), Ok(value));
}

proptest! {
    /// Random damage to encodings of generated values: a few bytes overwritten, or the
    /// body cut and spliced. Whatever decodes must be canonical.
    #[test]
    fn damaged_encodings_never_panic(
        v in crate::gen::value(),
        edits in prop::collection::vec((any::<Index>(), any::<u8>()), 1..4),
        cut in any::<Index>(),
    ) {
        let mut bytes = encode_value(&v);
        for (at, byte) in &edits {
            let i = at.index(bytes.len());
            bytes[i] = *byte;
        }
        decode_any(&bytes);
        let (head, tail) = bytes.split_at(cut.index(bytes.len()));
        decode_any(&[tail, head].concat());
    }
}

/// Writes the sample encodings as seed inputs for the decoders' fuzz targets, into
/// `$CAIRN_FUZZ_SEEDS/<target>/` (`scripts/fuzz.sh` runs it).
#[test]
#[ignore = "writes files; run by scripts/fuzz.sh"]
fn fuzz_seeds() {
    let Some(root) = std::env::var_os("CAIRN_FUZZ_SEEDS") else {
        return;
    };
    let root = std::path::PathBuf::from(root);
    let contexts = vec![
        encode_context(&context_with_cloud()),
        encode_context(&CausalContext::new()),
    ];
    let sets = [
        (
            "decode_value",
            sample_values().iter().map(encode_value).collect::<Vec<_>>(),
        ),
        ("decode_op", sample_ops().iter().map(encode_op).collect()),
        ("decode_context", contexts),
    ];
    for (target, seeds) in sets {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, bytes) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i}")), bytes).unwrap();
        }
    }
}
