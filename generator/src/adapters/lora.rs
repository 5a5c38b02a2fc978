//! LoRA adapters in PEFT format, applied unmerged: y = W x + Σ w · s · B (A x), per batch row.
//!
//! One base model serves many adapters: each row of a batch names its own adapter (or a
//! weighted mix of several), rows that share one are gathered and computed together (the SGMV
//! idea, at tensor level), and the base weights are never touched unless one hot adapter is
//! merged on purpose (`Model::set_projection_weight`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Layout, Storage, Tensor};
use rayon::prelude::*;
use safetensors::tensor::{Metadata, TensorInfo, TensorView};

use crate::config::{ModelConfig, Projection};
use crate::error::{Error, Result};
use crate::kernels::lowrank;

/// The parts of PEFT's `adapter_config.json` that decide how an adapter applies.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct AdapterConfig {
    #[serde(default)]
    pub peft_type: Option<String>,
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    pub r: usize,
    pub lora_alpha: f64,
    #[serde(default, deserialize_with = "modules")]
    pub target_modules: Vec<String>,
    #[serde(default)]
    pub use_rslora: bool,
    #[serde(default)]
    pub fan_in_fan_out: bool,
}

/// `target_modules` is a list, or one string (a regex in PEFT; we accept a plain name).
fn modules<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Vec<String>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Modules {
        One(String),
        Many(Vec<String>),
    }
    Ok(match <Modules as serde::Deserialize>::deserialize(d)? {
        Modules::One(s) => vec![s],
        Modules::Many(v) => v,
    })
}

/// The low-rank factors of one projection, both row-major: A is (rank, in) as PEFT stores
/// it, and B is kept transposed, (rank, out), so that a decoding step reads both by rows
/// ([`crate::kernels::lowrank`]). On the CPU they are kept as f16 (see [`factor_dtype`]).
#[derive(Debug)]
struct Factors {
    a: Tensor,
    b_t: Tensor,
}

/// A loaded adapter, checked against the model it will run on.
#[derive(Debug)]
pub struct Adapter {
    id: String,
    config: AdapterConfig,
    scale: f64,
    factors: HashMap<(usize, Projection), Factors>,
    /// The dtype the model computes in, to which candle's paths widen the factors.
    dtype: DType,
    bytes: usize,
}

/// The dtype an adapter's factors are kept in on `device` for a model computing in `dtype`.
/// On the CPU: f16, as PEFT often saves them and as GPU LoRA servers run them. A batch whose rows
/// use different adapters reads every row's factors at each decoding step, so that step is
/// bound by their bytes; f16 halves them, and the memory each cached adapter takes. A
/// decoding step widens them in registers; prompts and merges widen them per use.
pub fn factor_dtype(device: &Device, dtype: DType) -> DType {
    if device.is_cpu() { DType::F16 } else { dtype }
}

