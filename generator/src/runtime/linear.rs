//! Linear maps of the forward pass, and stacks of them that read the same input.
//!
//! A decoding step multiplies one activation row by q, k and v (and by gate and up), each a
//! separate quantized matmul in candle: the row is quantized again for each, and each is a
//! parallel region of its own whose start and end the other threads wait through. Stacking the
//! weights by rows (their outputs side by side) makes that one quantization and one region.
//! The numbers do not change: each output is the same row-by-row dot product as before.

use std::borrow::Cow;

use candle_core::quantized::{GgmlDType, QMatMul, QStorage, QTensor};
use candle_core::{D, Device, Module, Tensor};

use crate::config::Projection;
use crate::error::{Error, Result};

/// A linear map, quantized or dense, with an optional bias (Qwen2's q/k/v).
#[derive(Debug)]
pub(crate) struct Linear {
    pub(crate) weight: QMatMul,
    pub(crate) bias: Option<Tensor>,
    /// Zero columns appended to the weight (see [`Linear::tiled`]); inputs get as many zeros.
    pub(crate) padding: usize,
}

/// candle runs a Q8_0 matmul on its AVX-512 VNNI kernels (weights repacked into tiles of 16
/// rows) only when the input width is a multiple of this; otherwise on its AVX2 dot products,
/// which measured about 3x slower per weight on a VNNI machine.
const TILE_COLUMNS: usize = 256;
const TILE_ROWS: usize = 16;

impl Linear {
    pub(crate) fn new(weight: QMatMul, bias: Option<Tensor>) -> Self {
        Linear { weight, bias, padding: 0 }
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = if self.padding > 0 {
            self.weight.forward(&x.pad_with_zeros(D::Minus1, 0, self.padding)?)?
        } else {
            self.weight.forward(x)?
        };
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }

    /// On a CPU with AVX-512 VNNI, a Q8_0 weight whose width is not a multiple of
    /// [`TILE_COLUMNS`] gets zero columns up to the next one (SmolLM2's 576 becomes 768), so
    /// candle takes its tiled VNNI kernels: a third more weights to read, each about three
    /// times faster. The zero blocks add nothing to any output. Elsewhere, or when not
    /// `enabled` (weights kept as stored run as candle runs them): unchanged.
    pub(crate) fn tiled(self, device: &Device, enabled: bool) -> Result<Linear> {
        let QMatMul::QTensor(q) = &self.weight else { return Ok(self) };
        let (rows, cols) = q.shape().dims2()?;
        let wanted = enabled
            && q.dtype() == GgmlDType::Q8_0
            && device.is_cpu()
            && self.padding == 0
            && !cols.is_multiple_of(TILE_COLUMNS)
            && rows > 0
            && rows.is_multiple_of(TILE_ROWS)
            && vnni();
        if !wanted {
            return Ok(self);
        }
        let padding = cols.next_multiple_of(TILE_COLUMNS) - cols;
        // Zero blocks (scale 0, values 0) appended to each stored row: the stored blocks stay
        // exactly as they are, and loading does not dequantize and quantize again.
        let bytes = q.data()?;
        let row_bytes = bytes.len() / rows;
        let zeros = vec![0u8; padding / q.dtype().block_size() * q.dtype().type_size()];
        let mut padded = Vec::with_capacity(rows * (row_bytes + zeros.len()));
        for row in bytes.chunks_exact(row_bytes) {
            padded.extend_from_slice(row);
            padded.extend_from_slice(&zeros);
        }
        let weight = from_blocks(padded, q.dtype(), (rows, cols + padding), device)?;
        Ok(Linear { weight, bias: self.bias, padding })
    }

    /// Output rows of the weight.
    fn rows(&self) -> Result<usize> {
        Ok(match &self.weight {
            QMatMul::QTensor(q) => q.shape().dims2()?.0,
            QMatMul::Tensor(t) | QMatMul::TensorF16(t) => t.dims2()?.0,
        })
    }

    /// The weight as a dense (out, in) f32 matrix.
    pub(crate) fn dense_weight(&self, device: &Device) -> Result<Tensor> {
        let weight = match &self.weight {
            QMatMul::QTensor(q) => q.dequantize(device)?,
            QMatMul::Tensor(t) | QMatMul::TensorF16(t) => t.to_dtype(candle_core::DType::F32)?,
        };
        let cols = weight.dim(1)? - self.padding;
        Ok(weight.narrow(1, 0, cols)?.contiguous()?)
    }

