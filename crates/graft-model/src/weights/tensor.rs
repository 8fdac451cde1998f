//! Tensors and the conversion from raw PyTorch storage bytes to contiguous f32.

use std::fmt;

/// Element type a tensor had in the checkpoint. Data is always converted to f32;
/// this records the original so callers can tell e.g. `num_batches_tracked` (int64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F64,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl DType {
    /// Bytes per element in storage.
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    /// PyTorch's name for the dtype (`torch.<name>`).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::I64 => "int64",
            DType::I32 => "int32",
            DType::I16 => "int16",
            DType::I8 => "int8",
            DType::U8 => "uint8",
            DType::Bool => "bool",
        }
    }

    pub fn from_name(name: &str) -> Option<DType> {
        ALL.iter().copied().find(|d| d.name() == name)
    }

    /// The dtype behind a legacy typed-storage class name such as `FloatStorage`.
    pub fn from_storage_class(class: &str) -> Option<DType> {
        Some(match class {
            "FloatStorage" => DType::F32,
            "DoubleStorage" => DType::F64,
            "HalfStorage" => DType::F16,
            "BFloat16Storage" => DType::BF16,
            "LongStorage" => DType::I64,
            "IntStorage" => DType::I32,
            "ShortStorage" => DType::I16,
            "CharStorage" => DType::I8,
            "ByteStorage" => DType::U8,
            "BoolStorage" => DType::Bool,
            _ => return None,
        })
    }
}

const ALL: [DType; 10] = [
    DType::F32,
    DType::F64,
    DType::F16,
    DType::BF16,
    DType::I64,
    DType::I32,
    DType::I16,
    DType::I8,
    DType::U8,
    DType::Bool,
];

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A dense row-major f32 tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
    /// Element type in the source file (data has been converted to f32).
    pub dtype: DType,
}

impl Tensor {
    /// Number of elements implied by the shape (1 for a scalar).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Where a tensor's elements sit in its storage, in elements (PyTorch's as_strided view).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    pub offset: usize,
    pub size: Vec<usize>,
    pub stride: Vec<usize>,
}

impl Layout {
    fn is_contiguous(&self) -> bool {
        let mut expected = 1usize;
        for (&n, &s) in self.size.iter().zip(&self.stride).rev() {
            if n != 1 && s != expected {
                return false;
            }
            expected = expected.saturating_mul(n);
        }
        true
    }
}

/// Decode elements `[start, end)` of a little-endian storage to f32.
/// Integers are converted by value (large int64 values lose precision).
pub(crate) fn decode(
    bytes: &[u8],
    dtype: DType,
    start: usize,
    end: usize,
) -> Result<Vec<f32>, String> {
    let es = dtype.size();
    let slice = start
        .checked_mul(es)
        .zip(end.checked_mul(es))
        .and_then(|(a, b)| bytes.get(a..b))
        .ok_or_else(|| {
            format!(
                "elements {start}..{end} of a {dtype} storage holding {} elements are out of range",
                bytes.len() / es
            )
        })?;
    fn conv<const N: usize>(s: &[u8], f: impl Fn([u8; N]) -> f32) -> Vec<f32> {
        s.chunks_exact(N)
            .map(|c| {
                let mut a = [0u8; N];
                a.copy_from_slice(c);
                f(a)
            })
            .collect()
    }
    Ok(match dtype {
        DType::F32 => conv(slice, f32::from_le_bytes),
        DType::F64 => conv(slice, |a| f64::from_le_bytes(a) as f32),
        DType::F16 => conv(slice, |a| f16_to_f32(u16::from_le_bytes(a))),
        DType::BF16 => conv(slice, |a| {
            f32::from_bits(u32::from(u16::from_le_bytes(a)) << 16)
        }),
        DType::I64 => conv(slice, |a| i64::from_le_bytes(a) as f32),
        DType::I32 => conv(slice, |a| i32::from_le_bytes(a) as f32),
        DType::I16 => conv(slice, |a| f32::from(i16::from_le_bytes(a))),
        DType::I8 => conv(slice, |a: [u8; 1]| f32::from(a[0] as i8)),
        DType::U8 => conv(slice, |a: [u8; 1]| f32::from(a[0])),
        DType::Bool => conv(slice, |a: [u8; 1]| if a[0] != 0 { 1.0 } else { 0.0 }),
    })
}

