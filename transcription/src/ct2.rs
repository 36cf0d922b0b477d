//! Import of CTranslate2 (faster-whisper) whisper models as ggml model files for whisper.cpp.
//!
//! A CTranslate2 model directory holds `model.bin` (binary format version 6: a spec name, a
//! list of named variables with shape, dtype and data, then aliases), `vocabulary.txt` (one
//! byte-level BPE token per line, by id) and `config.json`. whisper.cpp reads the format of
//! its own `convert-pt-to-ggml.py`: a magic, eleven `i32` hyper-parameters, the mel filter
//! bank, the ordinary tokens as raw bytes, then tensor records named like the PyTorch model's
//! state dict.
//!
//! [`parse`], [`map_name`], [`convert`] are pure (bytes in, bytes out); [`import`] reads the
//! directory and writes the file.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use thiserror::Error;

use crate::{mel, vocab};

/// "ggml", little-endian, as whisper.cpp's loader expects first.
pub const GGML_MAGIC: u32 = 0x6767_6d6c;

/// Why a CTranslate2 model could not be read or converted.
#[derive(Debug, Error)]
pub enum Ct2Error {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("writing the ggml model: {0}")]
    Io(io::Error),
    #[error("model.bin ends early, at byte {0}")]
    Truncated(usize),
    #[error("model.bin is binary format version {0}; only version 6 is supported")]
    Version(u32),
    #[error("model.bin holds a {0}, not a WhisperSpec")]
    Spec(String),
    #[error("variable {name}: unknown dtype code {code}")]
    DType { name: String, code: u8 },
    #[error("variable {name}: {bytes} bytes do not match shape {shape:?} of {dtype:?}")]
    Size { name: String, shape: Vec<usize>, dtype: DType, bytes: usize },
    #[error("variable {name}: {why}")]
    Unsupported { name: String, why: String },
    #[error("no variable {0} in model.bin")]
    Missing(String),
    #[error("variable {name} has shape {shape:?}; expected {expected}")]
    Shape { name: String, shape: Vec<usize>, expected: String },
    #[error("vocabulary.txt: {0}")]
    Vocabulary(#[from] vocab::BadToken),
    #[error("vocabulary.txt has no <|endoftext|> line")]
    NoEndOfText,
}

/// Element types of CTranslate2 variables, by their code in model.bin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    I8,
    I16,
    I32,
    F16,
    BF16,
}

impl DType {
    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::F32,
            1 => Self::I8,
            2 => Self::I16,
            3 => Self::I32,
            4 => Self::F16,
            5 => Self::BF16,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::I8 => 1,
            Self::I16 | Self::F16 | Self::BF16 => 2,
            Self::F32 | Self::I32 => 4,
        }
    }
}

/// One named variable of model.bin; `data` borrows the file's bytes (little-endian).
#[derive(Debug, Clone)]
pub struct Variable<'a> {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: DType,
    pub data: &'a [u8],
}

impl Variable<'_> {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value of a scalar integer variable (such as `encoder/num_heads`).
    pub fn scalar_int(&self) -> Option<i64> {
        if !self.shape.is_empty() {
            return None;
        }
        let d = self.data;
        Some(match self.dtype {
            DType::I8 => i64::from(d[0] as i8),
            DType::I16 => i64::from(i16::from_le_bytes([d[0], d[1]])),
            DType::I32 => i64::from(i32::from_le_bytes([d[0], d[1], d[2], d[3]])),
            _ => return None,
        })
    }

    /// Elements `[from, to)` (in row-major order) as f32.
    fn f32_range(&self, from: usize, to: usize) -> Result<Vec<f32>, Ct2Error> {
        let size = self.dtype.size();
        let bytes = &self.data[from * size..to * size];
        let values = match self.dtype {
            DType::F32 => bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            DType::F16 => bytes.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            DType::BF16 => bytes.chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            DType::I8 | DType::I16 | DType::I32 => {
                return Err(Ct2Error::Unsupported {
                    name: self.name.clone(),
                    why: format!(
                        "{:?} weights (a quantized model); convert from a float16 or float32 model",
                        self.dtype
                    ),
                });
            }
        };
        Ok(values)
    }
}

/// A parsed model.bin.
#[derive(Debug)]
pub struct Ct2Model<'a> {
    pub spec: String,
    pub revision: u32,
    pub variables: BTreeMap<String, Variable<'a>>,
    /// Alias name to the variable it stands for.
    pub aliases: BTreeMap<String, String>,
}

