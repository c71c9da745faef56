//! The command line as a user runs it: the built binary on the fixture model, real files.

use std::path::{Path, PathBuf};
use std::process::Command;

use bark_wgpu::audio::read_wav;
use bark_wgpu::weights::WeightSource;

const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny");

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bark-wgpu"));
    c.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    c
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("bark-wgpu-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn fixture_text() -> String {
    let json = std::fs::read_to_string(Path::new(MODEL).join("generation.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["text"].as_str().unwrap().to_string()
}

#[test]
fn say_greedy_writes_transformers_audio_and_a_reusable_prompt() {
    let dir = scratch("say");
    let (out, prompt) = (dir.join("out.wav"), dir.join("voice.npz"));
    let status = bin()
        .args(["say", "--model", MODEL, "--text", &fixture_text(), "--greedy", "--max-semantic-tokens", "24"])
        .arg("--out")
        .arg(&out)
        .arg("--save-prompt")
        .arg(&prompt)
        .status()
        .unwrap();
    assert!(status.success());
    let (samples, rate) = read_wav(&out).unwrap();
    assert_eq!(rate, 24_000);
    let want =
        WeightSource::open(Path::new(MODEL).join("generation.safetensors")).unwrap().to_f32("greedy.audio").unwrap();
    assert_eq!(samples.len(), want.len());
    // Float WAV holds the f32 samples exactly; 1e-4 is the parity bound of the pipeline.
    let worst = samples.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(worst <= 1e-4, "audio differs from transformers by {worst}");
    let p = bark_wgpu::voice::VoicePrompt::load_npz(&prompt).unwrap();
    assert_eq!(p.fine.len(), 8);
    std::fs::remove_dir_all(&dir).ok();
}

fn fails_with(args: &[&str], needle: &str) {
    let out = bin().args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(err.contains(needle), "{args:?}: stderr lacks {needle:?}:\n{err}");
}

#[test]
fn bad_input_is_one_clear_error_and_no_file() {
    let dir = scratch("bad");
    let out = dir.join("x.wav");
    let o = out.to_str().unwrap();
    fails_with(&["say", "--model", MODEL, "--text", "   ", "--out", o], "the text is empty");
    fails_with(&["say", "--model", MODEL, "--text", "hi", "--out", o, "--voice", "v2/en_speakr_6"], "voice");
    fails_with(&["say", "--model", "/no/such/model", "--text", "hi", "--out", o], "/no/such/model");
    assert!(!out.exists(), "a failed run left {}", out.display());
    let unwritable = dir.join("missing-dir/x.wav");
    fails_with(
        &[
            "say",
            "--model",
            MODEL,
            "--text",
            "hi",
            "--greedy",
            "--max-semantic-tokens",
            "2",
            "--out",
            unwritable.to_str().unwrap(),
        ],
        "missing-dir",
    );
    assert!(std::fs::read_dir(&dir).unwrap().next().is_none(), "files left behind");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn devices_lists_the_adapter() {
    let out = bin().arg("devices").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("chosen:"));
}

#[test]
fn clone_from_a_recording_saves_its_codes_as_the_prompt() {
    let dir = scratch("clone");
    let r = WeightSource::open(Path::new(MODEL).join("reference.safetensors")).unwrap();
    let audio = r.to_f32("codec.encode.audio").unwrap();
    let wav = dir.join("me.wav");
    bark_wgpu::audio::write_wav(&wav, &audio, 24_000, Default::default()).unwrap();
    let (out, prompt) = (dir.join("out.wav"), dir.join("me.npz"));
    let status = bin()
        .args(["say", "--model", MODEL, "--text", "Hi.", "--greedy", "--max-semantic-tokens", "3"])
        .args(["--clone-text", "Hello, my name is Suno."])
        .arg("--clone-from")
        .arg(&wav)
        .arg("--out")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    assert!(out.exists());
    // --clone-from without --clone-text is refused before anything runs.
    let o = bin()
        .args(["say", "--model", MODEL, "--text", "Hi.", "--out"])
        .arg(&prompt)
        .arg("--clone-from")
        .arg(&wav)
        .output()
        .unwrap();
    assert!(!o.status.success() && !prompt.exists());
    std::fs::remove_dir_all(&dir).ok();
}
