//! A small pickle reader for exactly what `torch.save` writes for a state dict: a dict or
//! OrderedDict of names to `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`,
//! the storages being persistent ids `('storage', torch.XStorage, key, location, numel)`.
//!
//! It executes no code: the only callables it knows are rebuilt as plain data, and any other
//! global or opcode is an error. Values are immutable except dicts and lists (shared through the
//! memo as pickle requires), and nesting is capped so that a hostile file cannot build a structure
//! whose drop overflows the stack.

use std::cell::RefCell;
use std::rc::Rc;

use super::StoredDType;

/// Nesting a state dict needs is about 4 (dict -> tensor args -> size tuple); anything far deeper
/// is not a state dict.
const MAX_DEPTH: usize = 32;

/// A storage reference from a persistent id.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct StorageRef {
    pub dtype: StoredDType,
    pub key: String,
    pub numel: u64,
}

/// The arguments of `_rebuild_tensor_v2`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TensorRef {
    pub storage: StorageRef,
    pub offset: u64,
    pub size: Vec<u64>,
    pub stride: Vec<u64>,
}

#[derive(Clone, Debug)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// Floats and bytes may appear in metadata; their values never matter to a state dict.
    Float,
    Str(String),
    Bytes,
    Tuple(Rc<Vec<Value>>, usize),
    List(Rc<RefCell<Seq>>),
    Dict(Rc<RefCell<Map>>),
    Global(String, String),
    Storage(StorageRef),
    Tensor(Rc<TensorRef>),
}

/// `frozen`: the container sits inside another one (or a tuple); changing it then would make the
/// cached depths wrong, and torch.save never does it (children are complete before the parent's
/// SETITEMS), so it is an error.
#[derive(Debug, Default)]
struct Seq {
    items: Vec<Value>,
    depth: usize,
    frozen: bool,
}

#[derive(Debug, Default)]
struct Map {
    items: Vec<(Value, Value)>,
    depth: usize,
    frozen: bool,
}

impl Value {
    fn depth(&self) -> usize {
        match self {
            Value::Tuple(_, d) => *d,
            Value::List(l) => l.try_borrow().map_or(MAX_DEPTH + 1, |l| l.depth),
            Value::Dict(m) => m.try_borrow().map_or(MAX_DEPTH + 1, |m| m.depth),
            _ => 0,
        }
    }
    fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float => "float",
            Value::Str(_) => "str",
            Value::Bytes => "bytes",
            Value::Tuple(..) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(..) => "global",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
        }
    }
}

/// The depth a container holding `items` gets; freezes the containers among them.
fn child_depth(items: &[Value]) -> Result<usize, String> {
    let depth = 1 + items.iter().map(Value::depth).max().unwrap_or(0);
    if depth > MAX_DEPTH {
        return Err(format!("values nested deeper than {MAX_DEPTH}"));
    }
    for v in items {
        match v {
            Value::List(l) => l.try_borrow_mut().map_err(|_| "a list holds itself".to_string())?.frozen = true,
            Value::Dict(d) => d.try_borrow_mut().map_err(|_| "a dict holds itself".to_string())?.frozen = true,
            _ => {}
        }
    }
    Ok(depth)
}

fn tuple(items: Vec<Value>) -> Result<Value, String> {
    let depth = child_depth(&items)?;
    Ok(Value::Tuple(Rc::new(items), depth))
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: Vec<Option<Value>>,
}

