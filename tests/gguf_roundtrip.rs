//! Writer -> reader round trips: every value type, every tensor type, streaming chunks,
//! byte layout against a hand-assembled file, and writer misuse.

mod gguf_common;

use gguf_common::{
    every_tensor_type, every_value_type, expected_bytes, pattern, small_valid_file, Raw,
};
use hybrid_run::gguf::{GgmlType, GgufError, GgufFile, GgufWriter, Value};

fn write_sample(chunk: usize) -> (Vec<u8>, Vec<(String, Vec<u8>)>) {
    let mut w = GgufWriter::new(Vec::new());
    for (k, v) in every_value_type() {
        w.add_kv(&k, v);
    }
    let tensors = every_tensor_type();
    for (name, ty, dims) in &tensors {
        w.add_tensor(name, *ty, dims).expect("valid tensor");
    }
    w.write_header().expect("header");
    let mut datas = Vec::new();
    for (i, (name, ty, dims)) in tensors.iter().enumerate() {
        let data = pattern(expected_bytes(*ty, dims) as usize, i as u64 + 10);
        for c in data.chunks(chunk) {
            w.write_tensor_data(name, c).expect("data chunk");
        }
        datas.push((name.clone(), data));
    }
    (w.finish().expect("finish"), datas)
}

#[test]
fn every_value_type_survives_a_write_read_round_trip() {
    let (bytes, _) = write_sample(1 << 20);
    let f = GgufFile::from_bytes(bytes).expect("parse");
    assert_eq!(f.version(), 3);
    assert_eq!(f.alignment(), 32);
    let want = every_value_type();
    assert_eq!(f.metadata(), &want[..], "metadata in file order");
    for (k, v) in &want {
        assert_eq!(f.get(k), Some(v), "{k}");
    }
}

#[test]
fn every_tensor_type_survives_a_write_read_round_trip_with_aligned_zero_copy_data() {
    for chunk in [1 << 20, 7, 1] {
        let (bytes, datas) = write_sample(chunk);
        let base = bytes.as_ptr() as usize;
        let f = GgufFile::from_bytes(bytes).expect("parse");
        assert_eq!(f.tensors().len(), every_tensor_type().len());
        for ((name, ty, dims), (_, data)) in every_tensor_type().iter().zip(&datas) {
            let info = f.tensor_info(name).expect("tensor present");
            assert_eq!((info.ty, &info.dims), (*ty, dims), "{name}");
            assert_eq!(info.n_bytes, expected_bytes(*ty, dims), "{name}");
            assert_eq!(info.n_elements(), dims.iter().product::<u64>());
            assert_eq!(info.row_len(), dims[0]);
            assert_eq!(info.rows(), dims[1..].iter().product::<u64>());
            assert_eq!(info.offset % 32, 0, "{name} data is aligned");
            let view = f.tensor(name).expect("view");
            assert_eq!(view.data, &data[..], "{name} with chunk {chunk}");
            // Zero copy: the view points into the buffer given to from_bytes (moved, not copied).
            let p = view.data.as_ptr() as usize;
            assert_eq!(p - base, info.offset as usize, "{name} view is not a copy");
        }
        assert!(f.tensor("missing").is_none());
    }
}

#[test]
fn writer_output_matches_a_hand_assembled_file_byte_for_byte() {
    let mut w = GgufWriter::new(Vec::new());
    w.add_kv("general.architecture", Value::String("qwen35".into()));
    w.add_kv("x.count", Value::U32(7));
    w.add_tensor("a", GgmlType::F32, &[4]).expect("a");
    w.add_tensor("b", GgmlType::F32, &[3, 2]).expect("b");
    w.write_header().expect("header");
    w.write_tensor_data("a", &pattern(16, 1)).expect("a data");
    w.write_tensor_data("b", &pattern(10, 2)[..])
        .expect("b part 1");
    w.write_tensor_data("b", &pattern(24, 2)[10..])
        .expect("b part 2");
    let written = w.finish().expect("finish");
    assert_eq!(written, small_valid_file());
}

