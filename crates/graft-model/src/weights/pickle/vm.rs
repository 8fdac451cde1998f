//! The pickle stack machine: decodes opcodes into arena values; never executes anything.

use std::collections::HashMap;
use std::rc::Rc;

use super::opcodes as op;
use super::{Object, PickleError, Value};

/// Run the machine from `start` to the first STOP: (root, object arena, end offset).
pub(super) fn run(data: &[u8], start: usize) -> Result<(Value, Vec<Object>, usize), PickleError> {
    let mut vm = Vm {
        data,
        pos: start,
        op_pos: start,
        op: None,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        objects: Vec::new(),
    };
    let root = vm.run()?;
    Ok((root, vm.objects, vm.pos))
}

struct Vm<'a> {
    data: &'a [u8],
    pos: usize,
    op_pos: usize,
    op: Option<u8>,
    stack: Vec<Value>,
    /// Stack heights at each MARK; nothing below the latest mark may be popped.
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    objects: Vec<Object>,
}

impl Vm<'_> {
    fn err(&self, message: impl Into<String>) -> PickleError {
        PickleError {
            offset: self.op_pos,
            opcode: self.op,
            message: message.into(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&[u8], PickleError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| {
                self.err(format!(
                    "needs {n} more bytes but the data ends (file truncated?)"
                ))
            })?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], PickleError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.array::<1>()?[0])
    }

    fn len_u32(&mut self) -> Result<usize, PickleError> {
        Ok(u32::from_le_bytes(self.array()?) as usize)
    }

    fn len_u64(&mut self) -> Result<usize, PickleError> {
        let n = u64::from_le_bytes(self.array()?);
        usize::try_from(n).map_err(|_| self.err(format!("length {n} does not fit in memory")))
    }

    fn line(&mut self) -> Result<Rc<str>, PickleError> {
        let rest = &self.data[self.pos.min(self.data.len())..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| self.err("GLOBAL name is not newline-terminated (file truncated?)"))?;
        let text = std::str::from_utf8(&rest[..n])
            .map_err(|_| self.err("GLOBAL name is not valid UTF-8"))?;
        let text: Rc<str> = Rc::from(text);
        self.pos += n + 1;
        Ok(text)
    }

    fn utf8(&mut self, n: usize) -> Result<Value, PickleError> {
        let bytes = self.take(n)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(Value::Str(Rc::from(s))),
            Err(_) => Err(self.err("string is not valid UTF-8")),
        }
    }

    /// Python-2 `str`: decoded as Latin-1 so every byte round-trips.
    fn latin1(&mut self, n: usize) -> Result<Value, PickleError> {
        let s: String = self.take(n)?.iter().map(|&b| char::from(b)).collect();
        Ok(Value::Str(Rc::from(s)))
    }

    fn bytes(&mut self, n: usize) -> Result<Value, PickleError> {
        Ok(Value::Bytes(Rc::from(self.take(n)?)))
    }

    fn long(&mut self, n: usize) -> Result<Value, PickleError> {
        let bytes = self.take(n)?;
        if bytes.len() > 8 {
            return Ok(Value::BigInt(Rc::from(bytes)));
        }
        // Sign-extend little-endian two's complement into an i64.
        let negative = bytes.last().is_some_and(|&b| b & 0x80 != 0);
        let mut buf = if negative { [0xffu8; 8] } else { [0u8; 8] };
        buf[..bytes.len()].copy_from_slice(bytes);
        Ok(Value::Int(i64::from_le_bytes(buf)))
    }

    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn push(&mut self, v: Value) {
        self.stack.push(v);
    }

    fn object(&self, v: &Value) -> Option<&Object> {
        match v {
            Value::Obj(id) => self.objects.get(*id),
            _ => None,
        }
    }

    fn new_obj(&mut self, obj: Object) -> Value {
        self.objects.push(obj);
        Value::Obj(self.objects.len() - 1)
    }

    fn pop(&mut self) -> Result<Value, PickleError> {
        if self.stack.len() <= self.floor() {
            return Err(self.err("stack underflow"));
        }
        self.stack.pop().ok_or_else(|| self.err("stack underflow"))
    }

    fn top(&self) -> Result<&Value, PickleError> {
        if self.stack.len() <= self.floor() {
            return Err(self.err("stack underflow"));
        }
        self.stack.last().ok_or_else(|| self.err("stack underflow"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, PickleError> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| self.err("no MARK on the stack"))?;
        if mark > self.stack.len() {
            return Err(self.err("MARK points past the stack"));
        }
        Ok(self.stack.split_off(mark))
    }

    fn pop_n(&mut self, n: usize) -> Result<Vec<Value>, PickleError> {
        let len = self.stack.len();
        if len < self.floor() + n {
            return Err(self.err("stack underflow"));
        }
        Ok(self.stack.split_off(len - n))
    }

    /// The arena object of the value on top of the stack, for in-place mutation.
    fn top_object_mut(&mut self) -> Result<&mut Object, PickleError> {
        let id = match self.top()? {
            Value::Obj(id) => *id,
            other => {
                return Err(self.err(format!(
                    "expected a container on the stack, found {other:?}"
                )))
            }
        };
        self.objects.get_mut(id).ok_or_else(|| PickleError {
            offset: self.op_pos,
            opcode: self.op,
            message: "dangling object reference".into(),
        })
    }

    fn extend_list(&mut self, items: Vec<Value>) -> Result<(), PickleError> {
        match self.top_object_mut()? {
            Object::List(list) => {
                list.extend(items);
                Ok(())
            }
            _ => Err(self.err("APPEND target is not a list")),
        }
    }

    fn extend_dict(&mut self, items: Vec<Value>) -> Result<(), PickleError> {
        if !items.len().is_multiple_of(2) {
            return Err(self.err("odd number of items for dict keys/values"));
        }
        let mut it = items.into_iter();
        let mut pairs = Vec::new();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            pairs.push((k, v));
        }
        match self.top_object_mut()? {
            Object::Dict(dict) => {
                dict.extend(pairs);
                Ok(())
            }
            _ => Err(self.err("SETITEM target is not a dict")),
        }
    }

    fn memo_put(&mut self, key: u32) -> Result<(), PickleError> {
        let v = self.top()?.clone();
        self.memo.insert(key, v);
        Ok(())
    }

    fn memo_get(&mut self, key: u32) -> Result<(), PickleError> {
        let v = self
            .memo
            .get(&key)
            .cloned()
            .ok_or_else(|| self.err(format!("memo key {key} was never stored")))?;
        self.push(v);
        Ok(())
    }

    /// REDUCE/NEWOBJ: `OrderedDict()` becomes a real dict (state dicts are built on it);
    /// everything else stays an inert call record.
    fn call(&mut self, func: Value, args: Value) -> Value {
        let is_ordered_dict = matches!(
            self.object(&func),
            Some(Object::Global { module, name }) if &**module == "collections" && &**name == "OrderedDict"
        );
        let no_args = matches!(self.object(&args), Some(Object::Tuple(items)) if items.is_empty());
        if is_ordered_dict && no_args {
            self.new_obj(Object::Dict(Vec::new()))
        } else {
            self.new_obj(Object::Call { func, args })
        }
    }

    fn run(&mut self) -> Result<Value, PickleError> {
        loop {
            self.op_pos = self.pos;
            self.op = None;
            let code = self.u8().map_err(|_| {
                self.err("data ends before the pickle's STOP opcode (file truncated?)")
            })?;
            self.op = Some(code);
            match code {
                op::PROTO => {
                    let proto = self.u8()?;
                    if proto > 5 {
                        return Err(self.err(format!("unsupported pickle protocol {proto}")));
                    }
                }
                // FRAME only announces a length; opcodes inside are read normally.
                op::FRAME => {
                    self.take(8)?;
                }
                op::STOP => return self.pop(),
                op::MARK => self.marks.push(self.stack.len()),
                op::POP => {
                    self.pop()?;
                }
                op::POP_MARK => {
                    self.pop_mark()?;
                }
                op::DUP => {
                    let v = self.top()?.clone();
                    self.push(v);
                }
                op::EMPTY_DICT => {
                    let v = self.new_obj(Object::Dict(Vec::new()));
                    self.push(v);
                }
                op::EMPTY_LIST => {
                    let v = self.new_obj(Object::List(Vec::new()));
                    self.push(v);
                }
                op::EMPTY_TUPLE => {
                    let v = self.new_obj(Object::Tuple(Vec::new()));
                    self.push(v);
                }
                op::BININT => {
                    let v = i32::from_le_bytes(self.array()?);
                    self.push(Value::Int(v.into()));
                }
                op::BININT1 => {
                    let v = self.u8()?;
                    self.push(Value::Int(v.into()));
                }
                op::BININT2 => {
                    let v = u16::from_le_bytes(self.array()?);
                    self.push(Value::Int(v.into()));
                }
                op::LONG1 => {
                    let n = self.u8()? as usize;
                    let v = self.long(n)?;
                    self.push(v);
                }
                op::LONG4 => {
                    let n = i32::from_le_bytes(self.array()?);
                    let n = usize::try_from(n).map_err(|_| self.err("negative LONG4 length"))?;
                    let v = self.long(n)?;
                    self.push(v);
                }
                // BINFLOAT is big-endian, unlike every other binary field.
                op::BINFLOAT => {
                    let v = f64::from_be_bytes(self.array()?);
                    self.push(Value::Float(v));
                }
                op::SHORT_BINUNICODE => {
                    let n = self.u8()? as usize;
                    let v = self.utf8(n)?;
                    self.push(v);
                }
                op::BINUNICODE => {
                    let n = self.len_u32()?;
                    let v = self.utf8(n)?;
                    self.push(v);
                }
                op::BINUNICODE8 => {
                    let n = self.len_u64()?;
                    let v = self.utf8(n)?;
                    self.push(v);
                }
                op::SHORT_BINSTRING => {
                    let n = self.u8()? as usize;
                    let v = self.latin1(n)?;
                    self.push(v);
                }
                op::BINSTRING => {
                    let n = i32::from_le_bytes(self.array()?);
                    let n =
                        usize::try_from(n).map_err(|_| self.err("negative BINSTRING length"))?;
                    let v = self.latin1(n)?;
                    self.push(v);
                }
                op::SHORT_BINBYTES => {
                    let n = self.u8()? as usize;
                    let v = self.bytes(n)?;
                    self.push(v);
                }
                op::BINBYTES => {
                    let n = self.len_u32()?;
                    let v = self.bytes(n)?;
                    self.push(v);
                }
                op::BINBYTES8 => {
                    let n = self.len_u64()?;
                    let v = self.bytes(n)?;
                    self.push(v);
                }
                op::NONE => self.push(Value::None),
                op::NEWTRUE => self.push(Value::Bool(true)),
                op::NEWFALSE => self.push(Value::Bool(false)),
                op::TUPLE1..=op::TUPLE3 => {
                    let items = self.pop_n(usize::from(code - op::TUPLE1 + 1))?;
                    let v = self.new_obj(Object::Tuple(items));
                    self.push(v);
                }
                op::TUPLE => {
                    let items = self.pop_mark()?;
                    let v = self.new_obj(Object::Tuple(items));
                    self.push(v);
                }
                op::LIST => {
                    let items = self.pop_mark()?;
                    let v = self.new_obj(Object::List(items));
                    self.push(v);
                }
                op::DICT => {
                    let items = self.pop_mark()?;
                    let v = self.new_obj(Object::Dict(Vec::new()));
                    self.push(v);
                    self.extend_dict(items)?;
                }
                op::APPEND => {
                    let item = self.pop()?;
                    self.extend_list(vec![item])?;
                }
                op::APPENDS => {
                    let items = self.pop_mark()?;
                    self.extend_list(items)?;
                }
                op::SETITEM => {
                    let items = self.pop_n(2)?;
                    self.extend_dict(items)?;
                }
                op::SETITEMS => {
                    let items = self.pop_mark()?;
                    self.extend_dict(items)?;
                }
                op::BINPUT => {
                    let key = self.u8()?;
                    self.memo_put(key.into())?;
                }
                op::LONG_BINPUT => {
                    let key = u32::from_le_bytes(self.array()?);
                    self.memo_put(key)?;
                }
                op::MEMOIZE => {
                    let key = u32::try_from(self.memo.len())
                        .map_err(|_| self.err("memo grew past 2^32 entries"))?;
                    self.memo_put(key)?;
                }
                op::BINGET => {
                    let key = self.u8()?;
                    self.memo_get(key.into())?;
                }
                op::LONG_BINGET => {
                    let key = u32::from_le_bytes(self.array()?);
                    self.memo_get(key)?;
                }
                op::GLOBAL => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let v = self.new_obj(Object::Global { module, name });
                    self.push(v);
                }
                op::STACK_GLOBAL => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Value::Str(module), Value::Str(name)) = (module, name) else {
                        return Err(self.err("STACK_GLOBAL needs two strings"));
                    };
                    let v = self.new_obj(Object::Global { module, name });
                    self.push(v);
                }
                op::REDUCE | op::NEWOBJ => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    let v = self.call(func, args);
                    self.push(v);
                }
                op::BUILD => {
                    let state = self.pop()?;
                    let obj = self.pop()?;
                    // A dict's BUILD state (OrderedDict's `_metadata`) is not needed; keep the dict.
                    let v = if matches!(self.object(&obj), Some(Object::Dict(_))) {
                        obj
                    } else {
                        self.new_obj(Object::Build { obj, state })
                    };
                    self.push(v);
                }
                op::BINPERSID => {
                    let pid = self.pop()?;
                    let v = self.new_obj(Object::PersistentId(pid));
                    self.push(v);
                }
                _ => return Err(self.err("opcode not supported by this minimal reader")),
            }
        }
    }
}