impl<'a> Machine<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or_else(|| format!("pickle ends inside an operand at byte {}", self.pos))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap_or_default()))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap_or_default()))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap_or_default()))
    }
    fn line(&mut self) -> Result<String, String> {
        let rest = &self.data[self.pos..];
        let n = rest.iter().position(|&b| b == b'\n').ok_or("pickle ends inside a text operand")?;
        let s = std::str::from_utf8(&rest[..n]).map_err(|_| "a text operand is not UTF-8".to_string())?;
        self.pos += n + 1;
        Ok(s.to_string())
    }
    fn utf8(&mut self, n: usize) -> Result<Value, String> {
        let b = self.take(n)?;
        Ok(Value::Str(std::str::from_utf8(b).map_err(|_| "a string is not UTF-8".to_string())?.to_string()))
    }
    fn pop(&mut self) -> Result<Value, String> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err("stack underflow".into());
        }
        self.stack.pop().ok_or_else(|| "stack underflow".into())
    }
    fn top(&mut self) -> Result<&mut Value, String> {
        self.stack.last_mut().ok_or_else(|| "stack underflow".into())
    }
    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let m = self.marks.pop().ok_or("no MARK before a collection opcode")?;
        Ok(self.stack.split_off(m))
    }
    fn memo_put(&mut self, idx: usize) -> Result<(), String> {
        let v = self.stack.last().cloned().ok_or("stack underflow")?;
        // The pickler numbers memo entries 0, 1, 2, ...; a jump ahead could only serve to make
        // us allocate.
        if idx > self.memo.len() {
            return Err(format!("memo index {idx} skips past the memo's end {}", self.memo.len()));
        }
        if idx >= self.memo.len() {
            self.memo.resize(idx + 1, None);
        }
        self.memo[idx] = Some(v);
        Ok(())
    }
    fn memo_get(&mut self, idx: usize) -> Result<(), String> {
        let v = self.memo.get(idx).cloned().flatten().ok_or_else(|| format!("memo index {idx} was never set"))?;
        self.stack.push(v);
        Ok(())
    }
    fn set_items(&mut self, pairs: Vec<Value>) -> Result<(), String> {
        if !pairs.len().is_multiple_of(2) {
            return Err("SETITEMS with an odd number of values".into());
        }
        let Value::Dict(d) = self.top()?.clone() else {
            return Err(format!("SETITEM(S) on a {}", self.top()?.kind()));
        };
        // Children first (a value may be this very dict, which then is frozen and refused).
        let depth = child_depth(&pairs)?;
        let mut d = d.try_borrow_mut().map_err(|_| "a dict is inserted into itself".to_string())?;
        if d.frozen {
            return Err("a dict is changed after being placed in another value".into());
        }
        d.depth = d.depth.max(depth);
        // Duplicate keys are kept (the caller rejects a name given twice) rather than searched
        // for, which would be quadratic in a hostile file.
        let mut it = pairs.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            d.items.push((k, v));
        }
        Ok(())
    }
    fn append(&mut self, values: Vec<Value>) -> Result<(), String> {
        let Value::List(l) = self.top()?.clone() else {
            return Err(format!("APPEND(S) on a {}", self.top()?.kind()));
        };
        let depth = child_depth(&values)?;
        let mut l = l.try_borrow_mut().map_err(|_| "a list is appended to itself".to_string())?;
        if l.frozen {
            return Err("a list is changed after being placed in another value".into());
        }
        l.depth = l.depth.max(depth);
        l.items.extend(values);
        Ok(())
    }
}

fn storage_dtype(name: &str) -> Option<StoredDType> {
    Some(match name {
        "FloatStorage" => StoredDType::F32,
        "HalfStorage" => StoredDType::F16,
        "BFloat16Storage" => StoredDType::BF16,
        "DoubleStorage" => StoredDType::F64,
        "BoolStorage" => StoredDType::Bool,
        "LongStorage" => StoredDType::I64,
        "IntStorage" => StoredDType::I32,
        "ShortStorage" => StoredDType::I16,
        "CharStorage" => StoredDType::I8,
        "ByteStorage" => StoredDType::U8,
        _ => return None,
    })
}

fn allowed_global(module: &str, name: &str) -> bool {
    matches!(
        (module, name),
        ("collections", "OrderedDict")
            | ("torch._utils", "_rebuild_tensor_v2")
            | ("torch._utils", "_rebuild_parameter")
    ) || (module == "torch" && storage_dtype(name).is_some())
}

fn as_u64(v: &Value, what: &str) -> Result<u64, String> {
    match v {
        Value::Int(i) if *i >= 0 => Ok(*i as u64),
        Value::Bool(b) => Ok(*b as u64),
        _ => Err(format!("{what} is a {} (want a non-negative int)", v.kind())),
    }
}

fn int_tuple(v: &Value, what: &str) -> Result<Vec<u64>, String> {
    match v {
        Value::Tuple(items, _) => items.iter().map(|x| as_u64(x, what)).collect(),
        _ => Err(format!("{what} is a {} (want a tuple of ints)", v.kind())),
    }
}

