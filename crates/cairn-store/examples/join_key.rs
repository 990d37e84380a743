//! Throwaway: load one key from several stores and check joins.
use cairn_core::aae::state_hash;
use cairn_core::{ObjectKey, Store};
use cairn_ring::Partitioning;
use cairn_store::{Options, RedbStore};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (bucket, key) = (&args[0], &args[1]);
    let p = Partitioning::new(64)
        .unwrap()
        .partition_of(bucket.as_bytes(), key.as_bytes());
    let k = ObjectKey {
        partition: p,
        bucket: bucket.as_bytes().into(),
        key: key.as_bytes().into(),
    };
    let mut vals = vec![];
    for path in &args[2..] {
        let store = RedbStore::open(path, Options::new(12345)).unwrap();
        let v = store.object(&k).unwrap().unwrap();
        println!("{path}: {:016x}", state_hash(&v));
        vals.push(v);
    }
    for i in 0..vals.len() {
        for j in 0..vals.len() {
            if i == j {
                continue;
            }
            let mut a = vals[i].clone();
            cairn_core::join_into(&mut a, &vals[j]);
            println!(
                "{i} <- {j}: {:016x} (changed: {})",
                state_hash(&a),
                a != vals[i]
            );
        }
    }
    let all = cairn_core::join_values(vals.iter()).unwrap();
    println!("join all {:016x}", state_hash(&all));
    let s = format!("{:?}", all);
    for v in &vals {
        let t = format!("{:?}", v);
        let d = s.chars().zip(t.chars()).position(|(a, b)| a != b);
        println!("first diff at {:?}", d);
        if let Some(d) = d {
            println!(
                "  join: {}\n  this: {}",
                &s[d.saturating_sub(200)..(d + 200).min(s.len())],
                &t[d.saturating_sub(200)..(d + 200).min(t.len())]
            );
        }
    }
}