impl<'a> Ct2Model<'a> {
    pub fn get(&self, name: &str) -> Result<&Variable<'a>, Ct2Error> {
        let name = self.aliases.get(name).map_or(name, String::as_str);
        self.variables.get(name).ok_or_else(|| Ct2Error::Missing(name.to_owned()))
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Ct2Error> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or(Ct2Error::Truncated(self.at))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, Ct2Error> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Ct2Error> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, Ct2Error> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A string: u16 length including a trailing NUL, then the bytes.
    fn string(&mut self) -> Result<String, Ct2Error> {
        let n = usize::from(self.u16()?);
        let b = self.take(n)?;
        let b = b.strip_suffix(&[0]).unwrap_or(b);
        Ok(String::from_utf8_lossy(b).into_owned())
    }
}

/// Parses a CTranslate2 model.bin (binary format version 6) holding a `WhisperSpec`.
pub fn parse(bytes: &[u8]) -> Result<Ct2Model<'_>, Ct2Error> {
    let mut r = Reader { bytes, at: 0 };
    let version = r.u32()?;
    if version != 6 {
        return Err(Ct2Error::Version(version));
    }
    let spec = r.string()?;
    if spec != "WhisperSpec" {
        return Err(Ct2Error::Spec(spec));
    }
    let revision = r.u32()?;
    let count = r.u32()?;
    let mut variables = BTreeMap::new();
    for _ in 0..count {
        let name = r.string()?;
        let rank = usize::from(r.u8()?);
        let shape = (0..rank).map(|_| r.u32().map(|d| d as usize)).collect::<Result<Vec<_>, _>>()?;
        let code = r.u8()?;
        let dtype = DType::from_code(code).ok_or_else(|| Ct2Error::DType { name: name.clone(), code })?;
        let n_bytes = r.u32()? as usize;
        let data = r.take(n_bytes)?;
        let elements: usize = shape.iter().product();
        if elements * dtype.size() != n_bytes {
            return Err(Ct2Error::Size { name, shape, dtype, bytes: n_bytes });
        }
        variables.insert(name.clone(), Variable { name, shape, dtype, data });
    }
    let mut aliases = BTreeMap::new();
    // Older writers stop after the variables; version 6 always has the alias count.
    if r.at < bytes.len() {
        let n = r.u32()?;
        for _ in 0..n {
            let alias = r.string()?;
            let target = r.string()?;
            aliases.insert(alias, target);
        }
    }
    Ok(Ct2Model { spec, revision, variables, aliases })
}

/// How a tensor is stored in the ggml file (what whisper.cpp's loader allocates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// A 2-D weight matrix, `[out, in]`, as f16.
    Matrix,
    /// A vector (bias, layer-norm gain or shift) as f32.
    Vector,
    /// A convolution kernel `[out, in, width]` as f16.
    ConvKernel,
    /// A convolution bias, stored as `(n, 1)` f32 so it broadcasts over time.
    ConvBias,
    /// A positional embedding `[ctx, state]` as f32.
    Positions,
}

/// Where a CTranslate2 variable goes in the ggml file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapping {
    /// One tensor, renamed.
    One { name: String, storage: Storage },
    /// Fused row blocks of equal height, split into one tensor per name; `None` drops that block
    /// (the key projections' biases: adding a constant to every key shifts each query's scores by
    /// one constant, which softmax ignores, so whisper has none).
    Split { names: Vec<Option<String>>, storage: Storage },
    /// Not a tensor whisper.cpp loads (scalars such as `decoder/num_heads`).
    Skip,
}

fn one(name: String, storage: Storage) -> Option<Mapping> {
    Some(Mapping::One { name, storage })
}

/// `weight`/`bias` or `gamma`/`beta` to whisper's suffix and storage.
fn param(leaf: &str) -> Option<(&'static str, Storage)> {
    match leaf {
        "weight" => Some(("weight", Storage::Matrix)),
        "bias" => Some(("bias", Storage::Vector)),
        "gamma" => Some(("weight", Storage::Vector)),
        "beta" => Some(("bias", Storage::Vector)),
        _ => None,
    }
}