    /// Replaces the weight with an unpadded (out, in) one.
    pub(crate) fn set_weight(&mut self, weight: QMatMul) {
        self.weight = weight;
        self.padding = 0;
    }

    /// Rows `start..start + rows` of this map (its weight's and its bias's), in the same format.
    fn rows_slice(&self, start: usize, rows: usize, device: &Device) -> Result<Linear> {
        let weight = match &self.weight {
            QMatMul::QTensor(q) => {
                let (total, cols) = q.shape().dims2()?;
                let bytes = q.data()?;
                // Quantized rows are whole blocks, stored one row after another.
                let row_bytes = bytes.len() / total;
                let slice = bytes[start * row_bytes..(start + rows) * row_bytes].to_vec();
                from_blocks(slice, q.dtype(), (rows, cols), device)?
            }
            QMatMul::Tensor(t) => QMatMul::Tensor(t.narrow(0, start, rows)?.contiguous()?),
            QMatMul::TensorF16(t) => QMatMul::TensorF16(t.narrow(0, start, rows)?.contiguous()?),
        };
        let bias = self.bias.as_ref().map(|b| b.narrow(0, start, rows)).transpose()?;
        Ok(Linear { weight, bias, padding: self.padding })
    }
}

/// One matmul and the projections whose outputs it holds side by side, with their widths.
#[derive(Debug)]
struct Block {
    linear: Linear,
    parts: Vec<(Projection, usize)>,
}

/// Projections that read the same input (q/k/v, or gate/up): stacked into one [`Block`] when
/// their weights share a format, one block each otherwise.
#[derive(Debug)]
pub(crate) struct Stack {
    blocks: Vec<Block>,
}

impl Stack {
    /// Stacks `parts` on `device` where their formats allow it, [`Linear::tiled`] if `tile`.
    pub(crate) fn new(parts: Vec<(Projection, Linear)>, device: &Device, tile: bool) -> Result<Self> {
        let widths = parts.iter().map(|(p, l)| Ok((*p, l.rows()?))).collect::<Result<Vec<_>>>()?;
        let linears: Vec<&Linear> = parts.iter().map(|(_, l)| l).collect();
        if parts.len() > 1
            && let Some(linear) = stacked(&linears, device)?
        {
            return Ok(Stack { blocks: vec![Block { linear: linear.tiled(device, tile)?, parts: widths }] });
        }
        let blocks = parts
            .into_iter()
            .zip(widths)
            .map(|((_, linear), part)| Ok(Block { linear: linear.tiled(device, tile)?, parts: vec![part] }));
        Ok(Stack { blocks: blocks.collect::<Result<_>>()? })
    }

    /// Each projection's output for input `x`, in the order the stack was built with, after
    /// `finish(projection, output)` (where LoRA deltas are added).
    pub(crate) fn forward(
        &self,
        x: &Tensor,
        mut finish: impl FnMut(Projection, Tensor) -> Result<Tensor>,
    ) -> Result<Vec<Tensor>> {
        let mut outputs = Vec::with_capacity(3);
        for block in &self.blocks {
            let y = block.linear.forward(x)?;
            if let [(projection, _)] = block.parts.as_slice() {
                outputs.push(finish(*projection, y)?);
                continue;
            }
            let mut offset = 0;
            for &(projection, width) in &block.parts {
                outputs.push(finish(projection, y.narrow(D::Minus1, offset, width)?)?);
                offset += width;
            }
        }
        Ok(outputs)
    }

    /// The block holding `projection`, and where its rows start in it.
    fn find(&self, projection: Projection) -> Option<(usize, usize, usize)> {
        self.blocks.iter().enumerate().find_map(|(b, block)| {
            let mut offset = 0;
            for &(p, width) in &block.parts {
                if p == projection {
                    return Some((b, offset, width));
                }
                offset += width;
            }
            None
        })
    }

    /// `projection`'s weight as a dense (out, in) f32 matrix.
    pub(crate) fn weight(&self, projection: Projection, device: &Device) -> Result<Tensor> {
        let (b, offset, width) = self.find(projection).ok_or_else(|| missing(projection))?;
        let block = &self.blocks[b];
        block.linear.rows_slice(offset, width, device)?.dense_weight(device)
    }

