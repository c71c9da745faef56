// Attention for CPU adapters (lavapipe), `paged` and `dense` with the loads shared: a
// workgroup's WG threads hold consecutive rows of one head and walk their keys together, each
// lane loading 1/WG of a chunk's words and subgroupShuffle handing them to the others. For
// several rows per thread, where subgroups are exactly a workgroup and a head's words split
// evenly over the lanes (the host checks); a module that names subgroup builtins fails
// validation on devices without them, hence a file of its own. The kernel is
// common/attention_rows.wgsl (read its header); attention_rows.wgsl is the twin without
// subgroups. (No `enable subgroups;`: naga 30 rejects it and gates subgroups by feature.)

// #include attention_rows

const SHARE: u32 = WG;
const SHARED_WORDS: u32 = CH * WK / WG;

// Word v of lane `lane` (a constant once the loops are written out).
fn share(v: vec4<u32>, lane: u32) -> vec4<u32> {
    return subgroupShuffle(v, lane);
}
fn group_min(v: u32) -> u32 {
    return subgroupMin(v);
}
fn group_max(v: u32) -> u32 {
    return subgroupMax(v);
}

@compute @workgroup_size(WG)
fn paged(@builtin(global_invocation_id) id: vec3u, @builtin(subgroup_invocation_id) lane: u32) {
    paged_rows(id, lane);
}

@compute @workgroup_size(WG)
fn dense(@builtin(global_invocation_id) id: vec3u, @builtin(subgroup_invocation_id) lane: u32) {
    dense_rows(id, lane);
}
