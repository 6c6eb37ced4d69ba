//! Pre-tokenization: cut text into chunks with the split regex; BPE never merges across chunks.
//!
//! The pattern is compiled with fancy-regex, which supports the possessive quantifiers (`?+`, `++`)
//! and the look-ahead `(?!\S)` of the GPT-4-style pattern and follows the same leftmost-first
//! semantics as Python's `regex` module. The default pattern also has a hand-written matcher (below).
//! Run the unit tests with `cd rustbpe && cargo test`.

use std::sync::OnceLock;

use fancy_regex::Regex;

/// GPT-4 split pattern with numbers grouped by 1-2 digits (GPT-4 uses 1-3): smaller vocabularies
/// waste fewer ids on 3-digit numbers.
pub const DEFAULT_PATTERN: &str = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+";

/// A compiled split pattern. The GPT-4 family of patterns (DEFAULT_PATTERN with numbers in
/// groups of 1 to 3 digits) runs on a hand-written matcher that is several times faster than the
/// regex engine and gives the same chunks (checked by the tests); any other pattern runs on
/// fancy-regex. Cloning gives the clone its own regex match cache (no contention between threads).
#[derive(Clone, Debug)]
pub struct Splitter {
    pattern: String,
    engine: Engine,
}

#[derive(Clone, Debug)]
enum Engine {
    /// DEFAULT_PATTERN with `\p{N}{1,max_digits}`.
    Gpt4 { max_digits: usize },
    Regex(Regex),
}

impl Splitter {
    /// Compile `pattern`; the error message says what is wrong with it.
    pub fn new(pattern: &str) -> Result<Self, String> {
        let engine = match (1..=3).find(|&k| pattern == DEFAULT_PATTERN.replace(r"\p{N}{1,2}", &format!(r"\p{{N}}{{1,{k}}}"))) {
            Some(max_digits) => Engine::Gpt4 { max_digits },
            None => Engine::Regex(Regex::new(pattern).map_err(|e| format!("invalid split pattern {pattern:?}: {e}"))?),
        };
        Ok(Splitter { pattern: pattern.to_string(), engine })
    }

    /// The same pattern, always run by fancy-regex (to test the hand-written matcher against).
    pub fn new_regex_only(pattern: &str) -> Result<Self, String> {
        let regex = Regex::new(pattern).map_err(|e| format!("invalid split pattern {pattern:?}: {e}"))?;
        Ok(Splitter { pattern: pattern.to_string(), engine: Engine::Regex(regex) })
    }

    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Call `f` on every chunk of `text`, in order. Fails only if the regex engine gives up
    /// (fancy-regex has a backtracking limit); the text between matches is skipped, like `re.findall`.
    pub fn for_each_chunk<'t>(&self, text: &'t str, mut f: impl FnMut(&'t str)) -> Result<(), String> {
        match &self.engine {
            Engine::Gpt4 { max_digits } => {
                let classes = CharClasses::get();
                let mut start = 0;
                while start < text.len() {
                    let end = gpt4_match_end(text, start, *max_digits, classes);
                    f(&text[start..end]);
                    start = end;
                }
            }
            Engine::Regex(regex) => {
                for m in regex.find_iter(text) {
                    let m = m.map_err(|e| format!("split pattern failed on a text of {} bytes: {e}", text.len()))?;
                    f(m.as_str());
                }
            }
        }
        Ok(())
    }

    /// All chunks of `text` (what `regex.findall(pattern, text)` returns in Python).
    pub fn split<'t>(&self, text: &'t str) -> Result<Vec<&'t str>, String> {
        let mut chunks = Vec::new();
        self.for_each_chunk(text, |c| chunks.push(c))?;
        Ok(chunks)
    }
}

const LETTER: u8 = 1; // \p{L}
const NUMBER: u8 = 2; // \p{N}
const SPACE: u8 = 4; // \s

/// The class bits of every code point, taken from the regex engine itself so that the
/// hand-written matcher and fancy-regex agree on every character (same Unicode tables).
struct CharClasses {
    bits: Vec<u8>, // indexed by code point, 1.1 MB
}