#[test]
fn custom_alignment_is_written_and_read_back() {
    let mut w = GgufWriter::new(Vec::new());
    w.add_kv("general.alignment", Value::U32(64));
    w.add_tensor("x", GgmlType::F16, &[3]).expect("x");
    w.add_tensor("y", GgmlType::F16, &[5]).expect("y");
    w.write_header().expect("header");
    w.write_tensor_data("x", &[1; 6]).expect("x");
    w.write_tensor_data("y", &[2; 10]).expect("y");
    let f = GgufFile::from_bytes(w.finish().expect("finish")).expect("parse");
    assert_eq!(f.alignment(), 64);
    let (x, y) = (f.tensor_info("x").unwrap(), f.tensor_info("y").unwrap());
    assert_eq!(x.offset % 64, 0);
    assert_eq!(y.offset - x.offset, 64, "6 bytes padded up to 64");
    assert_eq!(f.tensor("y").unwrap().data, &[2; 10]);
}

#[test]
fn a_file_without_tensors_round_trips() {
    let mut w = GgufWriter::new(Vec::new());
    w.add_kv("only", Value::Bool(false));
    let bytes = w.finish().expect("finish writes the header");
    let f = GgufFile::from_bytes(bytes).expect("parse");
    assert!(!f.get_bool("only").unwrap());
    assert!(f.tensors().is_empty());
}

#[test]
fn version_2_files_are_read() {
    let mut b = small_valid_file();
    b[4..8].copy_from_slice(&2u32.to_le_bytes());
    let f = GgufFile::from_bytes(b).expect("v2 has the v3 layout");
    assert_eq!(f.version(), 2);
    assert_eq!(f.tensor("b").unwrap().data, &pattern(24, 2)[..]);
}

#[test]
fn typed_getters_accept_any_fitting_width_and_name_the_key_otherwise() {
    let mut w = GgufWriter::new(Vec::new());
    w.add_kv("n8", Value::U8(5));
    w.add_kv("n64", Value::I64(1 << 40));
    w.add_kv("neg", Value::I32(-1));
    w.add_kv("eps", Value::F64(1e-6));
    w.add_kv("s", Value::String("x".into()));
    let f = GgufFile::from_bytes(w.finish().unwrap()).unwrap();
    assert_eq!(f.get_u32("n8").unwrap(), 5);
    assert_eq!(f.get_u64("n64").unwrap(), 1 << 40);
    assert!(matches!(f.get_u32("n64"), Err(GgufError::OutOfRange { ref key, .. }) if key == "n64"));
    assert!(matches!(f.get_u64("neg"), Err(GgufError::OutOfRange { ref key, .. }) if key == "neg"));
    assert!((f.get_f32("eps").unwrap() - 1e-6).abs() < 1e-12);
    assert_eq!(f.get_str("s").unwrap(), "x");
    let e = f.get_u32("s").unwrap_err();
    assert!(
        matches!(e, GgufError::WrongType { ref key, found: "string", .. } if key == "s"),
        "{e}"
    );
    let e = f.get_str("nope").unwrap_err();
    assert!(matches!(e, GgufError::MissingKey { ref key, .. } if key == "nope"));
    assert!(e.to_string().contains("nope"), "{e}");
    assert!(matches!(f.get_bool("n8"), Err(GgufError::WrongType { .. })));
}

