//! Test-only fixture builders: a small pickle *writer* and assemblers for legacy and zip
//! checkpoints, mimicking the opcode sequences torch.save emits, so tests need no PyTorch.

use std::collections::BTreeMap;
use std::io::{Cursor, Write};

use super::tensor::DType;

/// Emits pickle opcodes; `proto >= 4` switches to the protocol-4 forms
/// (FRAME, SHORT_BINUNICODE, STACK_GLOBAL, MEMOIZE) to exercise both paths.
pub(crate) struct PickleWriter {
    pub buf: Vec<u8>,
    proto: u8,
    memo: u32,
}

impl PickleWriter {
    pub fn new(proto: u8) -> Self {
        let mut buf = vec![0x80, proto];
        if proto >= 4 {
            // Frame length is advisory; readers must not depend on it.
            buf.push(0x95);
            buf.extend_from_slice(&0u64.to_le_bytes());
        }
        PickleWriter {
            buf,
            proto,
            memo: 0,
        }
    }

    pub fn op(&mut self, op: u8) -> &mut Self {
        self.buf.push(op);
        self
    }

    pub fn mark(&mut self) -> &mut Self {
        self.op(b'(')
    }

    pub fn int(&mut self, v: i64) -> &mut Self {
        match v {
            0..=0xff => self.buf.extend_from_slice(&[b'K', v as u8]),
            0x100..=0xffff => {
                self.buf.push(b'M');
                self.buf.extend_from_slice(&(v as u16).to_le_bytes());
            }
            _ if i32::try_from(v).is_ok() => {
                self.buf.push(b'J');
                self.buf.extend_from_slice(&(v as i32).to_le_bytes());
            }
            _ => {
                self.buf.extend_from_slice(&[0x8a, 8]);
                self.buf.extend_from_slice(&v.to_le_bytes());
            }
        }
        self
    }

    pub fn str(&mut self, s: &str) -> &mut Self {
        if self.proto >= 4 && s.len() < 256 {
            self.buf.extend_from_slice(&[0x8c, s.len() as u8]);
        } else {
            self.buf.push(b'X');
            self.buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
        }
        self.buf.extend_from_slice(s.as_bytes());
        self.put();
        self
    }

    pub fn global(&mut self, module: &str, name: &str) -> &mut Self {
        if self.proto >= 4 {
            self.str(module).str(name).op(0x93);
        } else {
            self.buf.push(b'c');
            self.buf
                .extend_from_slice(format!("{module}\n{name}\n").as_bytes());
        }
        self.put();
        self
    }

    /// Memoize the top of stack; returns its memo key.
    pub fn put(&mut self) -> u32 {
        let key = self.memo;
        self.memo += 1;
        if self.proto >= 4 {
            self.buf.push(0x94);
        } else if key < 256 {
            self.buf.extend_from_slice(&[b'q', key as u8]);
        } else {
            self.buf.push(b'r');
            self.buf.extend_from_slice(&key.to_le_bytes());
        }
        key
    }

    pub fn get(&mut self, key: u32) -> &mut Self {
        if key < 256 {
            self.buf.extend_from_slice(&[b'h', key as u8]);
        } else {
            self.buf.push(b'j');
            self.buf.extend_from_slice(&key.to_le_bytes());
        }
        self
    }

    pub fn tuple_of_ints(&mut self, v: &[usize]) -> &mut Self {
        match v.len() {
            0 => self.op(b')'),
            1..=3 => {
                for &x in v {
                    self.int(x as i64);
                }
                self.op(0x84 + v.len() as u8)
            }
            _ => {
                self.mark();
                for &x in v {
                    self.int(x as i64);
                }
                self.op(b't')
            }
        }
    }

    pub fn stop(&mut self) -> Vec<u8> {
        self.buf.push(b'.');
        std::mem::take(&mut self.buf)
    }
}

/// One tensor of a fixture checkpoint plus the values a correct reader must produce.
#[derive(Debug, Clone)]
pub(crate) struct FixtureTensor {
    pub name: &'static str,
    pub dtype: DType,
    /// Storage key; fixtures sharing a key share one storage (same bytes required).
    pub key: &'static str,
    pub storage: Vec<u8>,
    pub offset: usize,
    pub size: Vec<usize>,
    pub stride: Vec<usize>,
    /// Wrap in torch._utils._rebuild_parameter, as nn.Parameter pickles.
    pub parameter: bool,
    /// Legacy-only storage view (element offset, element count) into the root storage.
    pub view: Option<(usize, usize)>,
    /// Override the numel written in the persistent id (to test mismatches).
    pub declared_numel: Option<usize>,
    pub expected: Vec<f32>,
}

