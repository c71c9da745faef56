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
        "{'descr': '<i8', 'fortran_order': True, 'shape': (3, 1), }",
        "{'descr': '|b2', 'fortran_order': False, 'shape': (2,), }",
        "{'descr': [('a', '<i8')], 'fortran_order': False, 'shape': (2,), }",
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

    let object = hand_npy(1, "{'descr': '|O', 'fortran_order': False, 'shape': (8, 9), }\n", &[0x80; 40]);
    let err = load_error(&dir, "object.npz", &spoil(2, object));
    assert!(err.contains("fine_prompt") && err.contains("never unpickles"), "{err}");

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
    let names = ["announcer", "en_speaker_1", "fortran_order", "v2/de_speaker_3", "v2/en_speaker_6"];
    assert_eq!(list_voices(&model).unwrap(), names);
    // scripts/make_voice_fixtures.py gives the presets seeds 2..=6 in this order; `fortran_order`
    // keeps its coarse and fine arrays in Fortran order, as Suno's presets and the hub's do.
    let seeds =
        [("announcer", 2), ("en_speaker_1", 3), ("v2/en_speaker_6", 4), ("v2/de_speaker_3", 5), ("fortran_order", 6)];
    let header = std::fs::read(model.join("speaker_embeddings/fortran_order_coarse_prompt.npy")).unwrap();
    assert!(String::from_utf8_lossy(&header[..128]).contains("'fortran_order': True"));
    for (name, seed) in seeds {
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

/// What scripts/make_voice_fixtures.py stores at C-order flat index `i` of a `descr` array.
fn layout_value(descr: &str, i: i64) -> i64 {
    let bytes: u32 = descr[2..].parse().unwrap();
    match &descr[1..2] {
        "b" => i64::from(i % 3 == 0),
        kind => {
            let lead = if kind == "i" { 5 * i - 7 } else { 5 * i };
            lead * (1i64 << (8 * (bytes - 1))) + if bytes > 1 { i } else { 0 }
        }
    }
}

#[test]
fn every_integer_layout_numpy_writes_reads_as_numpy_wrote_it() {
    let dir = fixtures().join("numpy");
    let types = [
        ("int8", "i1"),
        ("uint8", "u1"),
        ("bool", "b1"),
        ("int16", "i2"),
        ("uint16", "u2"),
        ("int32", "i4"),
        ("uint32", "u4"),
        ("int64", "i8"),
        ("uint64", "u8"),
    ];
    let mut checked = 0;
    for (name, code) in types {
        let endians: &[(&str, &str)] = if code.ends_with('1') { &[("", "|")] } else { &[("_le", "<"), ("_be", ">")] };
        for (tag, order_char) in endians {
            for order in ["C", "F"] {
                let file = format!("{name}{tag}_{order}.npy");
                let bytes = std::fs::read(dir.join(&file)).unwrap();
                // The file is the layout its name says (so a Fortran case is really one).
                let header = String::from_utf8_lossy(&bytes[10..100]).to_string();
                assert!(header.contains(&format!("'descr': '{order_char}{code}'")), "{file}: {header}");
                assert!(
                    header.contains(&format!("'fortran_order': {}", if order == "F" { "True" } else { "False" })),
                    "{file}: {header}"
                );
                let a = parse_npy(&bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
                let want: Vec<i64> = (0..24).map(|i| layout_value(&format!("{order_char}{code}"), i)).collect();
                assert_eq!((a.shape, a.values), (vec![2, 3, 4], want), "{file}");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 30);
}

#[test]
fn numpy_fortran_order_prompts_load_from_savez_and_savez_compressed() {
    // savez: int64 semantic, Fortran-order int64 coarse, int32 fine (as Suno's presets are).
    assert_eq!(VoicePrompt::load_npz(fixtures().join("numpy_savez_fortran.npz")).unwrap(), formula_prompt(8));
    // savez_compressed, big-endian, coarse and fine in Fortran order.
    let p = VoicePrompt::load_npz(fixtures().join("numpy_savez_compressed_fortran.npz")).unwrap();
    assert_eq!(p, formula_prompt(9));
}

#[test]
fn arrays_that_are_not_integers_give_one_sentence_errors() {
    let dir = fixtures().join("numpy");
    for (file, says) in [
        ("object.npy", "never unpickles"),
        ("dict_np_save.npy", "never unpickles"),
        ("float64.npy", "floating-point"),
        ("float16.npy", "floating-point"),
        ("complex64.npy", "complex"),
        ("str.npy", "text"),
        ("bytes.npy", "text"),
        ("datetime.npy", "dates"),
        ("structured.npy", "structured"),
    ] {
        let err = parse_npy(&std::fs::read(dir.join(file)).unwrap()).expect_err(file);
        assert!(err.contains(says) && !err.contains('\n'), "{file}: {err}");
    }
    // Files that are not an .npz of three arrays say what they are instead.
    for (file, says) in [
        ("object_coarse.npz", "`coarse_prompt`: the array holds Python objects"),
        ("dict_np_save.npy", "single .npy array"),
        ("dict.pkl", "never unpickles"),
    ] {
        let err = VoicePrompt::load_npz(dir.join(file)).expect_err(file).to_string();
        assert!(err.contains(says) && err.contains(file) && !err.contains('\n'), "{file}: {err}");
    }
}

/// scripts/make_preset_fixtures.py's NumPy view of every preset of bark 0.1.5: shapes and, per
/// array, the sum over the C-order flat index i of (i + 1) * code.
fn suno_reference() -> serde_json::Map<String, serde_json::Value> {
    let text = std::fs::read_to_string(fixtures().join("suno/presets.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Loads one preset and compares it with NumPy's view; the error names the file.
fn check_suno_preset(path: &Path, want: Option<&serde_json::Value>) -> Result<(), String> {
    let p = VoicePrompt::load_npz(path).map_err(|e| e.to_string())?;
    let Some(want) = want else { return Ok(()) };
    let m = p.frames();
    let arrays =
        [(vec![p.semantic.len()], p.semantic.clone()), (vec![2, m], p.coarse.concat()), (vec![8, m], p.fine.concat())];
    let got_shapes: Vec<Vec<usize>> = arrays.iter().map(|(s, _)| s.clone()).collect();
    let got_sums: Vec<u64> =
        arrays.iter().map(|(_, v)| v.iter().zip(1u64..).map(|(&c, i)| u64::from(c) * i).sum()).collect();
    let want_shapes: Vec<Vec<usize>> = serde_json::from_value(want["shapes"].clone()).unwrap();
    let want_sums: Vec<u64> = serde_json::from_value(want["sums"].clone()).unwrap();
    if (&got_shapes, &got_sums) != (&want_shapes, &want_sums) {
        return Err(format!(
            "{}: read shapes {got_shapes:?} sums {got_sums:?}, NumPy reads {want_shapes:?} {want_sums:?}",
            path.display()
        ));
    }
    Ok(())
}

/// Every .npz under `dir`, as paths relative to it with `/` separators, sorted.
fn npz_files(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let entry = entry.unwrap();
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        if entry.file_type().unwrap().is_dir() {
            npz_files(&entry.path(), &format!("{name}/"), out);
        } else if name.ends_with(".npz") {
            out.push(name);
        }
    }
    out.sort();
}

#[test]
fn suno_presets_read_as_numpy_reads_them() {
    let reference = suno_reference();
    assert_eq!(reference.len(), 271, "presets.json covers bark 0.1.5's 271 presets");
    // The committed presets (tests/fixtures/voices/suno, from bark 0.1.5 on PyPI, MIT): what
    // 270 of the 271 are (coarse in Fortran order), the one in uint16, and the longest.
    let committed = fixtures().join("suno");
    let mut names = Vec::new();
    npz_files(&committed, "", &mut names);
    assert_eq!(names, ["announcer.npz", "de_speaker_7.npz", "en_speaker_6.npz"]);
    for name in &names {
        check_suno_preset(&committed.join(name), Some(&reference[name])).unwrap();
    }
    let entry_header = |file: &str, key: &str| {
        let mut zip = zip::ZipArchive::new(std::fs::File::open(committed.join(file)).unwrap()).unwrap();
        let mut bytes = vec![0; 128];
        std::io::Read::read_exact(&mut zip.by_name(&format!("{key}.npy")).unwrap(), &mut bytes).unwrap();
        String::from_utf8_lossy(&bytes).to_string()
    };
    assert!(entry_header("en_speaker_6.npz", "coarse_prompt").contains("'fortran_order': True"));
    assert!(entry_header("announcer.npz", "fine_prompt").contains("'descr': '<u2'"));
    let longest = VoicePrompt::load_npz(committed.join("de_speaker_7.npz")).unwrap();
    assert_eq!((longest.semantic.len(), longest.frames()), (731, 1098));

    // All 271, where scripts/suno_presets_check.sh (or the caller) has put them.
    let Some(dir) = std::env::var_os("BARK_SUNO_PRESETS") else {
        eprintln!(
            "BARK_SUNO_PRESETS is not set: checked the 3 committed Suno presets only \
             (scripts/suno_presets_check.sh checks all 271)"
        );
        return;
    };
    let dir = PathBuf::from(dir);
    let mut all = Vec::new();
    npz_files(&dir, "", &mut all);
    let failures: Vec<String> =
        all.iter().filter_map(|name| check_suno_preset(&dir.join(name), reference.get(name)).err()).collect();
    let missing: Vec<&String> = reference.keys().filter(|name| !all.contains(name)).collect();
    assert!(failures.is_empty(), "{} of {} presets fail:\n{}", failures.len(), all.len(), failures.join("\n"));
    let first = &missing[..missing.len().min(5)];
    assert!(
        missing.is_empty(),
        "{}: {} of bark 0.1.5's presets are not there: {first:?}...",
        dir.display(),
        missing.len()
    );
    eprintln!("BARK_SUNO_PRESETS: all {} presets under {} read as NumPy reads them", all.len(), dir.display());
}

#[test]
fn a_real_preset_saved_by_us_reads_back_equal() {
    // de_speaker_7 (Fortran-order coarse, int32 fine) through our int64 C-order writer.
    let dir = temp_dir("suno-roundtrip");
    let p = VoicePrompt::load_npz(fixtures().join("suno/de_speaker_7.npz")).unwrap();
    p.save_npz(dir.join("saved.npz")).unwrap();
    assert_eq!(VoicePrompt::load_npz(dir.join("saved.npz")).unwrap(), p);
}
