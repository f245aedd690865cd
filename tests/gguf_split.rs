//! Split models: shards written with our writer, opened from any shard's path.

mod gguf_common;

use std::path::{Path, PathBuf};

use gguf_common::{expected_bytes, pattern};
use hybrid_run::gguf::split::shard_path;
use hybrid_run::gguf::{GgmlType, GgufError, GgufFile, GgufWriter, Value};

struct ShardSpec {
    no: u16,
    count: u16,
    tensors_total: i32,
    tensors: Vec<(&'static str, GgmlType, Vec<u64>)>,
}

fn write_shard(path: &Path, s: &ShardSpec) {
    let mut w = GgufWriter::create(path).unwrap();
    if s.no == 0 {
        w.add_kv("general.architecture", Value::String("qwen35".into()));
    }
    w.add_kv("shard.own", Value::U16(s.no));
    w.add_kv("split.no", Value::U16(s.no));
    w.add_kv("split.count", Value::U16(s.count));
    w.add_kv("split.tensors.count", Value::I32(s.tensors_total));
    for (name, ty, dims) in &s.tensors {
        w.add_tensor(name, *ty, dims).unwrap();
    }
    w.write_header().unwrap();
    for (name, ty, dims) in &s.tensors {
        w.write_tensor_data(name, &data_of(name, *ty, dims))
            .unwrap();
    }
    w.finish().unwrap();
}

fn data_of(name: &str, ty: GgmlType, dims: &[u64]) -> Vec<u8> {
    pattern(
        expected_bytes(ty, dims) as usize,
        name.len() as u64 * 31 + dims[0],
    )
}

fn specs() -> Vec<ShardSpec> {
    let t = |n: &'static str, ty: GgmlType, d: &[u64]| (n, ty, d.to_vec());
    vec![
        ShardSpec {
            no: 0,
            count: 3,
            tensors_total: 5,
            tensors: vec![
                t("token_embd.weight", GgmlType::Q4_K, &[512, 4]),
                t("blk.0.norm", GgmlType::F32, &[7]),
            ],
        },
        ShardSpec {
            no: 1,
            count: 3,
            tensors_total: 5,
            tensors: vec![
                t("blk.1.w", GgmlType::BF16, &[33, 3]),
                t("blk.1.q", GgmlType::Q8_0, &[64, 2]),
            ],
        },
        ShardSpec {
            no: 2,
            count: 3,
            tensors_total: 5,
            tensors: vec![t("output.weight", GgmlType::Q6_K, &[256, 5])],
        },
    ]
}

fn write_all(dir: &Path, specs: &[ShardSpec]) -> Vec<PathBuf> {
    let prefix = dir.join("Model-27B");
    specs
        .iter()
        .map(|s| {
            let p = shard_path(&prefix, u32::from(s.no) + 1, u32::from(s.count));
            write_shard(&p, s);
            p
        })
        .collect()
}

#[test]
fn three_shards_written_by_the_writer_open_from_any_shard_path() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_all(dir.path(), &specs());
    assert!(paths[0].ends_with("Model-27B-00001-of-00003.gguf"));
    for p in &paths {
        let f = GgufFile::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert_eq!(f.shard_count(), 3);
        assert_eq!(f.path(), paths[0], "metadata comes from the first shard");
        assert_eq!(
            f.shard_paths().collect::<Vec<_>>(),
            paths.iter().map(PathBuf::as_path).collect::<Vec<_>>()
        );
        assert_eq!(f.get_str("general.architecture").unwrap(), "qwen35");
        assert_eq!(
            f.get_u32("shard.own").unwrap(),
            0,
            "metadata of shard 0 only"
        );
        assert_eq!(f.tensors().len(), 5);
        let sizes: u64 = paths
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum();
        assert_eq!(f.file_size(), sizes);
        for (shard, spec) in specs().iter().enumerate() {
            for (name, ty, dims) in &spec.tensors {
                let v = f.tensor(name).unwrap();
                assert_eq!(v.info.shard, shard, "{name}");
                assert_eq!((v.info.ty, &v.info.dims), (*ty, dims));
                assert_eq!(v.data, &data_of(name, *ty, dims)[..], "{name}");
            }
        }
        let order: Vec<&str> = f.tensors().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            order,
            [
                "token_embd.weight",
                "blk.0.norm",
                "blk.1.w",
                "blk.1.q",
                "output.weight"
            ]
        );
    }
}

