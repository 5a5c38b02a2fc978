//! Structure-aware chunking and content addressing.
//!
//! A document is cut at paragraph boundaries first, then at sentence boundaries, then (for a
//! sentence longer than the target) at word boundaries, and the pieces are packed greedily into
//! chunks of at most `target_tokens` embedder tokens. Every chunk keeps the byte span it came
//! from, so `&document[start..end] == chunk.text` always holds and a citation can highlight the
//! exact source.

use std::fmt;
use std::str::FromStr;

use unicode_normalization::UnicodeNormalization;
use unicode_segmentation::UnicodeSegmentation;

use crate::Error;

/// The content address of a chunk: blake3 of its normalized text.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId([u8; 32]);

impl ChunkId {
    /// Hashes `text` after [`normalize`].
    pub fn of_text(text: &str) -> ChunkId {
        ChunkId(*blake3::hash(normalize(text).as_bytes()).as_bytes())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 16 bytes as a UUID: the point id in the vector index. 128 bits of a
    /// cryptographic hash make a collision within one Datanet practically impossible.
    pub fn point_uuid(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out.copy_from_slice(&self.0[..16]);
        out
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({})", &self.to_hex()[..12])
    }
}

impl FromStr for ChunkId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)
            .map_err(|_| Error::InvalidArgument(format!("{s:?} is not a 64-digit hex chunk id")))?;
        Ok(ChunkId(out))
    }
}

/// The normalization that defines chunk identity: Unicode NFC, every run of whitespace
/// (including newlines) collapsed to one ASCII space, and leading/trailing whitespace removed.
/// Case and punctuation are kept: they can change meaning. So "a\r\n b" and "a b" are one chunk,
/// "A b" is another.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pending_space = false;
    for c in text.nfc() {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
        } else {
            if pending_space {
                out.push(' ');
                pending_space = false;
            }
            out.push(c);
        }
    }
    out
}

/// How to cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkerConfig {
    /// Upper bound on a chunk's length in embedder tokens (without special tokens).
    pub target_tokens: usize,
    /// When a paragraph is split, how many tokens of trailing sentences the next chunk repeats.
    pub overlap_tokens: usize,
}

impl Default for ChunkerConfig {
    fn default() -> Self {
        // 254 + [CLS] + [SEP] fills MiniLM's 256-token window without truncation.
        ChunkerConfig { target_tokens: 254, overlap_tokens: 32 }
    }
}

impl ChunkerConfig {
    pub fn validate(&self) -> Result<(), Error> {
        if self.target_tokens < 8 {
            return Err(Error::InvalidArgument("chunk target must be at least 8 tokens".into()));
        }
        if self.overlap_tokens >= self.target_tokens / 2 {
            return Err(Error::InvalidArgument("chunk overlap must be less than half the target".into()));
        }
        Ok(())
    }
}

/// One chunk of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub id: ChunkId,
    /// Byte offsets into the document's text.
    pub start: usize,
    pub end: usize,
    pub text: String,
    pub tokens: usize,
}

/// A piece that is never cut further by packing.
#[derive(Debug, Clone, Copy)]
struct Unit {
    start: usize,
    end: usize,
    tokens: usize,
    /// First unit of a paragraph.
    opens_paragraph: bool,
    /// Tokens of the whole paragraph this unit belongs to.
    paragraph_tokens: usize,
}

/// Cuts documents into chunks; `count_tokens` is the embedder's tokenizer.
pub struct Chunker<F> {
    config: ChunkerConfig,
    count_tokens: F,
}

impl<F: Fn(&str) -> usize> Chunker<F> {
    pub fn new(config: ChunkerConfig, count_tokens: F) -> Result<Self, Error> {
        config.validate()?;
        Ok(Chunker { config, count_tokens })
    }

