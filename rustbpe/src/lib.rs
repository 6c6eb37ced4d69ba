//! rustbpe: a fast byte-level BPE tokenizer trainer, as a Python extension (PyO3).
//!
//! Built into the nanochat-cpu wheel by maturin (`pip install --no-build-isolation -e .` at the repo
//! root); Rust unit tests: `cd rustbpe && cargo test`; Python tests: `pytest tests/test_rustbpe.py`.
//!
//! ```python
//! import rustbpe
//! tok = rustbpe.Tokenizer()
//! tok.train_from_iterator(iter(texts), vocab_size=4096)    # texts: an iterable of str
//! ranks = tok.get_mergeable_ranks()   # [(b"\x00", 0), ..., (b"\xff", 255), (b" t", 256), ...]
//! ids = tok.encode("hello world"); tok.decode(ids) == b"hello world"
//! rustbpe.split_text("it's 2024!")  # ['it', "'s", ' ', '20', '24', '!'], the pre-tokenization
//! ```
//!
//! Special tokens are not rustbpe's business: the caller (nanochat/tokenizer.py) adds them after the
//! learned tokens when it builds the tiktoken encoding.
//!
//! Layout: `split` (pre-tokenization regex), `train` (the trainer), `codec` (encode/decode); this
//! file only converts between Python and Rust and releases the GIL around the heavy work.

pub mod codec;
pub mod split;
pub mod train;

use ahash::AHashMap;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
use rayon::prelude::*;

use codec::Vocab;
use split::{Splitter, DEFAULT_PATTERN};

/// Byte-level BPE tokenizer: train it on text, then read its mergeable ranks or encode with it.
/// A new Tokenizer has the default split pattern and only the 256 byte tokens.
#[pyclass(module = "rustbpe")]
pub struct Tokenizer {
    splitter: Splitter,
    vocab: Vocab,
}

impl Tokenizer {
    fn encode_str(&self, text: &str) -> Result<Vec<u32>, String> {
        let mut ids = Vec::with_capacity(text.len() / 3);
        self.splitter.for_each_chunk(text, |chunk| self.vocab.encode_chunk(chunk.as_bytes(), &mut ids))?;
        Ok(ids)
    }
}

#[pymethods]
impl Tokenizer {
    #[new]
    fn new() -> Self {
        Tokenizer { splitter: Splitter::new(DEFAULT_PATTERN).expect("default pattern compiles"), vocab: Vocab::new(Vec::new()) }
    }

    /// Learn vocab_size - 256 merges from an iterable of str (replaces any earlier training).
    ///
    /// Texts are pulled buffer_size at a time while holding the GIL; each buffer is then split and
    /// counted in parallel with the GIL released. pattern=None uses the default GPT-4-style split
    /// (numbers in groups of 1-2 digits). Raises ValueError for vocab_size < 256, buffer_size < 1,
    /// an invalid pattern, or text too small to supply vocab_size - 256 merges (the message says
    /// the largest reachable vocab_size); TypeError if an item is not a str. On error the tokenizer
    /// keeps its previous state.
    #[args(buffer_size = "8192", pattern = "None")]
    #[pyo3(text_signature = "($self, iterator, vocab_size, buffer_size=8192, pattern=None)")]
    fn train_from_iterator(
        &mut self,
        py: Python<'_>,
        iterator: &PyAny,
        vocab_size: i64,
        buffer_size: i64,
        pattern: Option<&str>,
    ) -> PyResult<()> {
        if vocab_size < 256 {
            return Err(PyValueError::new_err(format!(
                "vocab_size must be at least 256 (the single bytes), got {vocab_size}"
            )));
        }
        if vocab_size > u32::MAX as i64 {
            return Err(PyValueError::new_err(format!("vocab_size={vocab_size} is too large (ids are 32-bit)")));
        }
        if buffer_size < 1 {
            return Err(PyValueError::new_err(format!("buffer_size must be at least 1, got {buffer_size}")));
        }
        let splitter = Splitter::new(pattern.unwrap_or(DEFAULT_PATTERN)).map_err(PyValueError::new_err)?;
        let mut items = iterator.iter().map_err(|_| {
            PyTypeError::new_err(format!(
                "train_from_iterator expects an iterable of str, got {}",
                type_name(iterator)
            ))
        })?;

        // Pull texts in buffers; count each buffer's chunks in parallel without the GIL.
        let mut counts: AHashMap<String, i64> = AHashMap::new();
        let mut buffer: Vec<String> = Vec::with_capacity(buffer_size as usize);
        let mut seen = 0usize;
        let mut count_buffer = |buffer: &mut Vec<String>| {
            let result = py.allow_threads(|| train::count_chunks(buffer, &splitter, &mut counts));
            buffer.clear();
            result.map_err(PyValueError::new_err)?;
            py.check_signals() // let Ctrl-C stop a long training between buffers
        };
        loop {
            // pyo3 0.17 keeps every object borrowed from Python alive until its GIL pool ends; a pool per item
            // frees each text as soon as it is copied, so memory stays bounded by one buffer, not the corpus.
            // Safety: nothing borrowed inside this iteration outlives it.
            let _pool = unsafe { py.new_pool() };
            let item = match items.next() {
                Some(item) => item?,
                None => break,
            };
            let text = item.downcast::<PyString>().map_err(|_| {
                PyTypeError::new_err(format!(
                    "train_from_iterator expects str items, item {seen} is {}",
                    type_name(item)
                ))
            })?;
            buffer.push(text.to_str()?.to_owned());
            seen += 1;
            if buffer.len() == buffer_size as usize {
                count_buffer(&mut buffer)?;
            }
        }
        count_buffer(&mut buffer)?;

        let merges = py
            .allow_threads(|| {
                let (words, n): (Vec<Vec<u8>>, Vec<i64>) =
                    counts.into_iter().map(|(chunk, c)| (chunk.into_bytes(), c)).unzip();
                train::train(&words, &n, vocab_size as usize)
            })
            .map_err(|e| match seen {
                0 => PyValueError::new_err(format!("{e} (the corpus is empty: the iterator gave no texts)")),
                _ => PyValueError::new_err(format!("{e} ({seen} texts were given)")),
            })?;
        self.splitter = splitter;
        self.vocab = Vocab::new(merges);
        Ok(())
    }