fn le<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
    v.iter().flat_map(|&x| f(x)).collect()
}

impl FixtureTensor {
    fn new(name: &'static str, dtype: DType, key: &'static str, storage: Vec<u8>) -> Self {
        FixtureTensor {
            name,
            dtype,
            key,
            storage,
            offset: 0,
            size: vec![],
            stride: vec![],
            parameter: false,
            view: None,
            declared_numel: None,
            expected: vec![],
        }
    }

    fn view(mut self, offset: usize, size: &[usize], stride: &[usize], expected: &[f32]) -> Self {
        self.offset = offset;
        self.size = size.to_vec();
        self.stride = stride.to_vec();
        self.expected = expected.to_vec();
        self
    }

    pub fn storage_numel(&self) -> usize {
        self.storage.len() / self.dtype.size()
    }

    /// Mixed dtypes, a transposed view, a shared storage, a scalar and a Parameter.
    pub fn varied() -> Vec<FixtureTensor> {
        let conv: Vec<f32> = (0..8).map(|i| i as f32 * 0.5 - 1.0).collect();
        let shared = le(&[1.0f64, 2.0, 3.0, 4.0, 5.0], f64::to_le_bytes);
        let mut v = vec![
            FixtureTensor::new("conv.weight", DType::F32, "10", le(&conv, f32::to_le_bytes)).view(
                0,
                &[2, 1, 2, 2],
                &[4, 4, 2, 1],
                &conv,
            ),
            FixtureTensor::new(
                "fc.weight",
                DType::F32,
                "11",
                le(&[1f32, 2., 3., 4., 5., 6.], f32::to_le_bytes),
            )
            .view(0, &[3, 2], &[1, 3], &[1., 4., 2., 5., 3., 6.]),
            FixtureTensor::new(
                "bn.num_batches_tracked",
                DType::I64,
                "12",
                le(&[7i64], i64::to_le_bytes),
            )
            .view(0, &[], &[], &[7.]),
            FixtureTensor::new(
                "half",
                DType::F16,
                "13",
                le(&[0x3c00u16, 0xb800, 0x4200], u16::to_le_bytes),
            )
            .view(0, &[3], &[1], &[1.0, -0.5, 3.0]),
            FixtureTensor::new("shared.a", DType::F64, "14", shared.clone()).view(
                0,
                &[2],
                &[1],
                &[1., 2.],
            ),
            FixtureTensor::new("shared.b", DType::F64, "14", shared).view(
                2,
                &[3],
                &[1],
                &[3., 4., 5.],
            ),
            FixtureTensor::new("bytes", DType::U8, "15", vec![0, 1, 254, 255]).view(
                0,
                &[2, 2],
                &[2, 1],
                &[0., 1., 254., 255.],
            ),
            FixtureTensor::new("mask", DType::Bool, "16", vec![1, 0, 1]).view(
                0,
                &[3],
                &[1],
                &[1., 0., 1.],
            ),
            FixtureTensor::new(
                "ints",
                DType::I32,
                "17",
                le(&[-5i32, 70000], i32::to_le_bytes),
            )
            .view(0, &[2], &[1], &[-5., 70000.]),
            FixtureTensor::new("empty", DType::F32, "18", vec![]).view(0, &[0, 3], &[3, 1], &[]),
        ];
        v[0].parameter = true;
        v
    }

    /// A legacy storage view: root of 6 floats, view = elements 2..5, tensor = view[1..3].
    pub fn viewed() -> FixtureTensor {
        let mut t = FixtureTensor::new(
            "viewed",
            DType::F32,
            "20",
            le(&[0f32, 1., 2., 3., 4., 5.], f32::to_le_bytes),
        )
        .view(1, &[2], &[1], &[3., 4.]);
        t.view = Some((2, 3));
        t
    }
}

fn storage_class(d: DType) -> &'static str {
    match d {
        DType::F32 => "FloatStorage",
        DType::F64 => "DoubleStorage",
        DType::F16 => "HalfStorage",
        DType::BF16 => "BFloat16Storage",
        DType::I64 => "LongStorage",
        DType::I32 => "IntStorage",
        DType::I16 => "ShortStorage",
        DType::I8 => "CharStorage",
        DType::U8 => "ByteStorage",
        DType::Bool => "BoolStorage",
    }
}