    pub fn chunk(&self, text: &str) -> Vec<Chunk> {
        let target = self.config.target_tokens;
        let mut chunks = Vec::new();
        let mut current: Vec<Unit> = Vec::new();
        let mut current_tokens = 0;
        for unit in self.units(text) {
            // A paragraph that fits whole joins the current chunk; one that does not starts a
            // fresh chunk, so that paragraphs are split only when they must be.
            let needed = if unit.opens_paragraph { unit.paragraph_tokens } else { unit.tokens };
            if !current.is_empty() && current_tokens + needed > target {
                chunks.push(make_chunk(text, &current));
                // Overlap only inside a paragraph: a new paragraph is a natural fresh start.
                current = if unit.opens_paragraph { Vec::new() } else { self.overlap(&current) };
                current_tokens = current.iter().map(|u| u.tokens).sum();
                if current_tokens + unit.tokens > target {
                    current.clear();
                    current_tokens = 0;
                }
            }
            current_tokens += unit.tokens;
            current.push(unit);
        }
        if !current.is_empty() {
            chunks.push(make_chunk(text, &current));
        }
        chunks
    }

    /// The trailing units of `current`, within its last paragraph, worth at most
    /// `overlap_tokens`; never all of `current`, which would repeat the chunk.
    fn overlap(&self, current: &[Unit]) -> Vec<Unit> {
        let mut carried = Vec::new();
        let mut tokens = 0;
        for unit in current.iter().rev() {
            if tokens + unit.tokens > self.config.overlap_tokens {
                break;
            }
            tokens += unit.tokens;
            carried.push(*unit);
            if unit.opens_paragraph {
                break;
            }
        }
        if carried.len() == current.len() {
            carried.clear();
        }
        carried.reverse();
        carried
    }
}

fn make_chunk(text: &str, units: &[Unit]) -> Chunk {
    let start = units[0].start;
    let end = units[units.len() - 1].end;
    let chunk_text = &text[start..end];
    Chunk {
        id: ChunkId::of_text(chunk_text),
        start,
        end,
        text: chunk_text.to_string(),
        tokens: units.iter().map(|u| u.tokens).sum(),
    }
}

impl<F: Fn(&str) -> usize> Chunker<F> {
    /// Paragraphs -> sentences -> word groups, trimmed of surrounding whitespace.
    fn units(&self, text: &str) -> Vec<Unit> {
        let mut units = Vec::new();
        for (p_start, paragraph) in paragraphs(text) {
            let first = units.len();
            let mut opens_paragraph = true;
            for (s_off, sentence) in paragraph.split_sentence_bound_indices() {
                let Some((start, end)) = trimmed_span(sentence, p_start + s_off) else {
                    continue;
                };
                let piece = &text[start..end];
                let tokens = (self.count_tokens)(piece);
                if tokens <= self.config.target_tokens {
                    units.push(Unit { start, end, tokens, opens_paragraph, paragraph_tokens: 0 });
                } else {
                    for (ws, we, wt) in self.split_words(text, start, end) {
                        units.push(Unit { start: ws, end: we, tokens: wt, opens_paragraph, paragraph_tokens: 0 });
                        opens_paragraph = false;
                    }
                }
                opens_paragraph = false;
            }
            let paragraph_tokens = units[first..].iter().map(|u| u.tokens).sum();
            for unit in &mut units[first..] {
                unit.paragraph_tokens = paragraph_tokens;
            }
        }
        units
    }

    /// Splits an over-long sentence into word groups that each fit the target.
    fn split_words(&self, text: &str, start: usize, end: usize) -> Vec<(usize, usize, usize)> {
        let mut groups = Vec::new();
        let mut group_start: Option<usize> = None;
        let mut group_end = start;
        let mut group_tokens = 0;
        for (off, word) in text[start..end].split_word_bound_indices() {
            let w_start = start + off;
            let w_end = w_start + word.len();
            if word.trim().is_empty() {
                continue;
            }
            let tokens = (self.count_tokens)(word).max(1);
            if group_start.is_some() && group_tokens + tokens > self.config.target_tokens {
                if let Some(gs) = group_start.take() {
                    groups.push((gs, group_end, group_tokens));
                }
                group_tokens = 0;
            }
            group_start.get_or_insert(w_start);
            group_end = w_end;
            group_tokens += tokens;
        }
        if let Some(gs) = group_start {
            groups.push((gs, group_end, group_tokens));
        }
        groups
    }
}

