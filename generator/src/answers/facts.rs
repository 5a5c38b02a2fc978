//! The facts a sentence states, checked against passages: every number (with its unit, when
//! it has one), date and proper name must occur in a passage the sentence cites. Compared
//! normalized: `1,250` = `1250` (= `1 250` with a no-break or thin space; a plain space
//! separates two numbers), `2.4 million` = `2,400,000`, `45 minutes` = `45 min`, `$5` = `5
//! dollars`, `three` = `3`, a date whole ("14 November 2012" = "November 14, 2012"; "in 2012"
//! and "November 2012" are parts of it), case and diacritics folded, a possessive `'s` dropped.
//! A sentence's first word counts as a name only when the next is capitalized too ("Ingrid
//! Halvorsen built ..."); otherwise it is capitalized because it comes first.

use std::collections::HashSet;

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// One fact of a sentence, as written and as compared.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Fact {
    /// As the sentence writes it ("1,840 metres", "Halvorsen").
    pub written: String,
    key: Key,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    /// A decimal value in canonical form, and its unit when one follows (or precedes: `$`).
    Number { value: String, unit: Option<&'static str> },
    /// A folded word of a proper name, or a code such as "A320".
    Word(String),
    /// A calendar date: what it names of day, month (1-12) and year.
    Date(Date),
}

/// A date as written: "14 November 2012", "November 14, 2012", "May 1938", "14 May".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Date {
    day: Option<u32>,
    month: u32,
    year: Option<u32>,
}

impl Date {
    /// Whether `other` names this date, or a date this one is part of ("May 1938" is part of
    /// "9 May 1938").
    fn within(&self, other: &Date) -> bool {
        self.month == other.month
            && self.day.is_none_or(|d| other.day == Some(d))
            && self.year.is_none_or(|y| other.year == Some(y))
    }
}

/// What kind of thing a fact is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// A count, amount or measure.
    Number,
    /// A date.
    Date,
    /// A whole number from 1000 to 2100 without a unit: a year, or a count.
    Year,
    /// A word of a proper name, or a code.
    Name,
}

impl Class {
    /// Whether facts of the two classes can answer the same question.
    pub(crate) fn compatible(self, other: Class) -> bool {
        self == other
            || matches!(
                (self, other),
                (Class::Year, Class::Number | Class::Date) | (Class::Number | Class::Date, Class::Year)
            )
    }
}

impl Fact {
    pub(crate) fn class(&self) -> Class {
        match &self.key {
            Key::Date(_) => Class::Date,
            Key::Number { value, unit: None } if value.parse::<u32>().is_ok_and(|y| (1000..=2100).contains(&y)) => {
                Class::Year
            }
            Key::Number { .. } => Class::Number,
            Key::Word(_) => Class::Name,
        }
    }

    /// Whether it is a span of time ("45 minutes", "3 hours", "12 years").
    pub(crate) fn is_duration(&self) -> bool {
        matches!(&self.key, Key::Number { unit: Some(unit), .. } if DURATION_UNITS.contains(unit))
    }
}

/// The canonical units (see `UNITS`) of spans of time.
const DURATION_UNITS: &[&str] = &["s", "min", "h", "day", "week", "month", "year"];

/// What a passage holds, for [`Holdings::holds`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Holdings {
    numbers: HashSet<String>,
    quantities: HashSet<(String, &'static str)>,
    words: HashSet<String>,
    dates: Vec<Date>,
}

impl Holdings {
    pub(crate) fn of(text: &str) -> Holdings {
        let mut holdings = Holdings::default();
        for token in tokens(text) {
            match token.kind {
                Kind::Number { value, unit } => {
                    if let Some(unit) = unit {
                        holdings.quantities.insert((value.clone(), unit));
                    }
                    holdings.numbers.insert(value);
                }
                Kind::Word { folded, .. } => {
                    holdings.words.insert(folded);
                }
                Kind::Date(date) => {
                    // Its parts are held too: "in 2012" is in "14 November 2012".
                    holdings.numbers.extend(date.day.into_iter().chain(date.year).map(|n| n.to_string()));
                    holdings.words.insert(MONTHS[date.month as usize - 1].to_string());
                    holdings.dates.push(date);
                }
            }
        }
        holdings
    }

    pub(crate) fn holds(&self, fact: &Fact) -> bool {
        match &fact.key {
            Key::Number { value, unit: None } => self.numbers.contains(value),
            Key::Number { value, unit: Some(unit) } => self.quantities.contains(&(value.clone(), *unit)),
            Key::Word(word) => self.words.contains(word),
            Key::Date(date) => self.dates.iter().any(|d| date.within(d)),
        }
    }
}

