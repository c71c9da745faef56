//! Embeds every `shaders/*.wgsl` into the binary, so adding a kernel needs no registry edit.

use std::{env, fs, path::Path};

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut names: Vec<String> = fs::read_dir(&dir)
        .expect("shaders/ directory")
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".wgsl")).map(String::from))
        .collect();
    names.sort();
    let mut out = String::from("/// Every shader in `shaders/`, by file stem.\npub static ALL: &[(&str, &str)] = &[\n");
    for n in &names {
        let path = dir.join(format!("{n}.wgsl"));
        println!("cargo:rerun-if-changed={}", path.display());
        out += &format!("    ({n:?}, include_str!({:?})),\n", path.display().to_string());
    }
    out += "];\n";
    fs::write(Path::new(&env::var("OUT_DIR").unwrap()).join("shaders.rs"), out).unwrap();
}
