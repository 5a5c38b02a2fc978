//! Text in sentences. Boundaries are Unicode's (UAX #29, as the chunker splits documents), so
//! "e.g. the" and "U.S. economy" stay whole; a boundary right after a title or an initial
//! ("Dr. Halvorsen", "St. Aldric", "J. Smith") is not one. An answer's `[n]` markers go to the
//! sentence they are written in or right after, and words that name a passage ("the passage
//! number is 1", "according to passage 2") are read as markers and leave the text: a small
//! model echoes the prompt's numbering in words, and those words state nothing.

use std::ops::Range;

use unicode_segmentation::UnicodeSegmentation;

/// Words that end with a period without ending a sentence when a capital follows.
const ABBREVIATIONS: &[&str] = &[
    "dr", "mr", "mrs", "ms", "st", "mt", "ft", "prof", "rev", "gen", "col", "capt", "lt", "sgt", "gov", "sen", "rep",
    "hon", "no", "nos", "vol", "fig", "co", "inc", "ltd", "jr", "sr", "vs", "approx", "ca", "cf", "e.g", "i.e", "al",
];

/// Byte ranges of the sentences of `text`, trimmed, none empty.
pub(crate) fn sentence_spans(text: &str) -> Vec<Range<usize>> {
    let mut spans: Vec<Range<usize>> = Vec::new();
    let mut joined_to_next = false;
    for (start, piece) in text.split_sentence_bound_indices() {
        let end = start + piece.len();
        match spans.last_mut() {
            Some(last) if joined_to_next => last.end = end,
            _ => spans.push(start..end),
        }
        joined_to_next = ends_with_abbreviation(piece.trim_end());
    }
    spans
        .into_iter()
        .filter_map(|span| {
            let piece = &text[span.clone()];
            let start = span.start + (piece.len() - piece.trim_start().len());
            let end = span.start + piece.trim_end().len();
            (start < end).then_some(start..end)
        })
        .collect()
}

/// The sentences of `text`.
pub(crate) fn sentences(text: &str) -> Vec<&str> {
    sentence_spans(text).into_iter().map(|span| &text[span]).collect()
}

fn ends_with_abbreviation(piece: &str) -> bool {
    let Some(stem) = piece.strip_suffix('.') else { return false };
    let word = stem.rsplit(|c: char| c.is_whitespace() || c == '(' || c == '"').next().unwrap_or(stem);
    let mut letters = word.chars();
    // An initial: one capital letter ("J.", and "S." of "U.S.").
    if let (Some(c), None) = (letters.next(), letters.next())
        && c.is_uppercase()
    {
        return true;
    }
    ABBREVIATIONS.contains(&word.to_lowercase().as_str())
}

/// The sentences of an answer, each with the passage numbers it cites. Markers written after a
/// sentence's full stop ("... river. [2]") belong to that sentence.
pub(crate) fn split_answer(text: &str) -> Vec<(String, Vec<usize>)> {
    let text = worded_markers(text);
    // The text without its markers, and where each marker stood in it.
    let mut plain = String::with_capacity(text.len());
    let mut markers: Vec<(usize, bool, Vec<usize>)> = Vec::new();
    let mut rest = text.as_str();
    while let Some(c) = rest.chars().next() {
        if c == '['
            && let Some((numbers, leading, len)) = marker_at(rest)
        {
            markers.push((plain.len(), leading, numbers));
            rest = &rest[len..];
            continue;
        }
        plain.push(c);
        rest = &rest[c.len_utf8()..];
    }
    let spans = sentence_spans(&plain);
    let mut out: Vec<(String, Vec<usize>)> = spans.iter().map(|s| (tidy(&plain[s.clone()]), Vec::new())).collect();
    for (at, leading, numbers) in markers {
        let index = if leading {
            // The sentence holding the next visible character.
            let after = at + (plain[at..].len() - plain[at..].trim_start().len());
            spans.iter().position(|s| s.end > after).unwrap_or(spans.len().saturating_sub(1))
        } else {
            // The sentence holding the last visible character before the marker.
            let before = plain[..at].trim_end().len();
            spans.iter().rposition(|s| s.start < before).unwrap_or(0)
        };
        match out.get_mut(index) {
            Some((_, cited)) => cited.extend(numbers),
            // Markers and nothing else.
            None => out.push((String::new(), numbers)),
        }
    }
    // A sentence that lost all its words to markers gives them to the one before it.
    let mut merged: Vec<(String, Vec<usize>)> = Vec::new();
    for (sentence, cited) in out {
        let empty = !sentence.chars().any(char::is_alphanumeric);
        match merged.last_mut() {
            Some((_, last)) if empty => last.extend(cited),
            _ if empty && sentence.is_empty() && cited.is_empty() => {}
            _ => merged.push((sentence, cited)),
        }
    }
    merged.retain(|(s, _)| s.chars().any(char::is_alphanumeric));
    merged
}