impl Adapter {
    /// Reads `dir/adapter_config.json` and `dir/adapter_model.safetensors` and checks every
    /// tensor against `model`: names, layers, shapes, rank. Anything that does not fit is an
    /// [`Error::Adapter`], so a bad upload is refused while the server keeps serving. `dtype`
    /// is the dtype the model computes in; the factors are kept in [`factor_dtype`].
    pub fn load(id: &str, dir: &Path, model: &ModelConfig, device: &Device, dtype: DType) -> Result<Self> {
        let bad = |why: String| Error::Adapter { id: id.to_string(), reason: why };
        let config_path = dir.join("adapter_config.json");
        let raw = std::fs::read(&config_path).map_err(|e| bad(format!("{}: {e}", config_path.display())))?;
        let config: AdapterConfig =
            serde_json::from_slice(&raw).map_err(|e| bad(format!("{}: {e}", config_path.display())))?;
        if let Some(kind) = &config.peft_type
            && kind != "LORA"
        {
            return Err(bad(format!("peft_type {kind} is not LORA")));
        }
        if config.r == 0 {
            return Err(bad("rank r is 0".into()));
        }
        if config.fan_in_fan_out {
            return Err(bad("fan_in_fan_out (Conv1D bases such as GPT-2) does not fit a Llama-family model".into()));
        }
        for name in &config.target_modules {
            if Projection::from_peft_name(name).is_none() {
                return Err(bad(format!("target module {name:?} is not one of q/k/v/o/gate/up/down_proj")));
            }
        }
        let scale = if config.use_rslora {
            config.lora_alpha / (config.r as f64).sqrt()
        } else {
            config.lora_alpha / config.r as f64
        };
        let weights_path = dir.join("adapter_model.safetensors");
        let in_file = |e: String| bad(format!("{}: {e}", weights_path.display()));
        let weights = WeightsFile::open(&weights_path).map_err(in_file)?;
        let mut pairs: BTreeMap<_, (Option<&TensorInfo>, Option<&TensorInfo>)> = BTreeMap::new();
        // In file order, so that the first bad name is always the one reported.
        for name in weights.metadata.offset_keys() {
            let Some(info) = weights.metadata.info(&name) else { continue };
            let (layer, projection, which) =
                parse_name(&name).ok_or_else(|| bad(format!("unexpected tensor {name}")))?;
            if layer >= model.num_layers {
                return Err(bad(format!("{name}: layer {layer} but the model has {}", model.num_layers)));
            }
            let slot = pairs.entry((layer, projection)).or_default();
            match which {
                'A' => slot.0 = Some(info),
                _ => slot.1 = Some(info),
            }
        }
        if pairs.is_empty() {
            return Err(bad("no LoRA tensors".into()));
        }
        // Checked in order (the first misfit is the error), then decoded in parallel.
        let mut checked = Vec::with_capacity(pairs.len());
        for ((layer, projection), (a, b)) in pairs {
            let what = format!("layer {layer} {}", projection.peft_name());
            let (Some(a), Some(b)) = (a, b) else {
                return Err(bad(format!("{what}: lora_A and lora_B must both be present")));
            };
            let (input, output) = projection.shape(model);
            if a.shape != [config.r, input] || b.shape != [output, config.r] {
                return Err(bad(format!(
                    "{what}: A {:?} and B {:?} do not fit rank {} and the model's ({input} -> {output})",
                    a.shape, b.shape, config.r
                )));
            }
            // GGUF Llama weights have q/k rows permuted for interleaved rotary embeddings
            // (llama.cpp's converter: (heads, 2, half) -> (heads, half, 2)); PEFT adapters are
            // trained on Hugging Face's order, so B's rows are read in the permuted order.
            let heads = match (model.rope_interleaved, projection) {
                (true, Projection::Q) => Some(model.num_heads),
                (true, Projection::K) => Some(model.num_kv_heads),
                _ => None,
            };
            checked.push(((layer, projection), what, a, b, heads.map(|h| output / h / 2)));
        }
        // Each task reads its tensors' bytes into a buffer it reuses (see `WeightsFile`).
        let storage = factor_dtype(device, dtype);
        let decoded = checked
            .into_par_iter()
            .map_init(Vec::new, |buffer, (key, what, a, b, half)| {
                let b_row = |n: usize| match half {
                    Some(half) => {
                        let (h, rem) = (n / (2 * half), n % (2 * half));
                        h * 2 * half + (rem % 2) * half + rem / 2
                    }
                    None => n,
                };
                let mut decode = |info: &TensorInfo, order: Order<'_>| {
                    weights.view(info, buffer).and_then(|view| decode_rows(&view, order))
                };
                let a_rows = decode(a, Order::AsStored)
                    .and_then(|v| Values::kept_as(v, storage))
                    .map_err(|e| bad(format!("{what} lora_A: {e}")))?;
                let b_cols = decode(b, Order::Transposed(&b_row))
                    .and_then(|v| Values::kept_as(v, storage))
                    .map_err(|e| bad(format!("{what} lora_B: {e}")))?;
                Ok((key, a_rows, b_cols))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut factors = HashMap::new();
        let mut bytes = 0;
        for ((layer, projection), a_rows, b_cols) in decoded {
            let (input, output) = projection.shape(model);
            bytes += (a_rows.len() + b_cols.len()) * storage.size_in_bytes();
            let a = a_rows.tensor((config.r, input), device, storage)?;
            let b_t = b_cols.tensor((config.r, output), device, storage)?;
            factors.insert((layer, projection), Factors { a, b_t });
        }
        Ok(Adapter { id: id.to_string(), config, scale, factors, dtype, bytes })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn config(&self) -> &AdapterConfig {
        &self.config
    }

    pub fn rank(&self) -> usize {
        self.config.r
    }

    /// Memory its factors take on the device.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// s · B A for one projection, as an (out, in) matrix: what merging adds to the weight.
    pub fn delta_weight(&self, layer: usize, projection: Projection) -> Result<Option<Tensor>> {
        let Some(f) = self.factors.get(&(layer, projection)) else { return Ok(None) };
        // (A^T B^T)^T = B A
        let (a, b_t) = (widen(&f.a, self.dtype)?, widen(&f.b_t, self.dtype)?);
        Ok(Some((a.t()?.matmul(&b_t)?.t()? * self.scale)?))
    }

    /// s · B (A x) for input rows `x` [rows, seq, in], or None when this projection has no factors.
    fn delta(&self, x: &Tensor, layer: usize, projection: Projection) -> Result<Option<Tensor>> {
        let Some(f) = self.factors.get(&(layer, projection)) else { return Ok(None) };
        let down = x.broadcast_matmul(&widen(&f.a, x.dtype())?.t()?)?;
        Ok(Some((down.broadcast_matmul(&widen(&f.b_t, x.dtype())?)? * self.scale)?))
    }
}

/// A safetensors file read piece by piece: its header when opened, each tensor's bytes when
/// decoded, by positioned reads into a small buffer that the decoding task reuses. Reading the
/// whole file into one buffer first (20 MB for rank 16 on every projection of a 30-layer
/// model) cost a pass through memory and the fresh pages it faulted in: most of a cold load.
/// No memory map: a file truncated while mapped would kill the process (SIGBUS) where a read
/// returns an error.
struct WeightsFile {
    file: std::fs::File,
    /// Where the tensors' bytes start: after the length word and the JSON header.
    data_start: u64,
    metadata: Metadata,
}

/// The safetensors crate's own bound on a header.
const MAX_HEADER_BYTES: u64 = 100_000_000;

impl WeightsFile {
    /// Reads and checks the header: tensors laid end to end, filling the file exactly.
    fn open(path: &Path) -> std::result::Result<Self, String> {
        use std::io::Read;
        let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        let file_len = file.metadata().map_err(|e| e.to_string())?.len();
        let mut word = [0u8; 8];
        file.read_exact(&mut word).map_err(|_| format!("{file_len} bytes: too short for a safetensors header"))?;
        let header_len = u64::from_le_bytes(word);
        if header_len > MAX_HEADER_BYTES || header_len > file_len.saturating_sub(8) {
            return Err(format!("a header of {header_len} bytes does not fit a file of {file_len}"));
        }
        let mut header = vec![0u8; header_len as usize];
        file.read_exact(&mut header).map_err(|e| e.to_string())?;
        let metadata: Metadata = serde_json::from_slice(&header).map_err(|e| format!("header: {e}"))?;
        let data_start = 8 + header_len;
        // Checked: a crafted header can declare offsets near usize::MAX.
        if data_start.checked_add(metadata.data_len() as u64) != Some(file_len) {
            return Err(format!(
                "the header describes {} bytes of tensors but the file holds {}",
                metadata.data_len(),
                file_len - data_start
            ));
        }
        Ok(WeightsFile { file, data_start, metadata })
    }

    /// The tensor `info` describes, its bytes read into `buffer`.
    fn view<'b>(&self, info: &TensorInfo, buffer: &'b mut Vec<u8>) -> std::result::Result<TensorView<'b>, String> {
        let (start, end) = info.data_offsets;
        buffer.clear();
        buffer.resize(end - start, 0);
        read_at(&self.file, buffer, self.data_start + start as u64).map_err(|e| format!("reading: {e}"))?;
        TensorView::new(info.dtype, info.shape.clone(), buffer).map_err(|e| e.to_string())
    }
}