/// `('storage', torch.XStorage, key, location, numel)` -> a storage reference.
fn persistent_load(pid: Value) -> Result<Value, String> {
    let Value::Tuple(items, _) = &pid else {
        return Err(format!("persistent id is a {} (want a tuple)", pid.kind()));
    };
    match items.as_slice() {
        [Value::Str(tag), Value::Global(module, name), Value::Str(key), _location, numel] if tag == "storage" => {
            let dtype = (module == "torch").then(|| storage_dtype(name)).flatten();
            let dtype = dtype.ok_or_else(|| format!("unsupported storage type {module}.{name}"))?;
            Ok(Value::Storage(StorageRef { dtype, key: key.clone(), numel: as_u64(numel, "storage numel")? }))
        }
        _ => Err("persistent id is not ('storage', type, key, location, numel)".into()),
    }
}

fn reduce(func: Value, args: Value) -> Result<Value, String> {
    let Value::Global(module, name) = &func else {
        return Err(format!("REDUCE calls a {} (want a known global)", func.kind()));
    };
    let Value::Tuple(args, _) = &args else {
        return Err(format!("REDUCE arguments are a {} (want a tuple)", args.kind()));
    };
    match (module.as_str(), name.as_str()) {
        ("collections", "OrderedDict") if args.is_empty() => Ok(Value::Dict(Rc::default())),
        ("torch._utils", "_rebuild_tensor_v2") if args.len() >= 4 => {
            let Value::Storage(storage) = &args[0] else {
                return Err(format!("_rebuild_tensor_v2 storage argument is a {}", args[0].kind()));
            };
            Ok(Value::Tensor(Rc::new(TensorRef {
                storage: storage.clone(),
                offset: as_u64(&args[1], "storage offset")?,
                size: int_tuple(&args[2], "tensor size")?,
                stride: int_tuple(&args[3], "tensor stride")?,
            })))
        }
        ("torch._utils", "_rebuild_parameter") if !args.is_empty() => match &args[0] {
            t @ Value::Tensor(_) => Ok(t.clone()),
            other => Err(format!("_rebuild_parameter of a {}", other.kind())),
        },
        _ => Err(format!("unsupported call {module}.{name} with {} arguments", args.len())),
    }
}

