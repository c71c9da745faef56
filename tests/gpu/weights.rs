//! Checkpoint loading: the two fixture formats agree tensor for tensor, weight norm folds to what
//! transformers computes, uploads reproduce the stored values, and every malformed file is an
//! error naming the file (and tensor), never a panic.

use crate::common;

mod checkpoints;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use bark_wgpu::model::{inference_tensors, BarkConfig};
use bark_wgpu::weights::{StoredDType, WeightSource, Weights};
use bark_wgpu::{Context, ContextOptions, DType, Error};
use common::{assert_close, ctx, Rng};

const VARIANTS: [&str; 2] = ["tiny", "tiny-bias"];

fn fixture(variant: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(variant)
}

/// A scratch directory unique to this process and call, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("bark-wgpu-weights-{}-{tag}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The error must be `Error::File` naming `path`, and mention every needle.
fn assert_file_err<T: std::fmt::Debug>(r: Result<T, Error>, path: &Path, needles: &[&str]) -> String {
    let e = r.expect_err("expected an error");
    let msg = e.to_string();
    match &e {
        Error::File { path: p, .. } => assert_eq!(p, path, "{msg}"),
        other => panic!("not a file error: {other}"),
    }
    for n in needles {
        assert!(msg.contains(n), "`{msg}` does not mention `{n}`");
    }
    msg
}

// ---------------------------------------------------------------------------------------------
// The fixtures

#[test]
fn bin_and_safetensors_hold_the_same_tensors() {
    for v in VARIANTS {
        let st = Weights::open(fixture(v).join("model.safetensors")).unwrap();
        let bin = Weights::open(fixture(v).join("pytorch_model.bin")).unwrap();
        let names: Vec<&str> = st.names().collect();
        assert_eq!(names, bin.names().collect::<Vec<_>>(), "{v}: tensor names differ");
        assert!(names.len() > 100, "{v}: only {} tensors", names.len());
        for name in names {
            let (a, b) = (st.info(name).unwrap(), bin.info(name).unwrap());
            assert_eq!(a, b, "{v}: {name}");
            let (x, y) = (st.to_f32(name).unwrap(), bin.to_f32(name).unwrap());
            assert_eq!(x.len(), a.numel());
            // Same stored bits and the same folding arithmetic: equal exactly.
            assert!(x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()), "{v}: {name} values differ");
        }
    }
}