#[cfg(unix)]
fn read_at(file: &std::fs::File, buffer: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buffer, offset)
}

#[cfg(not(unix))]
fn read_at(file: &std::fs::File, buffer: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    // A handle of its own: concurrent tasks must not share a cursor.
    let mut file = file.try_clone()?;
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(buffer)
}

/// How a decoded tensor is laid out: as the file stores it, or transposed with logical row n
/// read from the file's row `row_of(n)` (B, whose q/k rows GGUF models permute).
#[derive(Clone, Copy)]
enum Order<'a> {
    AsStored,
    Transposed(&'a dyn Fn(usize) -> usize),
}

/// Decoded factor values in the dtype they are kept in.
enum Values {
    F32(Vec<f32>),
    F16(Vec<half::f16>),
}

impl Values {
    /// `values` as `storage` keeps them: f16 (refusing values beyond its range) or as they are
    /// (other dtypes are converted on the device).
    fn kept_as(values: Vec<f32>, storage: DType) -> std::result::Result<Values, String> {
        if storage != DType::F16 {
            return Ok(Values::F32(values));
        }
        use half::slice::HalfFloatSliceExt;
        let mut narrow = vec![half::f16::ZERO; values.len()];
        narrow.convert_from_f32_slice(&values);
        if !narrow.iter().all(|v| v.is_finite()) {
            return Err("values beyond f16's range (±65504), the dtype adapters are kept in on the CPU".into());
        }
        Ok(Values::F16(narrow))
    }