/// Runs the pickle and returns the state dict's `(name, tensor)` pairs in file order.
pub(crate) fn read_state_dict(data: &[u8]) -> Result<Vec<(String, TensorRef)>, String> {
    let mut m = Machine { data, pos: 0, stack: Vec::new(), marks: Vec::new(), memo: Vec::new() };
    let result = loop {
        let at = m.pos;
        let op = m.u8().map_err(|_| "pickle ends without STOP".to_string())?;
        match op {
            0x80 => {
                let proto = m.u8()?;
                if proto > 5 {
                    return Err(format!("pickle protocol {proto} is not supported"));
                }
            }
            0x95 => {
                m.u64()?; // FRAME: a length hint only
            }
            b'.' => break m.pop()?,
            b'(' => m.marks.push(m.stack.len()),
            b'N' => m.stack.push(Value::None),
            0x88 => m.stack.push(Value::Bool(true)),
            0x89 => m.stack.push(Value::Bool(false)),
            b'K' => {
                let v = m.u8()?;
                m.stack.push(Value::Int(v as i64))
            }
            b'M' => {
                let v = m.u16()?;
                m.stack.push(Value::Int(v as i64))
            }
            b'J' => {
                let v = m.u32()? as i32;
                m.stack.push(Value::Int(v as i64))
            }
            0x8a => {
                // LONG1: little-endian two's complement of n bytes; storage sizes fit in 8.
                let n = m.u8()? as usize;
                if n > 8 {
                    return Err(format!("integer of {n} bytes at byte {at}"));
                }
                let b = m.take(n)?;
                let mut v: i64 = 0;
                for (i, &byte) in b.iter().enumerate() {
                    v |= (byte as i64) << (8 * i);
                }
                if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                    v -= 1i64 << (8 * n);
                }
                m.stack.push(Value::Int(v));
            }
            b'G' => {
                m.take(8)?;
                m.stack.push(Value::Float)
            }
            b'X' => {
                let n = m.u32()? as usize;
                let s = m.utf8(n)?;
                m.stack.push(s)
            }
            0x8c => {
                let n = m.u8()? as usize;
                let s = m.utf8(n)?;
                m.stack.push(s)
            }
            0x8d => {
                let n = usize::try_from(m.u64()?).map_err(|_| "string length overflows".to_string())?;
                let s = m.utf8(n)?;
                m.stack.push(s)
            }
            b'C' => {
                let n = m.u8()? as usize;
                m.take(n)?;
                m.stack.push(Value::Bytes)
            }
            b'B' => {
                let n = m.u32()? as usize;
                m.take(n)?;
                m.stack.push(Value::Bytes)
            }
            b'U' => {
                // SHORT_BINSTRING (protocol 2 writes str keys this way under Python 2); ASCII names only.
                let n = m.u8()? as usize;
                let s = m.utf8(n)?;
                m.stack.push(s)
            }
            b')' => m.stack.push(tuple(Vec::new())?),
            b't' => {
                let items = m.pop_mark()?;
                m.stack.push(tuple(items)?)
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(m.pop()?);
                }
                items.reverse();
                m.stack.push(tuple(items)?)
            }
            b'}' => m.stack.push(Value::Dict(Rc::default())),
            b']' => m.stack.push(Value::List(Rc::default())),
            b's' => {
                let v = m.pop()?;
                let k = m.pop()?;
                m.set_items(vec![k, v])?
            }
            b'u' => {
                let items = m.pop_mark()?;
                m.set_items(items)?
            }
            b'a' => {
                let v = m.pop()?;
                m.append(vec![v])?
            }
            b'e' => {
                let items = m.pop_mark()?;
                m.append(items)?
            }
            b'q' => {
                let i = m.u8()? as usize;
                m.memo_put(i)?
            }
            b'r' => {
                let i = m.u32()? as usize;
                m.memo_put(i)?
            }
            0x94 => {
                let i = m.memo.len();
                m.memo_put(i)?
            }
            b'h' => {
                let i = m.u8()? as usize;
                m.memo_get(i)?
            }
            b'j' => {
                let i = m.u32()? as usize;
                m.memo_get(i)?
            }
            b'c' => {
                let module = m.line()?;
                let name = m.line()?;
                if !allowed_global(&module, &name) {
                    return Err(format!("unsupported global {module}.{name} at byte {at}"));
                }
                m.stack.push(Value::Global(module, name))
            }
            0x93 => {
                let name = m.pop()?;
                let module = m.pop()?;
                let (Value::Str(module), Value::Str(name)) = (module, name) else {
                    return Err(format!("STACK_GLOBAL of non-strings at byte {at}"));
                };
                if !allowed_global(&module, &name) {
                    return Err(format!("unsupported global {module}.{name} at byte {at}"));
                }
                m.stack.push(Value::Global(module, name))
            }
            b'Q' => {
                let pid = m.pop()?;
                m.stack.push(persistent_load(pid).map_err(|e| format!("{e} at byte {at}"))?)
            }
            b'R' => {
                let args = m.pop()?;
                let func = m.pop()?;
                m.stack.push(reduce(func, args).map_err(|e| format!("{e} at byte {at}"))?)
            }
            b'b' => {
                // BUILD: OrderedDict state (the `_metadata` attribute); irrelevant to the tensors.
                let _state = m.pop()?;
                if !matches!(m.top()?, Value::Dict(_)) {
                    return Err(format!("BUILD on a {} at byte {at}", m.top()?.kind()));
                }
            }
            other => return Err(format!("unsupported pickle opcode 0x{other:02x} at byte {at}")),
        }
    };
    let Value::Dict(d) = result else {
        return Err(format!("the pickle holds a {}, not a state dict", result.kind()));
    };
    let items = std::mem::take(&mut d.borrow_mut().items);
    items
        .into_iter()
        .map(|(k, v)| match (k, v) {
            (Value::Str(k), Value::Tensor(t)) => Ok((k, (*t).clone())),
            (Value::Str(k), v) => Err(format!("state dict entry `{k}` is a {}, not a tensor", v.kind())),
            (k, _) => Err(format!("state dict key is a {}, not a string", k.kind())),
        })
        .collect()
}