/// Maps a CTranslate2 WhisperSpec variable name to whisper.cpp's tensor name(s); `None` for a
/// name this converter does not know (a different model layout or a quantized model).
pub fn map_name(ct2: &str) -> Option<Mapping> {
    let parts: Vec<&str> = ct2.split('/').collect();
    match parts.as_slice() {
        [_, "num_heads" | "activation" | "alibi" | "alignment_heads" | "alignment_layer" | "pre_norm"]
        | [_, "scale_embeddings" | "start_from_zero_embedding" | "scale_outputs"] => Some(Mapping::Skip),
        ["encoder", conv @ ("conv1" | "conv2"), leaf @ ("weight" | "bias")] => {
            let storage = if *leaf == "weight" { Storage::ConvKernel } else { Storage::ConvBias };
            one(format!("encoder.{conv}.{leaf}"), storage)
        }
        [side @ ("encoder" | "decoder"), "position_encodings", "encodings"] => {
            one(format!("{side}.positional_embedding"), Storage::Positions)
        }
        ["encoder", "layer_norm", leaf] => {
            let (suffix, storage) = param(leaf)?;
            one(format!("encoder.ln_post.{suffix}"), storage)
        }
        ["decoder", "layer_norm", leaf] => {
            let (suffix, storage) = param(leaf)?;
            one(format!("decoder.ln.{suffix}"), storage)
        }
        ["decoder", "embeddings", "weight"] => one("decoder.token_embedding.weight".into(), Storage::Matrix),
        // The output projection shares the token embedding (an alias in model.bin).
        ["decoder", "projection", "weight"] => Some(Mapping::Skip),
        [side @ ("encoder" | "decoder"), layer, block, sub, leaf] => {
            let n: usize = layer.strip_prefix("layer_")?.parse().ok()?;
            let (suffix, storage) = param(leaf)?;
            let p = format!("{side}.blocks.{n}");
            let attn = |what: &str| format!("{p}.{what}.{suffix}");
            match (*block, *sub) {
                ("self_attention", "layer_norm") => one(attn("attn_ln"), storage),
                ("self_attention", "linear_0") => Some(Mapping::Split {
                    names: vec![
                        Some(attn("attn.query")),
                        (suffix == "weight").then(|| attn("attn.key")),
                        Some(attn("attn.value")),
                    ],
                    storage,
                }),
                ("self_attention", "linear_1") => one(attn("attn.out"), storage),
                ("ffn", "layer_norm") => one(attn("mlp_ln"), storage),
                ("ffn", "linear_0") => one(attn("mlp.0"), storage),
                ("ffn", "linear_1") => one(attn("mlp.2"), storage),
                ("attention", "layer_norm") if *side == "decoder" => one(attn("cross_attn_ln"), storage),
                ("attention", "linear_0") if *side == "decoder" => one(attn("cross_attn.query"), storage),
                ("attention", "linear_1") if *side == "decoder" => Some(Mapping::Split {
                    names: vec![(suffix == "weight").then(|| attn("cross_attn.key")), Some(attn("cross_attn.value"))],
                    storage,
                }),
                ("attention", "linear_2") if *side == "decoder" => one(attn("cross_attn.out"), storage),
                _ => None,
            }
        }
        _ => None,
    }
}

/// whisper.cpp's hyper-parameters, in the order of the ggml header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HParams {
    pub n_vocab: i32,
    pub n_audio_ctx: i32,
    pub n_audio_state: i32,
    pub n_audio_head: i32,
    pub n_audio_layer: i32,
    pub n_text_ctx: i32,
    pub n_text_state: i32,
    pub n_text_head: i32,
    pub n_text_layer: i32,
    pub n_mels: i32,
    /// 1: the big matrices are f16.
    pub ftype: i32,
}

impl HParams {
    fn to_array(self) -> [i32; 11] {
        [
            self.n_vocab,
            self.n_audio_ctx,
            self.n_audio_state,
            self.n_audio_head,
            self.n_audio_layer,
            self.n_text_ctx,
            self.n_text_state,
            self.n_text_head,
            self.n_text_layer,
            self.n_mels,
            self.ftype,
        ]
    }
}

fn shape2(model: &Ct2Model<'_>, name: &str) -> Result<(usize, usize), Ct2Error> {
    let v = model.get(name)?;
    match v.shape.as_slice() {
        &[a, b] => Ok((a, b)),
        _ => Err(Ct2Error::Shape { name: name.into(), shape: v.shape.clone(), expected: "2 dimensions".into() }),
    }
}

