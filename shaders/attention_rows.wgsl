// Attention for CPU adapters (lavapipe): `paged` and `dense`, each thread walking its rows'
// keys and loading them alone. The kernel is common/attention_rows.wgsl (read its header);
// attention_rows_subgroup.wgsl is the twin whose lanes walk together and share the loads.

// #include attention_rows

const SHARE: u32 = 1u;
const SHARED_WORDS: u32 = 1u;

// The thread's own word and values: no lanes to share with.
fn share(v: vec4<u32>, lane: u32) -> vec4<u32> {
    return v;
}
fn group_min(v: u32) -> u32 {
    return v;
}
fn group_max(v: u32) -> u32 {
    return v;
}

@compute @workgroup_size(WG)
fn paged(@builtin(global_invocation_id) id: vec3u) {
    paged_rows(id, 0u);
}

@compute @workgroup_size(WG)
fn dense(@builtin(global_invocation_id) id: vec3u) {
    dense_rows(id, 0u);
}
