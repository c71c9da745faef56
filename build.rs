//! Embeds every `shaders/*.wgsl` (by stem) and `shaders/cpu/*.wgsl` (as `cpu/STEM`: the CPU
//! adapters' kernel set) into the binary, so adding a kernel needs no registry edit.
//! `// #include NAME` lines are expanded here from `shaders/common/NAME.wgsl`
//! (src/gpu/wgsl_include.rs), so the binary holds each kernel's complete source.

use std::{env, fs, path::Path};

#[path = "src/gpu/wgsl_include.rs"]
mod wgsl_include;

fn main() {
    // Read at run time, not with env!(): several checkouts may share one target directory and
    // so one compiled build script, which must embed the shaders of the checkout being built.
    let root = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = Path::new(&root).join("shaders");
    let common = dir.join("common");
    println!("cargo:rerun-if-changed={}", dir.display());
    println!("cargo:rerun-if-changed={}", common.display());
    println!("cargo:rerun-if-changed={}", dir.join("cpu").display());
    // The paths above are the last checkout's; a build from another checkout (another PWD)
    // must run the script again rather than reuse that checkout's shaders.
    println!("cargo:rerun-if-env-changed=PWD");
    // Names relative to shaders/, without `.wgsl`: `matmul`, `cpu/gemm_direct`.
    let mut names: Vec<String> = Vec::new();
    for (sub, prefix) in [("", ""), ("cpu", "cpu/")] {
        let stems = fs::read_dir(dir.join(sub))
            .unwrap_or_else(|e| panic!("shaders/{sub}: {e}"))
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".wgsl")).map(String::from));
        names.extend(stems.map(|n| format!("{prefix}{n}")));
    }
    names.sort();
    let out_dir = Path::new(&env::var("OUT_DIR").unwrap()).join("shaders");
    fs::create_dir_all(out_dir.join("cpu")).unwrap();
    let mut read_common = |name: &str| {
        let path = common.join(format!("{name}.wgsl"));
        println!("cargo:rerun-if-changed={}", path.display());
        fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
    };
    let mut out = String::from(
        "/// Every shader in `shaders/` and `shaders/cpu/`, by name (`matmul`, `cpu/gemm_direct`), includes expanded.\npub static ALL: &[(&str, &str)] = &[\n",
    );
    for n in &names {
        let path = dir.join(format!("{n}.wgsl"));
        println!("cargo:rerun-if-changed={}", path.display());
        let src = fs::read_to_string(&path).unwrap();
        let expanded = wgsl_include::expand(&src, &mut read_common).unwrap_or_else(|e| panic!("shaders/{n}.wgsl: {e}"));
        let target = out_dir.join(format!("{n}.wgsl"));
        fs::write(&target, expanded).unwrap();
        out += &format!("    ({n:?}, include_str!({:?})),\n", target.display().to_string());
    }
    out += "];\n";
    fs::write(Path::new(&env::var("OUT_DIR").unwrap()).join("shaders.rs"), out).unwrap();
}
