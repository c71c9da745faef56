//! The `bark-wgpu` command line: argument parsing and printing, nothing else. The contract of
//! `say` is stable: other tools drive it.

mod say_lines;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use bark_wgpu::audio::{pcm16_le_bytes, read_audio, read_wav, write_wav, WavFormat};
use bark_wgpu::generate::{check_recording, Bark, GenerateOptions, LoadOptions, VoiceCloner};
use bark_wgpu::hub::{
    fetch_voice_preset, resolve_hubert, resolve_model_with, resolve_quantizer, resolve_voices_dir, ResolveOptions,
    DEFAULT_HUBERT, DEFAULT_MODEL, DEFAULT_QUANTIZER,
};
use bark_wgpu::voice::VoicePrompt;
use bark_wgpu::voice::{list_voices, resolve_voice};
use bark_wgpu::{AdapterSummary, Context, ContextOptions};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "bark-wgpu", version, about = "Bark text-to-speech on any GPU through wgpu")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Say a text: write it as speech to a WAV file (or each line of a file, --input, to one
    /// WAV per line).
    Say(Box<SayArgs>),
    /// Make a voice prompt (.npz, for `say --voice`) from a recording alone: HuBERT and the
    /// semantic quantizer give its semantic tokens, the codec's encoder its coarse and fine codes.
    Clone(Box<CloneArgs>),
    /// List the voice presets a model ships (speaker_embeddings_path.json).
    Voices {
        /// A model directory, or a Hugging Face repo id (owner/name[@revision]), downloaded into
        /// the Hugging Face cache on first use.
        #[arg(long, default_value = DEFAULT_MODEL)]
        model: String,
    },
    /// Serve OpenAI's speech endpoint (POST /v1/audio/speech) over HTTP until SIGINT or
    /// SIGTERM: the requests in flight share every decode step, and each response streams its
    /// audio piece by piece.
    #[cfg(feature = "serve")]
    Serve(Box<ServeArgs>),
    /// List every GPU adapter wgpu can see (WGPU_BACKEND limits the backends searched), and the
    /// one bark-wgpu would pick.
    Devices,
}

#[cfg(feature = "serve")]
#[derive(Args)]
struct ServeArgs {
    /// A model directory, or a Hugging Face repo id downloaded on first use (as for `say`).
    #[arg(long, default_value = DEFAULT_MODEL)]
    model: String,
    /// The model id `GET /v1/models` lists (clients may send any; one model is served).
    /// Default: --model.
    #[arg(long)]
    model_name: Option<String>,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// 0 picks a free port (printed).
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// The most sequences sharing each stage's decode steps.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    max_batch: u32,
    /// The most requests in flight; more get 429 with Retry-After.
    #[arg(long, default_value_t = 64)]
    max_queue: usize,
    /// The longest input, in characters.
    #[arg(long, default_value_t = 4096)]
    max_input_chars: usize,
    /// Requests must send `Authorization: Bearer KEY`.
    #[arg(long)]
    api_key: Option<String>,
    /// Voice prompts (.npz) served by file stem, besides the model's presets.
    #[arg(long)]
    voices: Option<PathBuf>,
    /// A JSON object of voice names to the presets or --voices stems they speak as, added to
    /// (and overriding) OpenAI's names, e.g. {"alloy": "v2/en_speaker_3", "echo": null}.
    #[arg(long)]
    voice_map: Option<PathBuf>,
    /// Seconds a request may take from arrival to its last byte (0: no limit); past it, a 504.
    #[arg(long, default_value_t = 600.0)]
    request_timeout: f64,
    /// The most GPU memory the server's buffers may hold, in MiB (default: what the device
    /// gives); a request that needs more fails with 500 and the server goes on.
    #[arg(long)]
    gpu_memory_limit: Option<u64>,
    /// Keep the large weight matrices in f16 (half the memory, not bit-exact).
    #[arg(long)]
    f16: bool,
    /// On SIGINT or SIGTERM, the seconds the requests in flight have to finish.
    #[arg(long, default_value_t = 30)]
    shutdown_timeout: u64,
    /// The largest request body in bytes; a larger one is refused with 413 before it is read.
    #[arg(long, default_value_t = 1 << 20)]
    max_body_bytes: usize,
    /// Seconds a client may take to send a request's headers; a slower one is disconnected.
    #[arg(long, default_value_t = 10.0)]
    header_timeout: f64,
    /// Seconds a client may take to send a request's body; a slower one gets 408.
    #[arg(long, default_value_t = 10.0)]
    body_timeout: f64,
}