#[test]
fn checkpoints_held_in_memory_read_as_their_files_do() {
    // What a browser does: the bytes fetched, nothing to map.
    use bark_wgpu::weights::WeightSource;
    for file in ["model.safetensors", "pytorch_model.bin"] {
        let path = fixture("tiny").join(file);
        let mapped = WeightSource::open(&path).unwrap();
        let held = WeightSource::from_bytes(file, std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(mapped.names().collect::<Vec<_>>(), held.names().collect::<Vec<_>>(), "{file}");
        for name in mapped.names() {
            assert_eq!(mapped.info(name), held.info(name), "{file}: {name}");
            assert!(mapped.bytes(name).unwrap() == held.bytes(name).unwrap(), "{file}: {name}");
        }
    }
    let err = WeightSource::from_bytes("fetched.safetensors", b"not a checkpoint".to_vec()).unwrap_err();
    assert!(err.to_string().contains("fetched.safetensors"), "{err}");
}

#[test]
fn fixtures_use_both_naming_styles_and_dtypes() {
    for (v, dtype) in [("tiny", StoredDType::F32), ("tiny-bias", StoredDType::F16)] {
        let st = WeightSource::open(fixture(v).join("model.safetensors")).unwrap();
        let bin = WeightSource::open(fixture(v).join("pytorch_model.bin")).unwrap();
        let g = "codec_model.decoder.layers.0.conv";
        assert!(st.contains(&format!("{g}.parametrizations.weight.original0")));
        assert!(bin.contains(&format!("{g}.weight_g")) && bin.contains(&format!("{g}.weight_v")));
        assert!(!st.contains("fine_acoustics.lm_heads.0.weight") && bin.contains("fine_acoustics.lm_heads.0.weight"));
        assert_eq!(st.info("semantic.input_embeds_layer.weight").unwrap().dtype, dtype);
        assert_eq!(bin.info("semantic.input_embeds_layer.weight").unwrap().dtype, dtype);
        let mask = st.info("semantic.layers.0.attn.bias").unwrap();
        assert_eq!(mask.dtype, StoredDType::Bool);
        // The tril mask reads back as the lower triangle (checks BOOL storage offsets).
        let n = mask.shape[3];
        let m = st.to_i64("semantic.layers.0.attn.bias").unwrap();
        assert_eq!((m[0], m[1], m[n], m[n + 1], m[n * n - 1]), (1, 0, 1, 1, 1));
    }
    // tiny-bias's .bin keeps the masks (BoolStorage through the pickle path).
    let bin = WeightSource::open(fixture("tiny-bias").join("pytorch_model.bin")).unwrap();
    let m = bin.to_i64("coarse_acoustics.layers.2.attn.bias").unwrap();
    assert_eq!(m.iter().sum::<i64>(), 256 * 257 / 2);
    // Masks are dropped from the Bark view.
    let w = Weights::open(fixture("tiny-bias").join("pytorch_model.bin")).unwrap();
    assert!(!w.names().any(|n| n.ends_with(".attn.bias")));
}

#[test]
fn weight_norm_folds_to_what_transformers_computes() {
    for v in VARIANTS {
        let refs = WeightSource::open(fixture(v).join("reference.safetensors")).unwrap();
        let want: Vec<&str> = refs.names().filter(|n| n.starts_with("weight_norm.")).collect();
        for file in ["model.safetensors", "pytorch_model.bin"] {
            let w = Weights::open(fixture(v).join(file)).unwrap();
            let folded: BTreeSet<&str> = w.source().names().filter_map(|n| n.strip_suffix("_g")).collect();
            let folded2 = w.source().names().filter(|n| n.ends_with(".original0")).count();
            assert_eq!(folded.len() + folded2, want.len(), "{v}/{file}: every weight-norm conv has a reference");
            for r in &want {
                let name = r.strip_prefix("weight_norm.").unwrap();
                let got = w.to_f32(name).unwrap();
                // One f32 rounding of the norm (f64 here, f32 in torch) and of g/norm: a few ulps.
                assert_close(&format!("{v}/{file}: {name}"), &got, &refs.to_f32(r).unwrap(), 1e-7, 1e-6);
            }
        }
    }
}

#[test]
fn tied_fine_heads_resolve_to_the_embeddings() {
    for v in VARIANTS {
        let w = Weights::open(fixture(v).join("model.safetensors")).unwrap();
        for j in 0..7 {
            let head = w.to_f32(&format!("fine_acoustics.lm_heads.{j}.weight")).unwrap();
            let emb = w.to_f32(&format!("fine_acoustics.input_embeds_layers.{}.weight", j + 1)).unwrap();
            assert_eq!(head, emb, "{v}: head {j}");
        }
        assert!(!w.contains("fine_acoustics.lm_heads.7.weight"));
    }
}

#[test]
fn every_inference_tensor_is_present_with_its_shape() {
    for v in VARIANTS {
        let config = BarkConfig::load(fixture(v)).unwrap();
        let expected = inference_tensors(&config);
        for file in ["model.safetensors", "pytorch_model.bin"] {
            let w = Weights::open(fixture(v).join(file)).unwrap();
            w.check(&expected).unwrap();
            // What the list leaves out is only what inference never reads.
            let listed: BTreeSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
            for name in w.names().filter(|n| !listed.contains(n)) {
                let unused = name.starts_with("codec_model.encoder.")
                    || name.ends_with(".embed_avg")
                    || name.ends_with(".cluster_size")
                    || name.ends_with(".inited");
                assert!(unused, "{v}/{file}: `{name}` is in the checkpoint but not in inference_tensors");
            }
        }
    }
}

#[test]
fn open_dir_prefers_safetensors() {
    let w = Weights::open_dir(fixture("tiny")).unwrap();
    assert!(w.path().ends_with("model.safetensors"));
    let s = Scratch::new("dir");
    assert_file_err(Weights::open_dir(&s.0), &s.0, &["holds no checkpoint"]);
}

#[test]
fn reference_ids_read_as_integers() {
    let refs = WeightSource::open(fixture("tiny").join("reference.safetensors")).unwrap();
    let ids = refs.to_i64("semantic.input_ids").unwrap();
    assert_eq!(refs.info("semantic.input_ids").unwrap().shape, vec![1, 8]);
    assert!(ids.iter().all(|&i| (0..129600).contains(&i)));
    let p = refs.path().to_path_buf();
    assert_file_err(refs.to_f32("semantic.input_ids"), &p, &["semantic.input_ids", "I64"]);
    assert_file_err(refs.to_i64("semantic.logits"), &p, &["semantic.logits", "F32"]);
}

// ---------------------------------------------------------------------------------------------
// Uploads (GPU)

#[test]
fn uploads_reproduce_the_stored_values() {
    let ctx = ctx();
    let w = Weights::open(fixture("tiny").join("model.safetensors")).unwrap();
    let h = 16;
    // 129600 x 16 = 2 M elements: several conversion chunks.
    let name = "semantic.input_embeds_layer.weight";
    let want = w.to_f32(name).unwrap();
    let split = w.upload_rows(ctx, name, 129600, h, DType::F32).unwrap();
    let mut got = Vec::new();
    for (start, part) in &split.parts {
        assert_eq!(*start, got.len() / h);
        got.extend(part.to_f32(ctx).unwrap());
    }
    assert_eq!(got, want, "F32 upload is exact");
    let t = w.upload(ctx, name, &[129600, h], DType::F16).unwrap();
    let halves: Vec<f32> = want.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect();
    assert_eq!(t.to_f32(ctx).unwrap(), halves, "F16 upload is the f16 rounding of each value");

    // A folded weight with an odd last dimension (k = 7), as F16 (rows padded to even length).
    let name = "codec_model.decoder.layers.0.conv.weight";
    let t = w.upload(ctx, name, &[32, 8, 7], DType::F16).unwrap();
    let halves: Vec<f32> = w.to_f32(name).unwrap().iter().map(|&x| half::f16::from_f32(x).to_f32()).collect();
    assert_eq!(t.to_f32(ctx).unwrap(), halves);

    // F16-stored weights upload to F32 exactly.
    let b = Weights::open(fixture("tiny-bias").join("pytorch_model.bin")).unwrap();
    let name = "coarse_acoustics.layers.1.mlp.in_proj.weight";
    let t = b.upload(ctx, name, &[32, 8], DType::F32).unwrap();
    assert_eq!(t.to_f32(ctx).unwrap(), b.to_f32(name).unwrap());

    let p = w.path().to_path_buf();
    assert_file_err(
        w.upload(ctx, "semantic.nothing.weight", &[4], DType::F32),
        &p,
        &["semantic.nothing.weight", "missing"],
    );
    assert_file_err(w.upload(ctx, name, &[32, 8], DType::F32), &p, &[name, "[64, 16]", "[32, 8]"]);
    let e = w.upload(ctx, "semantic.lm_head.weight", &[10048, 16], DType::U32).unwrap_err();
    assert!(matches!(e, Error::Dtype { .. }), "{e}");
}

#[test]
fn row_split_uploads_across_small_bindings() {
    // A 64 KiB binding limit splits the 129600 x 8 f16 embedding (16 bytes a row) into 4096-row parts.
    let small = Context::new(&ContextOptions { max_binding_bytes: Some(64 << 10), ..Default::default() }).unwrap();
    let w = Weights::open(fixture("tiny-bias").join("model.safetensors")).unwrap();
    let name = "semantic.input_embeds_layer.weight";
    let split = w.upload_rows(&small, name, 129600, 8, DType::F16).unwrap();
    assert_eq!(split.parts.len(), 129600usize.div_ceil(4096));
    let mut got = Vec::new();
    for (start, part) in &split.parts {
        assert_eq!(*start, got.len() / 8);
        got.extend(part.to_f32(&small).unwrap());
    }
    assert_eq!(got, w.to_f32(name).unwrap(), "f16-stored values survive an f16 upload exactly");
}

// ---------------------------------------------------------------------------------------------
// Malformed safetensors

/// A safetensors file from a header JSON and a data section.
fn safetensors_bytes(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

#[test]
fn safetensors_hand_built_positive_control() {
    let s = Scratch::new("st-ok");
    let data: Vec<u8> = [1.0f32, -2.0, 3.5, 0.25, 5.0, 6.0].iter().flat_map(|x| x.to_le_bytes()).collect();
    let header = r#"{"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"__metadata__":{"k":"v"}}"#;
    let p = s.file("ok.safetensors", &safetensors_bytes(header, &data));
    let w = Weights::open(&p).unwrap();
    assert_eq!(w.to_f32("a").unwrap(), vec![1.0, -2.0, 3.5, 0.25, 5.0, 6.0]);
    // Odd last dimension through an F16 upload.
    let t = w.upload(ctx(), "a", &[2, 3], DType::F16).unwrap();
    assert_eq!(t.to_f32(ctx()).unwrap(), vec![1.0, -2.0, 3.5, 0.25, 5.0, 6.0]);
    assert_file_err(w.expect("a", &[3, 2]), &p, &["`a`", "[2, 3]", "[3, 2]"]);
    assert_file_err(w.to_f32("b"), &p, &["missing tensor `b`"]);
    assert_file_err(w.check(&[("a".into(), vec![2, 3]), ("zz".into(), vec![1])]), &p, &["zz"]);
}

#[test]
fn safetensors_lying_headers_are_errors() {
    let s = Scratch::new("st-bad");
    let d16 = [0u8; 16];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("offsets past the end", safetensors_bytes(r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,32]}}"#, &d16)),
        (
            "size not shape x dtype",
            safetensors_bytes(r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}}"#, &d16),
        ),
        (
            "overlap",
            safetensors_bytes(
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
                &d16,
            ),
        ),
        (
            "gap",
            safetensors_bytes(
                r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#,
                &d16,
            ),
        ),
        ("reversed offsets", safetensors_bytes(r#"{"a":{"dtype":"F32","shape":[0],"data_offsets":[16,0]}}"#, &d16)),
        (
            "huge shape",
            safetensors_bytes(
                r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,16]}}"#,
                &d16,
            ),
        ),
        ("unknown dtype", safetensors_bytes(r#"{"a":{"dtype":"Q4","shape":[4],"data_offsets":[0,16]}}"#, &d16)),
        (
            "unsupported dtype",
            safetensors_bytes(r#"{"a":{"dtype":"F8_E4M3","shape":[16],"data_offsets":[0,16]}}"#, &d16),
        ),
        ("not JSON", safetensors_bytes("{nope", &d16)),
        ("header length past the end", {
            let mut b = safetensors_bytes(r#"{}"#, &[]);
            b[..8].copy_from_slice(&1000u64.to_le_bytes());
            b
        }),
        ("header length absurd", {
            let mut b = safetensors_bytes(r#"{}"#, &[]);
            b[..8].copy_from_slice(&u64::MAX.to_le_bytes());
            b
        }),
        ("empty file", Vec::new()),
        ("5 bytes", vec![1, 2, 3, 4, 5]),
    ];
    for (what, bytes) in cases {
        let p = s.file("bad.safetensors", &bytes);
        let msg = assert_file_err(WeightSource::open(&p).map(|_| ()), &p, &[]);
        assert!(!msg.is_empty(), "{what}");
        // Same through the explicit constructor.
        assert!(WeightSource::open_safetensors(&p).is_err(), "{what}");
    }
    let p = s.0.join("does-not-exist.safetensors");
    assert_file_err(Weights::open(&p), &p, &["cannot open"]);
}

#[test]
fn truncated_and_corrupted_fixture_safetensors_never_panic() {
    let s = Scratch::new("st-trunc");
    let bytes = std::fs::read(fixture("tiny-bias").join("model.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    for cut in [0, 7, 8, 100, header_len + 8, header_len + 9, bytes.len() / 2, bytes.len() - 1] {
        let p = s.file("cut.safetensors", &bytes[..cut]);
        assert_file_err(Weights::open(&p), &p, &[]);
    }
    // Random byte changes in the header: Ok or Err, never a panic, and whatever opens reads in bounds.
    let mut rng = Rng::new(7);
    for _ in 0..200 {
        let mut b = bytes[..header_len + 8].to_vec();
        let i = 8 + rng.below(header_len as u32) as usize;
        b[i] = b"0123456789[]{},\":F "[rng.below(19) as usize];
        b.extend_from_slice(&bytes[header_len + 8..]);
        let p = s.file("flip.safetensors", &b);
        if let Ok(w) = Weights::open(&p) {
            for n in w.names().map(String::from).collect::<Vec<_>>() {
                let _ = w.to_f32(&n);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Malformed torch zips

/// Protocol-2 pickle opcodes as torch.save writes them.
#[derive(Default)]
struct Pickle(Vec<u8>);

impl Pickle {
    fn new() -> Pickle {
        Pickle(vec![0x80, 2])
    }
    fn op(mut self, b: &[u8]) -> Pickle {
        self.0.extend_from_slice(b);
        self
    }
    fn str(self, s: &str) -> Pickle {
        let mut p = self.op(b"X");
        p.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
        p.op(s.as_bytes())
    }
    fn int(self, v: u32) -> Pickle {
        let mut p = self.op(b"J");
        p.0.extend_from_slice(&v.to_le_bytes());
        p
    }
    fn global(self, module: &str, name: &str) -> Pickle {
        self.op(b"c").op(module.as_bytes()).op(b"\n").op(name.as_bytes()).op(b"\n")
    }
    fn ints(self, v: &[u32]) -> Pickle {
        let mut p = self.op(b"(");
        for &x in v {
            p = p.int(x);
        }
        p.op(b"t")
    }
    /// `name: _rebuild_tensor_v2(('storage', torch.<kind>, key, 'cpu', numel), offset, size, stride, False, OrderedDict())`
    fn tensor(self, name: &str, storage: (&str, &str, u32), offset: u32, size: &[u32], stride: &[u32]) -> Pickle {
        let (kind, key, numel) = storage;
        self.str(name)
            .global("torch._utils", "_rebuild_tensor_v2")
            .op(b"((")
            .str("storage")
            .global("torch", kind)
            .str(key)
            .str("cpu")
            .int(numel)
            .op(b"tQ")
            .int(offset)
            .ints(size)
            .ints(stride)
            .op(&[0x89])
            .global("collections", "OrderedDict")
            .op(b")Rt")
            .op(b"R")
    }
}

/// A torch.save-style zip: `archive/data.pkl`, `archive/byteorder` and `archive/data/<key>`.
fn torch_zip(pkl: &[u8], storages: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut z = zip::ZipWriter::new(&mut buf);
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    z.start_file("archive/data.pkl", opts).unwrap();
    z.write_all(pkl).unwrap();
    z.start_file("archive/byteorder", opts).unwrap();
    z.write_all(b"little").unwrap();
    for (key, data) in storages {
        z.start_file(format!("archive/data/{key}"), opts).unwrap();
        z.write_all(data).unwrap();
    }
    z.finish().unwrap();
    buf.into_inner()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn torch_zip_hand_built_positive_control() {
    let s = Scratch::new("zip-ok");
    // Two tensors viewing one storage (offset 2), as tied weights are saved.
    let pkl = Pickle::new()
        .op(b"}q\x00(")
        .tensor("w", ("FloatStorage", "0", 6), 0, &[2, 2], &[2, 1])
        .tensor("tail", ("FloatStorage", "0", 6), 2, &[4], &[1])
        .op(b"u.");
    let p = s.file("ok.bin", &torch_zip(&pkl.0, &[("0", f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))]));
    let w = Weights::open(&p).unwrap();
    assert_eq!(w.to_f32("w").unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
    assert_eq!(w.to_f32("tail").unwrap(), vec![3.0, 4.0, 5.0, 6.0]);
    assert_eq!(w.info("w").unwrap().shape, vec![2, 2]);
}

#[test]
fn torch_zip_bad_tensors_name_the_tensor() {
    let s = Scratch::new("zip-bad");
    // One storage "0" of 4 floats; each case describes a tensor that does not fit it.
    let storage = vec![("0", f32_bytes(&[0.5; 4]))];
    let dict = |p: Pickle| p.op(b"u.");
    let cases: Vec<(&str, Pickle, &str)> = vec![
        (
            "non-contiguous stride",
            dict(Pickle::new().op(b"}(").tensor("t", ("FloatStorage", "0", 4), 0, &[2, 2], &[1, 2])),
            "not contiguous",
        ),
        (
            "offset past storage",
            dict(Pickle::new().op(b"}(").tensor("t", ("FloatStorage", "0", 4), 1, &[4], &[1])),
            "exceed its storage",
        ),
        (
            "storage smaller than its numel",
            dict(Pickle::new().op(b"}(").tensor("t", ("FloatStorage", "0", 8), 0, &[8], &[1])),
            "holds 16 bytes",
        ),
        (
            "missing storage entry",
            dict(Pickle::new().op(b"}(").tensor("t", ("FloatStorage", "7", 4), 0, &[4], &[1])),
            "archive/data/7",
        ),
        (
            "rank mismatch",
            dict(Pickle::new().op(b"}(").tensor("t", ("FloatStorage", "0", 4), 0, &[4], &[1, 1])),
            "rank",
        ),
        (
            "a name given twice",
            dict(Pickle::new().op(b"}(").tensor("t", ("FloatStorage", "0", 4), 0, &[4], &[1]).tensor(
                "t",
                ("FloatStorage", "0", 4),
                0,
                &[2],
                &[1],
            )),
            "appears twice",
        ),
        (
            "unknown storage type",
            dict(Pickle::new().op(b"}(").tensor("t", ("ComplexFloatStorage", "0", 4), 0, &[4], &[1])),
            "ComplexFloatStorage",
        ),
    ];
    for (what, pkl, needle) in cases {
        let p = s.file("bad.bin", &torch_zip(&pkl.0, &storage));
        let msg = assert_file_err(Weights::open(&p), &p, &[needle]);
        assert!(what == "unknown storage type" || msg.contains("`t`"), "{what}: {msg}");
    }
}

#[test]
fn pickles_that_are_not_state_dicts_are_errors() {
    let s = Scratch::new("zip-notsd");
    let cases: Vec<(&str, Pickle, &str)> = vec![
        ("a list", Pickle::new().op(b"](K\x01K\x02e."), "not a state dict"),
        ("an int", Pickle::new().op(b"K\x05."), "not a state dict"),
        ("a dict of ints", Pickle::new().op(b"}(").str("a").op(b"K\x01u."), "`a` is a int"),
        ("code execution", Pickle::new().global("os", "system").str("echo hi").op(b"\x85R."), "os.system"),
        ("unknown opcode", Pickle::new().op(b"}I1\n."), "opcode 0x49"),
        ("no STOP", Pickle::new().op(b"}"), "without STOP"),
        ("empty stack", Pickle::new().op(b"."), "underflow"),
        ("bad memo", Pickle::new().op(b"h\x05."), "memo"),
        ("memo jump", Pickle::new().op(b"}r\xff\xff\xff\x00."), "skips past"),
        ("BUILD on a tuple", Pickle::new().op(b")}b."), "BUILD"),
        ("protocol 9", Pickle(vec![0x80, 9, b'}', b'.']), "protocol"),
        ("dict in itself", Pickle::new().op(b"}q\x00h\x00h\x00s."), "placed in another value"),
    ];
    for (what, pkl, needle) in cases {
        let p = s.file("notsd.bin", &torch_zip(&pkl.0, &[]));
        let msg = assert_file_err(Weights::open(&p), &p, &["data.pkl"]);
        assert!(msg.contains(needle), "{what}: `{msg}` lacks `{needle}`");
    }
    // Deep nesting is refused, not a stack overflow.
    let mut deep = Pickle::new().op(b"K\x00");
    for _ in 0..100_000 {
        deep = deep.op(&[0x85]);
    }
    let p = s.file("deep.bin", &torch_zip(&deep.op(b".").0, &[]));
    assert_file_err(Weights::open(&p), &p, &["nested"]);
    // A zip without data.pkl, and a file that is not a zip at all but starts like one.
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut z = zip::ZipWriter::new(&mut buf);
    z.start_file("x/other.txt", zip::write::SimpleFileOptions::default()).unwrap();
    z.finish().unwrap();
    let p = s.file("nopkl.bin", &buf.into_inner());
    assert_file_err(Weights::open(&p), &p, &["data.pkl"]);
    let p = s.file("fake.bin", b"PK\x03\x04 and then nothing a zip needs");
    assert_file_err(Weights::open(&p), &p, &["zip"]);
}

#[test]
fn weight_norm_pairs_must_match() {
    let s = Scratch::new("zip-wn");
    let g_only =
        Pickle::new().op(b"}(").tensor("c.weight_g", ("FloatStorage", "0", 2), 0, &[2, 1, 1], &[1, 1, 1]).op(b"u.");
    let p = s.file("g.bin", &torch_zip(&g_only.0, &[("0", f32_bytes(&[1.0, 2.0]))]));
    assert_file_err(Weights::open(&p), &p, &["c.weight_g", "c.weight_v"]);
    let v_only =
        Pickle::new().op(b"}(").tensor("c.weight_v", ("FloatStorage", "0", 2), 0, &[2, 1, 1], &[1, 1, 1]).op(b"u.");
    let p = s.file("v.bin", &torch_zip(&v_only.0, &[("0", f32_bytes(&[1.0, 2.0]))]));
    assert_file_err(Weights::open(&p), &p, &["c.weight_v", "c.weight_g"]);
    // g with 3 rows for a v of 2: refused when opening.
    let bad = Pickle::new()
        .op(b"}(")
        .tensor("c.weight_g", ("FloatStorage", "0", 3), 0, &[3, 1, 1], &[1, 1, 1])
        .tensor("c.weight_v", ("FloatStorage", "1", 4), 0, &[2, 2, 1], &[2, 1, 1])
        .op(b"u.");
    let p = s.file("gv.bin", &torch_zip(&bad.0, &[("0", f32_bytes(&[1.0; 3])), ("1", f32_bytes(&[1.0; 4]))]));
    assert_file_err(Weights::open(&p), &p, &["c.weight_g", "does not fit"]);
    // Both a plain weight and a weight-norm pair for it.
    let twice = Pickle::new()
        .op(b"}(")
        .tensor("c.weight", ("FloatStorage", "1", 4), 0, &[2, 2, 1], &[2, 1, 1])
        .tensor("c.weight_g", ("FloatStorage", "0", 2), 0, &[2, 1, 1], &[1, 1, 1])
        .tensor("c.weight_v", ("FloatStorage", "1", 4), 0, &[2, 2, 1], &[2, 1, 1])
        .op(b"u.");
    let p = s.file(
        "twice.bin",
        &torch_zip(&twice.0, &[("0", f32_bytes(&[1.0; 2])), ("1", f32_bytes(&[3.0, 4.0, 0.0, 2.0]))]),
    );
    assert_file_err(Weights::open(&p), &p, &["`c.weight` is given twice"]);
    // And the good case folds: rows (3,4) and (0,2) with g = (10, 1) -> (6, 8) and (0, 1).
    let good = Pickle::new()
        .op(b"}(")
        .tensor("c.weight_g", ("FloatStorage", "0", 2), 0, &[2, 1, 1], &[1, 1, 1])
        .tensor("c.weight_v", ("FloatStorage", "1", 4), 0, &[2, 2, 1], &[2, 1, 1])
        .op(b"u.");
    let p = s.file(
        "good.bin",
        &torch_zip(&good.0, &[("0", f32_bytes(&[10.0, 1.0])), ("1", f32_bytes(&[3.0, 4.0, 0.0, 2.0]))]),
    );
    let w = Weights::open(&p).unwrap();
    assert_eq!(w.to_f32("c.weight").unwrap(), vec![6.0, 8.0, 0.0, 1.0]);
    assert_eq!(w.names().collect::<Vec<_>>(), vec!["c.weight"]);
    // dim=2 (HuBERT's positional conv): g (1, 1, K), one norm per kernel tap over the other
    // dims. v (2, 1, 2) = taps (3, 4) and (0, 2) with g = (10, 1) -> (6, 8) and (0, 1), laid
    // out channel-major: [6, 0, 8, 1].
    let last = Pickle::new()
        .op(b"}(")
        .tensor("c.weight_g", ("FloatStorage", "0", 2), 0, &[1, 1, 2], &[2, 2, 1])
        .tensor("c.weight_v", ("FloatStorage", "1", 4), 0, &[2, 1, 2], &[2, 2, 1])
        .op(b"u.");
    let p = s.file(
        "last.bin",
        &torch_zip(&last.0, &[("0", f32_bytes(&[10.0, 1.0])), ("1", f32_bytes(&[3.0, 0.0, 4.0, 2.0]))]),
    );
    assert_eq!(Weights::open(&p).unwrap().to_f32("c.weight").unwrap(), vec![6.0, 0.0, 8.0, 1.0]);
    // g over the middle dimension is neither form.
    let middle = Pickle::new()
        .op(b"}(")
        .tensor("c.weight_g", ("FloatStorage", "0", 2), 0, &[1, 2, 1], &[2, 1, 1])
        .tensor("c.weight_v", ("FloatStorage", "1", 4), 0, &[2, 2, 1], &[2, 1, 1])
        .op(b"u.");
    let p = s.file("middle.bin", &torch_zip(&middle.0, &[("0", f32_bytes(&[1.0; 2])), ("1", f32_bytes(&[1.0; 4]))]));
    assert_file_err(Weights::open(&p), &p, &["c.weight_g", "does not fit"]);
}

#[test]
fn truncated_and_corrupted_fixture_pickles_never_panic() {
    let s = Scratch::new("zip-fuzz");
    let bin = std::fs::read(fixture("tiny").join("pytorch_model.bin")).unwrap();
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(&bin)).unwrap();
    let mut pkl = Vec::new();
    std::io::Read::read_to_end(&mut z.by_name("pytorch_model/data.pkl").unwrap(), &mut pkl).unwrap();
    // Every prefix that cuts the pickle short is an error (sampled: every byte of the head, then a stride).
    let cuts: Vec<usize> = (0..300).chain((300..pkl.len() - 1).step_by(211)).collect();
    for cut in cuts {
        let p = s.file("cut.bin", &torch_zip(&pkl[..cut], &[]));
        assert_file_err(Weights::open(&p), &p, &["data.pkl"]);
    }
    // Random byte changes: Ok or Err, never a panic (storages are absent, so Ok is rare).
    let mut rng = Rng::new(11);
    for _ in 0..300 {
        let mut b = pkl.clone();
        for _ in 0..1 + rng.below(3) {
            let i = rng.below(b.len() as u32) as usize;
            b[i] = rng.below(256) as u8;
        }
        let p = s.file("flip.bin", &torch_zip(&b, &[]));
        let _ = Weights::open(&p);
    }
    // A truncated zip.
    for cut in [10, bin.len() / 2, bin.len() - 10] {
        let p = s.file("cut.bin", &bin[..cut]);
        assert_file_err(Weights::open(&p), &p, &[]);
    }
}
