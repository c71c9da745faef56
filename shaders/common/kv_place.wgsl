// Where the paged KV cache keeps a position: kv_cache.wgsl's append and attention.wgsl's
// combine (when it appends) both write there. Each kernel's Params names page_size, n_pages,
// max_seqs and max_pages_per_seq, and each binds page_table and seq_lens.

const NO_PLACE: u32 = 0xffffffffu;

// The pool row (page * page_size + offset within it) holding position `pos` of the sequence in
// page-table slot `slot`, or NO_PLACE when the slot, the position or its page is out of range
// (an inactive row, or anything the host did not reserve): no index derived from it can leave
// its buffer.
fn kv_place(slot: u32, pos: u32) -> u32 {
    if slot >= p.max_seqs || pos >= seq_lens[slot] {
        return NO_PLACE;
    }
    let page_idx = pos / p.page_size;
    if page_idx >= p.max_pages_per_seq {
        return NO_PLACE;
    }
    let page = page_table[slot * p.max_pages_per_seq + page_idx];
    if page >= p.n_pages {
        return NO_PLACE;
    }
    return page * p.page_size + pos % p.page_size;
}
