//! Recognise a state dict in a decoded pickle: an (Ordered)Dict of name →
//! `torch._utils._rebuild_tensor_v2(storage_pid, offset, size, stride, …)`, optionally
//! wrapped in `_rebuild_parameter`. Shared by the legacy and zip formats, which differ
//! only in where storage bytes live.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::error::{ParseError, WeightError};
use super::pickle::{Object, Pickle, Value};
use super::tensor::{gather, DType, Layout, Tensor};

/// An ordered name → tensor map, as `model.state_dict()` was saved.
#[derive(Debug, Clone, Default)]
pub struct StateDict {
    source: PathBuf,
    entries: Vec<(String, Tensor)>,
    index: HashMap<String, usize>,
}

impl StateDict {
    /// An empty map; `source` is the file named in lookup errors.
    pub fn new(source: impl Into<PathBuf>) -> Self {
        StateDict {
            source: source.into(),
            ..Default::default()
        }
    }

    /// The file this map was read from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Insert or replace (a replaced entry keeps its position, like a Python dict).
    pub fn insert(&mut self, name: impl Into<String>, tensor: Tensor) -> Option<Tensor> {
        let name = name.into();
        if let Some(&i) = self.index.get(&name) {
            return self
                .entries
                .get_mut(i)
                .map(|slot| std::mem::replace(&mut slot.1, tensor));
        }
        self.index.insert(name.clone(), self.entries.len());
        self.entries.push((name, tensor));
        None
    }

    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.index
            .get(name)
            .and_then(|&i| self.entries.get(i))
            .map(|(_, t)| t)
    }

    /// The tensor `name`, which must have exactly `shape`; errors name the file.
    pub fn require(&self, name: &str, shape: &[usize]) -> Result<&Tensor, WeightError> {
        let t = self.get(name).ok_or_else(|| WeightError::MissingTensor {
            path: self.source.clone(),
            name: name.to_string(),
        })?;
        if t.shape != shape {
            return Err(WeightError::ShapeMismatch {
                path: self.source.clone(),
                name: name.to_string(),
                expected: shape.to_vec(),
                actual: t.shape.clone(),
            });
        }
        Ok(t)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.entries.iter().map(|(n, t)| (n.as_str(), t))
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(n, _)| n.as_str())
    }

    pub fn entries(&self) -> &[(String, Tensor)] {
        &self.entries
    }

    pub fn into_entries(self) -> Vec<(String, Tensor)> {
        self.entries
    }
}

/// A persistent-id storage reference: `('storage', torch.XStorage, key, location, numel[, view])`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StorageRef {
    pub key: String,
    pub dtype: DType,
    pub numel: usize,
    /// Legacy storage view: (element offset, element count) inside the root storage.
    pub view: Option<(usize, usize)>,
}

/// One tensor to materialise once storage bytes are known.
#[derive(Debug, Clone)]
pub(crate) struct TensorSpec {
    pub name: String,
    pub storage: StorageRef,
    pub layout: Layout,
}

/// Find the tensors of the state dict at the pickle's root (or under a `state_dict` /
/// `model` key of a training checkpoint), in dict order.
pub(crate) fn tensor_specs(p: &Pickle) -> Result<Vec<TensorSpec>, ParseError> {
    let root = p.dict(p.root()).ok_or_else(|| {
        ParseError::unsupported("the top-level object is not a dict (expected a state dict)")
    })?;
    let mut specs = collect(p, root)?;
    if specs.is_empty() {
        // Training checkpoints nest the weights one level down.
        for (k, v) in root {
            if let (Value::Str(key), Some(inner)) = (k, p.dict(v)) {
                if matches!(&**key, "state_dict" | "model") {
                    tracing::info!("using the nested `{key}` dict of a training checkpoint");
                    specs = collect(p, inner)?;
                    break;
                }
            }
        }
    }
    if specs.is_empty() {
        return Err(ParseError::unsupported("the dict holds no tensors"));
    }
    Ok(specs)
}

fn collect(p: &Pickle, dict: &[(Value, Value)]) -> Result<Vec<TensorSpec>, ParseError> {
    let mut specs = Vec::with_capacity(dict.len());
    for (k, v) in dict {
        let Value::Str(name) = k else {
            return Err(ParseError::unsupported(format!(
                "state dict key {k:?} is not a string"
            )));
        };
        match tensor_spec(p, name, v)? {
            Some(spec) => specs.push(spec),
            None => tracing::warn!("skipping non-tensor state dict entry `{name}`"),
        }
    }
    Ok(specs)
}

