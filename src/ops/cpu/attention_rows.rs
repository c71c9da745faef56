//! The CPU set's attention (`shaders/cpu/attention_rows.wgsl`): the same operation as the tiled
//! kernel without shared tiles or barriers, each thread walking the keys of its query rows
//! itself; its `SUBGROUPS` twin's lanes walk together and share the key and value loads (see
//! [`shares_loads`]). [`crate::ops::attention::choose`] picks the key (`AttentionKernel::Rows`); this module
//! sizes it and builds the kernel.

use crate::gpu::{Kernel, KernelPolicy};
use crate::ops::attention::{DENSE, PAGED};

/// Threads per workgroup (WG).
pub(crate) const WG: u32 = 8;

/// Query rows each thread takes (RQ) in a prefill or dense attention over heads of `head_dim`
/// under `policy` (a decode step's rows, one per sequence, take a thread per head, and a
/// workgroup spans heads). More rows share each loaded key and value, but the kernel is written
/// out per row and column, and a compiler's time and memory can grow much faster than its size:
/// up to 8 rows and rows x head_dim 512 where a workgroup is one subgroup (the lanes then also
/// share their loads; lavapipe), else up to 4 rows and 256, which every driver tried compiles
/// (BENCHMARKS.md, "Compile time on SwiftShader").
pub fn rows_per_thread(policy: &KernelPolicy, head_dim: u32) -> u32 {
    rows_within(policy.subgroups_are(WG), head_dim)
}

/// [`rows_per_thread`] for devices whose workgroup is one subgroup (`one_subgroup`) or not.
pub(crate) fn rows_within(one_subgroup: bool, head_dim: u32) -> u32 {
    let (most_rows, most_elements) = if one_subgroup { (8, 512) } else { (4, 256) };
    (most_elements / head_dim.max(1)).clamp(1, most_rows)
}

/// Chunks of 4 elements per 16-byte word the kernel walks (its CPW): 2 where f16 keys start
/// every word (head dims that are multiples of 8), else 1.
fn chunks_per_word(head_dim: u32, kv_f16: bool) -> u32 {
    if kv_f16 && head_dim.is_multiple_of(8) {
        2
    } else {
        1
    }
}

/// Whether the kernel, where it takes several rows per thread (prefill, dense), runs its
/// `SUBGROUPS` twin under `policy` for heads of `head_dim` over f16 (`kv_f16`) or f32 keys: its
/// lanes walk the keys together and share their loads. It needs subgroups that are exactly a
/// workgroup, and a head's 16-byte words of K splitting evenly over the lanes (f32: a multiple
/// of 32; f16: of 64, as in Bark).
pub fn shares_loads(policy: &KernelPolicy, head_dim: u32, kv_f16: bool) -> bool {
    policy.subgroups_are(WG) && words_split(head_dim, kv_f16)
}

/// Whether a head's words of K split evenly over a workgroup's lanes (f16 keys only where
/// they start every word).
pub(crate) fn words_split(head_dim: u32, kv_f16: bool) -> bool {
    let cpw = chunks_per_word(head_dim, kv_f16);
    (!kv_f16 || cpw == 2) && head_dim.is_multiple_of(4) && (head_dim / 4 / cpw).is_multiple_of(WG)
}

/// The specialisation an `AttentionKernel::Rows` key names.
pub(crate) fn kernel(paged: bool, head_dim: u32, kv_f16: bool, rows_per_thread: u32, shared_loads: bool) -> Kernel {
    let k = Kernel::new("cpu/attention_rows", if paged { "paged" } else { "dense" })
        .contract(if paged { &PAGED } else { &DENSE })
        .with_u32("CPW", chunks_per_word(head_dim, kv_f16))
        .with_u32("D", head_dim)
        .with_u32("RQ", rows_per_thread)
        .with_u32("WG", WG)
        .with_bool("KV_F16", kv_f16)
        .with_bool("PAGED", paged);
    if shared_loads {
        k.with_bool("SUBGROUPS", true)
    } else {
        k
    }
}

/// The workgroup grid for `n_rows` query rows of `n_heads` heads at `per_thread` rows per
/// thread, or `None` where it is more workgroups than a dispatch allows. With one row per
/// thread the workgroups span heads (the shader's HEAD_LANES).
pub(crate) fn grid(n_rows: u32, n_heads: u32, per_thread: u32) -> Option<[u32; 3]> {
    let blocks = n_rows.div_ceil(per_thread).div_ceil(WG);
    if blocks > 65_535 || n_heads > 65_535 || (per_thread == 1 && n_rows > 65_535) {
        return None;
    }
    Some(if per_thread == 1 { [n_heads.div_ceil(WG), n_rows, 1] } else { [blocks, n_heads, 1] })
}
