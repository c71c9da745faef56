//! Element conversions from stored little-endian bytes (no alignment assumed: safetensors and
//! zip offsets need not be multiples of 4).

use half::{bf16, f16};

use super::StoredDType;

/// Widens `bytes` (whole elements of `dtype`) into `out` (exactly that many elements).
pub(crate) fn to_f32(dtype: StoredDType, bytes: &[u8], out: &mut [f32]) -> Result<(), String> {
    if bytes.len() != out.len() * dtype.size() {
        return Err(format!("{} bytes are not {} {dtype:?} elements", bytes.len(), out.len()));
    }
    match dtype {
        StoredDType::F32 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        StoredDType::F16 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32();
            }
        }
        StoredDType::BF16 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32();
            }
        }
        StoredDType::F64 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(8)) {
                *o = f64::from_le_bytes(c.try_into().unwrap_or_default()) as f32;
            }
        }
        d => return Err(format!("is {d:?}, not a floating-point tensor")),
    }
    Ok(())
}

pub(crate) fn to_i64(dtype: StoredDType, bytes: &[u8]) -> Result<Vec<i64>, String> {
    let n = dtype.size();
    let v = match dtype {
        StoredDType::I64 => {
            bytes.chunks_exact(n).map(|c| i64::from_le_bytes(c.try_into().unwrap_or_default())).collect()
        }
        StoredDType::I32 => {
            bytes.chunks_exact(n).map(|c| i32::from_le_bytes(c.try_into().unwrap_or_default()) as i64).collect()
        }
        StoredDType::I16 => bytes.chunks_exact(n).map(|c| i16::from_le_bytes([c[0], c[1]]) as i64).collect(),
        StoredDType::I8 => bytes.iter().map(|&b| b as i8 as i64).collect(),
        StoredDType::U8 | StoredDType::Bool => bytes.iter().map(|&b| b as i64).collect(),
        d => return Err(format!("is {d:?}, not an integer tensor")),
    };
    Ok(v)
}

/// Packs rows of `cols` f32 values as f16 words: two halves per u32 (low half = even element),
/// each row padded to an even length, as `DType::F16` tensors store them.
pub(crate) fn f16_words(rows: &[f32], cols: usize, out: &mut Vec<u32>) {
    out.clear();
    for row in rows.chunks(cols.max(1)) {
        for pair in row.chunks(2) {
            let lo = f16::from_f32(pair[0]).to_bits() as u32;
            let hi = pair.get(1).map_or(0, |&v| f16::from_f32(v).to_bits() as u32);
            out.push(lo | (hi << 16));
        }
    }
}
