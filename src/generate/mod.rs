//! Bark's generation: text -> semantic tokens -> coarse tokens (2 codebooks) -> fine codes
//! (8 codebooks) -> 24 kHz audio, on the GPU models, one stage per module.
//!
//! # Greedy and sampled
//!
//! [`GenerateOptions::greedy`] reproduces transformers' `BarkModel.generate(do_sample=False)`
//! token for token: argmax in every stage, no `min_eos_p`, transformers' coarse mask
//! ([`CoarseMask::Transformers`]). [`GenerateOptions::default`] has the original Bark's
//! sampling defaults (text and waveform temperature 0.7, fine temperature 0.5, `min_eos_p`
//! 0.2, no top-k/top-p) and, as the documented choice for sampling, the original's order of
//! filters and temperature ([`SamplingOrder::Original`](crate::ops::sampling::SamplingOrder::Original)) and its EOS rule ([`EosRule::Original`](crate::ops::sampling::EosRule::Original),
//! post-temperature probability, `>=`). In every mode the semantic EOS token is kept at the end
//! of the semantic output, as transformers keeps it (the original drops it; the coarse stage
//! treats it as padding either way, so the audio does not change). `top_k`/`top_p` apply to the
//! semantic and coarse stages, `min_eos_p` to the semantic stage only, as in both references.
//!
//! Sampling draws its uniforms from a seeded xorshift per stage ([`GenerateOptions::seed`]):
//! the same seed on the same device gives the same output.
//!
//! # Several texts at once
//!
//! [`Bark::generate_batch`] (and `semantic_batch`, `coarse_batch`, `fine_batch`) run several
//! texts through every decode step together, at most `max_batch` live at once; output `i`
//! equals the one-text run of input `i`, greedy or seeded (see `batch.rs` for how each stage
//! batches). The one-text methods are batches of one.
//!
//! The text is whitespace-normalised first, as the original does (transformers does not; for
//! text with single spaces and no leading/trailing blanks both agree).
//!
//! # Example
//!
//! On the tiny random model the tests use (a real checkpoint directory works the same way):
//!
//! ```
//! use bark_wgpu::generate::{Bark, GenerateOptions, LoadOptions};
//!
//! let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny");
//! let bark = Bark::load(dir, &LoadOptions::default())?;
//! let opts = GenerateOptions { max_semantic_tokens: 8, ..GenerateOptions::greedy() };
//! let out = bark.generate("Hello, my name is Suno.", &opts, None)?;
//! assert_eq!(out.audio.sample_rate, 24_000);
//! assert!(!out.audio.samples.is_empty());
//! # Ok::<(), bark_wgpu::Error>(())
//! ```

mod bark;
mod batch;
mod clone;
mod cloner;
pub mod coarse;
#[cfg(not(target_arch = "wasm32"))]
pub mod engine;
pub mod fine;
pub mod longform;
mod memory;
mod options;
pub mod rng;
mod scheduler;
pub mod semantic;
mod step;

pub use crate::vocab::coarse_codes;
pub use crate::voice::VoicePrompt;
pub use bark::{Audio, Bark, Generation};
pub use cloner::{check_recording, VoiceCloner, MAX_SECONDS, MIN_SECONDS, SILENCE_PEAK};
pub use coarse::CoarseMask;
#[cfg(not(target_arch = "wasm32"))]
pub use engine::{Engine, EngineMetrics, Request, StageMetrics, Stream, Wait};
pub use longform::{LongGeneration, PIECE_GAP_SECONDS};
pub use memory::StageMemory;
pub use options::{GenerateOptions, LoadOptions, ModelFiles};
