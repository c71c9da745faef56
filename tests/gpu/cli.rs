//! The command line as a user runs it: the built binary on the fixture model, real files.

use std::path::{Path, PathBuf};
use std::process::Command;

use bark_wgpu::audio::read_wav;
use bark_wgpu::weights::WeightSource;

const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny");

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bark-wgpu"));
    c.env("XDG_RUNTIME_DIR", std::env::temp_dir()).env_remove("BARK_PROFILE");
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
    let run = bin()
        .args(["say", "--model", MODEL, "--text", &fixture_text(), "--greedy", "--max-semantic-tokens", "24"])
        .arg("--out")
        .arg(&out)
        .arg("--save-prompt")
        .arg(&prompt)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    // Off a terminal (stderr is a pipe here) there are no progress bars or notes: nothing at all.
    assert!(run.stderr.is_empty(), "stderr: {}", String::from_utf8_lossy(&run.stderr));
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

#[test]
fn say_stream_writes_raw_pcm16_to_stdout() {
    let run = bin()
        .args([
            "say",
            "--model",
            MODEL,
            "--text",
            &fixture_text(),
            "--greedy",
            "--max-semantic-tokens",
            "24",
            "--stream",
        ])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(run.stdout.len().is_multiple_of(2));
    let got: Vec<i16> = run.stdout.chunks(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
    let want =
        WeightSource::open(Path::new(MODEL).join("generation.safetensors")).unwrap().to_f32("greedy.audio").unwrap();
    assert_eq!(got.len(), want.len());
    // The pipeline's parity bound, 1e-4, is 3.3 steps of 16-bit PCM; rounding adds one.
    let worst = got.iter().zip(&want).map(|(&a, &b)| (a as i32 - bark_wgpu::audio::pcm16(b) as i32).abs()).max();
    assert!(worst.unwrap() <= 4, "PCM differs from transformers' audio by {worst:?} steps");
    // A stream goes to standard output only: with --out or --pcm16 it is refused.
    for extra in [["--out", "x.wav"], ["--pcm16", "--quiet"]] {
        let run = bin().args(["say", "--model", MODEL, "--text", "Hi.", "--stream"]).args(extra).output().unwrap();
        assert!(!run.status.success(), "--stream with {extra:?} was accepted");
    }
}

#[cfg(feature = "serve")]
#[test]
fn serve_listens_answers_and_stops_on_sigterm_with_status_0() {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut child = bin()
        .args(["serve", "--model", MODEL, "--port", "0", "--max-batch", "2"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = lines
        .by_ref()
        .map_while(|l| l.ok())
        .find_map(|l| l.strip_prefix("listening on http://").map(String::from))
        .expect("the server says where it listens");
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    // The shell's own kill: no procps needed.
    let kill = Command::new("sh").args(["-c", &format!("kill -TERM {}", child.id())]).status().unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "serve exited with {status}");
    assert!(lines.map_while(|l| l.ok()).any(|l| l == "stopped"), "no 'stopped' line");
}

#[test]
fn bark_profile_prints_the_gpu_time_of_every_kernel() {
    let dir = scratch("profile");
    let out = dir.join("out.wav");
    let run = bin()
        .env("BARK_PROFILE", "1")
        .args(["say", "--model", MODEL, "--text", &fixture_text(), "--greedy", "--max-semantic-tokens", "8"])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{err}");
    assert!(read_wav(&out).is_ok(), "the audio is still written");
    assert!(err.starts_with("GPU time per kernel"), "{err}");
    // Every stage's kernels appear, each with a count and a time; the last line sums them. The
    // LayerNorm is the GPU set's or the CPU set's (shaders/cpu/), as the adapter has it.
    let norms = ["layernorm::layernorm", "cpu/layernorm_rows::layernorm_rows"];
    for kernel in ["sampling::sample", "rvq::rvq_decode", "lstm::", "conv1d::conv1d"] {
        assert!(err.lines().any(|l| l.starts_with(kernel)), "no {kernel} line:\n{err}");
    }
    assert!(err.lines().any(|l| norms.iter().any(|n| l.starts_with(n))), "no LayerNorm line:\n{err}");
    let total = err.lines().last().unwrap().split_whitespace().collect::<Vec<_>>();
    assert_eq!(total[0], "all", "{err}");
    assert!(total[1].parse::<u64>().unwrap() > 100 && total[2].parse::<f64>().unwrap() > 0.0, "{err}");
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
    // Without --clone-text the HuBERT path is taken, which refuses this 0.08 s recording before
    // any HuBERT is looked for.
    let o = bin()
        .args(["say", "--model", MODEL, "--text", "Hi.", "--out"])
        .arg(&prompt)
        .arg("--clone-from")
        .arg(&wav)
        .args(["--hubert", "/no/such/hubert"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && !prompt.exists());
    assert!(err.contains("1 to 60 s") && !err.contains("hubert"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn say_input_writes_one_wav_per_line_equal_to_say_text() {
    let dir = scratch("input");
    let input = dir.join("lines.txt");
    // A blank line in between: WAVs are named by line number, blank lines are skipped.
    let lines = ["Hi.", "Hello, my name is Suno.", "One."];
    std::fs::write(&input, format!("{}\n\n  {}\n{}\n", lines[0], lines[1], lines[2])).unwrap();
    let out_dir = dir.join("wavs");
    // Sampled with a seed, so every line must also draw its own random streams as `--text` does.
    let flags = ["--model", MODEL, "--seed", "3", "--max-semantic-tokens", "2"];
    let o = bin()
        .arg("say")
        .args(flags)
        .arg("--input")
        .arg(&input)
        .arg("--out-dir")
        .arg(&out_dir)
        .args(["--batch", "2"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut names: Vec<String> =
        std::fs::read_dir(&out_dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["line-0001.wav", "line-0003.wav", "line-0004.wav"]);
    for (line, name) in lines.iter().zip(&names) {
        let single = dir.join("single.wav");
        let status = bin().arg("say").args(flags).args(["--text", line]).arg("--out").arg(&single).status().unwrap();
        assert!(status.success());
        // Float WAVs hold the f32 samples exactly, and a batched line computes exactly what
        // it computes alone (tests/gpu/batch.rs): equal bit for bit.
        assert_eq!(read_wav(out_dir.join(name)).unwrap(), read_wav(&single).unwrap(), "{line:?}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn say_input_bad_input_is_one_clear_error_and_no_file() {
    let dir = scratch("input-bad");
    let good = dir.join("good.txt");
    std::fs::write(&good, "Hi.\n").unwrap();
    let blank = dir.join("blank.txt");
    std::fs::write(&blank, "\n   \n\t\n").unwrap();
    let out_dir = dir.join("wavs");
    let (g, b, od) = (good.to_str().unwrap(), blank.to_str().unwrap(), out_dir.to_str().unwrap());
    let missing = dir.join("missing.txt");
    fails_with(&["say", "--model", MODEL, "--input", b, "--out-dir", od], "every line is blank");
    fails_with(&["say", "--model", MODEL, "--input", missing.to_str().unwrap(), "--out-dir", od], "cannot read");
    // A directory below a regular file cannot be made.
    let under_file = dir.join("good.txt/wavs");
    fails_with(&["say", "--model", MODEL, "--input", g, "--out-dir", under_file.to_str().unwrap()], "output directory");
    fails_with(&["say", "--model", MODEL, "--input", g], "--out-dir");
    fails_with(&["say", "--model", MODEL, "--input", g, "--out-dir", od, "--text", "Hi."], "--text");
    fails_with(&["say", "--model", MODEL, "--input", g, "--out-dir", od, "--save-prompt", "v.npz"], "--save-prompt");
    fails_with(&["say", "--model", MODEL, "--input", g, "--out-dir", od, "--batch", "0"], "--batch");
    // A model that cannot load: the output directory this run created goes again.
    fails_with(&["say", "--model", "/no/such/model", "--input", g, "--out-dir", od], "/no/such/model");
    let mut left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    left.sort();
    assert_eq!(left, ["blank.txt", "good.txt"], "files left behind");
    std::fs::remove_dir_all(&dir).ok();
}

const CLONE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/clone");
const HUBERT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hubert-tiny");

/// `bark-wgpu clone` on the fixture models, writing to `out`.
fn clone_cmd(audio: &Path, out: &Path, quantizer: &str) -> Command {
    let mut c = bin();
    c.args(["clone", "--model", MODEL, "--hubert", HUBERT, "--quantizer"])
        .arg(Path::new(CLONE).join(quantizer))
        .arg("--audio")
        .arg(audio)
        .arg("--out")
        .arg(out);
    c
}

#[test]
fn clone_writes_the_reference_pipelines_prompt_from_wav_and_flac() {
    let dir = scratch("clone-ref");
    let want = bark_wgpu::voice::VoicePrompt::load_npz(Path::new(CLONE).join("reference.npz")).unwrap();
    for name in ["recording.wav", "recording.flac"] {
        let out = dir.join(format!("{name}.npz"));
        let run = clone_cmd(&Path::new(CLONE).join(name), &out, "quantizer.pth").output().unwrap();
        assert!(run.status.success(), "{name}: {}", String::from_utf8_lossy(&run.stderr));
        assert!(run.stderr.is_empty(), "off a terminal nothing is printed: {}", String::from_utf8_lossy(&run.stderr));
        assert_eq!(bark_wgpu::voice::VoicePrompt::load_npz(&out).unwrap(), want, "{name}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn clone_bad_input_is_one_clear_error_and_no_file() {
    let dir = scratch("clone-bad");
    let out = dir.join("voice.npz");
    let wav = |name: &str, samples: Vec<f32>, rate: u32| {
        let path = dir.join(name);
        bark_wgpu::audio::write_wav(&path, &samples, rate, bark_wgpu::audio::WavFormat::Pcm16).unwrap();
        path
    };
    let tone =
        |secs: f64, rate: u32| (0..(secs * rate as f64) as usize).map(|i| 0.5 * (i as f32 * 0.05).sin()).collect();
    let silent = wav("silent.wav", vec![0.0; 24_000], 16_000);
    let short = wav("short.wav", tone(0.5, 16_000), 16_000);
    let long = wav("long.wav", tone(61.0, 8_000), 8_000);
    let text = dir.join("notes.wav");
    std::fs::write(&text, "not audio at all").unwrap();
    let recording = Path::new(CLONE).join("recording.wav");
    let cases: [(&Path, &str, &[&str]); 5] = [
        (&silent, "quantizer.pth", &["silent.wav", "silent", "-60 dBFS"]),
        (&short, "quantizer.pth", &["short.wav", "0.50 s", "1 to 60 s"]),
        (&long, "quantizer.pth", &["long.wav", "61.00 s", "1 to 60 s"]),
        (&text, "quantizer.pth", &["notes.wav", "WAV, FLAC, MP3, Ogg/Vorbis and M4A/AAC"]),
        (&recording, "quantizer_wide.pth", &["quantizer_wide.pth", "24", "32"]),
    ];
    for (audio, quantizer, needles) in cases {
        let run = clone_cmd(audio, &out, quantizer).output().unwrap();
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{} succeeded", audio.display());
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        for n in needles {
            assert!(err.contains(n), "{}: stderr lacks {n:?}: {err}", audio.display());
        }
        assert!(!out.exists(), "{} left {}", audio.display(), out.display());
    }
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), 4, "only the inputs remain: {left:?}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn say_clone_from_without_text_speaks_as_the_cloned_prompt() {
    let dir = scratch("say-clone");
    let (cloned, preset) = (dir.join("cloned.wav"), dir.join("preset.wav"));
    let say = |out: &Path| {
        let mut c = bin();
        c.args(["say", "--model", MODEL, "--text", "Hi.", "--greedy", "--max-semantic-tokens", "8", "--out"]).arg(out);
        c
    };
    let run = say(&cloned)
        .arg("--clone-from")
        .arg(Path::new(CLONE).join("recording.flac"))
        .args(["--hubert", HUBERT, "--quantizer"])
        .arg(Path::new(CLONE).join("quantizer.pth"))
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let run = say(&preset).arg("--voice").arg(Path::new(CLONE).join("reference.npz")).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    // Greedy with the same prompt: the same audio, bit for bit.
    assert_eq!(read_wav(&cloned).unwrap(), read_wav(&preset).unwrap());
    std::fs::remove_dir_all(&dir).ok();
}
