//! Just enough of the protobuf wire format to write ONNX files: varints, length-delimited
//! fields and packed repeated int64s. Field numbers are those of `onnx.proto` (onnx ≥ 1.8).

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

#[cfg(test)]
mod tests {
    use super::*;

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
