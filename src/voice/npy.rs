//! NumPy's `.npy` format, for integer arrays only: enough to read every voice prompt NumPy and
//! Suno write (any integer or bool dtype, either byte order, C or Fortran order: Suno's presets
//! keep `coarse_prompt` in Fortran order) and to write them back. The header is a Python dict
//! literal; it is parsed strictly (the three keys `descr`, `fortran_order`, `shape`, nothing else)
//! and every length is checked before use, so a bad file gives an error message, never a panic or
//! a huge allocation. Object arrays (pickles) are refused, never unpickled.

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// An integer array of any rank in C (row-major) order, widened to i64.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntArray {
    pub shape: Vec<usize>,
    pub values: Vec<i64>,
}

/// The element types this reader accepts: NumPy's integer kinds and bool (`|b1`, read as 0/1).
#[derive(Clone, Copy, Debug)]
struct IntType {
    bytes: usize,
    signed: bool,
    big_endian: bool,
    boolean: bool,
}

/// Parses a whole `.npy` file (versions 1.0, 2.0 and 3.0) holding an integer array.
/// The error is a sentence fragment without the file name; callers add it.
pub fn parse_npy(bytes: &[u8]) -> Result<IntArray, String> {
    if bytes.len() < 8 || &bytes[..6] != MAGIC {
        return Err("not a .npy file (bad magic bytes)".into());
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (len_bytes, utf8) = match (major, minor) {
        (1, 0) => (2, false),
        (2, 0) => (4, false),
        (3, 0) => (4, true),
        _ => return Err(format!(".npy format version {major}.{minor} is not supported (1.0, 2.0, 3.0 are)")),
    };
    let header_start = 8 + len_bytes;
    let len_field = bytes.get(8..header_start).ok_or("the .npy file is truncated inside its header")?;
    let header_len = len_field.iter().rev().fold(0usize, |acc, &b| (acc << 8) | b as usize);
    let data_start = header_start.checked_add(header_len).ok_or("the .npy header length overflows")?;
    let header = bytes.get(header_start..data_start).ok_or("the .npy file is truncated inside its header")?;
    if !utf8 && !header.is_ascii() {
        return Err("the .npy header is not ASCII".into());
    }
    let header = std::str::from_utf8(header).map_err(|_| "the .npy header is not UTF-8".to_string())?;
    let (descr, fortran_order, shape) = parse_header(header)?;
    let ty = parse_descr(&descr)?;
    let count = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or("the .npy shape overflows")?;
    let data = &bytes[data_start..];
    let expected = count.checked_mul(ty.bytes).ok_or("the .npy shape overflows")?;
    if data.len() != expected {
        let shape_text = shape_to_string(&shape);
        return Err(format!(
            "the array of shape {shape_text} needs {expected} data bytes but the file holds {}",
            data.len()
        ));
    }
    let values = data.chunks_exact(ty.bytes).map(|c| decode(c, ty)).collect::<Result<Vec<_>, _>>()?;
    let values = if fortran_order { fortran_to_c(&values, &shape) } else { values };
    Ok(IntArray { shape, values })
}

/// Reorders column-major values (first index fastest) into row-major order (last index fastest).
fn fortran_to_c(values: &[i64], shape: &[usize]) -> Vec<i64> {
    if shape.len() < 2 {
        return values.to_vec();
    }
    // Where one step along each axis moves in the Fortran-ordered data: the shape's prefix
    // products, which the caller's element count computed without overflow.
    let mut strides = Vec::with_capacity(shape.len());
    let mut step = 1;
    for &d in shape {
        strides.push(step);
        step *= d;
    }
    let mut index = vec![0usize; shape.len()];
    let mut offset = 0;
    let mut out = Vec::with_capacity(values.len());
    for _ in 0..values.len() {
        out.push(values[offset]);
        // Advance the C-order index like an odometer, last axis first, keeping `offset` in step.
        for axis in (0..shape.len()).rev() {
            index[axis] += 1;
            offset += strides[axis];
            if index[axis] < shape[axis] {
                break;
            }
            offset -= strides[axis] * shape[axis];
            index[axis] = 0;
        }
    }
    out
}

/// Serialises an int64 array as a version 1.0 `.npy` file, header padded to 64 bytes as NumPy does.
pub fn write_npy_i64(shape: &[usize], values: &[i64]) -> Result<Vec<u8>, String> {
    let count = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if count != Some(values.len()) {
        return Err(format!("shape {} does not hold {} values", shape_to_string(shape), values.len()));
    }
    let mut header = format!("{{'descr': '<i8', 'fortran_order': False, 'shape': {}, }}", shape_to_string(shape));
    // Magic (6) + version (2) + length (2) + header + '\n' is padded with spaces to a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let header_len = u16::try_from(header.len()).map_err(|_| "the .npy header is too long for version 1.0")?;
    let mut out = Vec::with_capacity(10 + header.len() + values.len() * 8);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&header_len.to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    Ok(out)
}

/// Python's repr of a shape tuple: `()`, `(5,)`, `(2, 7)`.
pub fn shape_to_string(shape: &[usize]) -> String {
    match shape {
        [d] => format!("({d},)"),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    }
}

fn decode(c: &[u8], ty: IntType) -> Result<i64, String> {
    if ty.boolean {
        return Ok(i64::from(c[0] != 0));
    }
    let mut le = [0u8; 8];
    le[..ty.bytes].copy_from_slice(c);
    if ty.big_endian {
        le[..ty.bytes].reverse();
    }
    let negative = ty.signed && le[ty.bytes - 1] & 0x80 != 0;
    if negative {
        le[ty.bytes..].fill(0xff);
    }
    let v = i64::from_le_bytes(le);
    if !ty.signed && ty.bytes == 8 && v < 0 {
        return Err(format!("value {} does not fit in int64", u64::from_le_bytes(le)));
    }
    Ok(v)
}

fn parse_descr(descr: &str) -> Result<IntType, String> {
    let unsupported = || format!("dtype '{descr}' is not supported: voice prompts hold integer codes");
    let mut chars = descr.chars();
    let order = chars.next().ok_or_else(unsupported)?;
    let kind = chars.next().ok_or_else(unsupported)?;
    let other = |what: &str| {
        format!(
            "the array holds {what} (dtype '{descr}'), but voice prompts hold integer codes; \
             save it as integers (`.astype(np.int64)`)"
        )
    };
    let (signed, boolean) = match kind {
        'i' => (true, false),
        'u' => (false, false),
        'b' => (false, true),
        'O' => {
            return Err(format!(
                "the array holds Python objects (a pickle, dtype '{descr}'); bark-wgpu never unpickles a \
                 voice; save it with integer arrays (`np.savez(path, semantic_prompt=..., coarse_prompt=..., \
                 fine_prompt=...)` of `.astype(np.int64)` arrays)"
            ))
        }
        'f' => return Err(other("floating-point numbers")),
        'c' => return Err(other("complex numbers")),
        'U' | 'S' | 'a' => return Err(other("text")),
        'M' | 'm' => return Err(other("dates or times")),
        _ => return Err(unsupported()),
    };
    let bytes: usize = chars.as_str().parse().map_err(|_| unsupported())?;
    if ![1, 2, 4, 8].contains(&bytes) || (boolean && bytes != 1) {
        return Err(unsupported());
    }
    let big_endian = match order {
        '<' => false,
        '>' => true,
        '=' => cfg!(target_endian = "big"),
        '|' if bytes == 1 => false,
        _ => return Err(unsupported()),
    };
    Ok(IntType { bytes, signed, big_endian, boolean })
}

/// Parses `{'descr': '<i8', 'fortran_order': False, 'shape': (2, 5), }` followed by padding.
fn parse_header(header: &str) -> Result<(String, bool, Vec<usize>), String> {
    let mut p = Parser { rest: header.trim_end_matches([' ', '\n', '\0']) };
    let bad = |what: &str| format!("the .npy header is malformed ({what}): {header:?}");
    p.expect('{').map_err(|_| bad("no dict"))?;
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    loop {
        if p.eat('}') {
            break;
        }
        let key = p.string().ok_or_else(|| bad("key"))?;
        p.expect(':').map_err(|_| bad("colon"))?;
        match key.as_str() {
            "descr" if descr.is_none() => {
                if p.rest.trim_start().starts_with('[') {
                    return Err(
                        "the array has a structured (record) dtype; voice prompts are plain integer arrays".into()
                    );
                }
                descr = Some(p.string().ok_or_else(|| bad("descr"))?)
            }
            "fortran_order" if fortran.is_none() => fortran = Some(p.boolean().ok_or_else(|| bad("fortran_order"))?),
            "shape" if shape.is_none() => shape = Some(p.tuple().ok_or_else(|| bad("shape"))?),
            _ => return Err(bad(&format!("unexpected key '{key}'"))),
        }
        if !p.eat(',') {
            p.expect('}').map_err(|_| bad("no closing brace"))?;
            break;
        }
    }
    if !p.rest.trim().is_empty() {
        return Err(bad("text after the dict"));
    }
    match (descr, fortran, shape) {
        (Some(d), Some(f), Some(s)) => Ok((d, f, s)),
        _ => Err(bad("missing descr, fortran_order or shape")),
    }
}

/// A tiny scanner over the header's Python literal.
struct Parser<'a> {
    rest: &'a str,
}