/// The state-dict pickle as torch.save writes it (OrderedDict + _metadata BUILD).
pub(crate) fn state_dict_pickle(tensors: &[FixtureTensor], proto: u8, legacy: bool) -> Vec<u8> {
    let mut w = PickleWriter::new(proto);
    w.global("collections", "OrderedDict");
    let od = w.memo - 1;
    w.op(b')').op(b'R');
    w.put();
    w.mark();
    let mut rebuild = None;
    for t in tensors {
        w.str(t.name);
        if t.parameter {
            w.global("torch._utils", "_rebuild_parameter");
        }
        // Reuse the memoized global after its first use, like the real pickler.
        match rebuild {
            Some(k) => {
                w.get(k);
            }
            None => {
                w.global("torch._utils", "_rebuild_tensor_v2");
                rebuild = Some(w.memo - 1);
            }
        }
        w.mark()
            .mark()
            .str("storage")
            .global("torch", storage_class(t.dtype))
            .str(t.key)
            .str("cpu");
        w.int(t.declared_numel.unwrap_or_else(|| t.storage_numel()) as i64);
        if legacy {
            match t.view {
                Some((off, len)) => {
                    w.str("view-key").int(off as i64).int(len as i64).op(0x87);
                }
                None => {
                    w.op(b'N');
                }
            }
        }
        w.op(b't');
        w.put();
        w.op(b'Q')
            .int(t.offset as i64)
            .tuple_of_ints(&t.size)
            .tuple_of_ints(&t.stride);
        w.op(0x89).get(od).op(b')').op(b'R').op(b't').op(b'R');
        if t.parameter {
            w.op(0x88).get(od).op(b')').op(b'R').op(0x87).op(b'R');
        }
        w.put();
    }
    w.op(b'u');
    // BUILD with {'_metadata': {'': {'version': 1}}}, which readers may ignore.
    w.op(b'}')
        .mark()
        .str("_metadata")
        .op(b'}')
        .mark()
        .str("")
        .op(b'}')
        .str("version")
        .int(1);
    w.op(b's').op(b'u').op(b'u').op(b'b');
    w.stop()
}

fn storages(tensors: &[FixtureTensor]) -> BTreeMap<&'static str, &[u8]> {
    tensors
        .iter()
        .map(|t| (t.key, t.storage.as_slice()))
        .collect()
}

pub(crate) fn legacy_file(tensors: &[FixtureTensor], proto: u8) -> Vec<u8> {
    legacy_file_with(tensors, proto, true)
}

pub(crate) fn legacy_file_with(
    tensors: &[FixtureTensor],
    proto: u8,
    little_endian: bool,
) -> Vec<u8> {
    let mut out = vec![
        0x80, 2, 0x8a, 10, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, b'.',
    ];
    out.extend_from_slice(&[0x80, 2, b'M', 0xe9, 0x03, b'.']);
    let mut w = PickleWriter::new(2);
    w.op(b'}')
        .mark()
        .str("protocol_version")
        .int(1001)
        .str("little_endian");
    w.op(if little_endian { 0x88 } else { 0x89 });
    w.str("type_sizes")
        .op(b'}')
        .mark()
        .str("short")
        .int(2)
        .str("int")
        .int(4)
        .str("long")
        .int(4);
    w.op(b'u').op(b'u');
    out.extend(w.stop());
    out.extend(state_dict_pickle(tensors, proto, true));
    let stores = storages(tensors);
    let mut w = PickleWriter::new(2);
    w.op(b']').mark();
    for key in stores.keys() {
        w.str(key);
    }
    w.op(b'e');
    out.extend(w.stop());
    for t in stores
        .keys()
        .filter_map(|k| tensors.iter().find(|t| t.key == *k))
    {
        let n = t.declared_numel.unwrap_or_else(|| t.storage_numel());
        out.extend_from_slice(&(n as u64).to_le_bytes());
        out.extend_from_slice(&t.storage);
    }
    out
}

/// A zip-format checkpoint under `prefix/` (torch uses the file stem or `archive`).
pub(crate) fn zip_file(tensors: &[FixtureTensor], prefix: &str, proto: u8) -> Vec<u8> {
    let mut zw = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut add = |name: String, data: &[u8]| {
        zw.start_file(name, opts).expect("zip entry");
        zw.write_all(data).expect("zip write");
    };
    add(
        format!("{prefix}/data.pkl"),
        &state_dict_pickle(tensors, proto, false),
    );
    add(format!("{prefix}/byteorder"), b"little");
    for (key, data) in storages(tensors) {
        add(format!("{prefix}/data/{key}"), data);
    }
    add(format!("{prefix}/version"), b"3\n");
    zw.finish().expect("zip finish").into_inner()
}
