// The direct GEMM (CPU adapters) where each thread loads every x row of its block itself: for
// devices without subgroups, or whose subgroups may be narrower than a workgroup. The kernel
// is common/gemm_direct.wgsl (read its header); gemm_direct_subgroup.wgsl is the twin that
// shares the x loads between lanes.

// #include gemm_direct

// The thread's own word.
fn x_from(v: vec4<f32>, lane: u32) -> vec4<f32> {
    return v;
}

@compute @workgroup_size(DWG)
fn gemm_direct_vec4(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) t: u32) {
    direct_vec4(origin(wid, t), 0u);
}