    /// `projection`'s bias, where the stack has biases.
    pub(crate) fn bias(&self, projection: Projection) -> Result<Option<Tensor>> {
        let (b, offset, width) = self.find(projection).ok_or_else(|| missing(projection))?;
        Ok(self.blocks[b].linear.bias.as_ref().map(|bias| bias.narrow(0, offset, width)).transpose()?)
    }

    /// Replaces `projection`'s weight (its bias stays). Its block is split first, so the other
    /// projections keep their weights exactly as they were, in their own format.
    pub(crate) fn set_weight(&mut self, projection: Projection, weight: QMatMul, device: &Device) -> Result<()> {
        let (b, _, _) = self.find(projection).ok_or_else(|| missing(projection))?;
        if self.blocks[b].parts.len() > 1 {
            let block = self.blocks.remove(b);
            let mut offset = 0;
            for (i, &(p, width)) in block.parts.iter().enumerate() {
                let linear = block.linear.rows_slice(offset, width, device)?;
                self.blocks.insert(b + i, Block { linear, parts: vec![(p, width)] });
                offset += width;
            }
        }
        let (b, _, _) = self.find(projection).ok_or_else(|| missing(projection))?;
        self.blocks[b].linear.set_weight(weight);
        Ok(())
    }
}

/// Whether this CPU has the AVX-512 VNNI instructions candle's tiled Q8_0 kernels use.
fn vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// A quantized (rows, cols) weight from its blocks, stored row after row.
fn from_blocks(bytes: Vec<u8>, dtype: GgmlDType, shape: (usize, usize), device: &Device) -> Result<QMatMul> {
    let storage = QStorage::from_data(Cow::Owned(bytes), device, dtype)?;
    Ok(QMatMul::from_qtensor(QTensor::new(storage, shape)?)?)
}

fn missing(projection: Projection) -> Error {
    Error::Model(format!("no {} projection in this layer", projection.peft_name()))
}