/// `Ok(None)` if `v` is not a tensor at all; `Err` if it is one we cannot read.
fn tensor_spec(p: &Pickle, name: &str, v: &Value) -> Result<Option<TensorSpec>, ParseError> {
    let Some(Object::Call { func, args }) = p.object(v) else {
        return Ok(None);
    };
    match p.global(func) {
        Some(("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state")) => {
            // nn.Parameter pickles as _rebuild_parameter(tensor, requires_grad, hooks, …).
            let data = p.tuple(args).and_then(|a| a.first());
            data.map(|d| plain_tensor(p, name, d))
                .transpose()?
                .flatten()
                .map(Some)
                .ok_or_else(|| {
                    ParseError::format(format!(
                        "tensor `{name}`: _rebuild_parameter does not wrap a tensor"
                    ))
                })
        }
        Some(("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor")) => {
            plain_tensor(p, name, v)
        }
        // Other tensor rebuilders (quantized, sparse, meta…) are tensors we cannot read.
        Some(("torch._utils", f)) if f.starts_with("_rebuild_") => {
            Err(ParseError::unsupported(format!(
                "tensor `{name}` is built by torch._utils.{f}, which this importer does not read"
            )))
        }
        _ => Ok(None),
    }
}

/// A `_rebuild_tensor(_v2)(storage, offset, size, stride, …)` call; `Ok(None)` otherwise.
fn plain_tensor(p: &Pickle, name: &str, v: &Value) -> Result<Option<TensorSpec>, ParseError> {
    let Some(Object::Call { func, args }) = p.object(v) else {
        return Ok(None);
    };
    if !matches!(
        p.global(func),
        Some(("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor"))
    ) {
        return Ok(None);
    }
    let bad = |what: &str| ParseError::format(format!("tensor `{name}`: {what}"));
    let Some([pid, offset, size, stride, ..]) = p.tuple(args) else {
        return Err(bad(
            "_rebuild_tensor needs (storage, offset, size, stride, …)",
        ));
    };
    let storage = storage_ref(p, pid).map_err(|e| bad(&e))?;
    let layout = Layout {
        offset: int(offset).ok_or_else(|| bad("storage offset is not a non-negative int"))?,
        size: ints(p, size).ok_or_else(|| bad("size is not a tuple of non-negative ints"))?,
        stride: ints(p, stride).ok_or_else(|| bad("stride is not a tuple of non-negative ints"))?,
    };
    Ok(Some(TensorSpec {
        name: name.to_string(),
        storage,
        layout,
    }))
}

fn storage_ref(p: &Pickle, pid: &Value) -> Result<StorageRef, String> {
    let Some(Object::PersistentId(inner)) = p.object(pid) else {
        return Err("storage is not a persistent id".into());
    };
    let t = p
        .tuple(inner)
        .ok_or("storage persistent id is not a tuple")?;
    let [Value::Str(tag), class, Value::Str(key), _location, numel, rest @ ..] = t else {
        return Err("storage id is not ('storage', type, key, location, numel, …)".into());
    };
    if &**tag != "storage" {
        return Err(format!("persistent id tag is `{tag}`, expected `storage`"));
    }
    let dtype = match p.global(class) {
        // Legacy files record CUDA storages as torch.cuda.*; the bytes are the same.
        Some(("torch" | "torch.cuda", cls)) => DType::from_storage_class(cls)
            .ok_or_else(|| format!("storage type torch.{cls} is not supported"))?,
        Some((m, n)) => return Err(format!("storage type {m}.{n} is not supported")),
        None => return Err("storage type is not a torch storage class".into()),
    };
    let numel = int(numel).ok_or("storage numel is not a non-negative int")?;
    let view = match rest.first() {
        None | Some(Value::None) => None,
        Some(v) => match p.tuple(v) {
            Some([_view_key, off, len]) => Some((
                int(off).ok_or("bad storage view offset")?,
                int(len).ok_or("bad storage view size")?,
            )),
            _ => return Err("storage view metadata is not (key, offset, size)".into()),
        },
    };
    Ok(StorageRef {
        key: key.to_string(),
        dtype,
        numel,
        view,
    })
}