    /// The split regex this tokenizer was trained with.
    #[pyo3(text_signature = "($self)")]
    fn get_pattern(&self) -> String {
        self.splitter.pattern().to_string()
    }

    /// Number of tokens: 256 bytes + learned merges.
    #[getter]
    fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// All tokens as a list of (token bytes, rank) with rank = token id: the 256 single bytes
    /// first, then one per merge in the order learned. dict(...) of it is tiktoken's mergeable_ranks.
    #[pyo3(text_signature = "($self)")]
    fn get_mergeable_ranks<'py>(&self, py: Python<'py>) -> Vec<(&'py PyBytes, u32)> {
        (0..self.vocab.len() as u32).map(|id| (PyBytes::new(py, self.vocab.token_bytes(id)), id)).collect()
    }

    /// The merges in the order learned, as (left id, right id); merge i creates token 256 + i.
    #[pyo3(text_signature = "($self)")]
    fn get_merges(&self) -> Vec<(u32, u32)> {
        self.vocab.merges().to_vec()
    }

    /// Token ids of text (split with the pattern, then BPE within each chunk; no special tokens).
    #[pyo3(text_signature = "($self, text)")]
    fn encode(&self, py: Python<'_>, text: &str) -> PyResult<Vec<u32>> {
        py.allow_threads(|| self.encode_str(text)).map_err(PyValueError::new_err)
    }

    /// encode() of every text, in parallel over texts with the GIL released.
    #[pyo3(text_signature = "($self, texts)")]
    fn batch_encode(&self, py: Python<'_>, texts: Vec<String>) -> PyResult<Vec<Vec<u32>>> {
        py.allow_threads(|| texts.par_iter().map(|t| self.encode_str(t)).collect::<Result<Vec<_>, _>>())
            .map_err(PyValueError::new_err)
    }

    /// The raw bytes of the ids, concatenated. Returns bytes, not str, because a slice of ids
    /// can end inside a multi-byte UTF-8 character; use .decode("utf-8", errors="replace").
    /// Raises ValueError for an id outside [0, vocab_size).
    #[pyo3(text_signature = "($self, ids)")]
    fn decode<'py>(&self, py: Python<'py>, ids: Vec<i64>) -> PyResult<&'py PyBytes> {
        let mut out = Vec::with_capacity(ids.len() * 4);
        for (i, &id) in ids.iter().enumerate() {
            if id < 0 || id >= self.vocab.len() as i64 {
                return Err(PyValueError::new_err(format!(
                    "decode: ids[{i}] = {id} is not a token id (vocab_size is {})",
                    self.vocab.len()
                )));
            }
            out.extend_from_slice(self.vocab.token_bytes(id as u32));
        }
        Ok(PyBytes::new(py, &out))
    }

    fn __repr__(&self) -> String {
        format!("rustbpe.Tokenizer(vocab_size={}, pattern={:?})", self.vocab.len(), self.splitter.pattern())
    }
}

/// The chunks of text under pattern (None: the default pattern), i.e. what Python's
/// `regex.findall(pattern, text)` returns; training and encode() never merge across chunks.
#[pyfunction]
#[pyo3(text_signature = "(text, pattern=None)")]
fn split_text(py: Python<'_>, text: &str, pattern: Option<&str>) -> PyResult<Vec<String>> {
    let splitter = Splitter::new(pattern.unwrap_or(DEFAULT_PATTERN)).map_err(PyValueError::new_err)?;
    let chunks = py.allow_threads(|| splitter.split(text).map(|c| c.into_iter().map(str::to_owned).collect()));
    chunks.map_err(PyValueError::new_err)
}

fn type_name(obj: &PyAny) -> String {
    obj.get_type().name().map(str::to_string).unwrap_or_else(|_| "an unknown type".into())
}

#[pymodule]
fn rustbpe(_py: Python<'_>, m: &PyModule) -> PyResult<()> {
    m.add_class::<Tokenizer>()?;
    m.add_function(wrap_pyfunction!(split_text, m)?)?;
    m.add("DEFAULT_PATTERN", DEFAULT_PATTERN)?;
    Ok(())
}
