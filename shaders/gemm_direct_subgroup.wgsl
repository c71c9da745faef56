// The direct GEMM (CPU adapters) with the x loads shared: all of a workgroup's DWG lanes need
// the same rows of x, so each loads a share of them (XR lanes split the block's rows, XS lanes
// steps of K; the host sets XR x XS = DWG) and subgroupShuffle hands each word to the others.
// For devices whose subgroups are exactly a workgroup (the host checks the subgroup
// size); a module that names subgroup builtins fails validation on devices without them, hence
// a file of its own. The kernel is common/gemm_direct.wgsl (read its header); gemm_direct.wgsl
// is the twin without subgroups.
// (No `enable subgroups;`: naga 30 rejects that directive and gates subgroups by feature.)

// #include gemm_direct

// Word v of lane `lane`. (subgroupBroadcast would need a constant lane; after inlining the
// unrolled loops this shuffle's lane is one, and it ran as fast on lavapipe.)
fn x_from(v: vec4<f32>, lane: u32) -> vec4<f32> {
    return subgroupShuffle(v, lane);
}

@compute @workgroup_size(DWG)
fn gemm_direct_vec4(
    @builtin(workgroup_id) wid: vec3u,
    @builtin(local_invocation_index) t: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    direct_vec4(origin(wid, t), lane);
}
