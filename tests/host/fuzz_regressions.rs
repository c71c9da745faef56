//! Replays every input kept under `fuzz/regressions/<target>/` through the fuzz target's own body
//! (`fuzz/src/run.rs`, compiled here on stable): each must come back Ok or as a one-line error,
//! never a panic. A target without a regression folder fails, so a renamed folder cannot
//! silently turn the replay into a no-op.

#[path = "../../fuzz/src/run.rs"]
mod run;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

#[test]
fn every_kept_fuzz_input_is_an_error_or_ok_never_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut replayed = 0;
    let mut failures = Vec::new();
    for target in run::TARGETS {
        let dir = root.join(target);
        let files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("fuzz target `{target}` has no regression folder {}: {e}", dir.display()))
            .map(|e| e.expect("a readable directory entry").path())
            .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != "README.md"))
            .collect();
        assert!(!files.is_empty(), "{} holds no inputs to replay", dir.display());
        for file in files {
            let data = std::fs::read(&file).expect("a readable regression input");
            match catch_unwind(AssertUnwindSafe(|| run::run(target, &data))) {
                Ok(Ok(())) => {}
                Ok(Err(message)) if !message.trim().is_empty() && !message.contains('\n') => {}
                Ok(Err(message)) => failures.push(format!("{}: not a one-line error: {message:?}", file.display())),
                Err(_) => failures.push(format!("{}: panicked", file.display())),
            }
            replayed += 1;
        }
    }
    assert!(failures.is_empty(), "{} of {replayed} kept fuzz inputs failed:\n{}", failures.len(), failures.join("\n"));
}

/// The envelopes the structure-aware targets draw from their bytes are files the loaders parse:
/// a table of two tiled F32 tensors and a torch zip round trip to the tensors they describe.
#[test]
fn structure_aware_envelopes_build_loadable_checkpoints() {
    use bark_wgpu::weights::WeightSource;
    // 2 tensors; "t0"-style names (pick 250 is past the special names), F32, rank 2 [3, 4];
    // then F32 rank 1 [5]; header length as written.
    let table = [2, 250, 0, 2, 3, 4, 2, 251, 0, 1, 5, 2, 1];
    let src = WeightSource::from_bytes("drawn.safetensors", run::safetensors_from(&table)).expect("a valid file");
    assert_eq!(src.len(), 2);
    assert_eq!(src.info("t0").map(|i| i.shape.clone()), Some(vec![3, 4]));
    assert_eq!(src.info("t1").map(|i| i.shape.clone()), Some(vec![5]));
    // A torch zip with no pickle program is refused with a sentence, not a panic.
    let zip = run::torch_zip_from(&[1, 0, 8, 0, 0, 0, 1]);
    assert!(zip.starts_with(b"PK\x03\x04"));
    let err = WeightSource::from_bytes("drawn.bin", zip).expect_err("an empty pickle");
    assert!(err.to_string().contains("data.pkl"), "{err}");
}

/// `Quantizer::check_weights` (the quantizer target's host-side check) accepts real quantizers
/// and reads their sizes; the expected sizes are those their `.info` entries (written by the
/// reference tool that saved them) state.
#[test]
fn quantizer_host_check_reads_the_fixture_quantizers_sizes() {
    use bark_wgpu::model::quantizer::Quantizer;
    use bark_wgpu::weights::Weights;
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for (file, input, classes) in [
        ("clone/quantizer_wide.pth", 24, 16),
        ("clone/quantizer.pth", 32, 2048),
        ("hubert-tiny/quantizer_v1.pth", 32, 1000),
    ] {
        let weights = Weights::open(fixtures.join(file)).expect("a readable fixture");
        assert_eq!(Quantizer::check_weights(&weights).expect(file), (input, classes), "{file}");
    }
}