/// One linear map with `linears`' rows one after another, when they can be: quantized weights
/// of one type on the CPU (their blocks are concatenated as stored), or dense weights of one
/// dtype; biases on all of them or on none.
fn stacked(linears: &[&Linear], device: &Device) -> Result<Option<Linear>> {
    let bias = match linears.iter().filter(|l| l.bias.is_some()).count() {
        0 => None,
        n if n == linears.len() => {
            Some(Tensor::cat(&linears.iter().filter_map(|l| l.bias.as_ref()).collect::<Vec<_>>(), 0)?)
        }
        _ => return Ok(None),
    };
    let quantized: Option<Vec<&QTensor>> = linears
        .iter()
        .map(|l| match &l.weight {
            QMatMul::QTensor(q) => Some(q.as_ref()),
            _ => None,
        })
        .collect();
    if let Some(quantized) = quantized {
        let first = quantized[0];
        let cols = first.shape().dims2()?.1;
        let alike =
            quantized.iter().all(|q| q.dtype() == first.dtype() && q.shape().dims2().is_ok_and(|d| d.1 == cols));
        if !alike || !device.is_cpu() {
            return Ok(None);
        }
        let mut bytes = Vec::new();
        let mut rows = 0;
        for q in &quantized {
            bytes.extend_from_slice(&q.data()?);
            rows += q.shape().dims2()?.0;
        }
        let weight = from_blocks(bytes, first.dtype(), (rows, cols), device)?;
        return Ok(Some(Linear::new(weight, bias)));
    }
    let dense: Option<Vec<&Tensor>> = linears
        .iter()
        .map(|l| match &l.weight {
            QMatMul::Tensor(t) => Some(t),
            _ => None,
        })
        .collect();
    match dense {
        Some(dense) if dense.iter().all(|t| t.dtype() == dense[0].dtype()) => {
            Ok(Some(Linear::new(QMatMul::Tensor(Tensor::cat(&dense, 0)?), bias)))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use candle_core::DType;

    use super::*;

    fn quantized(rows: usize, dtype: GgmlDType, bias: bool) -> Linear {
        let w = Tensor::randn(0f32, 1.0, (rows, 64), &Device::Cpu).unwrap();
        let weight = QMatMul::from_qtensor(QTensor::quantize(&w, dtype).unwrap()).unwrap();
        let bias = bias.then(|| Tensor::randn(0f32, 1.0, rows, &Device::Cpu).unwrap());
        Linear::new(weight, bias)
    }

    fn values(y: &Tensor) -> Vec<f32> {
        y.flatten_all().unwrap().to_vec1().unwrap()
    }

    /// `linear`'s output as a stack of one runs it (tiled on a VNNI CPU).
    fn run_alone(linear: &Linear, x: &Tensor) -> Vec<f32> {
        let copy = Linear::new(linear.weight.clone(), linear.bias.clone()).tiled(&Device::Cpu, true).unwrap();
        values(&copy.forward(x).unwrap())
    }

    fn outputs(stack: &Stack, x: &Tensor) -> Vec<Vec<f32>> {
        stack.forward(x, |_, y| Ok(y)).unwrap().iter().map(values).collect()
    }

    #[test]
    fn a_stack_gives_each_projection_what_it_alone_gives_and_splits_exactly() {
        let cpu = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (1, 3, 64), &cpu).unwrap();
        let linears: Vec<Linear> =
            [32, 64, 32].into_iter().map(|rows| quantized(rows, GgmlDType::Q8_0, true)).collect();
        let alone: Vec<Vec<f32>> = linears.iter().map(|l| run_alone(l, &x)).collect();
        let k_weight = values(&linears[1].dense_weight(&cpu).unwrap());
        let names = [Projection::Q, Projection::K, Projection::V];
        let mut stack = Stack::new(names.into_iter().zip(linears).collect(), &cpu, true).unwrap();
        assert_eq!(stack.blocks.len(), 1, "one format: one matmul");
        assert_eq!(outputs(&stack, &x), alone);
        assert_eq!(values(&stack.weight(Projection::K, &cpu).unwrap()), k_weight);

        // Replacing q splits the block: k and v keep their quantized weights bit for bit.
        let dense_q = Tensor::randn(0f32, 1.0, (32, 64), &cpu).unwrap();
        stack.set_weight(Projection::Q, QMatMul::Tensor(dense_q.clone()), &cpu).unwrap();
        assert_eq!(stack.blocks.len(), 3);
        let after = outputs(&stack, &x);
        assert_eq!(after[1..], alone[1..]);
        assert_ne!(after[0], alone[0]);
        assert_eq!(values(&stack.weight(Projection::Q, &cpu).unwrap()), values(&dense_q));
    }

    #[test]
    fn weights_of_different_formats_or_biases_stay_separate() {
        let cpu = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 64), &cpu).unwrap();
        for (first, second) in [
            (quantized(32, GgmlDType::Q8_0, false), quantized(32, GgmlDType::Q4_0, false)),
            (quantized(32, GgmlDType::Q8_0, true), quantized(32, GgmlDType::Q8_0, false)),
        ] {
            let alone = vec![run_alone(&first, &x), run_alone(&second, &x)];
            let stack = Stack::new(vec![(Projection::Gate, first), (Projection::Up, second)], &cpu, true).unwrap();
            assert_eq!(stack.blocks.len(), 2);
            assert_eq!(outputs(&stack, &x), alone);
        }
    }

    #[test]
    fn tiled_weights_are_the_same_map() {
        let cpu = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (3, 64), &cpu).unwrap();
        let plain = quantized(32, GgmlDType::Q8_0, false);
        let tiled = Linear::new(plain.weight.clone(), plain.bias.clone()).tiled(&cpu, true).unwrap();
        assert_eq!(tiled.padding, if vnni() { 256 - 64 } else { 0 });
        assert_eq!(values(&tiled.dense_weight(&cpu).unwrap()), values(&plain.dense_weight(&cpu).unwrap()));
        // Another kernel (activations quantized its own way): the same map within 8-bit error.
        let (a, b) = (values(&plain.forward(&x).unwrap()), values(&tiled.forward(&x).unwrap()));
        let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(a.iter().zip(&b).all(|(a, b)| (a - b).abs() <= 0.02 * scale), "{a:?} vs {b:?}");
        // A split keeps the padding; a replaced weight drops it.
        let mut stack = Stack::new(vec![(Projection::O, plain)], &cpu, true).unwrap();
        assert_eq!(stack.weight(Projection::O, &cpu).unwrap().dims(), &[32, 64]);
        let zeros = Tensor::zeros((32, 64), DType::F32, &cpu).unwrap();
        stack.set_weight(Projection::O, QMatMul::Tensor(zeros), &cpu).unwrap();
        let y = stack.forward(&x, |_, y| Ok(y)).unwrap();
        assert_eq!(values(&y[0]), vec![0.0; 3 * 32]);
    }
}
