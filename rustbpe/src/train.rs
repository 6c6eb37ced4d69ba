//! The BPE training core, pure Rust (no Python): count chunks, then merge pairs greedily.
//!
//! Algorithm (byte-level BPE, as in GPT-2/GPT-4 style tokenizers):
//! 1. Split every text into chunks with the split regex and count each distinct chunk ("word").
//! 2. Count every adjacent pair of ids over all words, weighted by the word's count, and remember
//!    which words each pair occurs in.
//! 3. Repeat: take the most frequent pair (ties: the smaller pair `(a, b)` wins), give it the next
//!    id, rewrite only the words that contain it and update the pair counts by the difference.
//!
//! The "most frequent pair" comes from a max-heap whose entries may be stale: a pair's count only
//! ever goes down after it is pushed (the only pairs that gain counts are the brand-new pairs that
//! contain the new id, and those are pushed fresh). So when the top entry is out of date we push it
//! back with its current count and look again; an up-to-date top is the true maximum.
//! Run the unit tests with `cd rustbpe && cargo test`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;

use ahash::AHashMap;
use rayon::prelude::*;

use crate::split::Splitter;

/// Two adjacent token ids.
pub type Pair = (u32, u32);

/// Why training could not produce the requested vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrainError {
    /// Byte-level BPE always has the 256 single-byte tokens.
    VocabTooSmall { vocab_size: usize },
    /// The corpus ran out of pairs to merge before reaching `vocab_size`.
    CorpusTooSmall { vocab_size: usize, reachable: usize },
}

impl fmt::Display for TrainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrainError::VocabTooSmall { vocab_size } => {
                write!(f, "vocab_size must be at least 256 (the single bytes), got {vocab_size}")
            }
            TrainError::CorpusTooSmall { vocab_size, reachable } => write!(
                f,
                "the training text is too small for vocab_size={vocab_size}: it only has pairs for \
                 {reachable} tokens (256 bytes + {} merges); give more text or a vocab_size <= {reachable}",
                reachable - 256
            ),
        }
    }
}

/// Count the distinct chunks of `texts` (in parallel) and add them to `counts`.
/// Chunks are borrowed during the parallel pass; a chunk is copied only when it is new to `counts`.
pub fn count_chunks(texts: &[String], splitter: &Splitter, counts: &mut AHashMap<String, i64>) -> Result<(), String> {
    let local = texts
        .par_iter()
        // Each rayon task counts its share of texts into its own map (with its own splitter) ...
        .try_fold(
            || (splitter.clone(), AHashMap::<&str, i64>::new()),
            |(sp, mut m), text| {
                sp.for_each_chunk(text, |c| *m.entry(c).or_insert(0) += 1)?;
                Ok::<_, String>((sp, m))
            },
        )
        .map(|r| r.map(|(_, m)| m))
        // ... then the maps are added up pairwise.
        .try_reduce(AHashMap::new, |a, b| {
            // Fold the smaller map into the bigger one.
            let (mut big, small) = if a.len() >= b.len() { (a, b) } else { (b, a) };
            for (k, v) in small {
                *big.entry(k).or_insert(0) += v;
            }
            Ok(big)
        })?;
    for (chunk, n) in local {
        match counts.get_mut(chunk) {
            Some(c) => *c += n,
            None => {
                counts.insert(chunk.to_owned(), n);
            }
        }
    }
    Ok(())
}

/// What we know about one pair: its total count (weighted by word counts) and the words it
/// occurs in. The word list may hold words that no longer contain the pair; merging those is a no-op.
#[derive(Default)]
struct PairStat {
    count: i64,
    words: Vec<u32>,
}

