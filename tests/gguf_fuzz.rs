//! Property test: random corruption of a valid GGUF never panics the reader. The parse may
//! succeed or fail; if it succeeds, every tensor view must lie inside the buffer.

mod gguf_common;

use gguf_common::{every_tensor_type, every_value_type, expected_bytes, pattern};
use hybrid_run::gguf::{GgufFile, GgufWriter};
use proptest::prelude::*;

fn valid_file() -> Vec<u8> {
    let mut w = GgufWriter::new(Vec::new());
    for (k, v) in every_value_type() {
        w.add_kv(&k, v);
    }
    // A few small tensors keep the file short so that mutations hit the header often.
    let tensors: Vec<_> = every_tensor_type().into_iter().take(4).collect();
    for (name, ty, dims) in &tensors {
        w.add_tensor(name, *ty, dims).unwrap();
    }
    w.write_header().unwrap();
    for (i, (name, ty, dims)) in tensors.iter().enumerate() {
        w.write_tensor_data(name, &pattern(expected_bytes(*ty, dims) as usize, i as u64))
            .unwrap();
    }
    w.finish().unwrap()
}

#[derive(Debug, Clone)]
enum Mutation {
    /// Overwrite one byte (position as a fraction of the length).
    Byte(f64, u8),
    /// Overwrite 8 bytes with an interesting u64.
    U64(f64, u64),
    /// Overwrite 4 bytes with an interesting u32.
    U32(f64, u32),
    Truncate(f64),
    Delete(f64, usize),
    Insert(f64, Vec<u8>),
}

fn interesting_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(u64::MAX),
        Just(u64::MAX / 2),
        Just(i64::MAX as u64 + 1),
        Just(1 << 32),
        Just(1 << 40),
        0u64..100_000,
        any::<u64>(),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let pos = 0.0f64..1.0;
    prop_oneof![
        (pos.clone(), any::<u8>()).prop_map(|(p, b)| Mutation::Byte(p, b)),
        (pos.clone(), interesting_u64()).prop_map(|(p, v)| Mutation::U64(p, v)),
        (
            pos.clone(),
            prop_oneof![Just(0u32), Just(9), Just(13), Just(u32::MAX), 0u32..40]
        )
            .prop_map(|(p, v)| Mutation::U32(p, v)),
        pos.clone().prop_map(Mutation::Truncate),
        (pos.clone(), 1usize..16).prop_map(|(p, n)| Mutation::Delete(p, n)),
        (pos, proptest::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(p, v)| Mutation::Insert(p, v)),
    ]
}

fn apply(b: &mut Vec<u8>, m: &Mutation) {
    let at = |p: f64, len: usize| ((p * len as f64) as usize).min(len.saturating_sub(1));
    match m {
        Mutation::Byte(p, v) => {
            if !b.is_empty() {
                let i = at(*p, b.len());
                b[i] = *v;
            }
        }
        Mutation::U64(p, v) => {
            if b.len() >= 8 {
                let i = at(*p, b.len() - 7);
                b[i..i + 8].copy_from_slice(&v.to_le_bytes());
            }
        }
        Mutation::U32(p, v) => {
            if b.len() >= 4 {
                let i = at(*p, b.len() - 3);
                b[i..i + 4].copy_from_slice(&v.to_le_bytes());
            }
        }
        Mutation::Truncate(p) => b.truncate(at(*p, b.len() + 1)),
        Mutation::Delete(p, n) => {
            let i = at(*p, b.len());
            let end = (i + n).min(b.len());
            b.drain(i..end);
        }
        Mutation::Insert(p, v) => {
            let i = at(*p, b.len() + 1).min(b.len());
            b.splice(i..i, v.iter().copied());
        }
    }
}

fn exercise(b: Vec<u8>) {
    let len = b.len() as u64;
    if let Ok(f) = GgufFile::from_bytes(b) {
        for (k, _) in f.metadata() {
            let _ = (
                f.get_u64(k),
                f.get_u32(k),
                f.get_f32(k),
                f.get_str(k),
                f.get_bool(k),
            );
        }
        for t in f.tensors() {
            let v = f.tensor(&t.name).expect("a parsed tensor has a view");
            assert_eq!(v.data.len() as u64, t.n_bytes);
            assert!(t.offset + t.n_bytes <= len);
            let _ = (
                t.n_elements(),
                t.rows(),
                t.row_len(),
                v.row(0),
                v.row(u64::MAX),
            );
        }
        let _ = format!("{f:?}");
    }
}

proptest! {
    // PROPTEST_CASES=200000 for a long run.
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(3000)
    ))]

    #[test]
    fn random_corruption_of_a_valid_file_never_panics(muts in proptest::collection::vec(mutation(), 1..6)) {
        let mut b = valid_file();
        for m in &muts {
            apply(&mut b, m);
        }
        exercise(b);
    }

    #[test]
    fn random_bytes_after_a_valid_header_never_panic(
        version in prop_oneof![Just(2u32), Just(3u32)],
        n_tensors in 0u64..4,
        n_kv in 0u64..6,
        rest in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut b = b"GGUF".to_vec();
        b.extend_from_slice(&version.to_le_bytes());
        b.extend_from_slice(&n_tensors.to_le_bytes());
        b.extend_from_slice(&n_kv.to_le_bytes());
        b.extend_from_slice(&rest);
        exercise(b);
    }
}