/// Where the models of cloning come from: a directory/file or a hub repo id each.
#[derive(Args)]
struct ClonerArgs {
    /// The HuBERT checkpoint: a directory in the transformers layout (config.json and weights),
    /// or a Hugging Face repo id downloaded on first use.
    #[arg(long, default_value = DEFAULT_HUBERT)]
    hubert: String,
    /// The semantic quantizer: a .pth file, or a repo id `owner/name[@rev][:file]` (file by
    /// default quantifier_hubert_base_ls960_14.pth) downloaded on first use.
    #[arg(long, default_value = DEFAULT_QUANTIZER)]
    quantizer: String,
}

#[derive(Args)]
struct CloneArgs {
    /// The recording: WAV, FLAC, MP3, Ogg/Vorbis or M4A/AAC, any rate, 1 to 60 s of speech.
    #[arg(long)]
    audio: PathBuf,
    /// The voice prompt to write (.npz, as Bark's presets).
    #[arg(long)]
    out: PathBuf,
    /// The Bark model whose codec encodes the recording (a directory or a repo id, as for `say`).
    #[arg(long, default_value = DEFAULT_MODEL)]
    model: String,
    #[command(flatten)]
    cloner: ClonerArgs,
    /// Print nothing but errors.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct SayArgs {
    /// A model directory in the Hugging Face layout, or a Hugging Face repo id
    /// (owner/name[@revision]) downloaded into the Hugging Face cache on first use (HF_HUB_CACHE,
    /// HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE are honoured).
    #[arg(long, default_value = DEFAULT_MODEL)]
    model: String,
    /// The text to say; text over one 256-token window is split at sentences and generated
    /// piece by piece in one voice.
    #[arg(long, required_unless_present = "input", conflicts_with = "input")]
    text: Option<String>,
    /// The WAV file to write (24 kHz mono).
    #[arg(long, required_unless_present_any = ["input", "stream"], conflicts_with_all = ["input", "stream"])]
    out: Option<PathBuf>,
    /// Instead of --out: write the audio to standard output as raw 16-bit little-endian PCM,
    /// 24 kHz mono, each piece of long text as soon as it is decoded (for example
    /// `| aplay -f S16_LE -r 24000 -c 1`).
    #[arg(long, requires = "text", conflicts_with_all = ["input", "pcm16"])]
    stream: bool,
    /// A text file to say line by line instead of --text: one WAV per non-blank line, named by
    /// its 1-based line number in --out-dir (line 7 -> line-0007.wav), each as `--text LINE`
    /// with the same flags would make it. Lines that fit one 256-token window share every
    /// decode step (see --batch); longer lines are split and generated one by one afterwards.
    /// Nothing is written unless every line succeeds.
    #[arg(long, requires = "out_dir")]
    input: Option<PathBuf>,
    /// The directory the WAVs of --input go to (created if missing).
    #[arg(long, requires = "input")]
    out_dir: Option<PathBuf>,
    /// With --input: the most lines generated at once (each stage batches up to this many).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..), requires = "input")]
    batch: u32,
    /// A Suno voice prompt (.npz) or a preset name such as v2/en_speaker_6.
    #[arg(long)]
    voice: Option<String>,
    /// Make the voice from a recording (as `bark-wgpu clone --audio` does): HuBERT and the
    /// quantizer (--hubert, --quantizer) give the semantic prompt, its EnCodec codes the coarse
    /// and fine prompts.
    #[arg(long, conflicts_with = "voice")]
    clone_from: Option<PathBuf>,
    /// Instead of HuBERT: the words spoken in the --clone-from recording, from which the
    /// semantic prompt is generated (see the docs of generate::clone).
    #[arg(long, requires = "clone_from")]
    clone_text: Option<String>,
    #[command(flatten)]
    cloner: ClonerArgs,
    /// Argmax at every stage: reproduces transformers' do_sample=False token for token.
    #[arg(long)]
    greedy: bool,
    /// Seed of the sampling; the same seed on the same device gives the same audio.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    text_temp: Option<f32>,
    #[arg(long)]
    waveform_temp: Option<f32>,
    #[arg(long)]
    fine_temp: Option<f32>,
    #[arg(long)]
    top_k: Option<u32>,
    #[arg(long)]
    top_p: Option<f32>,
    #[arg(long)]
    min_eos_p: Option<f32>,
    #[arg(long)]
    max_semantic_tokens: Option<usize>,
    /// Also save this generation's tokens as a voice prompt (.npz) for later use with --voice
    /// (for long text split into pieces: the last piece's). Not with --input.
    #[arg(long, conflicts_with = "input")]
    save_prompt: Option<PathBuf>,
    /// Keep the large weight matrices in f16 (half the memory, not bit-exact).
    #[arg(long)]
    f16: bool,
    /// Write 16-bit PCM instead of 32-bit float.
    #[arg(long)]
    pcm16: bool,
    /// Print nothing but errors.
    #[arg(long)]
    quiet: bool,
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// "no", or the sizes the adapter's subgroups may have ("8", "4-64").
fn subgroups(a: &AdapterSummary) -> String {
    match a.subgroup_sizes {
        _ if !a.subgroup => "no".into(),
        (lo, hi) if lo == hi => lo.to_string(),
        (lo, hi) => format!("{lo}-{hi}"),
    }
}

fn devices() -> Result<()> {
    let opts = ContextOptions::default();
    let adapters = Context::list_adapters(&opts);
    if adapters.is_empty() {
        bail!("no GPU adapter found; install a Vulkan driver (on Debian/Ubuntu: mesa-vulkan-drivers)");
    }
    println!(
        "{:<40} {:<8} {:<14} {:<4} {:<9} {:<10} driver",
        "name", "backend", "type", "f16", "subgroups", "timestamp"
    );
    for a in &adapters {
        println!(
            "{:<40} {:<8} {:<14} {:<4} {:<9} {:<10} {}",
            a.name,
            a.backend,
            a.device_type,
            yes(a.shader_f16),
            subgroups(a),
            yes(a.timestamp_query),
            a.driver
        );
    }
    let chosen = Context::new(&opts)?;
    println!("\nchosen: {} ({})", chosen.summary().name, chosen.summary().backend);
    Ok(())
}

fn options(a: &SayArgs) -> GenerateOptions {
    let mut o = if a.greedy { GenerateOptions::greedy() } else { GenerateOptions::default() };
    o.seed = a.seed;
    if let Some(t) = a.text_temp {
        o.text_temp = t;
    }
    if let Some(t) = a.waveform_temp {
        o.waveform_temp = t;
    }
    if a.fine_temp.is_some() {
        o.fine_temp = a.fine_temp;
    }
    if a.top_k.is_some() {
        o.top_k = a.top_k;
    }
    if a.top_p.is_some() {
        o.top_p = a.top_p;
    }
    if a.min_eos_p.is_some() {
        o.min_eos_p = a.min_eos_p;
    }
    if let Some(n) = a.max_semantic_tokens {
        o.max_semantic_tokens = n;
    }
    o
}

/// The model directory of `--model`, downloading a hub repo (and the files of the `--voice` preset)
/// on first use, with progress bars when `show`.
fn resolve_model_on_demand(model: &str, voice: Option<&str>, show: bool) -> Result<PathBuf> {
    let hub = ResolveOptions { progress: show, ..ResolveOptions::from_env() };
    let dir = resolve_model_with(model, &hub)?;
    if let Some(v) = voice {
        fetch_voice_preset(model, &dir, v, &hub)?;
    }
    Ok(dir)
}

fn say(a: SayArgs) -> Result<()> {
    let lines = match (&a.input, &a.out_dir, &a.text) {
        (Some(input), Some(out_dir), _) => Some(say_lines::read_lines(input, out_dir)?),
        (_, _, Some(text)) if text.trim().is_empty() => bail!("the text is empty"),
        _ => None,
    };
    let show = !a.quiet && std::io::stderr().is_terminal();
    let note = |m: &str| {
        if show {
            eprintln!("{m}");
        }
    };
    let dir = resolve_model_on_demand(&a.model, a.voice.as_deref(), show)?;
    let voice = match &a.voice {
        Some(v) => Some(resolve_voice(&dir, v).with_context(|| format!("voice {v:?}"))?),
        None => None,
    };
    note(&format!("loading {}", dir.display()));
    let mut bark = Bark::load(&dir, &LoadOptions { f16: a.f16, ..Default::default() })?;
    note(&format!("generating on {}", bark.context().summary().name));
    if show {
        bark.set_progress(Some(std::sync::Arc::new(bark_wgpu::progress::TerminalBars::new())));
    }
    let opts = options(&a);
    let voice = match (&a.clone_from, &a.clone_text) {
        (Some(wav), Some(text)) => {
            let (samples, rate) = read_wav(wav)?;
            Some(bark.clone_voice(&dir, &samples, rate, text, &opts).context("cloning the voice")?)
        }
        (Some(audio), None) => Some(clone_voice(bark.context(), &dir, audio, &a.cloner, show)?),
        _ => voice,
    };
    let format = if a.pcm16 { WavFormat::Pcm16 } else { WavFormat::Float32 };
    if let (true, Some(text)) = (a.stream, &a.text) {
        let mut stdout = std::io::stdout().lock();
        let out = bark.generate_stream(text, &opts, voice.as_ref(), |chunk| {
            stdout.write_all(&pcm16_le_bytes(chunk))?;
            Ok(stdout.flush()?)
        });
        let out = out.context("streaming the audio to standard output")?;
        if let Some(p) = &a.save_prompt {
            out.voice_prompt()?.save_npz(p)?;
        }
        print_profile(bark.context());
        return Ok(());
    }
    let (Some(text), Some(out_path)) = (&a.text, &a.out) else {
        let lines = lines.context("--input or --text is needed")?;
        say_lines::say_lines(&bark, lines, &opts, voice.as_ref(), a.batch as usize, format, &note)?;
        print_profile(bark.context());
        return Ok(());
    };
    // Long text is split into pieces; text that fits one window generates exactly as `generate`.
    let out = bark.generate_long(text, &opts, voice.as_ref())?;
    write_wav(out_path, &out.audio.samples, out.audio.sample_rate, format)?;
    if let Some(p) = &a.save_prompt {
        out.voice_prompt()?.save_npz(p)?;
    }
    let secs = out.audio.samples.len() as f64 / out.audio.sample_rate as f64;
    note(&format!("wrote {} ({secs:.2} s of audio)", out_path.display()));
    print_profile(bark.context());
    Ok(())
}

/// The voice prompt of a recording alone: HuBERT + quantizer (resolved as `--hubert` and
/// `--quantizer` say) and the codec encoder of `model_dir`, on `ctx`.
fn clone_voice(ctx: &Context, model_dir: &Path, audio: &Path, c: &ClonerArgs, show: bool) -> Result<VoicePrompt> {
    // The recording first: a bad file fails before anything is downloaded or loaded.
    let recording = read_audio(audio)?;
    let mono = recording.mono();
    check_recording(&mono, recording.sample_rate)
        .with_context(|| format!("cloning the voice of {}", audio.display()))?;
    let hub = ResolveOptions { progress: show, ..ResolveOptions::from_env() };
    let hubert = resolve_hubert(&c.hubert, &hub)?;
    let quantizer = resolve_quantizer(&c.quantizer, &hub)?;
    let cloner = VoiceCloner::load(ctx, model_dir, &hubert, &quantizer)?;
    let prompt = cloner.clone_voice(&mono, recording.sample_rate);
    prompt.with_context(|| format!("cloning the voice of {}", audio.display()))
}

fn clone(a: CloneArgs) -> Result<()> {
    let show = !a.quiet && std::io::stderr().is_terminal();
    let dir = resolve_model_on_demand(&a.model, None, show)?;
    let ctx = Context::new(&ContextOptions::default())?;
    let prompt = clone_voice(&ctx, &dir, &a.audio, &a.cloner, show)?;
    prompt.save_npz(&a.out)?;
    if show {
        let secs = prompt.frames() as f64 / 75.0;
        eprintln!("wrote {} ({} semantic tokens, {secs:.2} s of codes)", a.out.display(), prompt.semantic.len());
    }
    Ok(())
}

/// With `BARK_PROFILE=1`: the GPU time of every kernel over the whole run, on standard error.
fn print_profile(ctx: &Context) {
    let kernels = ctx.take_profile();
    if kernels.is_empty() {
        return;
    }
    let total: f64 = kernels.iter().map(|k| k.seconds).sum();
    eprintln!("GPU time per kernel (BARK_PROFILE=1; every step waited for, so the run was slower than usual):");
    eprintln!("{:<44} {:>10} {:>12} {:>7}", "kernel", "dispatches", "GPU ms", "%");
    for k in &kernels {
        let pct = 100.0 * k.seconds / total.max(f64::MIN_POSITIVE);
        eprintln!("{:<44} {:>10} {:>12.2} {:>7.1}", k.kernel, k.dispatches, k.seconds * 1e3, pct);
    }
    eprintln!(
        "{:<44} {:>10} {:>12.2} {:>7.1}",
        "all",
        kernels.iter().map(|k| k.dispatches).sum::<u64>(),
        total * 1e3,
        100.0
    );
}

#[cfg(feature = "serve")]
fn serve(a: ServeArgs) -> Result<()> {
    use bark_wgpu::generate::Engine;
    use bark_wgpu::serve::{openai_voice_map, read_voice_map, router, serve_http, ServeConfig, Server};
    if let Some(dir) = a.voices.as_ref().filter(|d| !d.is_dir()) {
        bail!("--voices {}: not a directory", dir.display());
    }
    if !(a.request_timeout.is_finite() && a.request_timeout >= 0.0) {
        bail!("--request-timeout {}: give seconds, 0 or more", a.request_timeout);
    }
    let seconds = |flag: &str, s: f64| match s.is_finite() && s > 0.0 && s < 1e9 {
        true => Ok(std::time::Duration::from_secs_f64(s)),
        false => Err(anyhow::anyhow!("--{flag} {s}: give seconds, more than 0")),
    };
    let (header_timeout, body_timeout) =
        (seconds("header-timeout", a.header_timeout)?, seconds("body-timeout", a.body_timeout)?);
    let voice_map = match &a.voice_map {
        Some(path) => read_voice_map(path)?,
        None => openai_voice_map(),
    };
    let dir = resolve_model_on_demand(&a.model, None, true)?;
    eprintln!("loading {}", dir.display());
    let bark = Bark::load(&dir, &LoadOptions { f16: a.f16, ..Default::default() })?;
    eprintln!("generating on {}", bark.context().summary().name);
    if let Some(mib) = a.gpu_memory_limit {
        let (limit, held) = (mib << 20, bark.context().stats().bytes_live);
        if limit <= held {
            bail!("--gpu-memory-limit {mib}: the model alone holds {} MiB", held.div_ceil(1 << 20));
        }
        bark.context().set_memory_limit(Some(limit));
    }
    let engine = Engine::start(bark, a.max_batch as usize)?;
    let config = ServeConfig {
        voices_dir: a.voices.clone(),
        api_key: a.api_key.clone(),
        max_queue: a.max_queue,
        max_input_chars: a.max_input_chars,
        voice_map,
        request_timeout: (a.request_timeout > 0.0).then(|| std::time::Duration::from_secs_f64(a.request_timeout)),
        max_body_bytes: a.max_body_bytes,
        header_timeout,
        body_timeout,
        ..ServeConfig::new(a.model_name.clone().unwrap_or_else(|| a.model.clone()), dir)
    };
    let server = Server::new(engine, config)?;
    let watched = server.clone();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind((a.host.as_str(), a.port))
            .await
            .with_context(|| format!("listening on {}:{}", a.host, a.port))?;
        eprintln!("listening on http://{}", listener.local_addr()?);
        let stop = std::sync::Arc::new(tokio::sync::Notify::new());
        let stopping = stop.clone();
        let serving = serve_http(listener, router(server), header_timeout, async move {
            stopping.notified().await;
        });
        tokio::pin!(serving);
        tokio::select! {
            done = &mut serving => done?,
            why = engine_stopped(&watched) => {
                // The GPU's thread is gone (device lost, or a bug): a replica that cannot speak
                // exits so its supervisor restarts it, rather than answering 500 forever.
                eprintln!("error: the GPU engine stopped: {why}");
                std::process::exit(1);
            }
            _ = shutdown_signal() => {
                eprintln!("stopping: finishing the requests in flight (at most {} s)", a.shutdown_timeout);
                stop.notify_one();
                let limit = std::time::Duration::from_secs(a.shutdown_timeout);
                if tokio::time::timeout(limit, &mut serving).await.is_err() {
                    eprintln!("stopped with requests unfinished after {} s", a.shutdown_timeout);
                    std::process::exit(0);
                }
            }
        }
        eprintln!("stopped");
        Ok(())
    })
}

/// Resolves with the reason once the server's engine has stopped.
#[cfg(feature = "serve")]
async fn engine_stopped(server: &bark_wgpu::serve::Server) -> String {
    loop {
        if let Some(why) = server.engine_metrics().stopped {
            return why;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// SIGINT or SIGTERM: stop taking requests, finish those in flight.
#[cfg(feature = "serve")]
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM");
        tokio::select! { _ = interrupt => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Say(a) => say(*a),
        Command::Clone(a) => clone(*a),
        Command::Voices { model } => {
            resolve_voices_dir(&model, &ResolveOptions::from_env()).map_err(Into::into).and_then(|dir| {
                for v in list_voices(&dir)? {
                    println!("{v}");
                }
                Ok(())
            })
        }
        Command::Devices => devices(),
        #[cfg(feature = "serve")]
        Command::Serve(a) => serve(*a),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
