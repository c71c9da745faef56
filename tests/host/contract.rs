//! The host/shader contract, checked for every kernel specialisation the ops build: the WGSL
//! (reflected with naga) against the kernel's Rust [`Contract`]. The uniform struct's size and
//! members (names and offsets) against the Rust `Params` (`uniform_struct!` in src/ops), and the
//! bindings the entry point uses (group, index, name, read or read_write) against the named
//! operands `Graph::dispatch` binds in order.

use std::collections::{BTreeMap, BTreeSet};

use bark_wgpu::gpu::{shaders, Access, Contract, ParamsLayout};
use naga::{AddressSpace, GlobalVariable, StorageAccess, TypeInner};

/// The operand a WGSL variable stands for: its name less a trailing alias tag of digits, as
/// when a module declares one operand as scalars and as vec4s (`x1`, `x4`) or at the binding
/// another entry point gives it (`out_3`).
fn operand(var: &str) -> &str {
    let s = var.trim_end_matches(|c: char| c.is_ascii_digit());
    s.strip_suffix('_').filter(|s| !s.is_empty()).unwrap_or(s)
}

fn access(space: AddressSpace) -> Option<Access> {
    match space {
        AddressSpace::Storage { access } if access.contains(StorageAccess::STORE) => Some(Access::ReadWrite),
        AddressSpace::Storage { .. } => Some(Access::Read),
        _ => None,
    }
}

fn validate(src: &str) -> Result<(naga::Module, naga::valid::ModuleInfo), String> {
    let module = naga::front::wgsl::parse_str(src).map_err(|e| e.emit_to_string(src))?;
    let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
        .subgroup_stages(naga::valid::ShaderStages::COMPUTE)
        .subgroup_operations(naga::valid::SubgroupOperationSet::all())
        .validate(&module)
        .map_err(|e| e.emit_to_string(src))?;
    Ok((module, info))
}

/// Every way `entry` of the WGSL `src` differs from `contract`, one line each.
fn mismatches(src: &str, entry: &str, contract: &Contract) -> Vec<String> {
    let (module, info) = match validate(src) {
        Ok(m) => m,
        Err(e) => return vec![format!("invalid WGSL: {e}")],
    };
    let Some(ep) = module.entry_points.iter().position(|e| e.name == entry) else {
        return vec![format!("no entry point `{entry}`")];
    };
    // The bindings the entry point uses: what wgpu's derived layout, and so the bind group, has.
    let uses = info.get_entry_point(ep);
    let mut used: Vec<&GlobalVariable> = module
        .global_variables
        .iter()
        .filter(|(h, v)| !uses[*h].is_empty() && v.binding.is_some())
        .map(|(_, v)| v)
        .collect();
    used.sort_by_key(|v| v.binding.as_ref().map(|b| b.binding));
    let name = |v: &GlobalVariable| v.name.clone().unwrap_or_default();
    let mut out = Vec::new();
    for v in &used {
        let group = v.binding.as_ref().unwrap().group;
        if group != 0 {
            out.push(format!("`{}` is in group {group}; everything binds at group 0", name(v)));
        }
    }
    let mut storage = &used[..];
    if let Some(layout) = contract.params {
        match used.first() {
            Some(v) if v.space == AddressSpace::Uniform && v.binding.as_ref().unwrap().binding == 0 => {
                out.extend(uniform_mismatches(&module, v, &layout));
                storage = &used[1..];
            }
            _ => out.push("the Rust side uploads params, but binding 0 is no uniform the entry point uses".into()),
        }
    }
    let first = u32::from(contract.params.is_some());
    let wgsl: Vec<(u32, String, Option<Access>)> = storage
        .iter()
        .map(|v| (v.binding.as_ref().unwrap().binding, operand(&name(v)).to_string(), access(v.space)))
        .collect();
    let rust: Vec<(u32, String, Option<Access>)> =
        contract.binds.iter().zip(first..).map(|(&(n, a), i)| (i, n.to_string(), Some(a))).collect();
    for i in 0..wgsl.len().max(rust.len()) {
        match (wgsl.get(i), rust.get(i)) {
            (Some(w), Some(r)) if w == r => {}
            (w, r) => out.push(format!("operand {i}: WGSL has {w:?}, Rust declares {r:?} (binding, name, access)")),
        }
    }
    out
}

