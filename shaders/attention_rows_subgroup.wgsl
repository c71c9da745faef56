// Attention for CPU adapters (lavapipe), `dense` with its key and value loads shared: all WG
// threads of a workgroup walk the same keys (the host runs it only for non-causal attention
// whose workgroups' rows all lie in one batch item, with D a multiple of 4 WG), so each lane
// loads 1/WG of a chunk's words and subgroupShuffle hands them to the others. For devices
// whose subgroups hold a whole workgroup; a module that names subgroup builtins fails
// validation on devices without them, hence a file of its own. The kernel is
// common/attention_rows.wgsl (read its header); attention_rows.wgsl is the twin without
// subgroups. (No `enable subgroups;`: naga 30 rejects it and gates subgroups by feature.)

// #include attention_rows

const SHARE: u32 = WG;
const SHARED_WORDS: u32 = CH * D4 / WG;

// Word v of lane `lane` (a constant once the loops are written out).
fn share(v: vec4<u32>, lane: u32) -> vec4<u32> {
    return subgroupShuffle(v, lane);
}

@compute @workgroup_size(WG)
fn dense(@builtin(global_invocation_id) id: vec3u, @builtin(subgroup_invocation_id) lane: u32) {
    dense_rows(id, lane);
}
