//! Voice prompts: NumPy-written fixtures, hand-built .npz/.npy files (independent of our writer),
//! round trips through our writer, presets of a Hugging Face style layout, and every bad input.

use std::io::Write;
use std::path::{Path, PathBuf};

use bark_wgpu::voice::npy::{parse_npy, write_npy_i64};
use bark_wgpu::voice::{list_voices, resolve_voice, VoicePrompt};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/voices")
}

/// A fresh empty directory for one test.
fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bark-wgpu-voice-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The prompt scripts/make_voice_fixtures.py writes for `seed` (same formulas).
fn formula_prompt(seed: u32) -> VoicePrompt {
    let m = 9;
    let fine: Vec<u32> = (0..8).flat_map(|r| (0..m).map(move |t| (100 * r + 7 * t + seed) % 1024)).collect();
    let rows = |flat: &[u32]| flat.chunks(m as usize).map(<[u32]>::to_vec).collect::<Vec<_>>();
    VoicePrompt {
        semantic: (0..6).map(|i| (37 * i + 5 + seed) % 10000).collect(),
        coarse: rows(&fine[..2 * m as usize]),
        fine: rows(&fine),
    }
}

/// A .npy file built byte by byte: magic, version, little-endian header length, header, data.
fn hand_npy(version: u8, header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = b"\x93NUMPY".to_vec();
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn le_bytes<const N: usize, T: Copy>(values: &[T], to: impl Fn(T) -> [u8; N]) -> Vec<u8> {
    values.iter().flat_map(|&v| to(v)).collect()
}

fn npy_i64(shape: &str, values: &[i64]) -> Vec<u8> {
    let header = format!("{{'descr': '<i8', 'fortran_order': False, 'shape': {shape}, }}\n");
    hand_npy(1, &header, &le_bytes(values, i64::to_le_bytes))
}

/// A stored zip holding `entries` (name, bytes), written with the zip crate directly.
fn write_zip(path: &Path, entries: &[(&str, Vec<u8>)]) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in entries {
        zip.start_file(*name, options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
}

/// The three entries of a valid prompt as hand-built int64 .npy files, for tests to spoil one.
fn good_entries() -> Vec<(&'static str, Vec<u8>)> {
    let p = formula_prompt(0);
    let wide = |v: &[u32]| v.iter().map(|&c| c as i64).collect::<Vec<_>>();
    vec![
        ("semantic_prompt.npy", npy_i64("(6,)", &wide(&p.semantic))),
        ("coarse_prompt.npy", npy_i64("(2, 9)", &wide(&p.coarse.concat()))),
        ("fine_prompt.npy", npy_i64("(8, 9)", &wide(&p.fine.concat()))),
    ]
}

/// Loads `entries` as an .npz and returns the error text, which must name the file.
fn load_error(dir: &Path, name: &str, entries: &[(&str, Vec<u8>)]) -> String {
    let path = dir.join(name);
    write_zip(&path, entries);
    let err = VoicePrompt::load_npz(&path).expect_err("a bad prompt must not load").to_string();
    assert!(err.contains(name), "error does not name the file: {err}");
    err
}

#[test]
fn numpy_savez_int64_fixture_loads() {
    let p = VoicePrompt::load_npz(fixtures().join("numpy_savez.npz")).unwrap();
    assert_eq!(p, formula_prompt(0));
}

#[test]
fn numpy_savez_compressed_int32_fixture_loads() {
    let p = VoicePrompt::load_npz(fixtures().join("numpy_savez_compressed.npz")).unwrap();
    assert_eq!(p, formula_prompt(1));
}

#[test]
fn save_then_load_round_trips_as_stored_int64_entries() {
    let dir = temp_dir("roundtrip");
    let path = dir.join("voice.npz");
    let prompt = formula_prompt(7);
    prompt.save_npz(&path).unwrap();
    assert_eq!(VoicePrompt::load_npz(&path).unwrap(), prompt);
    // The entries are what np.savez writes: stored, `<key>.npy`, int64 of the right shape.
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
    for (key, shape) in [("semantic_prompt", vec![6]), ("coarse_prompt", vec![2, 9]), ("fine_prompt", vec![8, 9])] {
        let mut entry = zip.by_name(&format!("{key}.npy")).unwrap();
        assert_eq!(entry.compression(), zip::CompressionMethod::Stored);
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
        assert!(bytes[10..].starts_with(b"{'descr': '<i8', 'fortran_order': False"), "{key}");
        // NumPy pads magic + header to a multiple of 64 bytes.
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0, "{key}");
        assert_eq!(parse_npy(&bytes).unwrap().shape, shape);
    }
    // Only the finished file is left in the directory.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
}

#[test]
fn hand_built_npz_with_other_versions_and_dtypes_loads() {
    let dir = temp_dir("handbuilt");
    let p = formula_prompt(3);
    let semantic: Vec<i32> = p.semantic.iter().map(|&c| c as i32).collect();
    let coarse: Vec<u16> = p.coarse.concat().iter().map(|&c| c as u16).collect();
    let fine_be: Vec<u8> = p.fine.concat().iter().flat_map(|&c| (c as i64).to_be_bytes()).collect();
    let entries = [
        // Version 2.0 header, int32, keys in another order, double quotes, no trailing comma.
        (
            "semantic_prompt.npy",
            hand_npy(
                2,
                "{\"shape\": (6,), \"fortran_order\": False, \"descr\": \"<i4\"}   \n",
                &le_bytes(&semantic, i32::to_le_bytes),
            ),
        ),
        // Version 3.0 header, uint16.
        (
            "coarse_prompt.npy",
            hand_npy(
                3,
                "{'descr': '<u2', 'fortran_order': False, 'shape': (2, 9), }\n",
                &le_bytes(&coarse, u16::to_le_bytes),
            ),
        ),
        // Big-endian int64, and the key without the `.npy` suffix.
        ("fine_prompt", hand_npy(1, "{'descr': '>i8', 'fortran_order': False, 'shape': (8, 9), }\n", &fine_be)),
    ];
    let path = dir.join("hand.npz");
    write_zip(&path, &entries);
    assert_eq!(VoicePrompt::load_npz(&path).unwrap(), p);
}

#[test]
fn npy_reader_matches_hand_built_bytes_for_each_integer_dtype() {
    let values: [i64; 4] = [0, 1, 100, 127];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("|u1", values.iter().map(|&v| v as u8).collect()),
        ("|i1", values.iter().map(|&v| v as i8 as u8).collect()),
        ("<i2", values.iter().flat_map(|&v| (v as i16).to_le_bytes()).collect()),
        ("<u4", values.iter().flat_map(|&v| (v as u32).to_le_bytes()).collect()),
        ("<u8", values.iter().flat_map(|&v| (v as u64).to_le_bytes()).collect()),
        (">i4", values.iter().flat_map(|&v| (v as i32).to_be_bytes()).collect()),
    ];
    for (descr, data) in cases {
        let header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (2, 2), }}\n");
        let a = parse_npy(&hand_npy(1, &header, &data)).unwrap_or_else(|e| panic!("{descr}: {e}"));
        assert_eq!((a.shape, a.values), (vec![2, 2], values.to_vec()), "{descr}");
    }
    // Sign extension of negative values.
    let a = parse_npy(&hand_npy(1, "{'descr': '<i2', 'fortran_order': False, 'shape': (1,), }\n", &[0xfe, 0xff]));
    assert_eq!(a.unwrap().values, vec![-2]);
    // The writer's output reads back, including a 0-d and an empty array.
    for (shape, values) in [(vec![], vec![5i64]), (vec![0], vec![]), (vec![3, 1], vec![-1, i64::MAX, 0])] {
        let a = parse_npy(&write_npy_i64(&shape, &values).unwrap()).unwrap();
        assert_eq!((a.shape, a.values), (shape, values));
    }
    assert!(write_npy_i64(&[2, 2], &[1, 2, 3]).is_err());
}

