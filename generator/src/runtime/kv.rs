//! The KV cache as a value: one per request (or batch), owned by the caller, so a loaded model
//! is immutable and shared.

use candle_core::Tensor;

use crate::error::{Error, Result};

/// Attention keys and values of the tokens seen so far: one per request (or batch), owned by
/// the caller, so the model itself is immutable and shared.
///
/// Each layer's keys and values live in buffers ([batch, kv heads, capacity, head dim]) that
/// new positions are written into in place, doubling when full, so a decoding step does not
/// copy the whole history; cloning copies them, so a clone is a value of its own.
#[derive(Debug)]
pub struct KvCache {
    pub(crate) layers: Vec<LayerKv>,
    pub(crate) len: usize,
    /// Positions a buffer never grows beyond (unless more are written).
    pub(crate) max_capacity: usize,
}

/// One layer's key and value buffers (none before its first token).
#[derive(Debug, Default)]
pub(crate) struct LayerKv {
    pub(crate) keys: Option<Tensor>,
    pub(crate) values: Option<Tensor>,
}

impl Clone for KvCache {
    fn clone(&self) -> Self {
        // A copy fails only when the device cannot allocate; sharing the buffers instead would
        // silently mix two sequences' keys, so that is a panic, not a fallback.
        let copy = |t: &Option<Tensor>| t.as_ref().map(|t| t.copy().expect("allocating a copy of a KV cache"));
        let layers = self.layers.iter().map(|l| LayerKv { keys: copy(&l.keys), values: copy(&l.values) }).collect();
        KvCache { layers, len: self.len, max_capacity: self.max_capacity }
    }
}

/// Smallest buffer capacity, in positions: a short answer never regrows.
const MIN_KV_CAPACITY: usize = 256;

/// Writes `new` ([b, h, seq, d]) at position `start` of `buffer` (filled up to `start`),
/// growing it when full (doubling, up to `max_capacity` positions); the filled part,
/// [b, h, start + seq, d], as a view.
pub(crate) fn append_kv(
    buffer: &mut Option<Tensor>,
    new: &Tensor,
    start: usize,
    max_capacity: usize,
) -> Result<Tensor> {
    let (b, h, seq, d) = new.dims4()?;
    let needed = start + seq;
    let kept = if start > 0 { buffer.take() } else { None };
    let target = match kept {
        Some(existing) if existing.dim(2)? >= needed => existing,
        kept => {
            let capacity = needed.next_power_of_two().max(MIN_KV_CAPACITY).min(max_capacity.max(needed));
            let grown = Tensor::zeros((b, h, capacity, d), new.dtype(), new.device())?;
            if let Some(old) = kept {
                grown.slice_set(&old.narrow(2, 0, start)?.contiguous()?, 2, 0)?;
            }
            grown
        }
    };
    target.slice_set(&new.contiguous()?, 2, start)?;
    let filled = target.narrow(2, 0, needed)?;
    *buffer = Some(target);
    Ok(filled)
}

impl KvCache {
    /// Layer `layer`'s whole key and value buffers ([batch, kv heads, capacity, head dim]).
    pub(crate) fn layer_buffers(&self, layer: usize) -> (Option<Tensor>, Option<Tensor>) {
        self.layers.get(layer).map_or((None, None), |l| (l.keys.clone(), l.values.clone()))
    }

    /// Writes one layer's new keys and values ([batch, kv heads, seq, head dim]) at `start`.
    pub(crate) fn append_layer(&mut self, layer: usize, keys: &Tensor, values: &Tensor, start: usize) -> Result<()> {
        let layer =
            self.layers.get_mut(layer).ok_or_else(|| Error::Model("KV cache belongs to another model".into()))?;
        append_kv(&mut layer.keys, keys, start, self.max_capacity)?;
        append_kv(&mut layer.values, values, start, self.max_capacity)?;
        Ok(())
    }

    /// The first `positions` positions of this cache, copied into buffers of their own
    /// (exactly that long): what a prefix cache keeps.
    pub fn prefix(&self, positions: usize) -> Result<KvCache> {
        let positions = positions.min(self.len);
        let copy = |t: &Option<Tensor>| -> Result<Option<Tensor>> {
            t.as_ref().map(|t| Ok(t.narrow(2, 0, positions)?.contiguous()?.copy()?)).transpose()
        };
        let layers = self
            .layers
            .iter()
            .map(|l| Ok(LayerKv { keys: copy(&l.keys)?, values: copy(&l.values)? }))
            .collect::<Result<Vec<_>>>()?;
        Ok(KvCache { layers, len: positions, max_capacity: positions })
    }

    /// Writes the first `positions` of `prefix` into this empty cache (which keeps its own
    /// growth limit): a request starts after a prompt prefix it shares with an earlier one.
    pub fn start_from(&mut self, prefix: &KvCache, positions: usize) -> Result<()> {
        if self.len != 0 || positions > prefix.len || self.layers.len() != prefix.layers.len() {
            return Err(Error::Model("a prefix goes only into an empty cache of the same model".into()));
        }
        if positions == 0 {
            return Ok(());
        }
        for (mine, theirs) in self.layers.iter_mut().zip(&prefix.layers) {
            let (Some(keys), Some(values)) = (&theirs.keys, &theirs.values) else {
                return Err(Error::Model("a prefix without keys".into()));
            };
            append_kv(&mut mine.keys, &keys.narrow(2, 0, positions)?, 0, self.max_capacity)?;
            append_kv(&mut mine.values, &values.narrow(2, 0, positions)?, 0, self.max_capacity)?;
        }
        self.len = positions;
        Ok(())
    }

    /// Layers this cache has room for.
    pub(crate) fn layers(&self) -> usize {
        self.layers.len()
    }

    /// Bytes its buffers hold now (capacity, not only the filled positions).
    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .flat_map(|l| [&l.keys, &l.values])
            .flatten()
            .map(|t| t.elem_count() * t.dtype().size_in_bytes())
            .sum()
    }

    /// Counts `positions` more tokens as cached (every layer has appended them).
    pub(crate) fn advance(&mut self, positions: usize) {
        self.len += positions;
    }

    /// Tokens already in the cache: the position of the next one.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}