    fn len(&self) -> usize {
        match self {
            Values::F32(values) => values.len(),
            Values::F16(values) => values.len(),
        }
    }

    fn tensor(self, shape: (usize, usize), device: &Device, storage: DType) -> Result<Tensor> {
        Ok(match self {
            Values::F32(values) => Tensor::from_vec(values, shape, device)?.to_dtype(storage)?,
            Values::F16(values) => Tensor::from_vec(values, shape, device)?,
        })
    }
}

/// A factor in `dtype`: f16 factors on the CPU are widened by `half`'s vectorized slice
/// conversion (candle's `to_dtype` converts value by value).
fn widen(factor: &Tensor, dtype: DType) -> Result<Tensor> {
    if factor.dtype() == dtype {
        return Ok(factor.clone());
    }
    if dtype == DType::F32 {
        let (storage, layout) = factor.storage_and_layout();
        if let Some(values) = cpu_slice::<half::f16>(&storage, layout) {
            use half::slice::HalfFloatSliceExt;
            let mut wide = vec![0f32; values.len()];
            values.convert_to_f32_slice(&mut wide);
            return Ok(Tensor::from_vec(wide, factor.shape(), factor.device())?);
        }
    }
    Ok(factor.to_dtype(dtype)?)
}

/// A 2-d tensor's values as f32 in `order`, refusing non-finite values: one pass over the
/// file's bytes.
fn decode_rows(view: &TensorView, order: Order<'_>) -> std::result::Result<Vec<f32>, String> {
    let (rows, cols) = match view.shape() {
        [r, c] => (*r, *c),
        other => return Err(format!("expected 2 dimensions, got {other:?}")),
    };
    let data = view.data();
    let values = match view.dtype() {
        safetensors::Dtype::F32 => arrange(data, rows, cols, order, f32::from_le_bytes)?,
        safetensors::Dtype::BF16 => {
            arrange(data, rows, cols, order, |b: [u8; 2]| f32::from_bits((u16::from_le_bytes(b) as u32) << 16))?
        }
        safetensors::Dtype::F16 => arrange(data, rows, cols, order, |b: [u8; 2]| half::f16::from_le_bytes(b).to_f32())?,
        other => return Err(format!("dtype {other:?} is not a float type")),
    };
    if !values.iter().all(|v| v.is_finite()) {
        return Err("non-finite values".into());
    }
    Ok(values)
}

