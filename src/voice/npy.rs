//! NumPy's `.npy` format, for integer arrays only: enough to read Suno's voice prompts and to
//! write them back. The header is a Python dict literal; it is parsed strictly (the three keys
//! `descr`, `fortran_order`, `shape`, nothing else) and every length is checked before use, so a
//! bad file gives an error message, never a panic or a huge allocation.

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// An integer array of any rank in C (row-major) order, widened to i64.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntArray {
    pub shape: Vec<usize>,
    pub values: Vec<i64>,
}

/// The element types this reader accepts.
#[derive(Clone, Copy, Debug)]
struct IntType {
    bytes: usize,
    signed: bool,
    big_endian: bool,
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
    if fortran_order {
        return Err("the array is stored in Fortran order; only C order is supported".into());
    }
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
    Ok(IntArray { shape, values })
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
    let bytes: usize = chars.as_str().parse().map_err(|_| unsupported())?;
    let signed = match kind {
        'i' => true,
        'u' => false,
        _ => return Err(unsupported()),
    };
    if ![1, 2, 4, 8].contains(&bytes) {
        return Err(unsupported());
    }
    let big_endian = match order {
        '<' => false,
        '>' => true,
        '=' => cfg!(target_endian = "big"),
        '|' if bytes == 1 => false,
        _ => return Err(unsupported()),
    };
    Ok(IntType { bytes, signed, big_endian })
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
            "descr" if descr.is_none() => descr = Some(p.string().ok_or_else(|| bad("descr"))?),
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