fn count_layers(model: &Ct2Model<'_>, side: &str) -> usize {
    let prefix = format!("{side}/layer_");
    let mut layers = std::collections::BTreeSet::new();
    for name in model.variables.keys() {
        if let Some(n) = name.strip_prefix(&prefix).and_then(|rest| rest.split('/').next()?.parse::<usize>().ok()) {
            layers.insert(n);
        }
    }
    layers.len()
}

fn to_i32(n: usize) -> i32 {
    i32::try_from(n).expect("model dimensions fit in i32")
}

/// Reads the hyper-parameters off the tensor shapes; the head counts from the `num_heads`
/// scalars, else `heads_hint` (config.json), else one head per 64 dimensions as whisper has.
pub fn hparams(model: &Ct2Model<'_>, heads_hint: Option<usize>) -> Result<HParams, Ct2Error> {
    let (n_vocab, n_text_state) = shape2(model, "decoder/embeddings/weight")?;
    let (n_audio_ctx, n_audio_state) = shape2(model, "encoder/position_encodings/encodings")?;
    let (n_text_ctx, _) = shape2(model, "decoder/position_encodings/encodings")?;
    let conv1 = model.get("encoder/conv1/weight")?;
    let n_mels = match conv1.shape.as_slice() {
        &[_, mels, 3] => mels,
        _ => {
            return Err(Ct2Error::Shape {
                name: conv1.name.clone(),
                shape: conv1.shape.clone(),
                expected: "[state, mels, 3]".into(),
            });
        }
    };
    let heads = |side: &str, state: usize| {
        model
            .get(&format!("{side}/num_heads"))
            .ok()
            .and_then(Variable::scalar_int)
            .map(|h| h as usize)
            .or(heads_hint)
            .unwrap_or(state / 64)
    };
    Ok(HParams {
        n_vocab: to_i32(n_vocab),
        n_audio_ctx: to_i32(n_audio_ctx),
        n_audio_state: to_i32(n_audio_state),
        n_audio_head: to_i32(heads("encoder", n_audio_state)),
        n_audio_layer: to_i32(count_layers(model, "encoder")),
        n_text_ctx: to_i32(n_text_ctx),
        n_text_state: to_i32(n_text_state),
        n_text_head: to_i32(heads("decoder", n_text_state)),
        n_text_layer: to_i32(count_layers(model, "decoder")),
        n_mels: to_i32(n_mels),
        ftype: 1,
    })
}

/// One tensor record of the ggml file.
struct Tensor {
    name: String,
    /// PyTorch order (outermost first); the file stores it reversed (ggml's `ne`).
    shape: Vec<usize>,
    f16: bool,
    data: Vec<u8>,
}

fn tensor(v: &Variable<'_>, name: String, storage: Storage, rows: (usize, usize)) -> Result<Tensor, Ct2Error> {
    let row_len: usize = v.shape.iter().skip(1).product();
    let (from, to) = rows;
    let values = v.f32_range(from * row_len, to * row_len)?;
    let height = to - from;
    let expect = |ok: bool, expected: &str| {
        if ok {
            Ok(())
        } else {
            Err(Ct2Error::Shape { name: v.name.clone(), shape: v.shape.clone(), expected: expected.into() })
        }
    };
    let (shape, f16) = match storage {
        Storage::Matrix => {
            expect(v.shape.len() == 2, "a matrix")?;
            (vec![height, v.shape[1]], true)
        }
        Storage::Vector => {
            expect(v.shape.len() == 1, "a vector")?;
            (vec![height], false)
        }
        Storage::ConvKernel => {
            expect(v.shape.len() == 3, "a convolution kernel")?;
            (v.shape.clone(), true)
        }
        Storage::ConvBias => {
            expect(v.shape.len() == 1, "a vector")?;
            (vec![height, 1], false)
        }
        Storage::Positions => {
            expect(v.shape.len() == 2, "a matrix")?;
            (v.shape.clone(), false)
        }
    };
    let data = if f16 {
        // Keep f16 sources bit for bit.
        if v.dtype == DType::F16 {
            v.data[from * row_len * 2..to * row_len * 2].to_vec()
        } else {
            values.iter().flat_map(|x| f16::from_f32(*x).to_le_bytes()).collect()
        }
    } else {
        values.iter().flat_map(|x| x.to_le_bytes()).collect()
    };
    Ok(Tensor { name, shape, f16, data })
}