/// `data`'s `W`-byte words converted by `value` and laid out in `order`, in the same pass (a
/// separate transposing copy was most of an adapter's load time).
fn arrange<const W: usize>(
    data: &[u8],
    rows: usize,
    cols: usize,
    order: Order<'_>,
    value: impl Fn([u8; W]) -> f32,
) -> std::result::Result<Vec<f32>, String> {
    let (words, rest) = data.as_chunks::<W>();
    if !rest.is_empty() || words.len() != rows * cols {
        return Err(format!("{} bytes for shape [{rows}, {cols}]", data.len()));
    }
    let Order::Transposed(row_of) = order else { return Ok(words.iter().map(|w| value(*w)).collect()) };
    let mut out = vec![0f32; rows * cols];
    for n in 0..rows {
        for (c, w) in words[row_of(n) * cols..][..cols].iter().enumerate() {
            out[c * rows + n] = value(*w);
        }
    }
    Ok(out)
}

/// `base_model.model.model.layers.{i}.{self_attn|mlp}.{proj}.lora_{A|B}[.default].weight`
fn parse_name(name: &str) -> Option<(usize, Projection, char)> {
    let rest = &name[name.find("layers.")? + "layers.".len()..];
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let mut parts = rest.split('.');
    let _block = parts.next()?;
    let projection = Projection::from_peft_name(parts.next()?)?;
    let which = match parts.next()? {
        "lora_A" => 'A',
        "lora_B" => 'B',
        _ => return None,
    };
    let tail: Vec<&str> = parts.collect();
    matches!(tail.as_slice(), ["weight"] | ["default", "weight"]).then_some((layer, projection, which))
}

/// What each row of a batch runs with: nothing (the base model), one adapter, or a weighted
/// combination of several.
pub type AdapterMix = Vec<(Arc<Adapter>, f32)>;

/// One projection's factors for each row of a batch: row r's adapters side by side (weights
/// and scales folded into B), zero-padded to the widest row.
#[derive(Debug)]
struct RowFactors {
    /// [rows, in, R]
    a: Tensor,
    /// [rows, R, out]
    b: Tensor,
}

#[derive(Debug, Default)]
enum Plan {
    #[default]
    Base,
    /// Every row runs the same mix: its deltas apply to the whole batch.
    Uniform(AdapterMix),
    /// Rows differ, on the CPU: a decoding step runs each row's own factors in one pass
    /// ([`crate::kernels::lowrank`]); a prompt runs each row's own matmuls.
    PerRow(Vec<AdapterMix>),
    /// Rows differ, on a GPU (or when asked): each row's factors gathered once per batch and
    /// applied with two batched matmuls per projection (the SGMV idea, without a custom kernel).
    Gathered(HashMap<(usize, Projection), RowFactors>),
}

/// What each row of a batch runs with: the base model, one adapter, or a weighted mix.
#[derive(Debug, Default)]
pub struct BatchAdapters {
    rows: usize,
    plan: Plan,
}

impl BatchAdapters {
    /// No adapters on any row.
    pub fn none() -> Self {
        BatchAdapters::default()
    }

    /// One mix per row (`mixes.len()` is the batch size).
    pub fn per_row(mixes: &[AdapterMix], device: &Device) -> Result<Self> {
        Self::plan(mixes, device, !device.is_cpu())
    }

    /// One mix per row, always through the gathered factors and batched matmuls that a GPU
    /// runs, even on the CPU (to compare the two paths).
    pub fn per_row_gathered(mixes: &[AdapterMix], device: &Device) -> Result<Self> {
        Self::plan(mixes, device, true)
    }

    fn plan(mixes: &[AdapterMix], device: &Device, gather: bool) -> Result<Self> {
        let rows = mixes.len();
        let key = |m: &AdapterMix| m.iter().map(|(a, w)| (Arc::as_ptr(a), w.to_bits())).collect::<Vec<_>>();
        let plan = if mixes.iter().all(|m| m.is_empty()) {
            Plan::Base
        } else if mixes.iter().all(|m| key(m) == key(&mixes[0])) {
            Plan::Uniform(mixes[0].clone())
        } else if gather {
            Plan::Gathered(gather_rows(mixes, device)?)
        } else {
            Plan::PerRow(mixes.to_vec())
        };
        Ok(BatchAdapters { rows, plan })
    }