/// The uniform `v`'s struct against the Rust layout: size, then each member's name and offset.
fn uniform_mismatches(module: &naga::Module, v: &GlobalVariable, layout: &ParamsLayout) -> Vec<String> {
    let ty = &module.types[v.ty];
    let TypeInner::Struct { members, span } = &ty.inner else {
        return vec!["the uniform is not a struct".into()];
    };
    let st = ty.name.clone().unwrap_or_default();
    let mut out = Vec::new();
    if *span as usize != layout.size {
        out.push(format!("uniform `{st}` is {span} bytes in WGSL, {} in Rust", layout.size));
    }
    let wgsl: Vec<(&str, usize)> =
        members.iter().map(|m| (m.name.as_deref().unwrap_or("?"), m.offset as usize)).collect();
    for i in 0..wgsl.len().max(layout.fields.len()) {
        match (wgsl.get(i), layout.fields.get(i)) {
            (Some(w), Some(r)) if w == r => {}
            (w, r) => out.push(format!("`{st}` field {i}: WGSL has {w:?}, Rust {r:?} (name, offset)")),
        }
    }
    out
}

#[test]
fn every_kernel_binds_what_its_shader_declares() {
    let kernels = bark_wgpu::ops::all_kernels();
    // Each mismatch once per entry point, with how many specialisations have it and one of them.
    let mut failures: BTreeMap<(String, String), (usize, String)> = BTreeMap::new();
    for k in &kernels {
        let found = match k.contract {
            None => vec!["no Contract (Kernel::contract)".to_string()],
            Some(contract) => {
                let src = k.wgsl().unwrap();
                mismatches(&src, k.entry, contract)
            }
        };
        for m in found {
            let seen =
                failures.entry((format!("{}::{}", k.shader, k.entry), m)).or_insert((0, format!("{:?}", k.consts)));
            seen.0 += 1;
        }
    }
    let lines: Vec<String> =
        failures.iter().map(|((k, m), (n, eg))| format!("{k} ({n} specialisations, e.g. {eg}): {m}")).collect();
    assert!(failures.is_empty(), "the Rust side and the WGSL disagree:\n{}", lines.join("\n"));
    println!("{} kernel specialisations match their shaders", kernels.len());
}

#[test]
fn every_entry_point_of_every_shader_is_some_ops_kernel() {
    // So no entry point escapes the check above: every shader in shaders/ and shaders/cpu/, as
    // its default constants select its sections.
    let covered: BTreeSet<(&str, &str)> =
        bark_wgpu::ops::all_kernels().into_iter().map(|k| (k.shader, k.entry)).collect();
    assert!(shaders::ALL.iter().any(|(n, _)| n.starts_with("cpu/")), "the CPU kernel set is embedded");
    for (shader, src) in shaders::ALL {
        let module = naga::front::wgsl::parse_str(&shaders::prepare(src, &[]).unwrap()).unwrap();
        for ep in &module.entry_points {
            assert!(covered.contains(&(*shader, ep.name.as_str())), "{shader}::{} is in no ops kernels()", ep.name);
        }
    }
}

#[test]
fn a_changed_field_offset_or_binding_on_either_side_is_caught() {
    let k = bark_wgpu::ops::all_kernels().into_iter().find(|k| (k.shader, k.entry) == ("elementwise", "elu"));
    let k = k.expect("elementwise::elu");
    let contract = *k.contract.unwrap();
    let src = k.wgsl().unwrap();
    assert_eq!(mismatches(&src, "elu", &contract), Vec::<String>::new());
    let caught = |src: &str, c: &Contract, what: &str, expect: &str| {
        let found = mismatches(src, "elu", c);
        assert!(found.iter().any(|m| m.contains(expect)), "{what}: expected a mismatch naming {expect}, got {found:?}");
    };
    // The WGSL side: a renamed member, a member that moves the others, a binding's access.
    caught(&src.replace("value: f32", "alpha: f32").replace("p.value", "p.alpha"), &contract, "rename", "alpha");
    caught(&src.replace("n: u32,", "n: u32,\n    extra: u32,"), &contract, "insert", "12 bytes in WGSL");
    caught(&src.replace("read> x:", "read_write> x:"), &contract, "access", "ReadWrite");
    // The Rust side: a field's offset, an operand's name, a missing operand.
    let fields = &[("n", 0), ("value", 8)];
    let moved = Contract { params: Some(ParamsLayout { size: 8, fields }), ..contract };
    caught(&src, &moved, "offset", "(\"value\", 8)");
    let renamed = Contract { binds: &[("x", Access::Read), ("z", Access::ReadWrite)], ..contract };
    caught(&src, &renamed, "operand name", "\"z\"");
    let short = Contract { binds: &[("x", Access::Read)], ..contract };
    caught(&src, &short, "operand count", "Rust declares None");
}