fn tensors(model: &Ct2Model<'_>) -> Result<Vec<Tensor>, Ct2Error> {
    let mut out = Vec::new();
    for v in model.variables.values() {
        let mapping = map_name(&v.name).ok_or_else(|| Ct2Error::Unsupported {
            name: v.name.clone(),
            why: "not a known WhisperSpec variable".into(),
        })?;
        match mapping {
            Mapping::Skip => {}
            Mapping::One { name, storage } => {
                let rows = v.shape.first().copied().unwrap_or(1);
                out.push(tensor(v, name, storage, (0, rows))?);
            }
            Mapping::Split { names, storage } => {
                let rows = v.shape.first().copied().unwrap_or(0);
                if rows % names.len() != 0 {
                    return Err(Ct2Error::Shape {
                        name: v.name.clone(),
                        shape: v.shape.clone(),
                        expected: format!("{} fused blocks of equal height", names.len()),
                    });
                }
                let h = rows / names.len();
                for (i, name) in names.into_iter().enumerate() {
                    if let Some(name) = name {
                        out.push(tensor(v, name, storage, (i * h, (i + 1) * h))?);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Converts a parsed model and its vocabulary file to ggml bytes, written to `out`.
pub fn convert(
    model: &Ct2Model<'_>,
    vocabulary: &str,
    heads_hint: Option<usize>,
    out: &mut impl Write,
) -> Result<HParams, Ct2Error> {
    let hp = hparams(model, heads_hint)?;
    if !vocabulary.lines().any(|l| l == "<|endoftext|>") {
        return Err(Ct2Error::NoEndOfText);
    }
    let tokens = vocab::ordinary_tokens(vocabulary)?;
    let n_mels = usize::try_from(hp.n_mels).unwrap_or(0);
    let filters = mel::filter_bank(mel::SAMPLE_RATE, mel::N_FFT, n_mels);
    let tensors = tensors(model)?;

    let w = |r: io::Result<()>| r.map_err(Ct2Error::Io);
    w(out.write_all(&GGML_MAGIC.to_le_bytes()))?;
    for x in hp.to_array() {
        w(out.write_all(&x.to_le_bytes()))?;
    }
    w(out.write_all(&hp.n_mels.to_le_bytes()))?;
    w(out.write_all(&to_i32(mel::N_FFT / 2 + 1).to_le_bytes()))?;
    for x in &filters {
        w(out.write_all(&x.to_le_bytes()))?;
    }
    w(out.write_all(&to_i32(tokens.len()).to_le_bytes()))?;
    for t in &tokens {
        w(out.write_all(&u32::try_from(t.len()).expect("short token").to_le_bytes()))?;
        w(out.write_all(t))?;
    }
    for t in &tensors {
        w(out.write_all(&to_i32(t.shape.len()).to_le_bytes()))?;
        w(out.write_all(&to_i32(t.name.len()).to_le_bytes()))?;
        w(out.write_all(&i32::from(t.f16).to_le_bytes()))?;
        for &d in t.shape.iter().rev() {
            w(out.write_all(&to_i32(d).to_le_bytes()))?;
        }
        w(out.write_all(t.name.as_bytes()))?;
        w(out.write_all(&t.data))?;
    }
    Ok(hp)
}

/// What [`import`] made.
#[derive(Debug, Clone, Copy)]
pub struct Imported {
    pub hparams: HParams,
    pub bytes: u64,
}

/// Converts the CTranslate2 model in `dir` (model.bin, vocabulary.txt, optional config.json)
/// to a ggml model file at `out`. Writes to a temporary file beside `out` and renames it, so a
/// failed import leaves no half-written model.
pub fn import(dir: &Path, out: &Path) -> Result<Imported, Ct2Error> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).map_err(|source| Ct2Error::Read { path, source })
    };
    let bin = read("model.bin")?;
    let vocabulary = read("vocabulary.txt")?;
    let vocabulary = String::from_utf8_lossy(&vocabulary);
    let heads_hint = read("config.json").ok().and_then(|c| heads_from_config(&c));
    let model = parse(&bin)?;

    let tmp = out.with_extension("part");
    let write_err = |source| Ct2Error::Write { path: tmp.clone(), source };
    let file = std::fs::File::create(&tmp).map_err(write_err)?;
    let mut w = io::BufWriter::with_capacity(1 << 20, file);
    let result = convert(&model, &vocabulary, heads_hint, &mut w).and_then(|hp| {
        let file = w.into_inner().map_err(|e| write_err(e.into_error()))?;
        file.sync_all().map_err(write_err)?;
        let bytes = file.metadata().map_err(write_err)?.len();
        Ok(Imported { hparams: hp, bytes })
    });
    match result {
        Ok(imported) => {
            std::fs::rename(&tmp, out).map_err(|source| Ct2Error::Write { path: out.to_owned(), source })?;
            Ok(imported)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Some converters put the head count in config.json (`num_heads` or `encoder_attention_heads`).
fn heads_from_config(json: &[u8]) -> Option<usize> {
    let v: serde_json::Value = serde_json::from_slice(json).ok()?;
    ["num_heads", "encoder_attention_heads"].iter().find_map(|k| v.get(k)?.as_u64()).map(|h| h as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_(name: &str, storage: Storage) -> Option<Mapping> {
        Some(Mapping::One { name: name.into(), storage })
    }

    #[test]
    fn names_map_to_whisper_cpp() {
        assert_eq!(map_name("encoder/conv1/weight"), one_("encoder.conv1.weight", Storage::ConvKernel));
        assert_eq!(map_name("encoder/conv2/bias"), one_("encoder.conv2.bias", Storage::ConvBias));
        assert_eq!(
            map_name("encoder/position_encodings/encodings"),
            one_("encoder.positional_embedding", Storage::Positions)
        );
        assert_eq!(
            map_name("decoder/position_encodings/encodings"),
            one_("decoder.positional_embedding", Storage::Positions)
        );
        assert_eq!(
            map_name("encoder/layer_3/self_attention/layer_norm/gamma"),
            one_("encoder.blocks.3.attn_ln.weight", Storage::Vector)
        );
        assert_eq!(
            map_name("encoder/layer_0/self_attention/linear_1/weight"),
            one_("encoder.blocks.0.attn.out.weight", Storage::Matrix)
        );
        assert_eq!(
            map_name("encoder/layer_1/ffn/layer_norm/beta"),
            one_("encoder.blocks.1.mlp_ln.bias", Storage::Vector)
        );
        assert_eq!(map_name("decoder/layer_2/ffn/linear_0/bias"), one_("decoder.blocks.2.mlp.0.bias", Storage::Vector));
        assert_eq!(
            map_name("decoder/layer_2/ffn/linear_1/weight"),
            one_("decoder.blocks.2.mlp.2.weight", Storage::Matrix)
        );
        assert_eq!(map_name("encoder/layer_norm/gamma"), one_("encoder.ln_post.weight", Storage::Vector));
        assert_eq!(map_name("decoder/layer_norm/beta"), one_("decoder.ln.bias", Storage::Vector));
        assert_eq!(map_name("decoder/embeddings/weight"), one_("decoder.token_embedding.weight", Storage::Matrix));
        assert_eq!(
            map_name("decoder/layer_1/attention/layer_norm/gamma"),
            one_("decoder.blocks.1.cross_attn_ln.weight", Storage::Vector)
        );
        assert_eq!(
            map_name("decoder/layer_1/attention/linear_0/weight"),
            one_("decoder.blocks.1.cross_attn.query.weight", Storage::Matrix)
        );
        assert_eq!(
            map_name("decoder/layer_1/attention/linear_2/bias"),
            one_("decoder.blocks.1.cross_attn.out.bias", Storage::Vector)
        );
        for skipped in ["decoder/num_heads", "encoder/num_heads", "decoder/alibi", "decoder/projection/weight"] {
            assert_eq!(map_name(skipped), Some(Mapping::Skip), "{skipped}");
        }
        assert_eq!(map_name("encoder/layer_0/attention/linear_0/weight"), None, "no cross-attention in the encoder");
        assert_eq!(map_name("decoder/layer_0/self_attention/linear_0/weight_scale"), None);
        assert_eq!(map_name("something/else"), None);
    }

    #[test]
    fn fused_projections_split_and_key_biases_drop() {
        let s = |x: &str| Some(x.to_owned());
        assert_eq!(
            map_name("decoder/layer_0/self_attention/linear_0/weight"),
            Some(Mapping::Split {
                names: vec![
                    s("decoder.blocks.0.attn.query.weight"),
                    s("decoder.blocks.0.attn.key.weight"),
                    s("decoder.blocks.0.attn.value.weight")
                ],
                storage: Storage::Matrix
            })
        );
        assert_eq!(
            map_name("encoder/layer_5/self_attention/linear_0/bias"),
            Some(Mapping::Split {
                names: vec![s("encoder.blocks.5.attn.query.bias"), None, s("encoder.blocks.5.attn.value.bias")],
                storage: Storage::Vector
            })
        );
        assert_eq!(
            map_name("decoder/layer_3/attention/linear_1/bias"),
            Some(Mapping::Split {
                names: vec![None, s("decoder.blocks.3.cross_attn.value.bias")],
                storage: Storage::Vector
            })
        );
    }

    /// A miniature model.bin: version 6, WhisperSpec, three variables, one alias.
    fn tiny_model_bin() -> Vec<u8> {
        let mut b = Vec::new();
        let string = |b: &mut Vec<u8>, s: &str| {
            b.extend_from_slice(&((s.len() + 1) as u16).to_le_bytes());
            b.extend_from_slice(s.as_bytes());
            b.push(0);
        };
        b.extend_from_slice(&6u32.to_le_bytes());
        string(&mut b, "WhisperSpec");
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&3u32.to_le_bytes());
        // decoder/num_heads: int16 scalar 6
        string(&mut b, "decoder/num_heads");
        b.push(0);
        b.push(2);
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&6i16.to_le_bytes());
        // encoder/layer_0/self_attention/linear_0/bias: f16 [6] = 0..6
        string(&mut b, "encoder/layer_0/self_attention/linear_0/bias");
        b.push(1);
        b.extend_from_slice(&6u32.to_le_bytes());
        b.push(4);
        b.extend_from_slice(&12u32.to_le_bytes());
        for i in 0..6 {
            b.extend_from_slice(&f16::from_f32(i as f32).to_le_bytes());
        }
        // encoder/layer_0/self_attention/linear_0/weight: f32 [6, 1]
        string(&mut b, "encoder/layer_0/self_attention/linear_0/weight");
        b.push(2);
        b.extend_from_slice(&6u32.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        b.push(0);
        b.extend_from_slice(&24u32.to_le_bytes());
        for i in 0..6 {
            b.extend_from_slice(&(i as f32 * 0.5).to_le_bytes());
        }
        b.extend_from_slice(&1u32.to_le_bytes());
        string(&mut b, "decoder/projection/weight");
        string(&mut b, "decoder/embeddings/weight");
        b
    }

    #[test]
    fn parses_model_bin_and_splits_tensors() {
        let bytes = tiny_model_bin();
        let model = parse(&bytes).unwrap();
        assert_eq!((model.spec.as_str(), model.revision), ("WhisperSpec", 3));
        assert_eq!(model.get("decoder/num_heads").unwrap().scalar_int(), Some(6));
        assert_eq!(model.aliases["decoder/projection/weight"], "decoder/embeddings/weight");
        let t = tensors(&model).unwrap();
        let names: Vec<&str> = t.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "encoder.blocks.0.attn.query.bias",
                "encoder.blocks.0.attn.value.bias",
                "encoder.blocks.0.attn.query.weight",
                "encoder.blocks.0.attn.key.weight",
                "encoder.blocks.0.attn.value.weight"
            ]
        );
        // Biases become f32 (query rows 0..2, value rows 4..6); weights f16.
        let f32s = |d: &[u8]| d.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect::<Vec<_>>();
        assert_eq!(f32s(&t[0].data), [0.0, 1.0]);
        assert_eq!(f32s(&t[1].data), [4.0, 5.0]);
        assert!(!t[0].f16 && t[2].f16);
        assert_eq!(t[3].shape, [2, 1]);
        let f16s = |d: &[u8]| d.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect::<Vec<_>>();
        assert_eq!(f16s(&t[3].data), [1.0, 1.5]);
    }

    #[test]
    fn truncated_or_foreign_files_are_refused() {
        let bytes = tiny_model_bin();
        assert!(matches!(parse(&bytes[..40]), Err(Ct2Error::Truncated(_))));
        let mut v5 = bytes.clone();
        v5[0] = 5;
        assert!(matches!(parse(&v5), Err(Ct2Error::Version(5))));
    }
}