/// `[1]`, `[2, 3]` at the start of `s`: the numbers, whether the marker leads its sentence
/// (`[^2]`, as a worded reference at a sentence's start is rewritten) and its length.
fn marker_at(s: &str) -> Option<(Vec<usize>, bool, usize)> {
    let close = s.find(']')?;
    let (inner, leading) = match s[1..close].strip_prefix('^') {
        Some(inner) => (inner, true),
        None => (&s[1..close], false),
    };
    let numbers: Option<Vec<usize>> = inner.split(',').map(|n| n.trim().parse().ok()).collect();
    numbers.filter(|n| !n.is_empty()).map(|n| (n, leading, close + 1))
}

/// Collapsed whitespace, and no space before closing punctuation (removing a marker leaves
/// "Alps ." behind).
fn tidy(sentence: &str) -> String {
    let mut out = sentence.split_whitespace().collect::<Vec<_>>().join(" ");
    for p in [" .", " ,", " !", " ?", " ;", " :"] {
        out = out.replace(p, &p[1..]);
    }
    out.trim_end_matches([',', ';', ':']).trim().to_string()
}

/// Words that may come before a passage's name in an echo ("..., and according to the passage
/// number").
const ECHO_BEFORE: &[&str] = &[
    "the",
    "in",
    "to",
    "according",
    "as",
    "stated",
    "shown",
    "given",
    "said",
    "from",
    "see",
    "and",
    "is",
    "this",
    "cited",
    "per",
    "by",
    "based",
    "on",
    "which",
];
/// Words between "passage" and its number.
const ECHO_BETWEEN: &[&str] = &["number", "no", "nr", "is", "was"];
/// Verbs that may follow the number ("passage 2 says that ...").
const ECHO_AFTER: &[&str] = &["says", "states", "mentions", "notes", "shows", "explains", "that"];