/// IEEE half → single; exact for every input including subnormals, inf and NaN.
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0f32 } else { 1.0 };
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    match exp {
        0 => sign * (man as f32) * (1.0 / 16_777_216.0), // man · 2^-24
        0x1f => f32::from_bits((u32::from(h & 0x8000) << 16) | 0x7f80_0000 | (man << 13)),
        _ => f32::from_bits((u32::from(h & 0x8000) << 16) | ((exp + 112) << 23) | (man << 13)),
    }
}

/// Copy a (possibly strided) view of `storage` into a contiguous row-major f32 tensor.
/// Every index is bounds-checked up front, so hostile sizes/strides yield an error.
pub(crate) fn gather(storage: &[u8], dtype: DType, layout: &Layout) -> Result<Tensor, String> {
    if layout.size.len() != layout.stride.len() {
        return Err(format!(
            "size {:?} and stride {:?} have different ranks",
            layout.size, layout.stride
        ));
    }
    let numel = layout
        .size
        .iter()
        .try_fold(1usize, |acc, &n| acc.checked_mul(n))
        .ok_or_else(|| format!("shape {:?} overflows", layout.size))?;
    let storage_len = storage.len() / dtype.size();
    let shape = layout.size.clone();
    if numel == 0 {
        return Ok(Tensor {
            shape,
            data: Vec::new(),
            dtype,
        });
    }
    // Highest element touched; all others lie between offset and it.
    let mut last = layout.offset;
    for (&n, &s) in layout.size.iter().zip(&layout.stride) {
        last = (n - 1)
            .checked_mul(s)
            .and_then(|d| last.checked_add(d))
            .ok_or_else(|| {
                format!(
                    "size {:?} / stride {:?} overflow",
                    layout.size, layout.stride
                )
            })?;
    }
    if last >= storage_len {
        return Err(format!(
            "view (offset {}, size {:?}, stride {:?}) reaches element {last} but the storage has {storage_len}",
            layout.offset, layout.size, layout.stride
        ));
    }
    let window = decode(storage, dtype, layout.offset, last + 1)?;
    if layout.is_contiguous() && window.len() == numel {
        return Ok(Tensor {
            shape,
            data: window,
            dtype,
        });
    }
    // Odometer over the logical index, tracking the storage position incrementally.
    // Strides of size-1 dims are never used; zero them so the odometer cannot overflow.
    let stride: Vec<usize> = (layout.size.iter().zip(&layout.stride))
        .map(|(&n, &s)| if n == 1 { 0 } else { s })
        .collect();
    let rank = layout.size.len();
    let mut index = vec![0usize; rank];
    let mut pos = 0usize; // relative to offset
    let mut data = Vec::with_capacity(numel);
    for _ in 0..numel {
        data.push(
            window
                .get(pos)
                .copied()
                .ok_or("strided index out of range")?,
        );
        for d in (0..rank).rev() {
            index[d] += 1;
            pos += stride[d];
            if index[d] < layout.size[d] {
                break;
            }
            pos -= stride[d] * layout.size[d];
            index[d] = 0;
        }
    }
    Ok(Tensor { shape, data, dtype })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn layout(offset: usize, size: &[usize], stride: &[usize]) -> Layout {
        Layout {
            offset,
            size: size.to_vec(),
            stride: stride.to_vec(),
        }
    }

    #[test]
    fn contiguous_with_offset() {
        let s = f32_bytes(&[0., 1., 2., 3., 4., 5., 6.]);
        let t = gather(&s, DType::F32, &layout(1, &[2, 3], &[3, 1])).expect("valid view");
        assert_eq!(t.shape, vec![2, 3]);
        assert_eq!(t.data, vec![1., 2., 3., 4., 5., 6.]);
    }

    #[test]
    fn transposed_view_is_copied_row_major() {
        // Storage holds a 2x3 matrix row-major; view it as its 3x2 transpose.
        let s = f32_bytes(&[1., 2., 3., 4., 5., 6.]);
        let t = gather(&s, DType::F32, &layout(0, &[3, 2], &[1, 3])).expect("valid view");
        assert_eq!(t.data, vec![1., 4., 2., 5., 3., 6.]);
    }

    #[test]
    fn permuted_4d_like_tf_kernels() {
        // HWIO storage (2,2,1,3) viewed as OIHW (3,1,2,2) — the EfficientNet-Lite layout.
        let hwio: Vec<f32> = (0..12).map(|x| x as f32).collect();
        let s = f32_bytes(&hwio);
        let t = gather(&s, DType::F32, &layout(0, &[3, 1, 2, 2], &[1, 3, 6, 3])).expect("valid");
        for o in 0..3 {
            for h in 0..2 {
                for w in 0..2 {
                    let expected = hwio[h * 6 + w * 3 + o];
                    assert_eq!(t.data[o * 4 + h * 2 + w], expected);
                }
            }
        }
    }

    #[test]
    fn broadcast_stride_zero_and_scalar() {
        let s = f32_bytes(&[7., 8.]);
        let t = gather(&s, DType::F32, &layout(1, &[3], &[0])).expect("expand view");
        assert_eq!(t.data, vec![8., 8., 8.]);
        let t = gather(&s, DType::F32, &layout(0, &[], &[])).expect("scalar");
        assert_eq!((t.shape.len(), t.data.clone()), (0, vec![7.]));
        let t = gather(&[], DType::F32, &layout(5, &[0, 4], &[4, 1])).expect("empty");
        assert!(t.data.is_empty());
    }

    #[test]
    fn out_of_range_and_overflow_are_errors() {
        let s = f32_bytes(&[1., 2., 3.]);
        assert!(gather(&s, DType::F32, &layout(1, &[3], &[1])).is_err());
        assert!(gather(&s, DType::F32, &layout(0, &[2, 2], &[1])).is_err());
        assert!(gather(&s, DType::F32, &layout(0, &[2], &[usize::MAX])).is_err());
        assert!(gather(&s, DType::F32, &layout(usize::MAX, &[1], &[1])).is_err());
        assert!(gather(&s, DType::F32, &layout(0, &[usize::MAX, 3], &[1, 1])).is_err());
        // A size-1 dim may carry any stride (PyTorch ignores it).
        let t = gather(&s, DType::F32, &layout(0, &[1, 3], &[usize::MAX, 1])).expect("valid");
        assert_eq!(t.data, vec![1., 2., 3.]);
        let t = gather(&s, DType::F32, &layout(0, &[3, 1], &[1, usize::MAX])).expect("valid");
        assert_eq!(t.data, vec![1., 2., 3.]);
    }

    #[test]
    fn integer_half_and_bool_decoding() {
        let s: Vec<u8> = [-3i64, 1 << 40]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        assert_eq!(
            decode(&s, DType::I64, 0, 2).expect("i64"),
            vec![-3.0, (1u64 << 40) as f32]
        );
        let h: Vec<u8> = [0x3c00u16, 0xc000, 0x0001, 0x7c00, 0x7bff]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let v = decode(&h, DType::F16, 0, 5).expect("f16");
        assert_eq!(v[..2], [1.0, -2.0]);
        assert_eq!(v[2], 2f32.powi(-24));
        assert_eq!(v[3], f32::INFINITY);
        assert_eq!(v[4], 65504.0);
        assert!(f16_to_f32(0x7e00).is_nan());
        let b: Vec<u8> = 1.5f32.to_bits().to_le_bytes()[2..].to_vec();
        assert_eq!(decode(&b, DType::BF16, 0, 1).expect("bf16"), vec![1.5]);
        assert_eq!(
            decode(&[0, 2, 255], DType::Bool, 0, 3).expect("bool"),
            vec![0., 1., 1.]
        );
        assert_eq!(decode(&[255], DType::I8, 0, 1).expect("i8"), vec![-1.]);
        assert!(decode(&[0, 0, 0], DType::F32, 0, 1).is_err());
    }

    #[test]
    fn dtype_names_round_trip() {
        for d in ALL {
            assert_eq!(DType::from_name(d.name()), Some(d));
        }
        assert_eq!(DType::from_storage_class("LongStorage"), Some(DType::I64));
        assert_eq!(DType::from_storage_class("ComplexFloatStorage"), None);
    }
}
