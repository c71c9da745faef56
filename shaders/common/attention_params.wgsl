// The uniform of both attention kernels (attention.wgsl, cpu/attention_rows.wgsl; `Params` in
// src/ops/attention.rs).

struct Params {
    n_rows: u32,
    n_heads: u32,
    // H = n_heads * D
    hidden: u32,
    // 1: key positions <= the row's own; 0: all keys of its sequence (or batch item)
    causal: u32,
    // workgroups sharing the keys of one (block, head); 1 writes the output directly (always
    // 1 in attention_rows.wgsl)
    n_split: u32,
    page_size: u32,
    n_pages: u32,
    max_seqs: u32,
    max_pages_per_seq: u32,
    // dense: positions per batch item (0 for paged)
    seq_len: u32,
    // 1 / sqrt(D)
    scale: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