#[test]
fn writer_rejects_rows_that_are_not_whole_blocks() {
    let mut w = GgufWriter::new(Vec::new());
    let e = w.add_tensor("q", GgmlType::Q4_K, &[100, 2]).unwrap_err();
    assert!(
        matches!(
            e,
            GgufError::RowNotBlockMultiple {
                row_len: 100,
                block: 256,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains('q'));
    assert!(w.add_tensor("z", GgmlType::F32, &[0]).is_err());
    assert!(w
        .add_tensor("five", GgmlType::F32, &[1, 1, 1, 1, 1])
        .is_err());
    assert!(w.add_tensor("none", GgmlType::F32, &[]).is_err());
    w.add_tensor("ok", GgmlType::F32, &[1]).unwrap();
    assert!(
        w.add_tensor("ok", GgmlType::F32, &[1]).is_err(),
        "duplicate name"
    );
}

#[test]
fn writer_rejects_out_of_order_oversized_and_incomplete_tensor_data() {
    let new = || {
        let mut w = GgufWriter::new(Vec::new());
        w.add_tensor("a", GgmlType::F32, &[2]).unwrap();
        w.add_tensor("b", GgmlType::F32, &[2]).unwrap();
        w
    };
    let mut w = new();
    assert!(
        matches!(
            w.write_tensor_data("a", &[0; 8]),
            Err(GgufError::WriterState { .. })
        ),
        "before header"
    );
    w.write_header().unwrap();
    let e = w.write_tensor_data("b", &[0; 8]).unwrap_err();
    assert!(
        matches!(e, GgufError::WriterOrder { ref expected, ref got, .. } if expected == "a" && got == "b")
    );
    let e = w.write_tensor_data("a", &[0; 9]).unwrap_err();
    assert!(
        matches!(
            e,
            GgufError::WriterDataSize {
                expected: 8,
                got: 9,
                ..
            }
        ),
        "{e}"
    );
    w.write_tensor_data("a", &[0; 8]).unwrap();
    w.write_tensor_data("b", &[0; 3]).unwrap();
    let e = w.finish().unwrap_err();
    assert!(
        matches!(e, GgufError::WriterDataSize { ref tensor, expected: 8, got: 3, .. } if tensor == "b"),
        "{e}"
    );

    let mut w = new();
    w.add_kv("k", Value::U8(1));
    w.add_kv("k", Value::U8(2));
    assert!(w.write_header().is_err(), "duplicate key is reported");

    let mut w = new();
    w.add_kv("general.alignment", Value::U32(48));
    assert!(matches!(
        w.write_header(),
        Err(GgufError::BadAlignment { .. })
    ));
}

#[test]
fn writer_streams_to_a_file_and_the_mapped_reader_sees_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    let mut w = GgufWriter::create(&path).unwrap();
    w.add_tensor("big", GgmlType::Q8_0, &[4096, 64]).unwrap();
    w.write_header().unwrap();
    let n = expected_bytes(GgmlType::Q8_0, &[4096, 64]) as usize;
    let data = pattern(n, 3);
    for c in data.chunks(4000) {
        w.write_tensor_data("big", c).unwrap();
    }
    w.finish().unwrap();
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.path(), path);
    assert_eq!(f.file_size(), std::fs::metadata(&path).unwrap().len());
    let v = f.tensor("big").unwrap();
    assert_eq!(v.data, &data[..]);
    assert_eq!(v.row(63).unwrap(), &data[n - n / 64..]);
    assert!(v.row(64).is_none());
}

#[test]
fn raw_builder_sanity_small_valid_file_parses() {
    // Guards the hand-built fixture that the bad-input tests mutate.
    let f = GgufFile::from_bytes(small_valid_file()).expect("valid");
    assert_eq!(f.get_str("general.architecture").unwrap(), "qwen35");
    assert_eq!(f.tensor("a").unwrap().data, &pattern(16, 1)[..]);
    let _ = Raw::default();
}

#[test]
fn f32_tensors_decode_to_their_values() {
    let vals = [1.0f32, -2.5, f32::MIN_POSITIVE, 3.25e7];
    let mut w = GgufWriter::new(Vec::new());
    w.add_tensor("v", GgmlType::F32, &[4]).unwrap();
    w.add_tensor("h", GgmlType::F16, &[2]).unwrap();
    w.write_header().unwrap();
    let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
    w.write_tensor_data("v", &bytes).unwrap();
    w.write_tensor_data("h", &[0; 4]).unwrap();
    let f = GgufFile::from_bytes(w.finish().unwrap()).unwrap();
    assert_eq!(f.tensor("v").unwrap().to_f32_vec().unwrap(), vals);
    assert!(f.tensor("h").unwrap().to_f32_vec().is_none());
}