/// The facts `claim` states that `text` does not hold, as the claim writes them: what a
/// sentence citing `text` may not say.
pub fn unheld_facts(claim: &str, text: &str) -> Vec<String> {
    let holdings = Holdings::of(text);
    facts(claim).into_iter().filter(|f| !holdings.holds(f)).map(|f| f.written).collect()
}

/// Whether `claim` states any fact at all (a number, date, quantity or name).
pub fn states_facts(claim: &str) -> bool {
    !facts(claim).is_empty()
}

/// The facts of `sentence`: its numbers and quantities, and the words of its proper names.
pub(crate) fn facts(sentence: &str) -> Vec<Fact> {
    let tokens = tokens(sentence);
    let mut out: Vec<Fact> = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let key = match &token.kind {
            // "one" is more often a pronoun than a count.
            Kind::Number { .. } if token.written.eq_ignore_ascii_case("one") => continue,
            Kind::Number { value, unit } => Key::Number { value: value.clone(), unit: *unit },
            Kind::Date(date) => Key::Date(*date),
            Kind::Word { folded, capital, code, first } => {
                let next_capital =
                    tokens.get(i + 1).is_some_and(|t| matches!(t.kind, Kind::Word { capital: true, .. }));
                let name = *code
                    || (*capital
                        && folded.chars().count() > 1
                        && !COMMON.contains(&folded.as_str())
                        && (!first || next_capital));
                if !name {
                    continue;
                }
                Key::Word(folded.clone())
            }
        };
        let fact = Fact { written: token.written.clone(), key };
        if !out.contains(&fact) {
            out.push(fact);
        }
    }
    out
}

/// Capitalized words that name nothing when they open a clause or are written in a title.
const COMMON: &[&str] = &[
    "the",
    "a",
    "an",
    "it",
    "its",
    "in",
    "on",
    "at",
    "by",
    "for",
    "from",
    "of",
    "to",
    "as",
    "and",
    "or",
    "but",
    "this",
    "that",
    "these",
    "those",
    "there",
    "he",
    "she",
    "they",
    "we",
    "you",
    "his",
    "her",
    "their",
    "yes",
    "no",
    "after",
    "before",
    "during",
    "since",
    "until",
    "when",
    "while",
    "with",
    "without",
    "answer",
    "question",
    "passage",
    "note",
    "however",
    "also",
    "both",
    "each",
    "all",
    "according",
    "dr",
    "mr",
    "mrs",
    "ms",
    "prof",
    "st",
    "mt",
    "sir",
];

struct Token {
    written: String,
    /// Byte range in the text.
    span: (usize, usize),
    kind: Kind,
}

