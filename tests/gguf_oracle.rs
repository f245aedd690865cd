//! Cross-checks against llama.cpp's own Python reader/writer (gguf-py, via
//! tests/gguf_oracle.py): files written by gguf-py are read identically by us, files we
//! write are read identically by gguf-py, and llama.cpp's vocab GGUFs parse the same.
//! Skipped (with a message) when `python3 -c "import gguf"` fails.

mod gguf_common;

use std::path::{Path, PathBuf};
use std::process::Command;

use gguf_common::{every_tensor_type, every_value_type, expected_bytes, pattern};
use hybrid_run::gguf::{Array, GgufFile, GgufWriter, Value};
use serde_json::{json, Value as Json};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/gguf_oracle.py");

fn have_gguf_py() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import gguf, numpy"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIPPED: python3 with the `gguf` package is not available");
    }
    ok
}

fn oracle(cmd: &str, path: &Path) -> Vec<u8> {
    let out = Command::new("python3")
        .arg(SCRIPT)
        .arg(cmd)
        .arg(path)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "gguf_oracle.py {cmd} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn fnv1a64(data: &[u8]) -> u64 {
    data.iter().fold(0xCBF2_9CE4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3)
    })
}

/// (type ids, value) in the dump's encoding: floats as bit patterns.
fn to_json(v: &Value) -> (Vec<u32>, Json) {
    let j = match v {
        Value::U8(x) => json!(x),
        Value::I8(x) => json!(x),
        Value::U16(x) => json!(x),
        Value::I16(x) => json!(x),
        Value::U32(x) => json!(x),
        Value::I32(x) => json!(x),
        Value::F32(x) => json!(x.to_bits()),
        Value::Bool(x) => json!(x),
        Value::String(x) => json!(x),
        Value::U64(x) => json!(x),
        Value::I64(x) => json!(x),
        Value::F64(x) => json!(x.to_bits()),
        Value::Array(a) => {
            let j = match a {
                Array::U8(x) => json!(x),
                Array::I8(x) => json!(x),
                Array::U16(x) => json!(x),
                Array::I16(x) => json!(x),
                Array::U32(x) => json!(x),
                Array::I32(x) => json!(x),
                Array::F32(x) => json!(x.iter().map(|f| f.to_bits()).collect::<Vec<_>>()),
                Array::Bool(x) => json!(x),
                Array::String(x) => json!(x),
                Array::U64(x) => json!(x),
                Array::I64(x) => json!(x),
                Array::F64(x) => json!(x.iter().map(|f| f.to_bits()).collect::<Vec<_>>()),
            };
            return (vec![9, a.elem_type_id()], j);
        }
    };
    (vec![v.type_id()], j)
}

/// Asserts that our reader sees exactly what gguf-py's reader sees.
fn assert_same_as_gguf_py(path: &Path) {
    let f = GgufFile::open(path).unwrap_or_else(|e| panic!("{e}"));
    let dump: Json = serde_json::from_slice(&oracle("dump", path)).expect("oracle JSON");
    assert_eq!(dump["version"], json!(f.version()), "{}", path.display());
    assert_eq!(dump["alignment"], json!(f.alignment()));
    let theirs = dump["kv"].as_array().expect("kv list");
    assert_eq!(
        theirs.len(),
        f.metadata().len(),
        "{}: key count",
        path.display()
    );
    for ((key, value), t) in f.metadata().iter().zip(theirs) {
        let (types, j) = to_json(value);
        assert_eq!(t[0], json!(key), "{}: key order", path.display());
        // gguf-py records an array's element type only while reading elements, so an
        // empty array shows up as plain [9].
        let empty_array = value.as_array().is_some_and(Array::is_empty);
        if !(empty_array && t[1] == json!([9])) {
            assert_eq!(t[1], json!(types), "{}: type of {key}", path.display());
        }
        assert!(t[2] == j, "{}: value of {key} differs", path.display());
    }
    let theirs = dump["tensors"].as_array().expect("tensor list");
    assert_eq!(theirs.len(), f.tensors().len());
    for (info, t) in f.tensors().iter().zip(theirs) {
        let data = f.tensor(&info.name).expect("view").data;
        let ours = json!([
            info.name,
            info.ty.ggml_id(),
            info.dims,
            info.offset,
            info.n_bytes,
            fnv1a64(data)
        ]);
        assert_eq!(&ours, t, "{}: tensor {}", path.display(), info.name);
    }
}

#[test]
fn files_written_by_gguf_py_read_the_same_as_gguf_py_reads_them() {
    if !have_gguf_py() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("py.gguf");
    oracle("write", &p);
    assert_same_as_gguf_py(&p);
    // Spot checks that do not go through the dump.
    let f = GgufFile::open(&p).unwrap();
    assert_eq!(f.get_str("general.architecture").unwrap(), "qwen35");
    assert_eq!(f.get_u64("t.u64").unwrap(), u64::MAX);
    assert_eq!(f.get_f32("t.f32").unwrap(), 1e-6);
    assert_eq!(f.tensor_info("q5_k").unwrap().dims, [512, 3]);
}

#[test]
fn files_we_write_read_the_same_in_gguf_py() {
    if !have_gguf_py() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ours.gguf");
    let mut w = GgufWriter::create(&p).unwrap();
    for (k, v) in every_value_type() {
        w.add_kv(&k, v);
    }
    let tensors = every_tensor_type();
    for (name, ty, dims) in &tensors {
        w.add_tensor(name, *ty, dims).unwrap();
    }
    w.write_header().unwrap();
    for (i, (name, ty, dims)) in tensors.iter().enumerate() {
        let data = pattern(expected_bytes(*ty, dims) as usize, i as u64);
        for c in data.chunks(100) {
            w.write_tensor_data(name, c).unwrap();
        }
    }
    w.finish().unwrap();
    assert_same_as_gguf_py(&p);
}

fn llama_cpp_models() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("HYBRID_RUN_LLAMA_MODELS") {
        return Some(PathBuf::from(d));
    }
    let home = std::env::var_os("HOME")?;
    let src = Path::new(&home).join(".cache/hybrid-run/src");
    std::fs::read_dir(src)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path().join("vendor/llama.cpp/models"))
        .find(|p| p.is_dir())
}

#[test]
fn llama_cpp_vocab_files_read_the_same_as_gguf_py_reads_them() {
    if !have_gguf_py() {
        return;
    }
    let Some(dir) = llama_cpp_models() else {
        eprintln!("SKIPPED: no llama.cpp models/ directory (set HYBRID_RUN_LLAMA_MODELS)");
        return;
    };
    // gguf-py takes ~10 s per vocab file; check all of them only on request.
    let all = std::env::var_os("HYBRID_RUN_ORACLE_ALL").is_some();
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap().filter_map(Result::ok) {
        let p = e.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let wanted = all || name == "ggml-vocab-qwen35.gguf" || name == "ggml-vocab-llama-spm.gguf";
        // LFS pointers are a few hundred bytes of text.
        if wanted && name.ends_with(".gguf") && e.metadata().is_ok_and(|m| m.len() > 4096) {
            assert_same_as_gguf_py(&p);
            n += 1;
        }
    }
    eprintln!("compared {n} llama.cpp vocab files with gguf-py");
}
