//! The HTTP API's JSON shapes: operations in, values and contexts out.
//!
//! Every conversion is checked: a body that is not the documented shape is a
//! [`JsonError`] naming what is wrong, never a panic.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use cairn_crdt::{
    CausalContext, CounterOp, FieldOp, FieldType, FieldValue, FlagOp, MapOp, MvRegOp, Op,
    RegisterOp, SetOp, Value, ValueType,
};
use serde_json::{json, Map as JsonMap, Value as Json};

/// A body or parameter that is not what the API takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct JsonError(pub String);

fn bad(msg: impl Into<String>) -> JsonError {
    JsonError(msg.into())
}

/// Most nested map levels a JSON update may have (the type's own bound).
const DEPTH_MAX: usize = cairn_crdt::limits::MAP_DEPTH_MAX;

/// Parses a type name.
pub fn value_type(name: &str) -> Result<ValueType, JsonError> {
    ValueType::ALL
        .iter()
        .copied()
        .find(|t| t.name() == name)
        .ok_or_else(|| {
            let names: Vec<&str> = ValueType::ALL.iter().map(|t| t.name()).collect();
            bad(format!(
                "unknown type {name:?}; expected one of {}",
                names.join(", ")
            ))
        })
}

/// An opaque context string: base64url of the `cairn-proto` context encoding.
pub fn encode_context(ctx: &CausalContext) -> String {
    URL_SAFE_NO_PAD.encode(cairn_proto::encode_context(ctx))
}

/// Parses a context string from a read.
pub fn decode_context(text: &str) -> Result<CausalContext, JsonError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| bad("context is not base64url; pass back the context a read returned"))?;
    cairn_proto::decode_context(&bytes).map_err(|e| bad(format!("context does not decode: {e}")))
}

/// The context to show with a value (`null` for types without one).
pub fn value_context(value: &Value) -> Json {
    let ctx = match value {
        Value::Set(s) => s.context(),
        Value::Map(m) => m.context(),
        Value::Flag(f) => f.context(),
        Value::MvReg(m) => m.context(),
        Value::Counter(_) | Value::Register(_) => return Json::Null,
    };
    Json::String(encode_context(ctx))
}

fn text(bytes: &[u8]) -> Json {
    Json::String(String::from_utf8_lossy(bytes).into_owned())
}

/// A value as the API shows it. Counters that overflow i64 are an error.
pub fn value_json(value: &Value) -> Result<Json, JsonError> {
    Ok(match value {
        Value::Counter(c) => json!(c.value().map_err(|e| bad(e.to_string()))?),
        Value::Set(s) => Json::Array(s.members().map(text).collect()),
        Value::Map(m) => map_json(&m.value().map_err(|e| bad(e.to_string()))?),
        Value::Register(r) => r.value().map(text).unwrap_or(Json::Null),
        Value::Flag(f) => Json::Bool(f.value()),
        Value::MvReg(m) => Json::Array(m.values().map(text).collect()),
    })
}

fn field_type_name(t: FieldType) -> String {
    t.to_string()
}

fn map_json(fields: &BTreeMap<cairn_crdt::FieldKey, FieldValue>) -> Json {
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    for key in fields.keys() {
        *names.entry(&key.name).or_default() += 1;
    }
    let mut out = JsonMap::new();
    for (key, field) in fields {
        // A name held by fields of several types shows each as `name:type`.
        let shown = if names.get(&*key.name).copied().unwrap_or(0) > 1 {
            format!("{}:{}", key.name, key.ty)
        } else {
            key.name.to_string()
        };
        out.insert(
            shown,
            json!({"type": field_type_name(key.ty), "value": field_json(field)}),
        );
    }
    Json::Object(out)
}

fn field_json(field: &FieldValue) -> Json {
    match field {
        FieldValue::Counter(n) => json!(n),
        FieldValue::Set(members) => Json::Array(members.iter().map(|m| text(m)).collect()),
        FieldValue::Register(v) => text(v),
        FieldValue::Flag(b) => Json::Bool(*b),
        FieldValue::Map(fields) => map_json(fields),
    }
}

/// The operations one update body asks for, in order (a set update that both adds and
/// removes is two operations).
pub fn parse_ops(
    ty: ValueType,
    op: &Json,
    context: Option<CausalContext>,
) -> Result<Vec<Op>, JsonError> {
    match ty {
        ValueType::Counter => Ok(vec![Op::Counter(CounterOp::Increment(increment(op)?))]),
        ValueType::Set => set_ops(op, context),
        ValueType::Map => Ok(vec![Op::Map(MapOp {
            updates: map_updates(op, 1)?,
            context,
        })]),
        ValueType::Register => Ok(vec![Op::Register(RegisterOp::Assign(assign(op)?))]),
        ValueType::Flag => Ok(vec![Op::Flag(flag(op)?)]),
        ValueType::MvReg => Ok(vec![Op::MvReg(MvRegOp::Write {
            value: assign(op)?,
            context,
        })]),
    }
}