enum Kind {
    Number { value: String, unit: Option<&'static str> },
    Word { folded: String, capital: bool, code: bool, first: bool },
    Date(Date),
}

const MONTHS: &[&str] = &[
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// A capitalized month name or its abbreviation ("Sept", "Nov"): its number.
fn month_of(written: &str) -> Option<u32> {
    if !written.chars().next().is_some_and(char::is_uppercase) {
        return None;
    }
    let lower = written.to_lowercase();
    let lower = if lower == "sept" { "sep".to_string() } else { lower };
    MONTHS.iter().position(|m| *m == lower || (lower.len() == 3 && m.starts_with(&lower))).map(|i| i as u32 + 1)
}

/// Units by their written forms, lower-cased, to a canonical name.
const UNITS: &[(&str, &[&str])] = &[
    ("m", &["m", "metre", "metres", "meter", "meters"]),
    ("km", &["km", "kilometre", "kilometres", "kilometer", "kilometers"]),
    ("cm", &["cm", "centimetre", "centimetres", "centimeter", "centimeters"]),
    ("mm", &["mm", "millimetre", "millimetres", "millimeter", "millimeters"]),
    ("mi", &["mi", "mile", "miles"]),
    ("ft", &["ft", "foot", "feet"]),
    ("kg", &["kg", "kilogram", "kilograms", "kilo", "kilos"]),
    ("t", &["t", "tonne", "tonnes", "ton", "tons"]),
    ("s", &["s", "sec", "secs", "second", "seconds"]),
    ("min", &["min", "mins", "minute", "minutes"]),
    ("h", &["h", "hr", "hrs", "hour", "hours"]),
    ("day", &["day", "days"]),
    ("week", &["week", "weeks"]),
    ("month", &["month", "months"]),
    ("year", &["year", "years", "yr", "yrs"]),
    ("%", &["%", "percent", "pct"]),
    ("usd", &["$", "usd", "dollar", "dollars"]),
    ("eur", &["€", "eur", "euro", "euros"]),
    ("gbp", &["£", "gbp", "pound", "pounds"]),
    ("ha", &["ha", "hectare", "hectares"]),
    ("acre", &["acre", "acres"]),
    ("l", &["l", "litre", "litres", "liter", "liters"]),
    ("kw", &["kw", "kilowatt", "kilowatts"]),
    ("mw", &["mw", "megawatt", "megawatts"]),
    ("gw", &["gw", "gigawatt", "gigawatts"]),
    ("kwh", &["kwh"]),
    ("mwh", &["mwh"]),
    ("gwh", &["gwh"]),
    ("deg", &["°", "°c", "°f", "degree", "degrees"]),
    ("people", &["people", "persons", "inhabitants", "residents"]),
];

fn unit_of(word: &str) -> Option<&'static str> {
    let lower = word.to_lowercase();
    UNITS.iter().find(|(_, forms)| forms.contains(&lower.as_str())).map(|(unit, _)| *unit)
}

const NUMBER_WORDS: &[(&str, u32)] = &[
    ("one", 1),
    ("two", 2),
    ("three", 3),
    ("four", 4),
    ("five", 5),
    ("six", 6),
    ("seven", 7),
    ("eight", 8),
    ("nine", 9),
    ("ten", 10),
    ("eleven", 11),
    ("twelve", 12),
    ("thirteen", 13),
    ("fourteen", 14),
    ("fifteen", 15),
    ("sixteen", 16),
    ("seventeen", 17),
    ("eighteen", 18),
    ("nineteen", 19),
    ("twenty", 20),
    ("thirty", 30),
    ("forty", 40),
    ("fifty", 50),
    ("sixty", 60),
    ("seventy", 70),
    ("eighty", 80),
    ("ninety", 90),
    ("hundred", 100),
];

const SCALES: &[(&str, usize)] = &[("thousand", 3), ("million", 6), ("billion", 9), ("trillion", 12)];

/// Lower case, no diacritics, no possessive.
fn fold(word: &str) -> String {
    let folded: String = word.nfd().filter(|c| !is_combining_mark(*c)).flat_map(char::to_lowercase).collect();
    match folded.strip_suffix("'s").or_else(|| folded.strip_suffix("’s")) {
        Some(stem) if !stem.is_empty() => stem.to_string(),
        _ => folded,
    }
}

/// Digits with a decimal point, scaled by 10^shift, in one canonical spelling.
fn canonical(int: &str, frac: &str, shift: usize) -> String {
    let mut digits = format!("{int}{frac}");
    let point = int.len() + shift;
    while digits.len() < point {
        digits.push('0');
    }
    let (whole, part) = digits.split_at(point);
    let whole = whole.trim_start_matches('0');
    let part = part.trim_end_matches('0');
    match (whole.is_empty(), part.is_empty()) {
        (true, true) => "0".into(),
        (_, true) => whole.into(),
        (true, false) => format!("0.{part}"),
        (false, false) => format!("{whole}.{part}"),
    }
}

fn is_group_space(c: char) -> bool {
    matches!(c, '\u{a0}' | '\u{202f}' | '\u{2009}')
}

/// Numbers (with units and scales) and words, in order.
fn tokens(text: &str) -> Vec<Token> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let at = |i: usize| chars.get(i).map(|&(_, c)| c);
    let byte = |i: usize| chars.get(i).map_or(text.len(), |&(b, _)| b);
    let mut out: Vec<Token> = Vec::new();
    // Whether the next word opens a sentence or clause.
    let mut opening = true;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i].1;
        if c.is_ascii_digit() {
            let start = i;
            let (mut int, mut frac) = (String::new(), String::new());
            while let Some(d) = at(i) {
                if d.is_ascii_digit() {
                    int.push(d);
                    i += 1;
                } else if (d == ',' || is_group_space(d))
                    && (1..=3).all(|k| at(i + k).is_some_and(|c| c.is_ascii_digit()))
                    && !at(i + 4).is_some_and(|c| c.is_ascii_digit())
                {
                    i += 1;
                } else {
                    break;
                }
            }
            if at(i) == Some('.') && at(i + 1).is_some_and(|c| c.is_ascii_digit()) {
                i += 1;
                while let Some(d) = at(i).filter(char::is_ascii_digit) {
                    frac.push(d);
                    i += 1;
                }
            }
            let end_digits = i;
            // Letters attached: an ordinal (12th), a decade (1990s), a unit (35km), or a code.
            let mut j = i;
            while at(j).is_some_and(char::is_alphanumeric) {
                j += 1;
            }
            let attached = &text[byte(i)..byte(j)];
            let mut unit = None;
            if !attached.is_empty() {
                let lower = attached.to_lowercase();
                if ["st", "nd", "rd", "th", "s"].contains(&lower.as_str()) {
                    i = j;
                } else if let Some(u) = unit_of(&lower) {
                    unit = Some(u);
                    i = j;
                } else {
                    // "3D", "12B": a code, compared whole.
                    let written = &text[byte(start)..byte(j)];
                    out.push(Token {
                        written: written.into(),
                        span: (byte(start), byte(j)),
                        kind: Kind::Word { folded: fold(written), capital: true, code: true, first: false },
                    });
                    i = j;
                    opening = false;
                    continue;
                }
            }
            // A currency sign before the number, not inside the token before it.
            let previous_end = out.last().map_or(0, |t: &Token| t.span.1);
            let prefix = start
                .checked_sub(1)
                .filter(|&p| byte(p) >= previous_end)
                .and_then(at)
                .filter(|c| matches!(c, '$' | '£' | '€'))
                .and_then(|c| unit_of(&c.to_string()));
            let (shift, after_scale) = scale_after(text, &chars, i);
            let (suffix, after_unit) =
                if unit.is_none() { unit_after(text, &chars, after_scale) } else { (None, after_scale) };
            let unit = unit.or(suffix).or(prefix);
            let end = if suffix.is_some() { after_unit } else { after_scale.max(end_digits) };
            let written_start = if prefix.is_some() { start - 1 } else { start };
            out.push(Token {
                written: text[byte(written_start)..byte(end)].trim().to_string(),
                span: (byte(written_start), byte(end)),
                kind: Kind::Number { value: canonical(&int, &frac, shift), unit },
            });
            i = end.max(i);
            opening = false;
            continue;
        }
        if c.is_alphabetic() {
            let start = i;
            // Letters, digits, and an apostrophe followed by a letter ("Halvorsen's").
            let apostrophe = |c: Option<char>| matches!(c, Some('\'' | '’'));
            while at(i).is_some_and(char::is_alphanumeric)
                || (apostrophe(at(i)) && at(i + 1).is_some_and(char::is_alphabetic))
            {
                i += 1;
            }
            let written = &text[byte(start)..byte(i)];
            let folded = fold(written);
            if let Some((_, n)) = NUMBER_WORDS.iter().find(|(w, _)| *w == folded) {
                let (shift, after_scale) = scale_after(text, &chars, i);
                let (unit, after_unit) = unit_after(text, &chars, after_scale);
                let end = if unit.is_some() { after_unit } else { after_scale };
                out.push(Token {
                    written: text[byte(start)..byte(end)].trim().to_string(),
                    span: (byte(start), byte(end)),
                    kind: Kind::Number { value: canonical(&n.to_string(), "", shift), unit },
                });
                i = end.max(i);
                opening = false;
                continue;
            }
            let capital = written.chars().next().is_some_and(char::is_uppercase);
            let code = written.chars().any(|c| c.is_ascii_digit());
            out.push(Token {
                written: written.into(),
                span: (byte(start), byte(i)),
                kind: Kind::Word { folded, capital, code, first: opening },
            });
            opening = false;
            continue;
        }
        // Facts are read a sentence at a time: a period inside one ends an abbreviation.
        if matches!(c, ':' | '"' | '“' | '\n') {
            opening = true;
        }
        i += 1;
    }
    inherit_units(text, &mut out);
    merge_dates(text, out)
}