#[test]
fn a_missing_shard_is_reported_with_its_path_and_number() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_all(dir.path(), &specs());
    std::fs::remove_file(&paths[2]).unwrap();
    let e = GgufFile::open(&paths[0]).unwrap_err();
    assert!(
        matches!(e, GgufError::MissingShard { ref path, no: 3, count: 3 } if path == &paths[2]),
        "{e}"
    );
    assert!(e.to_string().contains("00003-of-00003"), "{e}");
}

#[test]
fn shards_with_wrong_split_keys_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = specs();
    s[1].no = 0; // written under the name of shard 2 but claims to be shard 1
    let prefix = dir.path().join("m");
    for (i, spec) in s.iter().enumerate() {
        write_shard(&shard_path(&prefix, i as u32 + 1, 3), spec);
    }
    let e = GgufFile::open(&shard_path(&prefix, 1, 3)).unwrap_err();
    assert!(
        matches!(
            e,
            GgufError::SplitMismatch {
                key: "split.no",
                expected: 1,
                ..
            }
        ),
        "{e}"
    );

    let mut s = specs();
    s[0].tensors_total = 6;
    let dir = tempfile::tempdir().unwrap();
    let paths = write_all(dir.path(), &s);
    let e = GgufFile::open(&paths[0]).unwrap_err();
    assert!(
        matches!(
            e,
            GgufError::SplitMismatch {
                key: "split.tensors.count",
                expected: 5,
                ..
            }
        ),
        "{e}"
    );

    let mut s = specs();
    s[2].tensors[0].0 = "blk.0.norm";
    s[2].tensors[0].2 = vec![7];
    s[2].tensors[0].1 = GgmlType::F32;
    let dir = tempfile::tempdir().unwrap();
    let paths = write_all(dir.path(), &s);
    let e = GgufFile::open(&paths[1]).unwrap_err();
    assert!(
        matches!(e, GgufError::DuplicateTensorAcrossShards { ref tensor, .. } if tensor == "blk.0.norm"),
        "{e}"
    );
}

#[test]
fn a_shard_renamed_to_an_ordinary_name_is_an_error_not_a_partial_model() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_all(dir.path(), &specs());
    let plain = dir.path().join("model.gguf");
    std::fs::rename(&paths[0], &plain).unwrap();
    let e = GgufFile::open(&plain).unwrap_err();
    assert!(
        matches!(e, GgufError::SplitNameUnknown { count: 3, .. }),
        "{e}"
    );
}

#[test]
fn a_single_file_named_one_of_one_opens_normally() {
    let dir = tempfile::tempdir().unwrap();
    let p = shard_path(&dir.path().join("solo"), 1, 1);
    let mut s = specs().remove(2);
    s.no = 0;
    s.count = 1;
    s.tensors_total = 1;
    write_shard(&p, &s);
    let f = GgufFile::open(&p).unwrap();
    assert_eq!(f.shard_count(), 1);
    assert!(f.tensor("output.weight").is_some());
}

#[test]
fn open_resident_reads_the_same_bytes_as_the_map() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_all(dir.path(), &specs());
    let mapped = GgufFile::open(&paths[1]).unwrap();
    let resident = GgufFile::open_resident(&paths[1]).unwrap();
    assert_eq!(resident.shard_count(), 3);
    assert_eq!(resident.file_size(), mapped.file_size());
    for t in mapped.tensors() {
        let (a, b) = (
            mapped.tensor(&t.name).unwrap(),
            resident.tensor(&t.name).unwrap(),
        );
        assert_eq!(a.info.dims, b.info.dims, "{}", t.name);
        assert_eq!(a.data, b.data, "{}", t.name);
    }
}