impl CharClasses {
    fn get() -> &'static CharClasses {
        static CLASSES: OnceLock<CharClasses> = OnceLock::new();
        CLASSES.get_or_init(|| {
            let all: String = (0..=0x10FFFF).filter_map(char::from_u32).collect();
            let mut bits = vec![0u8; 0x110000];
            for (bit, class) in [(LETTER, r"\p{L}+"), (NUMBER, r"\p{N}+"), (SPACE, r"\s+")] {
                // A plain class: fancy-regex hands it to the regex crate's DFA (~10 ms per class).
                let re = Regex::new(class).expect("class regex compiles");
                for m in re.find_iter(&all) {
                    for c in m.expect("plain class never backtracks").as_str().chars() {
                        bits[c as usize] |= bit;
                    }
                }
            }
            CharClasses { bits }
        })
    }

    #[inline]
    fn of(&self, c: char) -> u8 {
        self.bits[c as usize]
    }
}

/// The char at byte offset `i` of `text` (a char boundary) and its UTF-8 length; None at the end.
#[inline]
fn char_at(text: &str, i: usize) -> Option<(char, usize)> {
    let b = *text.as_bytes().get(i)?;
    if b < 0x80 {
        return Some((b as char, 1));
    }
    let c = text[i..].chars().next()?;
    Some((c, c.len_utf8()))
}

/// End of the run of chars starting at `i` whose class bits intersect `mask`.
#[inline]
fn run_end(text: &str, mut i: usize, classes: &CharClasses, mask: u8) -> usize {
    while let Some((c, n)) = char_at(text, i) {
        if classes.of(c) & mask == 0 {
            break;
        }
        i += n;
    }
    i
}

/// End of the chunk that starts at byte `p`, following the regex's alternatives in order:
/// `'(?i:[sdmt]|ll|ve|re)` | `[^\r\n\p{L}\p{N}]?+\p{L}+` | `\p{N}{1,k}` |
/// ` ?[^\s\p{L}\p{N}]++[\r\n]*` | `\s*[\r\n]` | `\s+(?!\S)` | `\s+`.
/// Every char is a letter, a number, whitespace or "other", so some alternative always matches.
fn gpt4_match_end(text: &str, p: usize, max_digits: usize, classes: &CharClasses) -> usize {
    let (c, n) = char_at(text, p).expect("p < text.len()");
    let class = classes.of(c);
    let next = char_at(text, p + n);
    // 1. contractions, case-insensitive ('ſ' is a case variant of 's')
    if c == '\'' {
        if let Some((c1, n1)) = next {
            if matches!(c1, 's' | 'S' | 'ſ' | 'd' | 'D' | 'm' | 'M' | 't' | 'T') {
                return p + n + n1;
            }
            let c2 = char_at(text, p + n + n1).map(|(c2, _)| c2.to_ascii_lowercase());
            match (c1.to_ascii_lowercase(), c2) {
                ('l', Some('l')) | ('v', Some('e')) | ('r', Some('e')) => return p + 3,
                _ => {}
            }
        }
    }
    // 2. letters, optionally led by one char that is not CR/LF, letter or number
    if class & LETTER != 0 {
        return run_end(text, p + n, classes, LETTER);
    }
    if class & NUMBER == 0 && c != '\r' && c != '\n' {
        if let Some((c1, _)) = next {
            if classes.of(c1) & LETTER != 0 {
                return run_end(text, p + n, classes, LETTER);
            }
        }
    }
    // 3. numbers, at most max_digits of them
    if class & NUMBER != 0 {
        let mut end = p + n;
        for _ in 1..max_digits {
            match char_at(text, end) {
                Some((d, m)) if classes.of(d) & NUMBER != 0 => end += m,
                _ => break,
            }
        }
        return end;
    }
    // 4. other chars (optionally after one space), then any CR/LF
    let other_start = if c == ' ' { p + n } else { p };
    if let Some((o, _)) = char_at(text, other_start) {
        if classes.of(o) & (LETTER | NUMBER | SPACE) == 0 {
            let end = run_end_other(text, other_start, classes);
            return crlf_end(text, end);
        }
    }
    // 5-7. c is whitespace: take the whole whitespace run [p, q)
    debug_assert!(class & SPACE != 0);
    let mut q = p;
    let mut last_newline_end = None;
    let mut last_char_start = p;
    while let Some((w, m)) = char_at(text, q) {
        if classes.of(w) & SPACE == 0 {
            break;
        }
        if w == '\r' || w == '\n' {
            last_newline_end = Some(q + m);
        }
        last_char_start = q;
        q += m;
    }
    if let Some(end) = last_newline_end {
        return end; // 5. \s*[\r\n]: up to the last line break of the run
    }
    if q == text.len() || last_char_start == p {
        return q; // 6. run at the end of text, or 7. a single whitespace char
    }
    last_char_start // 6. \s+(?!\S): leave the last space to lead the next word
}

