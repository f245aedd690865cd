//! Every malformed-input case the reader must reject with a typed error (never a panic).

mod gguf_common;

use gguf_common::{every_value_type, pattern, small_valid_file, Raw};
use hybrid_run::gguf::{GgufError, GgufFile, GgufWriter, OffsetProblem};

fn parse(b: &[u8]) -> Result<GgufFile, GgufError> {
    GgufFile::from_bytes(b.to_vec())
}

/// A file with one KV and the given tensor infos (name, dims, ggml type, data offset),
/// followed by `data_len` bytes of data. Returns the bytes and the byte position of each
/// tensor's offset field.
fn file_with(tensors: &[(&str, &[u64], u32, u64)], data_len: usize) -> (Vec<u8>, Vec<u64>) {
    let mut r = Raw::header(3, tensors.len() as u64, 1);
    r.kv_u32("k", 1);
    let mut fields = Vec::new();
    for (name, dims, ty, off) in tensors {
        r.tensor(name, dims, *ty, *off);
        fields.push(r.pos() - 8);
    }
    r.pad_to(32).bytes(&pattern(data_len, 5));
    (r.b, fields)
}

#[test]
fn a_truncated_header_is_an_error_naming_the_field_and_sizes() {
    let b = &small_valid_file()[..10];
    let e = parse(b).unwrap_err();
    assert!(
        matches!(
            e,
            GgufError::Truncated {
                offset: 8,
                what: "tensor count",
                needed: 8,
                available: 2,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("<memory>"), "{e}");
}

#[test]
fn a_wrong_magic_is_rejected() {
    let mut b = small_valid_file();
    b[..4].copy_from_slice(b"GGML");
    assert!(matches!(parse(&b), Err(GgufError::BadMagic { found, .. }) if &found == b"GGML"));
}

#[test]
fn versions_other_than_2_and_3_are_rejected_with_a_reason() {
    for (v, hint) in [
        (1u32, "obsolete"),
        (4, "only versions 2 and 3"),
        (3u32.swap_bytes(), "byte-swapped"),
    ] {
        let mut b = small_valid_file();
        b[4..8].copy_from_slice(&v.to_le_bytes());
        let e = parse(&b).unwrap_err();
        assert!(
            matches!(e, GgufError::UnsupportedVersion { version, .. } if version == v),
            "{e}"
        );
        assert!(e.to_string().contains(hint), "{e}");
    }
    let mut b = small_valid_file();
    b[4..8].copy_from_slice(&2u32.to_le_bytes());
    assert_eq!(parse(&b).expect("v2 accepted").version(), 2);
}

#[test]
fn tensor_data_past_the_end_of_the_file_reports_needed_and_available_bytes() {
    let b = small_valid_file();
    // `b` is 24 bytes at 224..248; the trailing padding to 256 is optional.
    let e = parse(&b[..240]).unwrap_err();
    assert!(
        matches!(e, GgufError::DataPastEof { ref tensor, offset: 224, needed: 248, available: 240, .. } if tensor == "b"),
        "{e}"
    );
    assert!(
        e.to_string().contains("248") && e.to_string().contains("240"),
        "{e}"
    );
    assert!(parse(&b[..248]).is_ok(), "trailing padding may be absent");
}

#[test]
fn misaligned_overlapping_and_gapped_offsets_name_the_tensor_and_offset() {
    let cases: [(u64, OffsetProblem); 4] = [
        (20, OffsetProblem::Misaligned),
        (33, OffsetProblem::Misaligned),
        (0, OffsetProblem::Overlap),
        (64, OffsetProblem::Gap),
    ];
    for (off, problem) in cases {
        let (b, fields) = file_with(&[("first", &[4], 0, 0), ("second", &[8], 0, off)], 128);
        let e = parse(&b).unwrap_err();
        match &e {
            GgufError::TensorOffset {
                tensor,
                offset,
                found,
                expected,
                problem: p,
                ..
            } => {
                assert_eq!(
                    (tensor.as_str(), *offset, *found, *expected, *p),
                    ("second", fields[1], off, 32, problem)
                );
            }
            other => panic!("offset {off}: unexpected {other}"),
        }
        assert!(e.to_string().contains("second"), "{e}");
    }
    // The first tensor must start at data offset 0.
    let (b, _) = file_with(&[("first", &[4], 0, 32)], 64);
    assert!(matches!(
        parse(&b),
        Err(GgufError::TensorOffset {
            problem: OffsetProblem::Gap,
            expected: 0,
            ..
        })
    ));
}

#[test]
fn a_string_longer_than_the_file_is_an_error_not_an_allocation() {
    for len in [1_000u64, u64::MAX, u64::MAX / 2, 1 << 62] {
        let mut r = Raw::header(3, 0, 1);
        r.str("key").u32(8).u64(len).bytes(b"short");
        let e = parse(&r.b).unwrap_err();
        assert!(
            matches!(e, GgufError::Truncated { needed, available: 5, ref item, .. } if needed == len && item == "key"),
            "{e}"
        );
    }
    // Key length beyond the file.
    let mut r = Raw::header(3, 0, 1);
    r.u64(u64::MAX).bytes(&[b'a'; 40]);
    assert!(matches!(
        parse(&r.b),
        Err(GgufError::Truncated {
            what: "metadata key",
            ..
        })
    ));
}

#[test]
fn array_counts_that_overflow_or_exceed_the_file_are_rejected_before_allocating() {
    for (elem_ty, count) in [
        (10u32, u64::MAX / 4),
        (10, u64::MAX),
        (8, 1 << 60),
        (0, 1 << 40),
        (7, 100),
    ] {
        let mut r = Raw::header(3, 0, 1);
        r.str("arr").u32(9).u32(elem_ty).u64(count).bytes(&[0; 16]);
        let e = parse(&r.b).unwrap_err();
        assert!(
            matches!(e, GgufError::ArrayTooLong { count: c, ref key, available: 16, .. } if c == count && key == "arr"),
            "type {elem_ty} count {count}: {e}"
        );
    }
}

#[test]
fn nested_arrays_and_unknown_value_types_are_rejected() {
    let mut r = Raw::header(3, 0, 1);
    r.str("n").u32(9).u32(9).u64(1).u32(4).u64(1).u32(0);
    assert!(
        matches!(parse(&r.b), Err(GgufError::NestedArray { ref key, offset: 37, .. }) if key == "n")
    );
    let mut r = Raw::header(3, 0, 1);
    r.str("u").u32(13).u32(0);
    assert!(matches!(
        parse(&r.b),
        Err(GgufError::UnknownValueType {
            type_id: 13,
            offset: 33,
            ..
        })
    ));
    let mut r = Raw::header(3, 0, 1);
    r.str("ua").u32(9).u32(99).u64(0);
    assert!(matches!(
        parse(&r.b),
        Err(GgufError::UnknownValueType { type_id: 99, .. })
    ));
}

#[test]
fn duplicate_keys_and_duplicate_tensor_names_are_rejected() {
    let mut r = Raw::header(3, 0, 2);
    r.kv_u32("same", 1);
    let second = r.pos();
    r.kv_u32("same", 2);
    let e = parse(&r.b).unwrap_err();
    assert!(
        matches!(e, GgufError::DuplicateKey { ref key, offset, .. } if key == "same" && offset == second),
        "{e}"
    );

    let (b, _) = file_with(&[("t", &[8], 0, 0), ("t", &[8], 0, 32)], 64);
    assert!(
        matches!(parse(&b), Err(GgufError::DuplicateTensor { ref tensor, .. }) if tensor == "t")
    );
}

#[test]
fn empty_keys_bad_utf8_and_bad_bools_are_rejected() {
    let mut r = Raw::header(3, 0, 1);
    r.str("").u32(4).u32(1);
    assert!(matches!(
        parse(&r.b),
        Err(GgufError::EmptyKey { offset: 24, .. })
    ));
    let mut r = Raw::header(3, 0, 1);
    r.str("s").u32(8).u64(2).bytes(&[0xff, 0xfe]);
    assert!(matches!(parse(&r.b), Err(GgufError::InvalidUtf8 { ref item, .. }) if item == "s"));
    let mut r = Raw::header(3, 0, 1);
    r.str("b").u32(7).u8(2);
    assert!(matches!(
        parse(&r.b),
        Err(GgufError::InvalidBool { byte: 2, .. })
    ));
}

#[test]
fn unknown_tensor_types_are_named_with_the_ggml_name_and_tensor() {
    let (b, _) = file_with(&[("blk.0.attn_q.weight", &[32], 2, 0)], 64);
    let e = parse(&b).unwrap_err();
    assert!(
        matches!(e, GgufError::UnsupportedTensorType { type_id: 2, .. }),
        "{e}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("unsupported tensor type Q4_0") && msg.contains("blk.0.attn_q.weight"),
        "{msg}"
    );
    let (b, _) = file_with(&[("x", &[32], 1000, 0)], 64);
    assert!(parse(&b).unwrap_err().to_string().contains("unknown"));
}

#[test]
fn bad_dimensions_and_partial_blocks_are_rejected() {
    let (b, _) = file_with(&[("q", &[100, 2], 12, 0)], 4096);
    let e = parse(&b).unwrap_err();
    assert!(
        matches!(e, GgufError::RowNotBlockMultiple { row_len: 100, block: 256, ref tensor, .. } if tensor == "q"),
        "{e}"
    );
    let (b, _) = file_with(&[("five", &[1, 1, 1, 1, 1], 0, 0)], 64);
    assert!(matches!(
        parse(&b),
        Err(GgufError::TooManyDims { n_dims: 5, .. })
    ));
    let (b, _) = file_with(&[("zero", &[4, 0], 0, 0)], 64);
    assert!(matches!(
        parse(&b),
        Err(GgufError::BadDim {
            index: 1,
            value: 0,
            ..
        })
    ));
    let (b, _) = file_with(&[("neg", &[u64::MAX], 0, 0)], 64);
    assert!(matches!(
        parse(&b),
        Err(GgufError::BadDim { value: -1, .. })
    ));
    let (b, _) = file_with(&[("huge", &[1 << 32, 1 << 32, 1 << 32], 0, 0)], 64);
    assert!(
        matches!(parse(&b), Err(GgufError::SizeOverflow { ref tensor, .. }) if tensor == "huge")
    );
    // Fits in the element count but the byte size does not fit in the file.
    let (b, _) = file_with(&[("big", &[1 << 30, 1 << 30], 0, 0)], 64);
    assert!(matches!(parse(&b), Err(GgufError::DataPastEof { ref tensor, .. }) if tensor == "big"));
}

#[test]
fn alignment_must_be_a_power_of_two_integer() {
    for v in [0u32, 48, 3] {
        let mut r = Raw::header(3, 0, 1);
        r.kv_u32("general.alignment", v);
        assert!(
            matches!(parse(&r.b), Err(GgufError::BadAlignment { .. })),
            "{v}"
        );
    }
    let mut r = Raw::header(3, 0, 1);
    r.kv_str("general.alignment", "32");
    assert!(matches!(parse(&r.b), Err(GgufError::BadAlignment { .. })));
}

#[test]
fn absurd_key_and_tensor_counts_are_capped_by_the_file_size() {
    for (n_tensors, n_kv, what) in [
        (0, u64::MAX, "metadata keys"),
        (1 << 40, 0, "tensors"),
        (u64::MAX, 1, "tensors"),
    ] {
        let mut b = Raw::header(3, n_tensors, n_kv).b;
        b.extend_from_slice(&[0; 100]);
        let e = parse(&b).unwrap_err();
        assert!(
            matches!(e, GgufError::TooManyEntries { what: w, .. } if w == what),
            "{e}"
        );
    }
}

#[test]
fn truncation_at_every_byte_of_a_valid_file_is_an_error() {
    let b = small_valid_file();
    // Tensor data ends at byte 248; the rest is optional trailing padding.
    for n in 0..b.len() {
        let r = parse(&b[..n]);
        if n < 248 {
            assert!(r.is_err(), "prefix of {n} bytes parsed");
        } else {
            assert!(r.is_ok(), "prefix of {n} bytes failed: {:?}", r.err());
        }
    }
    // A metadata-only file with every value type: every strict prefix fails.
    let mut w = GgufWriter::new(Vec::new());
    for (k, v) in every_value_type() {
        w.add_kv(&k, v);
    }
    let b = w.finish().unwrap();
    for n in 0..b.len() {
        assert!(parse(&b[..n]).is_err(), "prefix of {n} bytes parsed");
    }
    assert!(parse(&b).is_ok());
}

#[test]
fn errors_from_open_name_the_file_path() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.gguf");
    let mut b = small_valid_file();
    b.truncate(240);
    std::fs::write(&p, &b).unwrap();
    let e = GgufFile::open(&p).unwrap_err();
    assert!(e.to_string().contains(&*p.to_string_lossy()), "{e}");
    let missing = dir.path().join("missing.gguf");
    let e = GgufFile::open(&missing).unwrap_err();
    assert!(
        matches!(e, GgufError::Io { ref path, .. } if path == &missing),
        "{e}"
    );
}

#[test]
fn an_empty_file_on_disk_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("empty.gguf");
    std::fs::write(&p, b"").unwrap();
    let e = GgufFile::open(&p).unwrap_err();
    assert!(
        matches!(
            e,
            GgufError::Truncated {
                offset: 0,
                what: "magic",
                ..
            } | GgufError::Io { .. }
        ),
        "{e}"
    );
}
