//! Embeds every `shaders/*.wgsl` into the binary, so adding a kernel needs no registry edit.

use std::{env, fs, path::Path};

fn main() {
    // Read at run time, not with env!(): several checkouts may share one target directory and
    // so one compiled build script, which must embed the shaders of the checkout being built.
    let root = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = Path::new(&root).join("shaders");
    println!("cargo:rerun-if-changed={}", dir.display());
    // The paths above are the last checkout's; a build from another checkout (another PWD)
    // must run the script again rather than reuse that checkout's shaders.
    println!("cargo:rerun-if-env-changed=PWD");
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