/// A whole number without a unit, when it can be a day (1-31) or a year (3-4 digits).
fn plain_number(token: &Token, max: u32) -> Option<u32> {
    match &token.kind {
        Kind::Number { value, unit: None } => value.parse().ok().filter(|n| *n <= max && *n >= 1),
        _ => None,
    }
}

/// Days, months and years written together become one date: "14 November 2012",
/// "November 14, 2012", "May 1938", "14 May".
fn merge_dates(text: &str, tokens: Vec<Token>) -> Vec<Token> {
    let joined = |a: &Token, b: &Token, comma: bool| {
        let between = text.get(a.span.1..b.span.0).map(str::trim);
        let Some(between) = between else { return false };
        between.is_empty() || (comma && between == ",")
    };
    let month = |t: &Token| match &t.kind {
        Kind::Word { .. } => month_of(&t.written),
        _ => None,
    };
    let year = |t: &Token| plain_number(t, 9999).filter(|y| *y >= 100);
    // (first token, tokens used, the date)
    let mut dates: Vec<(usize, usize, Date)> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let at = |k: usize| tokens.get(i + k);
        let found = if let (Some(day), Some(m)) = (plain_number(&tokens[i], 31), at(1).and_then(month)) {
            let y = at(2).filter(|t| joined(&tokens[i + 1], t, true)).and_then(year);
            joined(&tokens[i], &tokens[i + 1], false).then_some((Some(day), m, y, if y.is_some() { 3 } else { 2 }))
        } else if let Some(m) = month(&tokens[i]) {
            match at(1).filter(|t| joined(&tokens[i], t, false)).and_then(|t| plain_number(t, 31)) {
                Some(day) => {
                    let y = at(2).filter(|t| joined(&tokens[i + 1], t, true)).and_then(year);
                    Some((Some(day), m, y, if y.is_some() { 3 } else { 2 }))
                }
                None => at(1).filter(|t| joined(&tokens[i], t, true)).and_then(year).map(|y| (None, m, Some(y), 2)),
            }
        } else {
            None
        };
        match found {
            Some((day, month, year, used)) => {
                dates.push((i, used, Date { day, month, year }));
                i += used;
            }
            None => i += 1,
        }
    }
    let mut out = Vec::with_capacity(tokens.len());
    let mut dates = dates.into_iter().peekable();
    let mut tokens = tokens.into_iter().enumerate();
    while let Some((i, token)) = tokens.next() {
        match dates.next_if(|(first, _, _)| *first == i) {
            Some((_, used, date)) => {
                let end = tokens.by_ref().take(used - 1).last().map_or(token.span.1, |(_, t)| t.span.1);
                let span = (token.span.0, end);
                out.push(Token { written: text[span.0..span.1].to_string(), span, kind: Kind::Date(date) });
            }
            None => out.push(token),
        }
    }
    out
}