fn int(v: &Value) -> Option<usize> {
    match v {
        Value::Int(i) => usize::try_from(*i).ok(),
        _ => None,
    }
}

fn ints(p: &Pickle, v: &Value) -> Option<Vec<usize>> {
    p.tuple(v)?.iter().map(int).collect()
}

/// Materialise every spec from its storage bytes (`storages[key]` = raw root storage).
pub(crate) fn build(
    source: &Path,
    specs: Vec<TensorSpec>,
    storages: &HashMap<String, &[u8]>,
) -> Result<StateDict, ParseError> {
    let mut sd = StateDict::new(source);
    for spec in specs {
        let StorageRef {
            key, dtype, view, ..
        } = &spec.storage;
        let root = storages.get(key).ok_or_else(|| {
            ParseError::format(format!("storage `{key}` of `{}` is missing", spec.name))
        })?;
        let bytes = match view {
            None => *root,
            Some((off, len)) => off
                .checked_add(*len)
                .and_then(|end| {
                    Some((
                        off.checked_mul(dtype.size())?,
                        end.checked_mul(dtype.size())?,
                    ))
                })
                .and_then(|(a, b)| root.get(a..b))
                .ok_or_else(|| {
                    ParseError::format(format!(
                        "storage view of `{}` exceeds storage `{key}`",
                        spec.name
                    ))
                })?,
        };
        let tensor = gather(bytes, *dtype, &spec.layout)
            .map_err(|e| ParseError::format(format!("tensor `{}`: {e}", spec.name)))?;
        if sd.insert(spec.name.clone(), tensor).is_some() {
            tracing::warn!(
                "duplicate state dict key `{}`; the later one wins",
                spec.name
            );
        }
    }
    Ok(sd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::pickle::parse;
    use crate::weights::testutil::{state_dict_pickle, FixtureTensor};

    fn key(s: &str) -> Vec<u8> {
        let mut out = vec![b'X'];
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
        out
    }

    #[test]
    fn finds_weights_nested_in_a_training_checkpoint() {
        let inner = state_dict_pickle(&FixtureTensor::varied(), 2, false);
        // {'epoch': 3, 'args': argparse.Namespace(), 'state_dict': <inner>}
        let mut b = b"\x80\x02}(".to_vec();
        b.extend(key("epoch"));
        b.extend_from_slice(b"K\x03");
        b.extend(key("args"));
        b.extend_from_slice(b"cargparse\nNamespace\n)R");
        b.extend(key("state_dict"));
        b.extend_from_slice(&inner[2..inner.len() - 1]);
        b.extend_from_slice(b"u.");
        let p = parse(&b, 0).expect("pickle");
        let specs = tensor_specs(&p).expect("nested state dict");
        assert_eq!(specs.len(), FixtureTensor::varied().len());
        assert_eq!(specs[1].layout.stride, vec![1, 3]);
    }

    #[test]
    fn unreadable_tensor_kinds_and_non_dicts_are_errors() {
        let mut b = b"\x80\x02}(".to_vec();
        b.extend(key("q.weight"));
        b.extend_from_slice(b"ctorch._utils\n_rebuild_qtensor\n)Ru.");
        let p = parse(&b, 0).expect("pickle");
        let err = tensor_specs(&p).expect_err("quantized").to_string();
        assert!(err.contains("_rebuild_qtensor"), "{err}");

        let p = parse(b"\x80\x02]K\x01a.", 0).expect("pickle");
        assert!(tensor_specs(&p).is_err(), "a list is not a state dict");
        let p = parse(b"\x80\x02}(X\x01\x00\x00\x00aK\x01u.", 0).expect("pickle");
        assert!(tensor_specs(&p).is_err(), "no tensors");
    }

    #[test]
    fn state_dict_lookup_keeps_order_on_replace() {
        let t = |v: f32| Tensor {
            shape: vec![1],
            data: vec![v],
            dtype: DType::F32,
        };
        let mut sd = StateDict::new("m.pth");
        assert!(sd.insert("a", t(1.0)).is_none());
        sd.insert("b", t(2.0));
        assert_eq!(sd.insert("a", t(3.0)).map(|x| x.data), Some(vec![1.0]));
        assert_eq!(sd.names().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(sd.get("a").map(|x| x.data[0]), Some(3.0));
        assert!(sd.get("c").is_none() && !sd.is_empty() && sd.len() == 2);
    }
}
