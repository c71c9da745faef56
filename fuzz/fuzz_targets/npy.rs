//! Fuzz target `npy`: see FUZZING.md and `fuzz/src/run.rs` for the entry point it drives.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = bark_wgpu_fuzz::run("npy", data);
});
