//! Just enough of the protobuf wire format to write ONNX files (varints, length-delimited
//! fields and packed repeated int64s) and to walk the fields of one ([`fields`]). Field
//! numbers are those of `onnx.proto` (onnx ≥ 1.8).

/// One protobuf message being written, field by field, in the order fields are added.
#[derive(Debug, Default, Clone)]
pub struct Msg(Vec<u8>);

const VARINT: u64 = 0;
const FIXED32: u64 = 5;
const LEN: u64 = 2;

fn varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

impl Msg {
    pub fn new() -> Self {
        Msg(Vec::new())
    }

    fn key(&mut self, field: u32, wire: u64) {
        varint(&mut self.0, (u64::from(field) << 3) | wire);
    }

    /// int32/int64/enum field (negative values take ten bytes, as protobuf specifies).
    pub fn int(&mut self, field: u32, v: i64) -> &mut Self {
        self.key(field, VARINT);
        varint(&mut self.0, v as u64);
        self
    }

    pub fn float(&mut self, field: u32, v: f32) -> &mut Self {
        self.key(field, FIXED32);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn bytes(&mut self, field: u32, v: &[u8]) -> &mut Self {
        self.key(field, LEN);
        varint(&mut self.0, v.len() as u64);
        self.0.extend_from_slice(v);
        self
    }

    pub fn str(&mut self, field: u32, v: &str) -> &mut Self {
        self.bytes(field, v.as_bytes())
    }

    pub fn msg(&mut self, field: u32, m: &Msg) -> &mut Self {
        self.bytes(field, &m.0)
    }

    /// A packed `repeated int64` (proto3 default encoding; proto2 parsers accept it too).
    pub fn packed_ints(&mut self, field: u32, vs: &[i64]) -> &mut Self {
        let mut body = Vec::with_capacity(vs.len() * 2);
        for &v in vs {
            varint(&mut body, v as u64);
        }
        self.bytes(field, &body)
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    #[cfg(test)]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// One field of a message being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Len(&'a [u8]),
    Fixed32(u32),
}

fn read_varint(buf: &[u8], at: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*at).ok_or("truncated varint")?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err("varint longer than 10 bytes".into())
}

fn take_slice<'a>(buf: &'a [u8], at: &mut usize, n: usize, field: u32) -> Result<&'a [u8], String> {
    let end = at
        .checked_add(n)
        .filter(|&e| e <= buf.len())
        .ok_or_else(|| format!("field {field} runs past the end"))?;
    let bytes = &buf[*at..end];
    *at = end;
    Ok(bytes)
}

fn take<const N: usize>(buf: &[u8], at: &mut usize, field: u32) -> Result<[u8; N], String> {
    let b = take_slice(buf, at, N, field)?;
    let mut a = [0; N];
    a.copy_from_slice(b);
    Ok(a)
}

/// The fields of the message `buf`, in order, as (field number, value); an error for bytes
/// that are not a protobuf message (truncated, or an unknown wire type).
pub fn fields(buf: &[u8]) -> Result<Vec<(u32, Value<'_>)>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let key = read_varint(buf, &mut at)?;
        let field = u32::try_from(key >> 3).map_err(|_| "field number out of range")?;
        let value = match key & 7 {
            VARINT => Value::Varint(read_varint(buf, &mut at)?),
            1 => Value::Fixed64(u64::from_le_bytes(take::<8>(buf, &mut at, field)?)),
            LEN => {
                let n = read_varint(buf, &mut at)?;
                let n = usize::try_from(n).map_err(|_| "length out of range")?;
                Value::Len(take_slice(buf, &mut at, n, field)?)
            }
            FIXED32 => Value::Fixed32(u32::from_le_bytes(take::<4>(buf, &mut at, field)?)),
            w => {
                return Err(format!(
                    "field {field} has wire type {w}, not one protobuf uses"
                ))
            }
        };
        out.push((field, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_it_writes() {
        let mut inner = Msg::new();
        inner.str(1, "x").int(2, 300);
        let mut m = Msg::new();
        m.int(1, 7).msg(7, &inner).float(3, 2.5);
        let bytes = m.into_bytes();
        let f = fields(&bytes).expect("a message");
        assert_eq!(f[0], (1, Value::Varint(7)));
        let Value::Len(body) = f[1].1 else {
            panic!("{f:?}")
        };
        assert_eq!(
            fields(body).expect("inner"),
            [(1, Value::Len(b"x")), (2, Value::Varint(300))]
        );
        assert_eq!(f[2], (3, Value::Fixed32(2.5f32.to_bits())));
        // Every truncation is an error, never a panic.
        for n in 1..bytes.len() {
            if let Ok(f) = fields(&bytes[..n]) {
                // A cut between fields is a shorter, valid message.
                assert!(f.len() < 3, "{n}");
            }
        }
    }

    #[test]
    fn wire_format() {
        let mut m = Msg::new();
        m.int(1, 150);
        assert_eq!(m.as_bytes(), &[0x08, 0x96, 0x01]);
        let mut m = Msg::new();
        m.str(2, "testing");
        assert_eq!(m.as_bytes(), b"\x12\x07testing");
        let mut m = Msg::new();
        m.packed_ints(4, &[3, 270, 86942]);
        assert_eq!(
            m.as_bytes(),
            &[0x22, 0x06, 0x03, 0x8E, 0x02, 0x9E, 0xA7, 0x05]
        );
        let mut m = Msg::new();
        m.int(1, -1);
        assert_eq!(m.as_bytes().len(), 11);
        let mut m = Msg::new();
        m.float(2, 1.0);
        assert_eq!(m.as_bytes(), &[0x15, 0, 0, 0x80, 0x3f]);
    }
}