#[test]
fn npy_reader_rejects_malformed_headers_without_panicking() {
    let data = [0u8; 16];
    let bad_headers = [
        "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }",
        "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), 'extra': 1}",
        "{'descr': '<i8', 'fortran_order': False}",
        "{'descr': '<i8', 'fortran_order': Maybe, 'shape': (2,), }",
        "{'descr': '<i8', 'fortran_order': False, 'shape': (2,, }",
        "{'descr': '<i8', 'fortran_order': False, 'shape': (-2,), }",
        "{'descr': '<i8', 'fortran_order': False, 'shape': (99999999999999999999,), }",
        "{'descr': '<i8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }",
        "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }",
        "{'descr': '<i8', 'fortran_order': True, 'shape': (2,), }",
        "{'descr': '<i3', 'fortran_order': False, 'shape': (2,), }",
        "{'descr': '|i8', 'fortran_order': False, 'shape': (2,), }",
        "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), } trailing",
        "",
    ];
    for header in bad_headers {
        assert!(parse_npy(&hand_npy(1, header, &data)).is_err(), "accepted {header:?}");
    }
    let good = hand_npy(1, "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }", &data);
    assert!(parse_npy(&good).is_ok());
    // Every truncation of a good file is an error, as is a wrong version or magic.
    for cut in 0..good.len() {
        assert!(parse_npy(&good[..cut]).is_err(), "accepted a file cut at {cut}");
    }
    let mut version = good.clone();
    version[6] = 4;
    assert!(parse_npy(&version).unwrap_err().contains("version"));
    let mut magic = good.clone();
    magic[1] = b'X';
    assert!(parse_npy(&magic).is_err());
    // A header length pointing past the end.
    let mut long = good.clone();
    long[8..10].copy_from_slice(&u16::MAX.to_le_bytes());
    assert!(parse_npy(&long).is_err());
    // u64 values beyond i64 are refused, not wrapped.
    let huge = hand_npy(1, "{'descr': '<u8', 'fortran_order': False, 'shape': (1,), }", &u64::MAX.to_le_bytes());
    assert!(parse_npy(&huge).is_err());
}