/// A scale word after a number ("2.4 million"): the power of ten and where it ends.
fn scale_after(text: &str, chars: &[(usize, char)], from: usize) -> (usize, usize) {
    match word_after(text, chars, from) {
        Some((word, end)) => match SCALES.iter().find(|(s, _)| *s == word.to_lowercase()) {
            Some((_, shift)) => (*shift, end),
            None => (0, from),
        },
        None => (0, from),
    }
}

/// A unit after a number, written after a space or a hyphen ("35 minutes", "35-minute", "45 %").
fn unit_after(text: &str, chars: &[(usize, char)], from: usize) -> (Option<&'static str>, usize) {
    if let Some((word, end)) = word_after(text, chars, from) {
        if let Some(unit) = unit_of(&word) {
            return (Some(unit), end);
        }
        // Singular forms written with a hyphen: "a 35-minute crossing", "a 212-kilometre river".
        if let Some(unit) = unit_of(&format!("{word}s")) {
            return (Some(unit), end);
        }
        if word.eq_ignore_ascii_case("per")
            && let Some((next, end)) = word_after(text, chars, end)
            && next.eq_ignore_ascii_case("cent")
        {
            return (Some("%"), end);
        }
    }
    (None, from)
}

/// The word (or `%`, `°`) after `from`, past spaces or one hyphen, and where it ends.
fn word_after(text: &str, chars: &[(usize, char)], from: usize) -> Option<(String, usize)> {
    let mut i = from;
    let mut gap = 0;
    while let Some(&(_, c)) = chars.get(i) {
        if c == ' ' || is_group_space(c) || (c == '-' && gap == 0) {
            i += 1;
            gap += 1;
        } else {
            break;
        }
    }
    if gap > 2 {
        return None;
    }
    let start = i;
    match chars.get(i).map(|&(_, c)| c) {
        Some('%') => return Some(("%".into(), i + 1)),
        Some('°') => {
            i += 1;
            if chars.get(i).is_some_and(|&(_, c)| c == 'C' || c == 'F') {
                i += 1;
            }
            return Some(("°".into(), i));
        }
        _ => {}
    }
    while chars.get(i).is_some_and(|&(_, c)| c.is_alphabetic()) {
        i += 1;
    }
    (i > start).then(|| {
        let end_byte = chars.get(i).map_or(text.len(), |&(b, _)| b);
        (text[chars[start].0..end_byte].to_string(), i)
    })
}