    /// One mix per row, each row's deltas added on their own even when rows share a mix (on
    /// the CPU), so that a row's arithmetic is the same in every batch: what the scheduler
    /// runs, so that an answer does not depend on the other requests served with it.
    pub fn each_row(mixes: &[AdapterMix], device: &Device) -> Result<Self> {
        if mixes.iter().all(|m| m.is_empty()) || !device.is_cpu() {
            return Self::per_row(mixes, device);
        }
        Ok(BatchAdapters { rows: mixes.len(), plan: Plan::PerRow(mixes.to_vec()) })
    }

    /// This one-row plan for `rows` rows that all run its mix (the positions of a prompt run as
    /// rows of the fused step); None for any other plan.
    pub(crate) fn spread(&self, rows: usize) -> Option<Self> {
        let plan = match &self.plan {
            Plan::Base => Plan::Base,
            Plan::Uniform(mix) if self.rows == 1 => Plan::Uniform(mix.clone()),
            Plan::PerRow(mixes) if mixes.len() == 1 => Plan::Uniform(mixes[0].clone()),
            _ => return None,
        };
        Some(BatchAdapters { rows, plan })
    }

    /// The same mix on every one of `rows` rows.
    pub fn uniform(mix: AdapterMix, rows: usize, device: &Device) -> Result<Self> {
        Self::per_row(&vec![mix; rows], device)
    }

    pub(crate) fn check_batch(&self, batch: usize) -> Result<()> {
        if !matches!(self.plan, Plan::Base) && self.rows != batch {
            return Err(Error::Model(format!("adapters given for {} rows, batch has {batch}", self.rows)));
        }
        Ok(())
    }

    /// `base` [batch, seq, out] plus each row's adapter deltas for this projection.
    pub(crate) fn add_delta(
        &self,
        base: Tensor,
        input: &Tensor,
        layer: usize,
        projection: Projection,
    ) -> Result<Tensor> {
        let key = (layer, projection);
        match &self.plan {
            Plan::Base => Ok(base),
            Plan::Uniform(mix) => {
                if let Some(out) = self.step_on_cpu(&base, input, key)? {
                    return Ok(out);
                }
                match mix_delta(mix, input, key)? {
                    Some(delta) => Ok((base + delta.to_dtype(input.dtype())?)?),
                    None => Ok(base),
                }
            }
            Plan::PerRow(mixes) => {
                if let Some(out) = self.step_on_cpu(&base, input, key)? {
                    return Ok(out);
                }
                // A prompt: each row's own matmuls (as many gemm calls as a batched matmul
                // makes), zeros for rows without factors here.
                let (_, seq, _) = input.dims3()?;
                let output = base.dim(2)?;
                let mut deltas = Vec::with_capacity(mixes.len());
                let mut any = false;
                for (row, mix) in mixes.iter().enumerate() {
                    match mix_delta(mix, &input.narrow(0, row, 1)?, key)? {
                        Some(delta) => {
                            any = true;
                            deltas.push(delta.to_dtype(base.dtype())?);
                        }
                        None => deltas.push(Tensor::zeros((1, seq, output), base.dtype(), base.device())?),
                    }
                }
                if !any {
                    return Ok(base);
                }
                Ok((base + Tensor::cat(&deltas, 0)?)?)
            }
            Plan::Gathered(stacks) => match stacks.get(&key) {
                Some(f) => {
                    let delta = input.matmul(&f.a)?.matmul(&f.b)?.to_dtype(base.dtype())?;
                    Ok((base + delta)?)
                }
                None => Ok(base),
            },
        }
    }
}

/// One row's factors for one projection, their storage held for a decoding step on the CPU
/// ([`crate::runtime::decode`]).
pub(crate) struct HeldFactors<'a> {
    pub(crate) layer: usize,
    pub(crate) projection: Projection,
    pub(crate) row: usize,
    coef: f32,
    a: (candle_core::StorageRef<'a>, &'a Layout),
    b_t: (candle_core::StorageRef<'a>, &'a Layout),
}