#[test]
fn bad_npz_files_give_errors_naming_file_and_key() {
    let dir = temp_dir("bad");
    let spoil = |index: usize, bytes: Vec<u8>| {
        let mut e = good_entries();
        e[index].1 = bytes;
        e
    };
    let mut fine_codes: Vec<i64> = formula_prompt(0).fine.concat().iter().map(|&c| c as i64).collect();

    let err = load_error(&dir, "missing.npz", &good_entries()[..2]);
    assert!(err.contains("fine_prompt") && err.contains("missing"), "{err}");

    let err = load_error(&dir, "rank3.npz", &spoil(1, npy_i64("(2, 3, 3)", &[1; 18])));
    assert!(err.contains("coarse_prompt") && err.contains("(2, 3, 3)"), "{err}");

    let err = load_error(&dir, "rows.npz", &spoil(1, npy_i64("(3, 9)", &[1; 27])));
    assert!(err.contains("coarse_prompt") && err.contains("(2, M)"), "{err}");

    let float = hand_npy(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (6,), }\n", &[0; 48]);
    let err = load_error(&dir, "float.npz", &spoil(0, float));
    assert!(err.contains("semantic_prompt") && err.contains("<f8"), "{err}");

    let fortran = hand_npy(1, "{'descr': '<i8', 'fortran_order': True, 'shape': (8, 9), }\n", &[0; 576]);
    let err = load_error(&dir, "fortran.npz", &spoil(2, fortran));
    assert!(err.contains("fine_prompt") && err.contains("Fortran"), "{err}");

    let mut short = good_entries()[2].1.clone();
    short.truncate(short.len() - 3);
    let err = load_error(&dir, "short_data.npz", &spoil(2, short));
    assert!(err.contains("fine_prompt") && err.contains("bytes"), "{err}");

    fine_codes[70] = 1024;
    let err = load_error(&dir, "fine1024.npz", &spoil(2, npy_i64("(8, 9)", &fine_codes)));
    assert!(err.contains("fine_prompt") && err.contains("1024"), "{err}");

    fine_codes[70] = -1;
    let err = load_error(&dir, "negative.npz", &spoil(2, npy_i64("(8, 9)", &fine_codes)));
    assert!(err.contains("fine_prompt") && err.contains("-1"), "{err}");

    let err = load_error(&dir, "coarse1024.npz", &spoil(1, npy_i64("(2, 1)", &[3, 1024])));
    assert!(err.contains("coarse_prompt"), "{err}");

    let err = load_error(&dir, "sem10000.npz", &spoil(0, npy_i64("(2,)", &[9999, 10000])));
    assert!(err.contains("semantic_prompt") && err.contains("10000"), "{err}");

    let err = load_error(&dir, "frames.npz", &spoil(1, npy_i64("(2, 8)", &[0; 16])));
    assert!(err.contains("coarse_prompt") && err.contains("fine_prompt") && err.contains("frames"), "{err}");

    let err = load_error(&dir, "empty.npz", &spoil(0, npy_i64("(0,)", &[])));
    assert!(err.contains("semantic"), "{err}");
}