fn object<'a>(op: &'a Json, what: &str) -> Result<&'a JsonMap<String, Json>, JsonError> {
    op.as_object()
        .ok_or_else(|| bad(format!("{what} op must be a JSON object")))
}

fn only_keys(obj: &JsonMap<String, Json>, allowed: &[&str], what: &str) -> Result<(), JsonError> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(bad(format!(
            "{what} op has unknown field {k:?}; expected {}",
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

fn increment(op: &Json) -> Result<i64, JsonError> {
    let obj = object(op, "counter")?;
    only_keys(obj, &["increment"], "counter")?;
    obj.get("increment")
        .and_then(Json::as_i64)
        .ok_or_else(|| bad("counter op is {\"increment\": <64-bit integer>}"))
}

fn strings(value: Option<&Json>, what: &str) -> Result<Vec<Vec<u8>>, JsonError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let items = value
        .as_array()
        .ok_or_else(|| bad(format!("{what} must be an array of strings")))?;
    if items.len() > cairn_crdt::limits::OP_ITEMS_MAX {
        return Err(bad(format!(
            "{what} has {} items; at most {} per request",
            items.len(),
            cairn_crdt::limits::OP_ITEMS_MAX
        )));
    }
    items
        .iter()
        .map(|i| {
            i.as_str()
                .map(|s| s.as_bytes().to_vec())
                .ok_or_else(|| bad(format!("{what} must be an array of strings")))
        })
        .collect()
}

fn set_ops(op: &Json, context: Option<CausalContext>) -> Result<Vec<Op>, JsonError> {
    let obj = object(op, "set")?;
    only_keys(obj, &["add", "remove"], "set")?;
    let add = strings(obj.get("add"), "add")?;
    let remove = strings(obj.get("remove"), "remove")?;
    if add.is_empty() && remove.is_empty() {
        return Err(bad(
            "set op is {\"add\": [..], \"remove\": [..]} with at least one member",
        ));
    }
    let mut ops = Vec::new();
    if !add.is_empty() {
        ops.push(Op::Set(SetOp::Add(add)));
    }
    if !remove.is_empty() {
        ops.push(Op::Set(SetOp::Remove {
            members: remove,
            context,
        }));
    }
    Ok(ops)
}

fn assign(op: &Json) -> Result<Vec<u8>, JsonError> {
    let obj = object(op, "register")?;
    only_keys(obj, &["assign"], "register")?;
    obj.get("assign")
        .and_then(Json::as_str)
        .map(|s| s.as_bytes().to_vec())
        .ok_or_else(|| bad("op is {\"assign\": <string>}"))
}

fn flag(op: &Json) -> Result<FlagOp, JsonError> {
    match op.as_str() {
        Some("enable") => Ok(FlagOp::Enable),
        Some("disable") => Ok(FlagOp::Disable),
        _ => Err(bad("flag op is \"enable\" or \"disable\"")),
    }
}

fn field_type(name: &str) -> Result<FieldType, JsonError> {
    FieldType::ALL
        .into_iter()
        .find(|t| t.to_string() == name)
        .ok_or_else(|| {
            bad(format!(
                "unknown map field type {name:?}; expected counter, set, register, flag or map"
            ))
        })
}

/// `{"update": {FIELD: {"type": T, "op": OP}}, "remove": [FIELD]}` at nesting `depth`.
fn map_updates(op: &Json, depth: usize) -> Result<Vec<(String, FieldOp)>, JsonError> {
    if depth > DEPTH_MAX {
        return Err(bad(format!("maps nest at most {DEPTH_MAX} levels")));
    }
    let obj = object(op, "map")?;
    only_keys(obj, &["update", "remove"], "map")?;
    let mut out = Vec::new();
    if let Some(update) = obj.get("update") {
        let fields = update
            .as_object()
            .ok_or_else(|| bad("map update must be an object of fields"))?;
        for (name, spec) in fields {
            field_ops(name, spec, depth, &mut out)?;
        }
    }
    if let Some(remove) = obj.get("remove") {
        for name in strings(Some(remove), "remove")? {
            let name = String::from_utf8(name).map_err(|_| bad("field names are strings"))?;
            // Removing by name removes the field whatever its type.
            for ty in FieldType::ALL {
                out.push((name.clone(), FieldOp::Remove(ty)));
            }
        }
    }
    if out.is_empty() {
        return Err(bad("map op updates or removes at least one field"));
    }
    Ok(out)
}

fn field_ops(
    name: &str,
    spec: &Json,
    depth: usize,
    out: &mut Vec<(String, FieldOp)>,
) -> Result<(), JsonError> {
    let spec = object(spec, "map field")?;
    only_keys(spec, &["type", "op"], "map field")?;
    let ty = spec
        .get("type")
        .and_then(Json::as_str)
        .ok_or_else(|| bad(format!("field {name:?} needs a \"type\"")))?;
    let op = spec
        .get("op")
        .ok_or_else(|| bad(format!("field {name:?} needs an \"op\"")))?;
    let name = name.to_owned();
    match field_type(ty)? {
        FieldType::Counter => out.push((name, FieldOp::Increment(increment(op)?))),
        FieldType::Set => {
            let obj = object(op, "set")?;
            only_keys(obj, &["add", "remove"], "set")?;
            let add = strings(obj.get("add"), "add")?;
            let remove = strings(obj.get("remove"), "remove")?;
            if !add.is_empty() {
                out.push((name.clone(), FieldOp::Add(add)));
            }
            if !remove.is_empty() {
                out.push((name, FieldOp::RemoveMembers(remove)));
            }
        }
        FieldType::Register => out.push((name, FieldOp::Assign(assign(op)?))),
        FieldType::Flag => out.push((
            name,
            match flag(op)? {
                FlagOp::Enable => FieldOp::Enable,
                FlagOp::Disable => FieldOp::Disable,
            },
        )),
        FieldType::Map => out.push((name, FieldOp::Update(map_updates(op, depth + 1)?))),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_crdt::{Actor, Replica, Timestamp};

    fn at() -> Replica {
        Replica {
            actor: Actor(1),
            now: Timestamp::ZERO,
        }
    }

    fn apply(ty: ValueType, op: Json) -> Value {
        let mut v = Value::empty(ty);
        for op in parse_ops(ty, &op, None).unwrap() {
            v.apply(&op, at()).unwrap();
        }
        v
    }

    #[test]
    fn every_type_round_trips_through_json() {
        let cases = [
            (ValueType::Counter, json!({"increment": 5}), json!(5)),
            (
                ValueType::Set,
                json!({"add": ["b", "a"]}),
                json!(["a", "b"]),
            ),
            (ValueType::Register, json!({"assign": "x"}), json!("x")),
            (ValueType::Flag, json!("enable"), json!(true)),
            (ValueType::MvReg, json!({"assign": "v"}), json!(["v"])),
            (
                ValueType::Map,
                json!({"update": {"views": {"type": "counter", "op": {"increment": 2}},
                                  "tags": {"type": "set", "op": {"add": ["rust"]}},
                                  "inner": {"type": "map", "op": {"update": {"on": {"type": "flag", "op": "enable"}}}}}}),
                json!({"views": {"type": "counter", "value": 2},
                       "tags": {"type": "set", "value": ["rust"]},
                       "inner": {"type": "map", "value": {"on": {"type": "flag", "value": true}}}}),
            ),
        ];
        for (ty, op, want) in cases {
            assert_eq!(value_json(&apply(ty, op)).unwrap(), want, "{ty}");
        }
    }

    #[test]
    fn contexts_round_trip_and_garbage_is_refused() {
        let v = apply(ValueType::Set, json!({"add": ["a"]}));
        let Json::String(text) = value_context(&v) else {
            panic!("a set has a context")
        };
        let Value::Set(s) = &v else { unreachable!() };
        assert_eq!(&decode_context(&text).unwrap(), s.context());
        assert!(decode_context("!!").is_err());
        assert!(decode_context("AAAA").is_err());
        assert_eq!(value_context(&Value::empty(ValueType::Counter)), Json::Null);
    }

    #[test]
    fn malformed_ops_are_named_errors() {
        for (ty, op) in [
            (ValueType::Counter, json!({"increment": "5"})),
            (ValueType::Counter, json!({"increment": 1, "extra": 1})),
            (ValueType::Counter, json!(7)),
            (ValueType::Set, json!({"add": [1]})),
            (ValueType::Set, json!({})),
            (ValueType::Flag, json!("maybe")),
            (ValueType::Register, json!({"assign": null})),
            (
                ValueType::Map,
                json!({"update": {"f": {"type": "bogus", "op": {}}}}),
            ),
            (
                ValueType::Map,
                json!({"update": {"f": {"type": "counter"}}}),
            ),
        ] {
            assert!(parse_ops(ty, &op, None).is_err(), "{ty} {op}");
        }
        assert!(value_type("bogus").is_err());
        // Nesting deeper than the type allows is refused before it reaches the CRDT.
        let mut op = json!({"update": {"leaf": {"type": "counter", "op": {"increment": 1}}}});
        for _ in 0..DEPTH_MAX + 1 {
            op = json!({"update": {"m": {"type": "map", "op": op}}});
        }
        assert!(parse_ops(ValueType::Map, &op, None).is_err());
    }
}