impl HeldFactors<'_> {
    /// The factors as a [`lowrank::Term`] of a projection from `input` to `output` features, or
    /// None when they are not contiguous f16 on the CPU or do not fit (the matmul path then
    /// names the mismatch).
    pub(crate) fn term(&self, input: usize, output: usize) -> Option<lowrank::Term<'_>> {
        let a = cpu_slice(&self.a.0, self.a.1)?;
        let b_t = cpu_slice(&self.b_t.0, self.b_t.1)?;
        let rank = a.len().checked_div(input)?;
        (a.len() == rank * input && b_t.len() == rank * output).then_some(lowrank::Term { a, b_t, coef: self.coef })
    }
}

impl BatchAdapters {
    /// Whether rows run different mixes.
    pub(crate) fn rows_differ(&self) -> bool {
        matches!(self.plan, Plan::PerRow(_) | Plan::Gathered(_))
    }

    /// Every row's factors for every projection (or `only` one), held for one decoding step of
    /// `rows` rows on the CPU; None for the plan that gathers factors for batched matmuls.
    pub(crate) fn hold_factors(&self, rows: usize, only: Option<(usize, Projection)>) -> Option<Vec<HeldFactors<'_>>> {
        let mix_of = |row: usize| -> Option<&AdapterMix> {
            match &self.plan {
                Plan::Base | Plan::Gathered(_) => None,
                Plan::Uniform(mix) => Some(mix),
                Plan::PerRow(mixes) => mixes.get(row),
            }
        };
        if matches!(self.plan, Plan::Gathered(_)) {
            return None;
        }
        let mut held = Vec::new();
        for row in 0..rows {
            for (adapter, weight) in mix_of(row).into_iter().flatten() {
                let coef = (*weight as f64 * adapter.scale) as f32;
                let factors: Vec<(&(usize, Projection), &Factors)> = match only {
                    Some(key) => adapter.factors.get_key_value(&key).into_iter().collect(),
                    None => adapter.factors.iter().collect(),
                };
                for (&(layer, projection), f) in factors {
                    let (a, b_t) = (f.a.storage_and_layout(), f.b_t.storage_and_layout());
                    held.push(HeldFactors { layer, projection, row, coef, a, b_t });
                }
            }
        }
        Some(held)
    }

    /// One decoding step (one position per row) on the CPU in f32: `base` plus every row's terms
    /// in one pass over the factors' storage, or None where that does not apply (a prompt, another
    /// device or dtype), for the matmul paths.
    fn step_on_cpu(&self, base: &Tensor, input: &Tensor, key: (usize, Projection)) -> Result<Option<Tensor>> {
        let (rows, seq, input_width) = input.dims3()?;
        let (_, _, output) = base.dims3()?;
        if seq != 1 || !input.device().is_cpu() || input.dtype() != DType::F32 || base.dtype() != DType::F32 {
            return Ok(None);
        }
        // Every factor's storage, held for the step.
        let Some(held) = self.hold_factors(rows, Some(key)) else { return Ok(None) };
        if held.is_empty() {
            return Ok(Some(base.clone()));
        }
        let mut terms = vec![Vec::new(); rows];
        for h in &held {
            let Some(term) = h.term(input_width, output) else { return Ok(None) };
            terms[h.row].push(term);
        }
        let x = input.contiguous()?;
        let (x_storage, x_layout) = x.storage_and_layout();
        let Some(x) = cpu_slice::<f32>(&x_storage, x_layout) else { return Ok(None) };
        let mut y = base.flatten_all()?.to_vec1::<f32>()?;
        lowrank::add_rows(x, input_width, &mut y, output, &terms);
        Ok(Some(Tensor::from_vec(y, (rows, 1, output), base.device())?))
    }
}