/// The document's heading: its first paragraph when that is short and more text follows (a
/// BEIR title, a Markdown `# heading`, a title line).
/// Reads only up to the first blank line: it runs once per indexed chunk.
pub fn heading(document: &str) -> Option<&str> {
    let (end, next) = paragraph_break(document, 0)?;
    let first = document[..end].trim();
    (next < document.len() && !first.is_empty() && first.len() <= MAX_HEADING_BYTES).then_some(first)
}

const MAX_HEADING_BYTES: usize = 200;

/// What both indexes see for a chunk (embedded, and tokenized for BM25): the chunk, preceded
/// by the document's heading when the chunk does not already contain it, so that a title's
/// meaning and terms reach every part of a long document. The chunk's id, span and cited text
/// are unaffected: they are the chunk's own text.
pub fn indexed_text<'a>(document: &str, chunk_start: usize, chunk_text: &'a str) -> std::borrow::Cow<'a, str> {
    match heading(document) {
        Some(h) if chunk_start > 0 && !chunk_text.contains(h) => format!("{h}\n{chunk_text}").into(),
        _ => chunk_text.into(),
    }
}

/// How far, in bytes of the document, the keyword text of a chunk reaches past each end of the
/// chunk (about a default chunk: ~256 tokens of English).
pub const KEYWORD_CONTEXT_BYTES: usize = 1024;

/// What the keyword index sees for a chunk: [`indexed_text`] over the chunk widened by up to
/// [`KEYWORD_CONTEXT_BYTES`] of its document on each side (cut at whitespace), so that a
/// question's terms that fall just across a chunk boundary still count for the chunk. The
/// vectors keep [`indexed_text`]: the embedder's window is full already.
pub fn keyword_text<'a>(
    document: &str,
    chunk_start: usize,
    chunk_end: usize,
    chunk_text: &'a str,
) -> std::borrow::Cow<'a, str> {
    // `is_char_boundary` is false past the end too.
    if chunk_start > chunk_end || !document.is_char_boundary(chunk_start) || !document.is_char_boundary(chunk_end) {
        return indexed_text(document, chunk_start, chunk_text);
    }
    // Back from chunk_start: the first whitespace at or after the reach point starts the window.
    let reach_start = document.ceil_char_boundary(chunk_start.saturating_sub(KEYWORD_CONTEXT_BYTES));
    let start = document[reach_start..chunk_start]
        .char_indices()
        .find(|(_, c)| c.is_whitespace())
        .map(|(i, _)| reach_start + i)
        .unwrap_or(chunk_start);
    let start = if reach_start == 0 { 0 } else { start };
    let reach_end = document.ceil_char_boundary(chunk_end + KEYWORD_CONTEXT_BYTES);
    let end = if reach_end == document.len() {
        reach_end
    } else {
        document[chunk_end..reach_end]
            .char_indices()
            .rev()
            .find(|(_, c)| c.is_whitespace())
            .map(|(i, _)| chunk_end + i)
            .unwrap_or(chunk_end)
    };
    if start == chunk_start && end == chunk_end {
        return indexed_text(document, chunk_start, chunk_text);
    }
    indexed_text(document, start, &document[start..end]).into_owned().into()
}

/// Splits at blank lines (two or more newlines with only whitespace between).
fn paragraphs(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = 0;
    while let Some((end, next)) = paragraph_break(text, start) {
        out.push((start, &text[start..end]));
        start = next;
    }
    if start < text.len() {
        out.push((start, &text[start..]));
    }
    out
}

/// The first blank line at or after `from`: where the paragraph ends and where the next one
/// starts (past the whitespace).
fn paragraph_break(text: &str, from: usize) -> Option<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut i = from;
    while i < bytes.len() {
        if bytes[i] == b'\n' {
            // Look ahead over whitespace for a second newline.
            let mut j = i + 1;
            let mut newlines = 1;
            while j < bytes.len() && matches!(bytes[j], b' ' | b'\t' | b'\r' | b'\n') {
                if bytes[j] == b'\n' {
                    newlines += 1;
                }
                j += 1;
            }
            if newlines >= 2 {
                return Some((i, j));
            }
        }
        i += 1;
    }
    None
}