#[test]
fn truncated_missing_and_non_zip_files_give_errors_naming_the_file() {
    let dir = temp_dir("truncated");
    let good = dir.join("good.npz");
    formula_prompt(0).save_npz(&good).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    for cut in [0, 10, bytes.len() / 2, bytes.len() - 1] {
        let path = dir.join(format!("cut{cut}.npz"));
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let err = VoicePrompt::load_npz(&path).expect_err("truncated file loaded").to_string();
        assert!(err.contains(&format!("cut{cut}.npz")), "{err}");
    }
    let text = dir.join("text.npz");
    std::fs::write(&text, "not a zip at all").unwrap();
    assert!(VoicePrompt::load_npz(&text).unwrap_err().to_string().contains("text.npz"));
    let missing = dir.join("missing.npz");
    assert!(VoicePrompt::load_npz(&missing).unwrap_err().to_string().contains("missing.npz"));
}

#[test]
fn unwritable_or_invalid_saves_fail_and_leave_nothing_behind() {
    let dir = temp_dir("unwritable");
    let prompt = formula_prompt(0);
    let nowhere = dir.join("no_such_dir").join("voice.npz");
    let err = prompt.save_npz(&nowhere).unwrap_err().to_string();
    assert!(err.contains("voice.npz"), "{err}");
    let err = prompt.save_npz(&dir).unwrap_err().to_string();
    assert!(err.contains("directory"), "{err}");

    // An invalid prompt does not replace an existing file, and leaves no temporary file.
    let path = dir.join("keep.npz");
    prompt.save_npz(&path).unwrap();
    let before = std::fs::read(&path).unwrap();
    let mut bad = prompt.clone();
    bad.coarse[1].pop();
    let err = bad.save_npz(&path).unwrap_err().to_string();
    assert!(err.contains("keep.npz") && err.contains("coarse_prompt"), "{err}");
    let mut bad = prompt.clone();
    bad.semantic[0] = 10_000;
    assert!(bad.save_npz(&path).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), before);
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("keep.npz")]);
}

#[test]
fn presets_list_and_resolve() {
    let model = fixtures().join("presets");
    assert_eq!(list_voices(&model).unwrap(), vec!["announcer", "en_speaker_1", "v2/de_speaker_3", "v2/en_speaker_6"]);
    // scripts/make_voice_fixtures.py gives the presets seeds 2, 3, 4, 5 in this order.
    for (name, seed) in [("announcer", 2), ("en_speaker_1", 3), ("v2/en_speaker_6", 4), ("v2/de_speaker_3", 5)] {
        assert_eq!(resolve_voice(&model, name).unwrap(), formula_prompt(seed), "{name}");
    }
    // An existing file wins over preset lookup.
    let file = fixtures().join("numpy_savez.npz");
    assert_eq!(resolve_voice(&model, file.to_str().unwrap()).unwrap(), formula_prompt(0));
}

