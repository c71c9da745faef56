//! The host half of the paged KV cache: which pages are free, which sequence owns which pages,
//! and how many positions each sequence has reserved. Pure bookkeeping, no GPU: the cache in
//! `mod.rs` mirrors every change into the GPU page table.

use crate::{Error, Result};

/// A sequence's handle. The generation makes a handle kept after `free` an error instead of a
/// silent alias of whichever sequence reuses the slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SeqId {
    slot: u32,
    generation: u32,
}

impl SeqId {
    /// The row of the GPU page table this sequence uses (what the kernels see).
    pub fn slot(self) -> u32 {
        self.slot
    }
}

struct Seq {
    generation: u32,
    /// Pool pages in position order: position `p` lives in `pages[p / page_size]`.
    pages: Vec<u32>,
    /// Positions reserved so far (0..len).
    len: usize,
}

/// What a `reserve` changed, for the GPU mirror.
pub(crate) struct Reserved {
    /// The new positions.
    pub positions: std::ops::Range<usize>,
    /// Index (in the sequence's page list) of the first page added; equal to the page count
    /// when no page was added.
    pub first_new_page: usize,
}

pub(crate) struct PageAllocator {
    page_size: usize,
    max_pages_per_seq: usize,
    /// A stack: the next page handed out is the last one. Freed pages go on top, so the most
    /// recently freed page is reused first (what the stale-data tests want to exercise).
    free: Vec<u32>,
    slots: Vec<Option<Seq>>,
    next_generation: u32,
}

impl PageAllocator {
    pub fn new(page_size: usize, n_pages: usize, max_seqs: usize, max_pages_per_seq: usize) -> PageAllocator {
        PageAllocator {
            page_size,
            max_pages_per_seq,
            free: (0..n_pages as u32).rev().collect(),
            slots: (0..max_seqs).map(|_| None).collect(),
            next_generation: 0,
        }
    }

    pub fn add_sequence(&mut self) -> Result<SeqId> {
        let slot = self.slots.iter().position(Option::is_none).ok_or_else(|| {
            Error::Invalid(format!("the KV cache already holds its maximum of {} sequences", self.slots.len()))
        })?;
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        self.slots[slot] = Some(Seq { generation, pages: Vec::new(), len: 0 });
        Ok(SeqId { slot: slot as u32, generation })
    }

    fn seq(&self, id: SeqId) -> Result<&Seq> {
        match self.slots.get(id.slot as usize) {
            Some(Some(s)) if s.generation == id.generation => Ok(s),
            _ => Err(Error::Invalid(format!("{id:?} is not a live sequence of this KV cache"))),
        }
    }

    fn seq_mut(&mut self, id: SeqId) -> Result<&mut Seq> {
        self.seq(id)?;
        Ok(self.slots[id.slot as usize].as_mut().expect("checked above"))
    }

    pub fn len(&self, id: SeqId) -> Result<usize> {
        Ok(self.seq(id)?.len)
    }

    pub fn pages(&self, id: SeqId) -> Result<&[u32]> {
        Ok(&self.seq(id)?.pages)
    }

    pub fn free_pages(&self) -> usize {
        self.free.len()
    }

    pub fn max_len(&self) -> usize {
        self.page_size * self.max_pages_per_seq
    }

    /// Reserves `n` more positions, taking pages from the free list as needed. All or nothing:
    /// on error the sequence and the free list are unchanged.
    pub fn reserve(&mut self, id: SeqId, n: usize) -> Result<Reserved> {
        let (max_len, page_size, free) = (self.max_len(), self.page_size, self.free.len());
        let seq = self.seq_mut(id)?;
        let new_len = seq.len.checked_add(n).filter(|&l| l <= max_len).ok_or_else(|| {
            Error::Invalid(format!(
                "{id:?} holds {} positions; {n} more would pass the KV cache's limit of {max_len} per sequence",
                seq.len
            ))
        })?;
        let need = new_len.div_ceil(page_size).saturating_sub(seq.pages.len());
        if need > free {
            return Err(Error::Invalid(format!(
                "KV cache pool exhausted: {id:?} needs {need} more pages of {page_size} positions, {free} are free"
            )));
        }
        let first_new_page = seq.pages.len();
        let start = seq.len;
        seq.len = new_len;
        let at = self.free.len() - need;
        let taken = self.free.split_off(at);
        // split_off keeps stack order; hand out from the top down.
        self.seq_mut(id)?.pages.extend(taken.into_iter().rev());
        Ok(Reserved { positions: start..new_len, first_new_page })
    }

    /// Returns the sequence's pages to the free list and empties it; the handle stays valid.
    pub fn reset(&mut self, id: SeqId) -> Result<()> {
        let seq = self.seq_mut(id)?;
        let pages = std::mem::take(&mut seq.pages);
        seq.len = 0;
        self.free.extend(pages.into_iter().rev());
        Ok(())
    }

    /// Returns the pages and the slot; the handle becomes invalid.
    pub fn free(&mut self, id: SeqId) -> Result<()> {
        self.reset(id)?;
        self.slots[id.slot as usize] = None;
        Ok(())
    }
}