fn trimmed_span(piece: &str, offset: usize) -> Option<(usize, usize)> {
    let lead = piece.len() - piece.trim_start().len();
    let trimmed = piece.trim();
    if trimmed.is_empty() {
        return None;
    }
    Some((offset + lead, offset + lead + trimmed.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> usize {
        s.split_whitespace().count()
    }

    fn chunker(target: usize, overlap: usize) -> Chunker<fn(&str) -> usize> {
        Chunker::new(ChunkerConfig { target_tokens: target, overlap_tokens: overlap }, words as fn(&str) -> usize)
            .unwrap()
    }

    const TEXT: &str = "# Rivers\n\nA river flows. It carries water to the sea. Rivers are long.\n\n\
        Tributaries join rivers at confluences. They add water and sediment. The main stem widens. \
        Floods follow heavy rain. Ünïcödé names like Solimões appear too.\r\n\r\nShort end.";

    #[test]
    fn offsets_round_trip_and_respect_the_target() {
        for (target, overlap) in [(8, 0), (8, 3), (12, 4), (40, 8), (1000, 0)] {
            let chunks = chunker(target, overlap).chunk(TEXT);
            assert!(!chunks.is_empty());
            for c in &chunks {
                assert_eq!(&TEXT[c.start..c.end], c.text, "target {target}");
                assert_eq!(c.id, ChunkId::of_text(&c.text));
                assert!(c.tokens <= target, "chunk of {} > {target}: {:?}", c.tokens, c.text);
                assert_eq!(c.tokens, words(&c.text));
            }
            // Every word of the text is in some chunk, in order.
            let covered: String = chunks.iter().map(|c| c.text.as_str()).collect::<Vec<_>>().join(" ");
            for w in TEXT.split_whitespace() {
                assert!(covered.contains(w), "{w:?} lost at target {target}");
            }
            assert!(chunks.windows(2).all(|w| w[0].start < w[1].start));
        }
    }

    #[test]
    fn paragraphs_stay_whole_when_they_fit() {
        // Heading + first paragraph: 14 words; second paragraph: 22; last: 2.
        let chunks = chunker(30, 8).chunk(TEXT);
        // The second paragraph does not fit after the first, so it starts a chunk of its own
        // (no sentence of it is split off to fill the first chunk); the last one joins it.
        assert_eq!(chunks.len(), 2);
        assert!(chunks[0].text.starts_with("# Rivers") && chunks[0].text.ends_with("Rivers are long."));
        assert!(chunks[1].text.starts_with("Tributaries join") && chunks[1].text.ends_with("Short end."));
        // Everything fits one chunk at 40.
        assert_eq!(chunker(40, 8).chunk(TEXT).len(), 1);
    }

    #[test]
    fn split_paragraphs_overlap_by_trailing_sentences() {
        let chunks = chunker(12, 5).chunk(TEXT);
        let i = chunks.iter().position(|c| c.text.starts_with("Tributaries")).unwrap();
        // The next chunk repeats the last sentence that fits in the overlap budget.
        let next = &chunks[i + 1];
        assert!(next.start < chunks[i].end, "no overlap: {:?} then {:?}", chunks[i].text, next.text);
        let none = chunker(12, 0).chunk(TEXT);
        assert!(none.windows(2).all(|w| w[0].end <= w[1].start));
    }

    #[test]
    fn overlong_sentences_split_at_words() {
        let sentence = "word ".repeat(50);
        let chunks = chunker(16, 0).chunk(&sentence);
        assert_eq!(chunks.len(), 4);
        assert!(chunks.iter().all(|c| c.tokens <= 16));
        assert_eq!(chunks.iter().map(|c| c.tokens).sum::<usize>(), 50);
    }

    #[test]
    fn normalization_defines_identity() {
        assert_eq!(normalize("  a\r\n\tb  c \n"), "a b c");
        // NFC: a precomposed and a combining é are one character.
        assert_eq!(normalize("caf\u{e9}"), normalize("cafe\u{301}"));
        assert_eq!(ChunkId::of_text("A river.\n\nIt flows."), ChunkId::of_text("A river. It flows."));
        assert_ne!(ChunkId::of_text("A river."), ChunkId::of_text("a river."));
        let id = ChunkId::of_text("x");
        assert_eq!(id.to_hex().parse::<ChunkId>().unwrap(), id);
        assert!("zz".parse::<ChunkId>().is_err());
    }

    #[test]
    fn later_chunks_are_indexed_with_the_heading() {
        let chunks = chunker(12, 0).chunk(TEXT);
        assert_eq!(heading(TEXT), Some("# Rivers"));
        assert_eq!(indexed_text(TEXT, chunks[0].start, &chunks[0].text), chunks[0].text);
        let last = chunks.last().unwrap();
        assert_eq!(indexed_text(TEXT, last.start, &last.text), format!("# Rivers\n{}", last.text));
        // A single paragraph, or a long first paragraph, is no heading.
        assert_eq!(heading("Just one paragraph."), None);
        assert_eq!(heading(&format!("{}\n\nrest", "long ".repeat(60))), None);
    }

    #[test]
    fn keyword_text_reaches_past_the_chunk_at_word_boundaries() {
        // A long document: the window must cut inside it, at whitespace, on char boundaries.
        let words: Vec<String> = (0..400).map(|i| format!("wörd{i}")).collect();
        let document = format!("Title line\n\n{}", words.join(" "));
        let chunks = chunker(40, 0).chunk(&document);
        assert!(chunks.len() > 4);
        for chunk in &chunks {
            let text = keyword_text(&document, chunk.start, chunk.end, &chunk.text);
            assert!(text.contains(chunk.text.as_str()), "the chunk itself is always inside");
            // One contiguous span of the document, after the heading where the span lacks it.
            let (at, body) = match document.find(text.as_ref()) {
                Some(at) => (at, text.as_ref()),
                None => {
                    let body = text.strip_prefix("Title line\n").expect("the heading, then a span");
                    (document.find(body).expect("a span of the document"), body)
                }
            };
            assert!(at <= chunk.start && at + body.len() >= chunk.end);
            assert!(chunk.start - at <= KEYWORD_CONTEXT_BYTES);
            assert!(at + body.len() - chunk.end <= KEYWORD_CONTEXT_BYTES);
            // Whole words only: a cut falls at whitespace or the document's ends.
            assert!(at == 0 || document[..at].ends_with(char::is_whitespace) || body.starts_with(char::is_whitespace));
            let after = at + body.len();
            assert!(after == document.len() || document[after..].starts_with(char::is_whitespace));
            // The heading comes first whenever the window does not already hold it.
            assert!(text.starts_with("Title line"));
        }
        let middle = &chunks[chunks.len() / 2];
        let text = keyword_text(&document, middle.start, middle.end, &middle.text);
        assert!(text.len() > middle.text.len() + KEYWORD_CONTEXT_BYTES, "it reaches both ways");
        // In a short document the last chunk's window reaches back into earlier paragraphs.
        let short = chunker(12, 0).chunk(TEXT);
        let last = short.last().unwrap();
        assert!(!last.text.contains("Tributaries"));
        let text = keyword_text(TEXT, last.start, last.end, &last.text);
        assert!(
            text.starts_with("# Rivers\n") && text.contains("Tributaries join rivers") && text.ends_with("Short end.")
        );
        // Offsets that do not fit the document fall back to the chunk and heading.
        assert_eq!(keyword_text("short", 2, 99, "ort"), "ort");
    }

    #[test]
    fn empty_and_whitespace_documents_have_no_chunks() {
        assert!(chunker(8, 0).chunk("").is_empty());
        assert!(chunker(8, 0).chunk(" \n\n \t").is_empty());
        assert!(ChunkerConfig { target_tokens: 4, overlap_tokens: 0 }.validate().is_err());
        assert!(ChunkerConfig { target_tokens: 64, overlap_tokens: 32 }.validate().is_err());
    }
}
