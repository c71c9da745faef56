//! Bark's networks built from the ops: the causal GPTs (semantic, coarse), the fine GPT and
//! the EnCodec codec.

pub mod encodec;