/// Rewrites each reference to a passage in words as a marker: "The Varne is 212 km long, and
/// the passage number is 1." becomes "The Varne is 212 km long [1]." A capitalized "Passage"
/// inside a sentence is a name ("the Drake Passage 3 times") and stays.
fn worded_markers(text: &str) -> String {
    let words: Vec<(usize, usize)> = text
        .split_word_bound_indices()
        .filter(|(_, w)| w.chars().any(char::is_alphanumeric))
        .map(|(at, w)| (at, at + w.len()))
        .collect();
    let word = |i: usize| text[words[i].0..words[i].1].to_lowercase();
    // Only spaces and `#`, `(`, `[` between two words.
    let adjacent = |i: usize| text[words[i].1..words[i + 1].0].chars().all(|c| c.is_whitespace() || "#([".contains(c));
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < words.len() {
        let literal = &text[words[i].0..words[i].1];
        let named = literal == "passage"
            || (literal == "Passage"
                && (i == 0
                    || ECHO_BEFORE.contains(&word(i - 1).as_str())
                    || text[..words[i].0].trim_end().ends_with(['.', '!', '?', '\n'])));
        if !named {
            i += 1;
            continue;
        }
        let mut j = i + 1;
        while j < words.len() && adjacent(j - 1) && ECHO_BETWEEN.contains(&word(j).as_str()) {
            j += 1;
        }
        let number = (j < words.len() && adjacent(j - 1)).then(|| word(j).parse::<usize>().ok()).flatten();
        let Some(number) = number else {
            i += 1;
            continue;
        };
        let mut end = words[j].1;
        let mut k = j + 1;
        while k < words.len() && text[end..words[k].0].trim().is_empty() && ECHO_AFTER.contains(&word(k).as_str()) {
            end = words[k].1;
            k += 1;
        }
        // A word follows the number directly ("Passage 3 times"): not a reference.
        if k == j + 1 && k < words.len() && text[end..words[k].0].trim().is_empty() {
            i += 1;
            continue;
        }
        if text[end..].starts_with(']') {
            end += 1;
        }
        let mut start_word = i;
        while start_word > 0
            && text[words[start_word - 1].1..words[start_word].0].chars().all(|c| c.is_whitespace() || c == '(')
            && ECHO_BEFORE.contains(&word(start_word - 1).as_str())
        {
            start_word -= 1;
        }
        // With the comma, dash or bracket that introduced it.
        let head = text[..words[start_word].0].trim_end();
        let start = match head.strip_suffix([',', '(', '-', '—', '–']) {
            Some(h) => h.trim_end().len(),
            None => head.len(),
        };
        // The bracket it opened closes with it.
        if text[start..words[start_word].0].contains('(') && text[end..].starts_with(')') {
            end += 1;
        }
        if start >= copied {
            out.push_str(&text[copied..start]);
            // At a sentence's start the reference leads it; its comma goes, and the sentence
            // opens with a capital.
            let opens = head.is_empty() || head.ends_with(['.', '!', '?', '\n']);
            if opens {
                let rest = &text[end..];
                end += rest.len() - rest.trim_start_matches(|c: char| c == ',' || c == ':' || c.is_whitespace()).len();
                out.push_str(&format!(" [^{number}] "));
                if let Some(first) = text[end..].chars().next().filter(|c| c.is_lowercase()) {
                    out.extend(first.to_uppercase());
                    end += first.len_utf8();
                }
            } else {
                out.push_str(&format!(" [{number}]"));
            }
            copied = end;
        }
        i = k;
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abbreviations_and_initials_do_not_end_sentences() {
        assert_eq!(
            sentences("The bridge, e.g. the north span, was built by Dr. Ingrid Halvorsen. It cost $2.5 million."),
            ["The bridge, e.g. the north span, was built by Dr. Ingrid Halvorsen.", "It cost $2.5 million."]
        );
        assert_eq!(
            sentences("The U.S. economy grew. J. R. Moss founded St. Aldric in 1887. Done"),
            ["The U.S. economy grew.", "J. R. Moss founded St. Aldric in 1887.", "Done"]
        );
        assert_eq!(
            sentences("It measured 3.5 km.\nA list item\n\nNext."),
            ["It measured 3.5 km.", "A list item", "Next."]
        );
    }

    #[test]
    fn markers_attach_to_their_sentence_even_after_the_stop() {
        let s = split_answer("The Rhine rises in the Alps [1]. It flows north. [2][3] Done");
        assert_eq!(s[0], ("The Rhine rises in the Alps.".into(), vec![1]));
        assert_eq!(s[1], ("It flows north.".into(), vec![2, 3]));
        assert_eq!(s[2], ("Done".into(), vec![]));
        let s = split_answer("Both [1, 2]. Brackets [like this] stay.");
        assert_eq!(s[0].1, vec![1, 2]);
        assert_eq!(s[1].0, "Brackets [like this] stay.");
        let s = split_answer("[1] Dr. Halvorsen built it in 1887 [2].");
        assert_eq!(s, [("Dr. Halvorsen built it in 1887.".to_string(), vec![1, 2])]);
    }

    #[test]
    fn passages_named_in_words_are_markers() {
        let s = split_answer("The Varne is 212 km long, and the passage number is 1.");
        assert_eq!(s, [("The Varne is 212 km long.".to_string(), vec![1])]);
        let s = split_answer("According to passage 2, the bridge opened in 1912. Passage 3 says it cost $4 million.");
        assert_eq!(s[0], ("The bridge opened in 1912.".into(), vec![2]));
        assert_eq!(s[1], ("It cost $4 million.".into(), vec![3]));
        let s = split_answer("The lake is deep (passage [1]).");
        assert_eq!(s, [("The lake is deep.".to_string(), vec![1])]);
        // A name, not a reference.
        let s = split_answer("The ship crossed the Drake Passage 3 times.");
        assert_eq!(s, [("The ship crossed the Drake Passage 3 times.".to_string(), vec![])]);
        let s = split_answer("A passage 3 metres wide led inside.");
        assert_eq!(s[0].1, Vec::<usize>::new());
    }
}