#[test]
fn unknown_presets_suggest_the_closest_names() {
    let model = fixtures().join("presets");
    let err = resolve_voice(&model, "v2/en_speaker_7").unwrap_err().to_string();
    assert!(err.contains("speaker_embeddings_path.json") && err.contains("v2/en_speaker_7"), "{err}");
    let suggestions = err.rsplit("closest presets: ").next().unwrap();
    // Distances from `v2/en_speaker_7`: v2/en_speaker_6 1, v2/de_speaker_3 3, en_speaker_1 4, announcer > 4.
    assert_eq!(suggestions, "v2/en_speaker_6, v2/de_speaker_3, en_speaker_1");

    let err = resolve_voice(&model, "missing.npz").unwrap_err().to_string();
    assert!(err.contains("missing.npz") && err.contains("no such"), "{err}");

    let empty = temp_dir("nopresets");
    assert!(list_voices(&empty).unwrap().is_empty());
    let err = resolve_voice(&empty, "announcer").unwrap_err().to_string();
    assert!(err.contains("announcer") && err.contains("no presets"), "{err}");
}

#[test]
fn broken_presets_name_the_offending_file() {
    let model = temp_dir("brokenpresets");
    let emb = model.join("speaker_embeddings");
    std::fs::create_dir_all(&emb).unwrap();
    let p = formula_prompt(0);
    let wide = |v: &[u32]| v.iter().map(|&c| c as i64).collect::<Vec<_>>();
    let mut fine = wide(&p.fine.concat());
    fine[0] = 5000;
    std::fs::write(emb.join("s.npy"), npy_i64("(6,)", &wide(&p.semantic))).unwrap();
    std::fs::write(emb.join("c.npy"), npy_i64("(2, 9)", &wide(&p.coarse.concat()))).unwrap();
    std::fs::write(emb.join("f.npy"), npy_i64("(8, 9)", &fine)).unwrap();
    std::fs::write(emb.join("bad.npy"), b"\x93NUMPY\x01\x00").unwrap();
    let preset =
        |s: &str, c: &str, f: &str| serde_json::json!({"semantic_prompt": s, "coarse_prompt": c, "fine_prompt": f});
    let index = serde_json::json!({
        "repo_or_path": "x",
        "range": preset("speaker_embeddings/s.npy", "speaker_embeddings/c.npy", "speaker_embeddings/f.npy"),
        "truncated": preset("speaker_embeddings/bad.npy", "speaker_embeddings/c.npy", "speaker_embeddings/f.npy"),
        "absent": preset("speaker_embeddings/s.npy", "speaker_embeddings/none.npy", "speaker_embeddings/f.npy"),
        "escape": preset("../s.npy", "speaker_embeddings/c.npy", "speaker_embeddings/f.npy"),
        "partial": {"semantic_prompt": "speaker_embeddings/s.npy"},
    });
    std::fs::write(model.join("speaker_embeddings_path.json"), index.to_string()).unwrap();
    assert_eq!(list_voices(&model).unwrap(), vec!["absent", "escape", "partial", "range", "truncated"]);
    for (name, names) in [
        ("range", "f.npy"),
        ("truncated", "bad.npy"),
        ("absent", "none.npy"),
        ("escape", "speaker_embeddings_path.json"),
        ("partial", "speaker_embeddings_path.json"),
    ] {
        let err = resolve_voice(&model, name).unwrap_err().to_string();
        assert!(err.contains(names), "{name}: {err}");
    }
    std::fs::write(model.join("speaker_embeddings_path.json"), "[1, 2]").unwrap();
    assert!(list_voices(&model).unwrap_err().to_string().contains("speaker_embeddings_path.json"));
}