/// End of a run of chars that are neither letters, numbers nor whitespace.
#[inline]
fn run_end_other(text: &str, mut i: usize, classes: &CharClasses) -> usize {
    while let Some((c, n)) = char_at(text, i) {
        if classes.of(c) & (LETTER | NUMBER | SPACE) != 0 {
            break;
        }
        i += n;
    }
    i
}

#[inline]
fn crlf_end(text: &str, mut i: usize) -> usize {
    while matches!(text.as_bytes().get(i), Some(b'\r' | b'\n')) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_pattern_splits_words_numbers_punctuation_and_spaces() {
        let s = Splitter::new(DEFAULT_PATTERN).unwrap();
        let chunks = s.split("Hello world, it's 12345 times!\n\n  Done  ").unwrap();
        assert_eq!(
            chunks,
            vec!["Hello", " world", ",", " it", "'s", " ", "12", "34", "5", " times", "!\n\n", " ", " Done", "  "]
        );
    }

    #[test]
    fn split_covers_unicode_letters_and_digits() {
        let s = Splitter::new(DEFAULT_PATTERN).unwrap();
        assert_eq!(s.split("Ünïcödé 日本語 ٣٤٥").unwrap(), vec!["Ünïcödé", " 日本語", " ", "٣٤", "٥"]);
        // Chunks always tile the text for this pattern: every character belongs to some chunk.
        let text = "a\tb\r\nc  \u{3000}d 🙂🙂 x";
        assert_eq!(s.split(text).unwrap().concat(), text);
    }

    #[test]
    fn invalid_pattern_is_an_error_not_a_panic() {
        let err = Splitter::new("(unclosed").unwrap_err();
        assert!(err.contains("invalid split pattern"), "{err}");
    }

    /// The hand-written matcher and the regex engine for DEFAULT_PATTERN with `\p{N}{1,max_digits}`.
    fn engines(max_digits: usize) -> (Splitter, Splitter) {
        let pattern = DEFAULT_PATTERN.replace(r"\p{N}{1,2}", &format!(r"\p{{N}}{{1,{max_digits}}}"));
        let fast = Splitter::new(&pattern).unwrap();
        assert!(matches!(fast.engine, Engine::Gpt4 { .. }));
        (fast, Splitter::new_regex_only(&pattern).unwrap())
    }

    /// The GPT-4 matcher must give exactly the chunks of the regex engine.
    fn assert_same_as_regex(text: &str, (fast, slow): &(Splitter, Splitter)) {
        let (a, b) = (fast.split(text).unwrap(), slow.split(text).unwrap());
        if a != b {
            let i = a.iter().zip(&b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
            panic!("chunk {i} differs on {text:?}: fast {:?} vs regex {:?}", &a[i..(i + 3).min(a.len())], &b[i..(i + 3).min(b.len())]);
        }
    }

    #[test]
    fn fast_matcher_equals_regex_on_every_code_point() {
        // Each code point in the contexts that matter: after an apostrophe, before/after letters,
        // digits, spaces and line breaks.
        let mut text = String::new();
        for c in (0..=0x10FFFFu32).step_by(7).filter_map(char::from_u32).chain("sSſdDmMtTlLvVrReEkK".chars()) {
            for t in ["'", "'l", " ", "a", "1"] {
                text.push_str(t);
                text.push(c);
            }
            text.push_str(&format!("{c}{c}x  {c}\n"));
        }
        assert_same_as_regex(&text, &engines(2));
    }

    #[test]
    fn fast_matcher_equals_regex_on_random_strings() {
        let alphabet: Vec<char> = "aZſsSlLeEvVrRdmt'1٣½  \t\r\n\u{a0}\u{3000}\u{b}\u{85},.(!_🙂日é\u{301}ß"
            .chars()
            .collect();
        let mut seed = 7u64;
        let mut rnd = move |n: usize| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as usize % n
        };
        let engines = [engines(1), engines(2), engines(3)];
        for i in 0..30000 {
            let len = rnd(24);
            let text: String = (0..len).map(|_| alphabet[rnd(alphabet.len())]).collect();
            assert_same_as_regex(&text, &engines[i % 3]);
        }
    }

    #[test]
    fn other_patterns_use_the_regex_engine() {
        let s = Splitter::new(r"\w+|\s+").unwrap();
        assert!(matches!(s.engine, Engine::Regex(_)));
        assert_eq!(s.split("ab, cd").unwrap(), vec!["ab", " ", "cd"]); // the comma matches nothing
    }
}