impl Parser<'_> {
    fn skip_space(&mut self) {
        self.rest = self.rest.trim_start();
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_space();
        match self.rest.strip_prefix(c) {
            Some(r) => {
                self.rest = r;
                true
            }
            None => false,
        }
    }

    fn expect(&mut self, c: char) -> Result<(), ()> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(())
        }
    }

    fn string(&mut self) -> Option<String> {
        self.skip_space();
        let quote = self.rest.chars().next().filter(|&q| q == '\'' || q == '"')?;
        let body = &self.rest[1..];
        let end = body.find(quote)?;
        let s = body[..end].to_string();
        if s.contains('\\') {
            return None;
        }
        self.rest = &body[end + 1..];
        Some(s)
    }

    fn boolean(&mut self) -> Option<bool> {
        self.skip_space();
        for (word, value) in [("True", true), ("False", false)] {
            if let Some(r) = self.rest.strip_prefix(word) {
                self.rest = r;
                return Some(value);
            }
        }
        None
    }

    fn tuple(&mut self) -> Option<Vec<usize>> {
        if !self.eat('(') {
            return None;
        }
        let mut dims = Vec::new();
        loop {
            if self.eat(')') {
                return Some(dims);
            }
            self.skip_space();
            let digits = self.rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(self.rest.len());
            // Python 2 era files may write `5L`.
            let dim: usize = self.rest[..digits].parse().ok()?;
            self.rest = self.rest[digits..].strip_prefix('L').unwrap_or(&self.rest[digits..]);
            dims.push(dim);
            if !self.eat(',') {
                return self.eat(')').then_some(dims);
            }
        }
    }
}
