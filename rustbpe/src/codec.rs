//! Encoding and decoding with learned merges, pure Rust (no Python).
//!
//! A chunk is encoded the way training rewrote it: start from its bytes and keep applying the
//! earliest-learned merge present in it (all its occurrences, left to right) until none applies.
//! This gives the same ids as tiktoken with the same mergeable ranks. Run the unit tests with
//! `cd rustbpe && cargo test`.

use ahash::AHashMap;

use crate::train::Pair;

/// The learned vocabulary: 256 single bytes, then one token per merge.
#[derive(Clone, Debug)]
pub struct Vocab {
    merges: Vec<Pair>,
    /// pair -> id of the token it merges into (ids grow with merge order, so smaller = earlier).
    merge_id: AHashMap<Pair, u32>,
    /// the bytes of every token id
    token_bytes: Vec<Vec<u8>>,
}

impl Vocab {
    pub fn new(merges: Vec<Pair>) -> Self {
        let mut token_bytes: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        let mut merge_id = AHashMap::with_capacity(merges.len());
        for (i, &(a, b)) in merges.iter().enumerate() {
            let mut bytes = token_bytes[a as usize].clone();
            bytes.extend_from_slice(&token_bytes[b as usize]);
            token_bytes.push(bytes);
            merge_id.insert((a, b), 256 + i as u32);
        }
        Vocab { merges, merge_id, token_bytes }
    }

    pub fn merges(&self) -> &[Pair] {
        &self.merges
    }

    pub fn len(&self) -> usize {
        self.token_bytes.len()
    }

    /// The raw bytes of token `id` (ids are < `len()`).
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        &self.token_bytes[id as usize]
    }

    /// Append the ids of one chunk to `out`.
    pub fn encode_chunk(&self, chunk: &[u8], out: &mut Vec<u32>) {
        let mut ids: Vec<u32> = chunk.iter().map(|&b| b as u32).collect();
        while ids.len() >= 2 {
            // The earliest merge present in the chunk.
            let best = ids
                .windows(2)
                .filter_map(|w| self.merge_id.get(&(w[0], w[1])).map(|&id| (id, (w[0], w[1]))))
                .min();
            let Some((new_id, (a, b))) = best else { break };
            let (mut r, mut w) = (0, 0);
            while r < ids.len() {
                if r + 1 < ids.len() && ids[r] == a && ids[r + 1] == b {
                    ids[w] = new_id;
                    r += 2;
                } else {
                    ids[w] = ids[r];
                    r += 1;
                }
                w += 1;
            }
            ids.truncate(w);
        }
        out.extend_from_slice(&ids);
    }

    /// The bytes of a sequence of ids, or the first id that is not in the vocabulary.
    pub fn decode(&self, ids: &[u32]) -> Result<Vec<u8>, u32> {
        let mut out = Vec::new();
        for &id in ids {
            out.extend_from_slice(self.token_bytes.get(id as usize).ok_or(id)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::split::{Splitter, DEFAULT_PATTERN};
    use crate::train::train;

    #[test]
    fn token_bytes_follow_the_merges() {
        let v = Vocab::new(vec![(104, 105), (256, 33)]); // "hi", "hi!"
        assert_eq!(v.len(), 258);
        assert_eq!(v.token_bytes(257), b"hi!");
        let mut out = vec![];
        v.encode_chunk(b"hi!hi", &mut out);
        assert_eq!(out, vec![257, 256]);
        assert_eq!(v.decode(&out).unwrap(), b"hi!hi");
        assert_eq!(v.decode(&[1, 258]), Err(258));
    }

    #[test]
    fn trained_vocab_round_trips_and_compresses() {
        let text = "the quick brown fox jumps over the lazy dog; the dog sleeps. Ünïcödé 日本語 🙂 123456\n";
        let sp = Splitter::new(DEFAULT_PATTERN).unwrap();
        let mut counts = AHashMap::new();
        crate::train::count_chunks(&[text.repeat(3)], &sp, &mut counts).unwrap();
        let (words, n): (Vec<Vec<u8>>, Vec<i64>) = counts.into_iter().map(|(k, v)| (k.into_bytes(), v)).unzip();
        let vocab = Vocab::new(train(&words, &n, 300).unwrap());
        let mut ids = vec![];
        for chunk in sp.split(text).unwrap() {
            vocab.encode_chunk(chunk.as_bytes(), &mut ids);
        }
        assert_eq!(vocab.decode(&ids).unwrap(), text.as_bytes());
        assert!(ids.len() < text.len() / 2, "{} ids for {} bytes", ids.len(), text.len());
        // Unseen text still round-trips: every byte is a token.
        let mut ids = vec![];
        vocab.encode_chunk("zebra ✓".as_bytes(), &mut ids);
        assert_eq!(vocab.decode(&ids).unwrap(), "zebra ✓".as_bytes());
    }
}