/// Rewrite `ids` in place, replacing each occurrence of `pair` (left to right, non-overlapping)
/// by `new_id`, and report each change of the word's adjacent pairs as `delta(pair, +1 or -1)`.
/// The merged pair itself is reported too (it always ends at zero).
fn merge_word(ids: &mut Vec<u32>, pair: Pair, new_id: u32, mut delta: impl FnMut(Pair, i64)) {
    let (a, b) = pair;
    let n = ids.len();
    let (mut r, mut w) = (0, 0); // read and write positions; w <= r, so ids[r..] is still original
    while r < n {
        if r + 1 < n && ids[r] == a && ids[r + 1] == b {
            delta(pair, -1);
            if w > 0 {
                let x = ids[w - 1]; // already rewritten: may be new_id itself
                delta((x, a), -1);
                delta((x, new_id), 1);
            }
            if r + 2 < n {
                let y = ids[r + 2];
                delta((b, y), -1);
                delta((new_id, y), 1);
            }
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

/// Learn `vocab_size - 256` merges from `words` (byte strings) seen `counts[i]` times each.
/// Returns the merges in order: merge `i` creates token id `256 + i`.
/// On equal counts the smaller pair wins, so the result does not depend on the order of `words`.
pub fn train(words: &[Vec<u8>], counts: &[i64], vocab_size: usize) -> Result<Vec<Pair>, TrainError> {
    if vocab_size < 256 {
        return Err(TrainError::VocabTooSmall { vocab_size });
    }
    let num_merges = vocab_size - 256;
    // Words of one byte have no pairs: leave them out.
    let (mut ids, counts): (Vec<Vec<u32>>, Vec<i64>) = words
        .iter()
        .zip(counts)
        .filter(|(w, _)| w.len() >= 2)
        .map(|(w, &c)| (w.iter().map(|&b| b as u32).collect(), c))
        .unzip();

    // Initial pair counts and pair -> words index.
    let mut stats: AHashMap<Pair, PairStat> = AHashMap::new();
    for (i, word) in ids.iter().enumerate() {
        let i = i as u32;
        for win in word.windows(2) {
            let st = stats.entry((win[0], win[1])).or_default();
            st.count += counts[i as usize];
            if st.words.last() != Some(&i) {
                st.words.push(i);
            }
        }
    }
    // Max-heap on (count, smaller pair first).
    let mut heap: BinaryHeap<(i64, Reverse<Pair>)> =
        stats.iter().filter(|(_, s)| s.count > 0).map(|(&p, s)| (s.count, Reverse(p))).collect();

    let mut merges: Vec<Pair> = Vec::with_capacity(num_merges);
    let mut fresh: Vec<Pair> = Vec::new(); // pairs created by the current merge
    while merges.len() < num_merges {
        let Some((count, Reverse(pair))) = heap.pop() else {
            return Err(TrainError::CorpusTooSmall { vocab_size, reachable: 256 + merges.len() });
        };
        let current = stats.get(&pair).map_or(0, |s| s.count);
        if count != current {
            // Stale entry: its count went down since it was pushed. Re-queue with the true count.
            if current > 0 {
                heap.push((current, Reverse(pair)));
            }
            continue;
        }
        let new_id = (256 + merges.len()) as u32;
        merges.push(pair);
        let merged = stats.remove(&pair).expect("popped pair has stats");
        for &wi in &merged.words {
            let c = counts[wi as usize];
            merge_word(&mut ids[wi as usize], pair, new_id, |p, d| {
                if p == pair {
                    return; // removed from stats already
                }
                let st = stats.entry(p).or_default();
                st.count += d * c;
                if d > 0 && st.words.last() != Some(&wi) {
                    if st.words.is_empty() {
                        fresh.push(p);
                    }
                    st.words.push(wi);
                }
            });
        }
        for p in fresh.drain(..) {
            let c = stats[&p].count;
            if c > 0 {
                heap.push((c, Reverse(p)));
            }
        }
    }
    Ok(merges)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn train_words(words: &[(&str, i64)], vocab_size: usize) -> Result<Vec<Pair>, TrainError> {
        let w: Vec<Vec<u8>> = words.iter().map(|(s, _)| s.as_bytes().to_vec()).collect();
        let c: Vec<i64> = words.iter().map(|&(_, n)| n).collect();
        train(&w, &c, vocab_size)
    }

    /// Textbook BPE: recount every pair from scratch after each merge.
    fn naive_train(words: &[(&str, i64)], vocab_size: usize) -> Vec<Pair> {
        let mut ids: Vec<(Vec<u32>, i64)> =
            words.iter().map(|(s, n)| (s.bytes().map(u32::from).collect(), *n)).collect();
        let mut merges = Vec::new();
        for new_id in 256..vocab_size as u32 {
            let mut counts: std::collections::BTreeMap<Pair, i64> = Default::default();
            for (w, n) in &ids {
                for p in w.windows(2) {
                    *counts.entry((p[0], p[1])).or_default() += n;
                }
            }
            // max count; BTreeMap iterates pairs ascending, so `>` keeps the smallest pair on ties
            let mut best: Option<(Pair, i64)> = None;
            for (&p, &c) in &counts {
                if best.map_or(true, |(_, bc)| c > bc) {
                    best = Some((p, c));
                }
            }
            let Some((pair, _)) = best else { break };
            merges.push(pair);
            for (w, _) in ids.iter_mut() {
                merge_word(w, pair, new_id, |_, _| {});
            }
        }
        merges
    }

    #[test]
    fn merges_on_a_tiny_corpus() {
        // "aaab" x2, "ab" x3: pairs (a,a)=4, (a,b)=5 -> (a,b) first.
        let m = train_words(&[("aaab", 2), ("ab", 3)], 258).unwrap();
        let (a, b) = (b'a' as u32, b'b' as u32);
        assert_eq!(m[0], (a, b));
        // After it: "aa<ab>" x2 gives (a,a)=2, (a,256)=2 -> tie, smaller pair (97,97) wins.
        assert_eq!(m[1], (a, a));
    }

    #[test]
    fn ties_go_to_the_smaller_pair_whatever_the_input_order() {
        let fwd = train_words(&[("xy", 1), ("cd", 1), ("ab", 1)], 259).unwrap();
        let rev = train_words(&[("ab", 1), ("cd", 1), ("xy", 1)], 259).unwrap();
        let p = |s: &str| (s.as_bytes()[0] as u32, s.as_bytes()[1] as u32);
        assert_eq!(fwd, vec![p("ab"), p("cd"), p("xy")]);
        assert_eq!(fwd, rev);
    }

    #[test]
    fn overlapping_pairs_are_counted_and_merged_left_to_right() {
        let mut w = vec![1, 1, 1, 1, 1];
        let mut net: AHashMap<Pair, i64> = AHashMap::new();
        merge_word(&mut w, (1, 1), 9, |p, d| *net.entry(p).or_default() += d);
        assert_eq!(w, vec![9, 9, 1]);
        net.retain(|_, d| *d != 0);
        // before: (1,1)x4; after: (9,9)x1, (9,1)x1
        let want: AHashMap<Pair, i64> = [((1, 1), -4), ((9, 9), 1), ((9, 1), 1)].into_iter().collect();
        assert_eq!(net, want);
    }

    #[test]
    fn incremental_counts_match_recounting_from_scratch() {
        // A small pseudo-random corpus over a tiny alphabet makes many ties and overlapping pairs.
        let mut seed = 12345u64;
        let mut rnd = move |n: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        let mut owned: Vec<(String, i64)> = Vec::new();
        for _ in 0..300 {
            let len = 1 + rnd(12) as usize;
            let s: String = (0..len).map(|_| (b'a' + rnd(4) as u8) as char).collect();
            owned.push((s, 1 + rnd(5) as i64));
        }
        let words: Vec<(&str, i64)> = owned.iter().map(|(s, n)| (s.as_str(), *n)).collect();
        let fast = train_words(&words, 256 + 60).unwrap();
        assert_eq!(fast, naive_train(&words, 256 + 60));
    }

    #[test]
    fn bad_sizes_are_errors() {
        assert_eq!(train_words(&[("ab", 1)], 255), Err(TrainError::VocabTooSmall { vocab_size: 255 }));
        assert_eq!(train_words(&[("ab", 1)], 256), Ok(vec![]));
        let err = train_words(&[("abc", 1)], 300).unwrap_err();
        assert_eq!(err, TrainError::CorpusTooSmall { vocab_size: 300, reachable: 258 });
        assert!(err.to_string().contains("vocab_size <= 258"));
        assert!(train_words(&[], 257).is_err());
    }

    #[test]
    fn chunk_counting_is_parallel_and_exact() {
        let sp = Splitter::new(crate::split::DEFAULT_PATTERN).unwrap();
        let texts: Vec<String> = (0..100).map(|i| format!("the cat {} the", i % 3)).collect();
        let mut counts = AHashMap::new();
        count_chunks(&texts, &sp, &mut counts).unwrap();
        count_chunks(&texts[..10], &sp, &mut counts).unwrap();
        assert_eq!(counts["the"], 110);
        assert_eq!(counts[" the"], 110);
        assert_eq!(counts[" cat"], 110);
        assert_eq!(counts["0"], 34 + 4);
        assert_eq!(counts.len(), 7); // the, " cat", " ", "0", "1", "2", " the"
    }
}