/// Σ w · s · B (A x) over `mix` for input rows `x`, or None when no adapter of the mix has
/// factors for this projection.
fn mix_delta(
    mix: &[(Arc<Adapter>, f32)],
    x: &Tensor,
    (layer, projection): (usize, Projection),
) -> Result<Option<Tensor>> {
    let mut sum: Option<Tensor> = None;
    for (adapter, weight) in mix {
        if let Some(d) = adapter.delta(x, layer, projection)? {
            let d = if *weight == 1.0 { d } else { (d * *weight as f64)? };
            sum = Some(match sum {
                Some(s) => (s + d)?,
                None => d,
            });
        }
    }
    Ok(sum)
}

/// A contiguous CPU tensor's values of type `T`, without copying; None for another dtype or
/// device.
fn cpu_slice<'a, T: candle_core::WithDType>(storage: &'a Storage, layout: &Layout) -> Option<&'a [T]> {
    let Storage::Cpu(values) = storage else { return None };
    let values = values.as_slice::<T>().ok()?;
    layout.contiguous_offsets().map(|(start, end)| &values[start..end])
}

/// Each row's factors for every projection any row's adapters touch, side by side and
/// zero-padded to the widest row, stacked into [rows, in, R] and [rows, R, out].
fn gather_rows(mixes: &[AdapterMix], device: &Device) -> Result<HashMap<(usize, Projection), RowFactors>> {
    let rows = mixes.len();
    let mut keys: Vec<(usize, Projection)> =
        mixes.iter().flatten().flat_map(|(a, _)| a.factors.keys().copied()).collect();
    keys.sort();
    keys.dedup();
    let mut stacks = HashMap::new();
    for key in keys {
        let width = mixes
            .iter()
            .map(|m| m.iter().filter(|(a, _)| a.factors.contains_key(&key)).map(|(a, _)| a.rank()).sum::<usize>())
            .max()
            .unwrap_or(0);
        let Some((first, dtype)) = mixes.iter().flatten().find_map(|(a, _)| Some((a.factors.get(&key)?, a.dtype)))
        else {
            continue;
        };
        let (input, output) = (first.a.dim(1)?, first.b_t.dim(1)?);
        let mut a_rows = Vec::with_capacity(rows);
        let mut b_rows = Vec::with_capacity(rows);
        for mix in mixes {
            let mut a_parts = Vec::new();
            let mut b_parts = Vec::new();
            let mut used = 0;
            for (adapter, weight) in mix {
                if let Some(f) = adapter.factors.get(&key) {
                    a_parts.push(widen(&f.a, dtype)?.t()?);
                    b_parts.push((widen(&f.b_t, dtype)? * (*weight as f64 * adapter.scale))?);
                    used += adapter.rank();
                }
            }
            if used < width {
                a_parts.push(Tensor::zeros((input, width - used), dtype, device)?);
                b_parts.push(Tensor::zeros((width - used, output), dtype, device)?);
            }
            a_rows.push(Tensor::cat(&a_parts, 1)?);
            b_rows.push(Tensor::cat(&b_parts, 0)?);
        }
        stacks.insert(key, RowFactors { a: Tensor::stack(&a_rows, 0)?, b: Tensor::stack(&b_rows, 0)? });
    }
    Ok(stacks)
}

/// Where an adapter comes from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdapterSource {
    /// A local directory with the PEFT files.
    Path(PathBuf),
    /// A Hugging Face hub repository, read from the local hub cache.
    Hub(String),
}

impl AdapterSource {
    /// The directory holding the adapter's files.
    pub fn resolve(&self) -> Result<PathBuf> {
        match self {
            AdapterSource::Path(dir) => Ok(dir.clone()),
            AdapterSource::Hub(repo) => {
                let cache = hf_hub::Cache::from_env().model(repo.clone());
                match (cache.get("adapter_config.json"), cache.get("adapter_model.safetensors")) {
                    (Some(config), Some(_)) => config.parent().map(Path::to_path_buf).ok_or_else(|| Error::Adapter {
                        id: repo.clone(),
                        reason: "hub cache path has no parent".into(),
                    }),
                    _ => Err(Error::Adapter {
                        id: repo.clone(),
                        reason: format!(
                            "not in the Hugging Face cache; download it with `huggingface-cli download {repo}`"
                        ),
                    }),
                }
            }
        }
    }
}
