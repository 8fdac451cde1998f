//! A minimal pickle reader that never executes anything.
//!
//! GLOBAL/REDUCE/NEWOBJ/BUILD/BINPERSID only build inert values describing what Python
//! *would* have called; the state-dict layer later recognises the few shapes it needs.
//! Containers live in an arena and values refer to them by index, so memo copies are
//! cheap, mutation after memoisation is seen by every reference (as in Python), and
//! dropping deeply nested or cyclic input cannot recurse or leak.

use std::fmt;
use std::rc::Rc;

mod opcodes;
mod vm;

pub use opcodes::name as opcode_name;

/// Index of an [`Object`] in a [`Pickle`]'s object arena.
pub type ObjId = usize;

/// A shallow pickle value: scalars inline, containers by reference.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// Integer wider than i64 (LONG1/LONG4), as little-endian two's-complement bytes.
    BigInt(Rc<[u8]>),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Obj(ObjId),
}

/// A container or an inert description of a Python call.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    Tuple(Vec<Value>),
    List(Vec<Value>),
    /// Insertion-ordered pairs; a repeated key is kept twice (consumers let the last win).
    Dict(Vec<(Value, Value)>),
    Global {
        module: Rc<str>,
        name: Rc<str>,
    },
    /// `func(*args)` from REDUCE or `cls.__new__(cls, *args)` from NEWOBJ, never performed.
    Call {
        func: Value,
        args: Value,
    },
    /// `obj.__setstate__(state)` from BUILD, never performed.
    Build {
        obj: Value,
        state: Value,
    },
    PersistentId(Value),
}

/// One decoded pickle: the root value plus the arena it points into.
#[derive(Debug)]
pub struct Pickle {
    objects: Vec<Object>,
    root: Value,
    end: usize,
}

impl Pickle {
    pub fn root(&self) -> &Value {
        &self.root
    }

    /// Byte offset just past the STOP opcode (where a following pickle starts).
    pub fn end(&self) -> usize {
        self.end
    }

    pub fn object(&self, v: &Value) -> Option<&Object> {
        match v {
            Value::Obj(id) => self.objects.get(*id),
            _ => None,
        }
    }

    pub fn tuple(&self, v: &Value) -> Option<&[Value]> {
        match self.object(v)? {
            Object::Tuple(items) => Some(items),
            _ => None,
        }
    }

    pub fn list(&self, v: &Value) -> Option<&[Value]> {
        match self.object(v)? {
            Object::List(items) => Some(items),
            _ => None,
        }
    }

    pub fn dict(&self, v: &Value) -> Option<&[(Value, Value)]> {
        match self.object(v)? {
            Object::Dict(items) => Some(items),
            _ => None,
        }
    }

    /// `(module, name)` if `v` is a GLOBAL.
    pub fn global(&self, v: &Value) -> Option<(&str, &str)> {
        match self.object(v)? {
            Object::Global { module, name } => Some((module, name)),
            _ => None,
        }
    }
}

/// Why a pickle could not be decoded, with the opcode and absolute byte offset.
#[derive(Debug, Clone, PartialEq)]
pub struct PickleError {
    pub offset: usize,
    pub opcode: Option<u8>,
    pub message: String,
}

impl fmt::Display for PickleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.opcode {
            Some(op) => write!(
                f,
                "opcode 0x{op:02x} ({}) at byte offset {}: {}",
                opcode_name(op),
                self.offset,
                self.message
            ),
            None => write!(f, "at byte offset {}: {}", self.offset, self.message),
        }
    }
}

impl std::error::Error for PickleError {}

/// Decode the pickle that starts at `start` in `data`; stops at its STOP opcode.
/// Error offsets are absolute positions in `data`.
pub fn parse(data: &[u8], start: usize) -> Result<Pickle, PickleError> {
    let (root, objects, end) = vm::run(data, start)?;
    Ok(Pickle { objects, root, end })
}

#[cfg(test)]
mod tests;
