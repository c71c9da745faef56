//! Every shader, and every specialisation the ops build, parses and validates with naga and
//! translates through the SPIR-V, MSL and HLSL back ends: a shader that would break on Metal or
//! DX12 breaks here, with no device at all.

use std::path::Path;

use bark_wgpu::gpu::{shaders, wgsl_include};

fn check(label: &str, src: &str) {
    let module =
        naga::front::wgsl::parse_str(src).unwrap_or_else(|e| panic!("{label}: parse:\n{}", e.emit_to_string(src)));
    let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
        .subgroup_stages(naga::valid::ShaderStages::COMPUTE)
        .subgroup_operations(naga::valid::SubgroupOperationSet::all())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{label}: validate:\n{}", e.emit_to_string(src)));

    naga::back::spv::write_vec(&module, &info, &naga::back::spv::Options::default(), None)
        .unwrap_or_else(|e| panic!("{label}: SPIR-V: {e}"));

    let msl = naga::back::msl::Options { lang_version: (2, 4), fake_missing_bindings: true, ..Default::default() };
    naga::back::msl::write_string(&module, &info, &msl, &Default::default())
        .unwrap_or_else(|e| panic!("{label}: MSL: {e}"));

    let hlsl = naga::back::hlsl::Options {
        shader_model: naga::back::hlsl::ShaderModel::V6_2,
        fake_missing_bindings: true,
        ..Default::default()
    };
    let mut out = String::new();
    naga::back::hlsl::Writer::new(&mut out, &hlsl, &Default::default())
        .write(&module, &info, None)
        .unwrap_or_else(|e| panic!("{label}: HLSL: {e}"));
}

#[test]
fn every_file_in_shaders_is_embedded_and_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut count = 0;
    for (sub, prefix) in [("", ""), ("cpu", "cpu/")] {
        for entry in std::fs::read_dir(dir.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("wgsl") {
                continue;
            }
            let name = format!("{prefix}{}", path.file_stem().unwrap().to_str().unwrap());
            let raw = std::fs::read_to_string(&path).unwrap();
            let mut read = |n: &str| {
                std::fs::read_to_string(dir.join("common").join(format!("{n}.wgsl"))).map_err(|e| e.to_string())
            };
            let src = wgsl_include::expand(&raw, &mut read).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(shaders::source(&name), Some(src.as_str()), "{name}.wgsl is not embedded as it is on disk");
            assert!(!src.contains(wgsl_include::DIRECTIVE), "{name}: an include was left unexpanded");
            // The file as a pipeline gets it with its default constants.
            let src = shaders::prepare(&src, &[]).unwrap_or_else(|e| panic!("{name}: {e}"));
            check(&name, &src);
            count += 1;
        }
    }
    assert_eq!(count, shaders::ALL.len());
    assert!(count > 0);
}

/// Whether naga validates `module` on a device with `caps` (subgroup operations in compute
/// shaders, where `caps` has SUBGROUP).
pub fn validates(module: &naga::Module, caps: naga::valid::Capabilities) -> bool {
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
        .subgroup_stages(naga::valid::ShaderStages::COMPUTE)
        .subgroup_operations(naga::valid::SubgroupOperationSet::all())
        .validate(module)
        .is_ok()
}

/// Every capability but subgroups': a device without them.
pub fn without_subgroups() -> naga::valid::Capabilities {
    naga::valid::Capabilities::all() - naga::valid::Capabilities::SUBGROUP - naga::valid::Capabilities::SUBGROUP_BARRIER
}

#[test]
fn the_cpu_kernels_default_text_needs_no_subgroups() {
    // A module that names subgroup builtins fails validation on a device without them, so a
    // CPU kernel's plain text must not name them; its SUBGROUPS twin (the same file) does.
    let validate =
        |src: &str, caps: naga::valid::Capabilities| validates(&naga::front::wgsl::parse_str(src).unwrap(), caps);
    let plain = without_subgroups();
    let mut twins = 0;
    for (name, src) in shaders::ALL.iter().filter(|(n, _)| n.starts_with("cpu/")) {
        assert!(validate(&shaders::prepare(src, &[]).unwrap(), plain), "{name} needs subgroups by default");
        if let Ok(twin) = shaders::prepare(src, &[("SUBGROUPS", "true".into())]) {
            assert!(!validate(&twin, plain), "{name} with SUBGROUPS names no subgroup builtin");
            twins += 1;
        }
    }
    assert_eq!(twins, 2, "gemm_direct and attention_rows have subgroup twins");
}

#[test]
fn every_specialisation_the_ops_use_is_valid() {
    let kernels = bark_wgpu::ops::all_kernels();
    assert!(!kernels.is_empty());
    for k in kernels {
        let src = k.wgsl().unwrap_or_else(|e| panic!("{} {:?}: {e}", k.shader, k.consts));
        check(&format!("{} {:?}", k.shader, k.consts), &src);
    }
}