/// A unitless number joined to a quantity by "to", "and", "or" or a dash takes its unit:
/// "35 to 50 minutes" and "35-50 minutes" hold 35 minutes.
fn inherit_units(text: &str, tokens: &mut [Token]) {
    for i in (0..tokens.len()).rev() {
        // The next number, past a joining word if there is one.
        let next = (i + 1..tokens.len().min(i + 3)).find(|&j| matches!(tokens[j].kind, Kind::Number { .. }));
        let Some(j) = next else { continue };
        let Kind::Number { unit: Some(unit), .. } = tokens[j].kind else { continue };
        let Some(between) = text.get(tokens[i].span.1..tokens[j].span.0) else { continue };
        let between = between.trim().to_lowercase();
        if ["to", "and", "or", "-", "–", "—"].contains(&between.as_str())
            && let Kind::Number { unit: own @ None, .. } = &mut tokens[i].kind
        {
            *own = Some(unit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(sentence: &str) -> Vec<String> {
        facts(sentence).into_iter().map(|f| f.written).collect()
    }

    fn holds(passage: &str, sentence: &str) -> bool {
        let h = Holdings::of(passage);
        facts(sentence).iter().all(|f| h.holds(f))
    }

    #[test]
    fn numbers_units_and_names_are_found() {
        assert_eq!(
            written("The Varne rises at 1,840 metres and flows 212 km past St. Aldric, says Ingrid Halvorsen."),
            ["Varne", "1,840 metres", "212 km", "Aldric", "Ingrid", "Halvorsen"]
        );
        assert_eq!(written("Ingrid Halvorsen built it in 1887."), ["Ingrid", "Halvorsen", "1887"]);
        // A capital that only opens the sentence is not a name; "one" is not a count.
        assert_eq!(written("Built in the 1990s, it is one of three bridges."), ["1990s", "three"]);
        assert_eq!(written("It costs $2.4 million, or 15% of the budget."), ["$2.4 million", "15%"]);
    }

    #[test]
    fn the_same_fact_written_two_ways_is_held() {
        assert!(holds("It has 1250 seats.", "It has 1,250 seats."));
        // Grouped by a narrow no-break space (SI style); a plain space separates two numbers.
        assert!(holds("It has 1\u{202f}250 seats.", "It has 1,250 seats."));
        assert!(!holds("In 1887 250 workers came.", "In 1887250 workers came."));
        assert!(holds("The budget was 2.4 million euros.", "The budget was €2,400,000."));
        assert!(holds("The crossing takes 45 minutes.", "The crossing takes 45 min."));
        assert!(holds("a 35-minute crossing", "The crossing takes 35 minutes."));
        assert!(holds("Three bridges cross it.", "3 bridges cross it."));
        assert!(holds("It was built by Tomás Núñez in 1887.", "Tomas Nunez's bridge dates from 1887."));
        assert!(holds("between 35 and 50 minutes", "It takes 35 minutes."));
        assert!(holds("It rose 3.50 m.", "It rose 3.5 metres."));
        assert!(holds("a rise of 12 per cent", "It rose 12%."));
        assert!(holds("It opened on 14 November 2012.", "It opened on November 14, 2012."));
        assert!(holds("It opened on 14 November 2012.", "It opened in November 2012."));
        assert!(holds("It opened on 14 November 2012.", "It opened in 2012."));
    }

    #[test]
    fn a_fact_missing_from_the_passage_is_not_held() {
        let passage = "The Varne rises at 1,840 metres on Mount Osric and flows 212 kilometres to the sea; \
                       the crossing takes 35 minutes.";
        assert!(!holds(passage, "The Varne is 1,840 metres in height and flows 71.69 kilometres."));
        assert!(!holds(passage, "The crossing takes 3 minutes."));
        // Right number, wrong unit.
        assert!(!holds(passage, "The Varne flows 212 metres."));
        assert!(!holds(passage, "The Varne rises on Mount Olympus."));
        assert!(holds(passage, "The Varne flows 212 km from Mount Osric."));
        assert!(!holds("It has 1250 seats.", "It has 12.5 seats."));
        // Every part of a date is in the passage, but not as one date.
        let passage = "Work began on 14 November 2009 and the farm opened in 2012.";
        assert!(!holds(passage, "It opened on 14 November 2012."));
        assert!(holds(passage, "Work began in November 2009."));
        assert_eq!(written("It opened on 14 November 2012, in May."), ["14 November 2012", "May"]);
    }
}