#[test]
fn every_specialisation_fits_webgpus_default_limits() {
    // What a browser grants without asking (wgpu::Limits::default()): the workgroup memory a
    // module declares (all of it, whichever entry point uses it) and each entry point's
    // invocations. The kernels must run there, so this holds for every variant, not only those
    // some test happens to dispatch.
    let d = wgpu::Limits::default();
    let limits = (d.max_compute_workgroup_storage_size, d.max_compute_invocations_per_workgroup);
    for k in bark_wgpu::ops::all_kernels() {
        let src = k.wgsl().unwrap();
        let module = naga::front::wgsl::parse_str(&src).unwrap();
        let shared: u32 = module
            .global_variables
            .iter()
            .filter(|(_, v)| v.space == naga::AddressSpace::WorkGroup)
            .map(|(_, v)| module.types[v.ty].inner.size(module.to_ctx()))
            .sum();
        let label = format!("{} {} {:?}", k.shader, k.entry, k.consts);
        assert!(shared <= limits.0, "{label}: {shared} bytes of workgroup memory, over {}", limits.0);
        for ep in &module.entry_points {
            let n: u32 = ep.workgroup_size.iter().product();
            assert!(n <= limits.1, "{label} {}: {n} invocations, over {}", ep.name, limits.1);
            let [x, y, z] = ep.workgroup_size;
            let most = [d.max_compute_workgroup_size_x, d.max_compute_workgroup_size_y, d.max_compute_workgroup_size_z];
            assert!(x <= most[0] && y <= most[1] && z <= most[2], "{label} {}: workgroup {x}x{y}x{z}", ep.name);
        }
    }
}

#[test]
fn specialize_rewrites_declarations_and_rejects_unknown_names() {
    let src = "const WG: u32 = 64u;\nalias T = f32;\nfn f() {}\n";
    let out = shaders::specialize(src, &[("WG", "128u".into()), ("T", "f16".into())]).unwrap();
    assert!(out.contains("const WG: u32 = 128u;"), "{out}");
    assert!(out.contains("alias T = f16;"), "{out}");
    assert!(shaders::specialize(src, &[("W", "1u".into())]).is_err());
}

#[test]
fn sections_keep_the_taken_branch_and_reject_malformed_ones() {
    let src = "const ON: bool = true;\nconst OFF: bool = false;\n// #if ON\na\n// #else\nb\n// #endif\n    // #if OFF\nc\n// #if ON\nd\n// #endif\n    // #else\ne\n// #endif\nf\n";
    let out = shaders::select_sections(src).unwrap();
    assert_eq!(out, "const ON: bool = true;\nconst OFF: bool = false;\na\ne\nf\n");
    // Specialised first: the flag's value is the variant's.
    let out = shaders::prepare(src, &[("ON", "false".into()), ("OFF", "true".into())]).unwrap();
    assert_eq!(out, "const ON: bool = false;\nconst OFF: bool = true;\nb\nc\nf\n");
    for bad in [
        "// #if ON\na\n// #endif\n",
        "const ON: u32 = 1u;\n// #if ON\na\n// #endif\n",
        "const ON: bool = true;\n// #if ON\na\n",
        "const ON: bool = true;\n// #if ON\na\n// #else\nb\n// #else\nc\n// #endif\n",
        "a\n// #endif\n",
        "a\n// #else\n",
        "const ON: bool = true;\n// #if ON\na\n// #endif ON\n",
        "const ON: bool = true;\n// #ifdef ON\na\n// #endif\n",
    ] {
        assert!(shaders::select_sections(bad).is_err(), "{bad}");
    }
}

#[test]
fn unroll_writes_out_marked_loops() {
    let src = "const M: u32 = 12u;\nconst N: u32 = M / 4u;\nfn f() {\n    for (var i = 0u; i < N; i++) { // #unroll\n        for (var j = 0u; j < 2u; j++) { // #unroll\n            a[i * 2u + j] = v.i + i1 + 1i;\n        }\n    }\n    for (var k = 0u; k < N; k++) {\n        b[k] = k;\n    }\n}\n";
    let out = shaders::unroll(src).unwrap();
    // Six copies, innermost fastest; fields, longer names and literals keep their `i`.
    let copies: Vec<&str> = out.lines().filter(|l| l.contains("a[")).map(str::trim).collect();
    let want: Vec<String> =
        (0..3).flat_map(|i| (0..2).map(move |j| format!("a[{i}u * 2u + {j}u] = v.i + i1 + 1i;"))).collect();
    assert_eq!(copies, want, "{out}");
    assert!(out.contains("for (var k = 0u; k < N; k++) {\n        b[k] = k;"), "an unmarked loop stays: {out}");
    assert_eq!(out.matches('{').count(), out.matches('}').count(), "{out}");
    // Malformed markers are errors, not silently rolled loops.
    for bad in [
        "for (var i = 0u; i < M; i++) { // #unroll\n}\n",
        "const M: u32 = K;\nfor (var i = 0u; i < M; i++) { // #unroll\n}\n",
        "for (var i = 1u; i < 4u; i++) { // #unroll\n}\n",
        "for (var i = 0u; i <= 4u; i++) { // #unroll\n}\n",
        "for (var i = 0u; i < 4u; i++) { // #unroll\n    x(); }\n",
        "for (var i = 0u; i < 65u; i++) { // #unroll\n}\n",
    ] {
        assert!(shaders::unroll(bad).is_err(), "{bad}");
    }
}

#[test]
fn includes_expand_once_and_report_missing_files() {
    let mut read = |n: &str| match n {
        "a" => Ok("fn a() {}\n// #include b\n".to_string()),
        "b" => Ok("fn b() {}\n".to_string()),
        _ => Err("no such file".to_string()),
    };
    let out = wgsl_include::expand("// #include a\n// #include b\nfn main() {}\n", &mut read).unwrap();
    assert_eq!(out, "fn a() {}\nfn b() {}\nfn main() {}\n");
    let err = wgsl_include::expand("  // #include missing\n", &mut read).unwrap_err();
    assert!(err.contains("missing") && err.contains("no such file"), "{err}");
    assert!(wgsl_include::expand("// #include ../x\n", &mut read).is_err());
}
