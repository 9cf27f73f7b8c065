//! Domain language models for the offline recogniser: a small trigram model of what callers
//! say to *this* assistant, built at run time from the assistant's own texts.
//!
//! PocketSphinx's general US English model spreads its probability over 130 000 words, so on a
//! phone line (and on synthetic speech) it hears "are you on like a double w" where the caller
//! said "I'd like to book a cleaning". A production recogniser is told the domain (Deepgram's
//! `keyterms`); the offline one gets a language model of the domain instead:
//!
//! - the caller side of front-desk phone calls ([`PHONE_CALLS`]: greetings, bookings, days,
//!   times, numbers, names, questions, yes/no, goodbyes), shipped with the crate;
//! - the assistant's greeting, voicemail message, system prompt, tool names, descriptions and
//!   `enum` values, transfer destinations, and the STT key terms: the business's own words
//!   (its services, street, staff).
//!
//! The texts are normalised the way people say them ("42" → "forty two", "10:30" → "ten
//! thirty", "8 am" → "eight a.m.", "Dr." → "doctor"), restricted to the words of the
//! pronunciation dictionary (a word it lacks cuts the sentence there, so no false n-gram
//! spans it) and counted into an ARPA trigram model with absolute discounting and back-off
//! weights (Ney et al.), which PocketSphinx reads like any other `-lm` file.
//!
//! Everyday words outside the domain can be mixed into the unigrams from a general model
//! ([`Background`]; the offline STT takes the 20 000 likeliest words of PocketSphinx's general
//! model at 10 %), so "yesterday" or "school" stay possible while the domain's phrases keep
//! their weight. Still, a caller who talks about something else is heard as the nearest domain
//! sentence more often than not; pass the general model
//! ([`super::pocketsphinx::PocketSphinxConfig::default`]) for open conversation.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::Value;
use voxline_engine::config::tools::Tool;
use voxline_engine::config::Assistant;

use super::numbers::{ONES, ORDINALS, TENS};

/// The caller side of front-desk phone calls, one sentence per line (`#` starts a comment).
pub const PHONE_CALLS: &str = include_str!("phone_calls.txt");

/// Highest n-gram order of the models built here.
pub const ORDER: usize = 3;

/// Absolute discount subtracted from every seen n-gram count of order 2 and above.
const DISCOUNT: f64 = 0.5;

/// Pseudo-count added to every unigram, so rare domain words keep a usable probability.
const UNIGRAM_FLOOR: f64 = 0.1;

/// Sentence start and end tokens of the ARPA format.
const BOS: &str = "<s>";
const EOS: &str = "</s>";

/// The words a pronunciation dictionary can say (PocketSphinx's `word PHONES…` lines; the
/// alternative pronunciations `word(2)` count as `word`).
#[derive(Clone, Debug, Default)]
pub struct Vocabulary {
    words: HashSet<String>,
}

impl Vocabulary {
    /// Reads a dictionary file such as `cmudict-en-us.dict`.
    pub fn from_dictionary_file(path: &Path) -> io::Result<Self> {
        Ok(Vocabulary::from_dictionary(&std::fs::read_to_string(path)?))
    }

    /// Parses dictionary text: the first field of every non-empty line.
    pub fn from_dictionary(text: &str) -> Self {
        let words = text
            .lines()
            .filter_map(|line| line.split_whitespace().next())
            .map(|w| match w.find('(') {
                Some(i) if w.ends_with(')') => &w[..i],
                _ => w,
            })
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect();
        Vocabulary { words }
    }

    /// True when the dictionary has `word` (lower case).
    pub fn contains(&self, word: &str) -> bool {
        self.words.contains(word)
    }

    /// Number of distinct words.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// True for an empty dictionary.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }
}

/// Sentences of spoken words, ready to be counted.
#[derive(Clone, Debug, Default)]
pub struct DomainCorpus {
    sentences: Vec<Vec<String>>,
}

impl DomainCorpus {
    /// An empty corpus.
    pub fn new() -> Self {
        DomainCorpus::default()
    }

    /// The built-in caller phrases ([`PHONE_CALLS`]) plus everything `assistant` says about
    /// its business (see the module docs).
    pub fn for_assistant(assistant: &Assistant) -> Self {
        let mut corpus = DomainCorpus::new();
        corpus.add_lines(PHONE_CALLS);
        corpus.add_assistant(assistant);
        corpus
    }

    /// Adds text with one sentence (or more) per line; lines starting with `#` are skipped.
    pub fn add_lines(&mut self, text: &str) {
        for line in text.lines() {
            let line = line.trim();
            if !line.is_empty() && !line.starts_with('#') {
                self.add_text(line);
            }
        }
    }

    /// Adds running text: split into sentences at `.`, `!`, `?`, `;`, `:` and line breaks,
    /// and normalised to spoken words.
    pub fn add_text(&mut self, text: &str) {
        for sentence in sentences(text) {
            if !sentence.is_empty() {
                self.sentences.push(sentence);
            }
        }
    }

    /// Adds the assistant's greeting, voicemail message, system and other prompt messages,
    /// tools and STT key terms.
    pub fn add_assistant(&mut self, assistant: &Assistant) {
        for text in [&assistant.first_message, &assistant.voicemail_message]
            .into_iter()
            .flatten()
        {
            self.add_text(text);
        }
        if let Some(name) = &assistant.business_name {
            self.add_text(name);
        }
        for message in &assistant.llm_config.messages {
            self.add_text(&message.content);
        }
        for tool in &assistant.llm_config.tools {
            match tool {
                Tool::Function(f) => {
                    self.add_text(&f.name.replace('_', " "));
                    for text in [&f.description, &f.message].into_iter().flatten() {
                        self.add_text(text);
                    }
                    if let Some(parameters) = &f.parameters {
                        self.add_schema(parameters);
                    }
                }
                Tool::TransferCall(t) => {
                    for d in &t.destinations {
                        self.add_text(&d.description);
                        if let Some(m) = &d.message {
                            self.add_text(m);
                        }
                    }
                }
                Tool::EndCall => {}
            }
        }
        if let Some(stt) = &assistant.stt_config {
            for term in stt.keyterms() {
                self.add_text(term);
            }
        }
    }

    /// Adds the descriptions and `enum` values of a JSON schema, recursively.
    fn add_schema(&mut self, schema: &Value) {
        match schema {
            Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("description", Value::String(s)) => self.add_text(s),
                        ("enum", Value::Array(values)) => {
                            for v in values.iter().filter_map(Value::as_str) {
                                self.add_text(v);
                            }
                        }
                        ("properties", Value::Object(props)) => {
                            for (name, prop) in props {
                                self.add_text(&name.replace('_', " "));
                                self.add_schema(prop);
                            }
                        }
                        (_, v @ (Value::Object(_) | Value::Array(_))) => self.add_schema(v),
                        _ => {}
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| self.add_schema(v)),
            _ => {}
        }
    }

    /// The sentences, as spoken words.
    pub fn sentences(&self) -> &[Vec<String>] {
        &self.sentences
    }

    /// Keeps only words `vocabulary` has; an unknown word splits its sentence in two so no
    /// n-gram spans the gap. Returns how many distinct words were dropped.
    pub fn restrict_to(&mut self, vocabulary: &Vocabulary) -> usize {
        let mut dropped = HashSet::new();
        let mut kept = Vec::with_capacity(self.sentences.len());
        for sentence in self.sentences.drain(..) {
            let mut part = Vec::new();
            for word in sentence {
                if vocabulary.contains(&word) {
                    part.push(word);
                } else {
                    dropped.insert(word);
                    if !part.is_empty() {
                        kept.push(std::mem::take(&mut part));
                    }
                }
            }
            if !part.is_empty() {
                kept.push(part);
            }
        }
        self.sentences = kept;
        dropped.len()
    }

    /// The trigram model of these sentences in ARPA text format.
    pub fn to_arpa(&self) -> String {
        NGramModel::estimate(&self.sentences).to_arpa()
    }

    /// Like [`DomainCorpus::to_arpa`], with `background` words mixed into the unigrams (see
    /// [`NGramModel::estimate_with_background`]).
    pub fn to_arpa_with_background(&self, background: &Background) -> String {
        NGramModel::estimate_with_background(&self.sentences, background).to_arpa()
    }
}

/// Everyday words a domain model should still be able to hear: unigram probabilities from a
/// general model, mixed into the domain's unigrams with a small weight.
#[derive(Clone, Debug, Default)]
pub struct Background {
    /// (word, probability), normalised to sum to one.
    words: Vec<(String, f64)>,
    /// Share of the unigram distribution the background gets (0 to 1).
    weight: f64,
}

impl Background {
    /// The `limit` likeliest of `unigrams` (word, log10 probability) that `vocabulary` has,
    /// renormalised, with `weight` of the unigram mass.
    pub fn new(
        unigrams: &[(String, f64)],
        vocabulary: &Vocabulary,
        limit: usize,
        weight: f64,
    ) -> Self {
        let mut words: Vec<(String, f64)> = unigrams
            .iter()
            .filter(|(w, _)| w != BOS && w != EOS && vocabulary.contains(w))
            .map(|(w, l)| (w.clone(), 10f64.powf(*l)))
            .collect();
        words.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        words.truncate(limit);
        let total: f64 = words.iter().map(|(_, p)| p).sum();
        if total > 0.0 {
            words.iter_mut().for_each(|(_, p)| *p /= total);
        }
        Background {
            weight: if words.is_empty() {
                0.0
            } else {
                weight.clamp(0.0, 1.0)
            },
            words,
        }
    }

    /// Number of background words.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }
}

/// The n-grams of one order: n-gram → (log10 probability, log10 back-off weight).
type Order = BTreeMap<Vec<String>, (f64, Option<f64>)>;

/// An estimated back-off n-gram model (orders 1 to [`ORDER`]).
#[derive(Clone, Debug)]
pub struct NGramModel {
    /// For each order (index 0 = unigrams): n-gram → (log10 probability, log10 back-off).
    grams: Vec<Order>,
    /// log10 back-off weight of `<s>`, which is listed but never predicted.
    bos_backoff: f64,
}

impl NGramModel {
    /// Counts `sentences` (each wrapped in `<s>` … `</s>`) and estimates probabilities with
    /// absolute discounting and back-off weights that make every context sum to one.
    pub fn estimate(sentences: &[Vec<String>]) -> Self {
        NGramModel::estimate_with_background(sentences, &Background::default())
    }

    /// [`NGramModel::estimate`] with the unigrams interpolated with `background`:
    /// `P(w) = (1 − λ)·P_domain(w) + λ·P_background(w)`. Higher orders back off to that
    /// mixture, so the domain's phrases keep their weight and everyday words outside the
    /// domain stay possible.
    pub fn estimate_with_background(sentences: &[Vec<String>], background: &Background) -> Self {
        // counts[n-1]: n-gram counts.
        let mut counts: Vec<BTreeMap<Vec<String>, f64>> = vec![BTreeMap::new(); ORDER];
        for sentence in sentences {
            let mut padded = Vec::with_capacity(sentence.len() + 2);
            padded.push(BOS.to_owned());
            padded.extend(sentence.iter().cloned());
            padded.push(EOS.to_owned());
            for n in 1..=ORDER {
                for gram in padded.windows(n) {
                    if n == 1 && gram[0] == BOS {
                        continue;
                    }
                    *counts[n - 1].entry(gram.to_vec()).or_insert(0.0) += 1.0;
                }
            }
        }

        // Unigrams: counts plus a floor, normalised; <s> is never predicted.
        let total: f64 = counts[0].values().sum();
        let vocabulary = counts[0].len() as f64;
        let mut prob: Vec<BTreeMap<Vec<String>, f64>> = vec![BTreeMap::new(); ORDER];
        let lambda = background.weight;
        for (gram, c) in &counts[0] {
            prob[0].insert(
                gram.clone(),
                (1.0 - lambda) * (c + UNIGRAM_FLOOR) / (total + UNIGRAM_FLOOR * vocabulary),
            );
        }
        for (word, p) in &background.words {
            *prob[0].entry(vec![word.clone()]).or_insert(0.0) += lambda * p;
        }

        // Higher orders: discounted relative frequencies within each context.
        let mut backoff: BTreeMap<Vec<String>, f64> = BTreeMap::new();
        for n in 2..=ORDER {
            let mut context_total: BTreeMap<&[String], f64> = BTreeMap::new();
            for (gram, c) in &counts[n - 1] {
                *context_total.entry(&gram[..n - 1]).or_insert(0.0) += c;
            }
            for (gram, c) in &counts[n - 1] {
                let p = (c - DISCOUNT) / context_total[&gram[..n - 1]];
                prob[n - 1].insert(gram.clone(), p);
            }
            // Back-off weight of each context of length n-1: the discounted mass, spread over
            // the lower-order probabilities of the words this context never saw.
            let mut seen_mass: BTreeMap<Vec<String>, (f64, f64)> = BTreeMap::new();
            for (gram, p) in &prob[n - 1] {
                let lower = backed_off(&prob, &backoff, &gram[1..]);
                let entry = seen_mass
                    .entry(gram[..n - 1].to_vec())
                    .or_insert((0.0, 0.0));
                entry.0 += p;
                entry.1 += lower;
            }
            for (context, (seen, lower)) in seen_mass {
                let left = (1.0 - seen).max(0.0);
                let weight = if 1.0 - lower > 1e-9 {
                    left / (1.0 - lower)
                } else {
                    1.0
                };
                backoff.insert(context, weight);
            }
        }

        let bos_backoff = backoff
            .get(&vec![BOS.to_owned()])
            .map_or(0.0, |w| w.max(1e-12).log10());
        let grams = prob
            .into_iter()
            .map(|order| {
                order
                    .into_iter()
                    .map(|(gram, p)| {
                        let bo = backoff.get(&gram).map(|w| w.max(1e-12).log10());
                        (gram, (p.log10(), bo))
                    })
                    .collect()
            })
            .collect();
        NGramModel { grams, bos_backoff }
    }

    /// Number of n-grams of order `n` (1-based), `<s>` included among the unigrams.
    pub fn count(&self, n: usize) -> usize {
        self.grams.get(n - 1).map_or(0, |g| g.len()) + usize::from(n == 1)
    }

    /// The probability of `word` after `history` (at most `ORDER - 1` words are used),
    /// following the back-off chain as a decoder does.
    pub fn probability(&self, history: &[&str], word: &str) -> f64 {
        let keep = history.len().min(ORDER - 1);
        let mut gram: Vec<String> = history[history.len() - keep..]
            .iter()
            .map(|w| (*w).to_owned())
            .collect();
        gram.push(word.to_owned());
        self.log10_probability(&gram).map_or(0.0, |l| 10f64.powf(l))
    }

    fn log10_probability(&self, gram: &[String]) -> Option<f64> {
        if let Some((p, _)) = self.grams[gram.len() - 1].get(gram) {
            return Some(*p);
        }
        if gram.len() == 1 {
            return None;
        }
        let context = &gram[..gram.len() - 1];
        let bo = if context.len() == 1 && context[0] == BOS {
            self.bos_backoff
        } else {
            self.grams[context.len() - 1]
                .get(context)
                .and_then(|(_, bo)| *bo)
                .unwrap_or(0.0)
        };
        self.log10_probability(&gram[1..]).map(|l| l + bo)
    }

    /// The model in ARPA text format.
    pub fn to_arpa(&self) -> String {
        let mut out = String::from("\\data\\\n");
        for n in 1..=ORDER {
            let _ = writeln!(out, "ngram {n}={}", self.count(n));
        }
        for (i, order) in self.grams.iter().enumerate() {
            let _ = write!(out, "\n\\{}-grams:\n", i + 1);
            if i == 0 {
                let _ = writeln!(out, "-99.000000\t{BOS}\t{:.6}", self.bos_backoff);
            }
            for (gram, (p, bo)) in order {
                let _ = write!(out, "{p:.6}\t{}", gram.join(" "));
                match bo {
                    Some(bo) if i + 1 < ORDER => {
                        let _ = writeln!(out, "\t{bo:.6}");
                    }
                    _ => out.push('\n'),
                }
            }
        }
        out.push_str("\n\\end\\\n");
        out
    }
}

/// P(gram's last word | the rest) from the probabilities and back-off weights known so far.
fn backed_off(
    prob: &[BTreeMap<Vec<String>, f64>],
    backoff: &BTreeMap<Vec<String>, f64>,
    gram: &[String],
) -> f64 {
    if let Some(p) = prob[gram.len() - 1].get(gram) {
        return *p;
    }
    if gram.len() == 1 {
        return 0.0;
    }
    let weight = backoff.get(&gram[..gram.len() - 1]).copied().unwrap_or(1.0);
    weight * backed_off(prob, backoff, &gram[1..])
}

/// Writes `arpa` under `dir` with a name derived from its content and returns the path; an
/// existing file of the same content is reused. The file is written whole, then renamed, so
/// concurrent calls never read a partial model.
pub fn write_cached(dir: &Path, arpa: &str) -> io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("domain-{:016x}.lm", fnv1a(arpa.as_bytes())));
    if std::fs::read(&path).is_ok_and(|existing| existing == arpa.as_bytes()) {
        return Ok(path);
    }
    let partial = dir.join(format!(
        ".domain-{:016x}.{}.partial",
        fnv1a(arpa.as_bytes()),
        std::process::id()
    ));
    std::fs::write(&partial, arpa)?;
    std::fs::rename(&partial, &path)?;
    Ok(path)
}

/// 64-bit FNV-1a: a stable content hash for cache file names.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

// ---------------------------------------------------------------------------------------------
// Text normalisation: written text → the words a caller would say.

/// Abbreviations that end with a period without ending the sentence, and what is said.
const ABBREVIATIONS: &[(&str, &str)] = &[
    ("dr", "doctor"),
    ("mr", "mister"),
    ("mrs", "missus"),
    ("ms", "miss"),
    ("st", "street"),
    ("ave", "avenue"),
    ("rd", "road"),
    ("no", "number"),
    ("approx", "approximately"),
    ("e.g", "for example"),
    ("i.e", "that is"),
    ("etc", "etcetera"),
];

/// Splits `text` into sentences of normalised words.
fn sentences(text: &str) -> Vec<Vec<String>> {
    let mut out = vec![Vec::new()];
    let mut previous_number = false;
    for raw in text.split_whitespace() {
        let lower = raw.to_lowercase();
        let ends_sentence = lower.ends_with(['!', '?', ';', ':'])
            || lower.ends_with('.') && !is_abbreviation(&lower);
        let token = lower.trim_matches(|c: char| !c.is_alphanumeric() && c != '\'' && c != '.');
        let token = token.trim_end_matches('.').trim_matches('\'');
        let words = out.last_mut().expect("at least one sentence");
        let before = words.len();
        say_token(token, previous_number, words);
        previous_number =
            token.chars().next().is_some_and(|c| c.is_ascii_digit()) && words.len() > before;
        if ends_sentence && !out.last().is_some_and(Vec::is_empty) {
            out.push(Vec::new());
        }
        // Line-internal punctuation such as "X-rays," needs nothing more.
    }
    out.retain(|s| !s.is_empty());
    out
}

fn is_abbreviation(word: &str) -> bool {
    let bare = word.trim_end_matches('.');
    ABBREVIATIONS.iter().any(|(a, _)| *a == bare) || bare == "a.m" || bare == "p.m"
}

/// Appends what is said for one token (already lower case, outer punctuation trimmed).
fn say_token(token: &str, previous_number: bool, words: &mut Vec<String>) {
    if token.is_empty() {
        return;
    }
    if let Some((_, said)) = ABBREVIATIONS.iter().find(|(a, _)| *a == token) {
        words.extend(said.split(' ').map(str::to_owned));
        return;
    }
    match token {
        "am" | "a.m" if previous_number => return words.push("a.m.".to_owned()),
        "pm" | "p.m" if previous_number => return words.push("p.m.".to_owned()),
        "a.m" => return words.push("a.m.".to_owned()),
        "p.m" => return words.push("p.m.".to_owned()),
        "&" => return words.push("and".to_owned()),
        _ => {}
    }
    // Times: 10:30, 9:05, 10:00.
    if let Some((h, m)) = token.split_once(':') {
        if let (Ok(h), Ok(m)) = (h.parse::<u32>(), m.parse::<u32>()) {
            say_number(h, words);
            match m {
                0 => words.push("o'clock".to_owned()),
                1..=9 => {
                    words.push("oh".to_owned());
                    say_number(m, words);
                }
                _ => say_number(m, words),
            }
            return;
        }
    }
    // Digits glued to letters: 8am, 3pm, 1st, 24th, 45-minute.
    let digits: String = token.chars().take_while(char::is_ascii_digit).collect();
    if !digits.is_empty() {
        let rest = &token[digits.len()..];
        let n: u64 = digits.parse().unwrap_or(0);
        match rest {
            "st" | "nd" | "rd" | "th" if n <= 31 => {
                if let Some(ordinal) = ORDINALS.get(n as usize) {
                    words.push((*ordinal).to_owned());
                    return;
                }
            }
            _ => {}
        }
        say_digits(&digits, words);
        let rest = rest.trim_start_matches(['-', '.', ',', '/']);
        match rest {
            "" => {}
            "am" => words.push("a.m.".to_owned()),
            "pm" => words.push("p.m.".to_owned()),
            _ => say_token(rest, true, words),
        }
        return;
    }
    // Hyphenated and dotted compounds are said as their parts ("x-rays" → "x rays").
    if token.contains(['-', '/', '.', ',']) {
        for part in token.split(['-', '/', '.', ',']) {
            say_token(part, false, words);
        }
        return;
    }
    let word: String = token
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '\'')
        .collect();
    if !word.is_empty() {
        words.push(word);
    }
}

/// Says a run of digits: as a number up to 9999 (years and prices read the same way), digit
/// by digit beyond (phone numbers).
fn say_digits(digits: &str, words: &mut Vec<String>) {
    match digits.parse::<u32>() {
        Ok(n) if digits.len() <= 4 && !(digits.len() > 1 && digits.starts_with('0')) => {
            say_number(n, words)
        }
        _ => {
            for d in digits.chars().filter_map(|c| c.to_digit(10)) {
                words.push(ONES[d as usize].to_owned());
            }
        }
    }
}

/// Says `n` (0..=9999) in words: "forty two", "nine hundred", "two thousand twenty six".
fn say_number(n: u32, words: &mut Vec<String>) {
    let push = |w: &str, words: &mut Vec<String>| {
        for part in w.split(['-', ' ']) {
            words.push(part.to_owned());
        }
    };
    if n >= 1000 {
        say_number(n / 1000, words);
        words.push("thousand".to_owned());
        if !n.is_multiple_of(1000) {
            say_number(n % 1000, words);
        }
        return;
    }
    if n >= 100 {
        push(ONES[(n / 100) as usize], words);
        words.push("hundred".to_owned());
        if !n.is_multiple_of(100) {
            say_number(n % 100, words);
        }
        return;
    }
    if n < 20 {
        push(ONES[n as usize], words);
    } else {
        push(TENS[(n / 10) as usize], words);
        if !n.is_multiple_of(10) {
            push(ONES[(n % 10) as usize], words);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(text: &str) -> Vec<String> {
        sentences(text).into_iter().flatten().collect()
    }

    fn joined(text: &str) -> String {
        said(text).join(" ")
    }

    #[test]
    fn numbers_times_and_abbreviations_are_spoken() {
        assert_eq!(joined("42 Harbour Street"), "forty two harbour street");
        assert_eq!(joined("at 10:30"), "at ten thirty");
        assert_eq!(joined("at 10:00"), "at ten o'clock");
        assert_eq!(joined("9:05"), "nine oh five");
        assert_eq!(joined("8 am to 6 pm"), "eight a.m. to six p.m.");
        assert_eq!(joined("9am"), "nine a.m.");
        assert_eq!(joined("Dr. Maya Lindqvist"), "doctor maya lindqvist");
        assert_eq!(joined("X-rays 85 dollars"), "x rays eighty five dollars");
        assert_eq!(joined("the 17th"), "the seventeenth");
        assert_eq!(joined("2026"), "two thousand twenty six");
        assert_eq!(joined("900"), "nine hundred");
        assert_eq!(joined("5551234"), "five five five one two three four");
        assert_eq!(joined("24 hours' notice"), "twenty four hours notice");
        assert_eq!(joined("I'd like that!"), "i'd like that");
    }

    #[test]
    fn sentences_split_at_punctuation_but_not_abbreviations() {
        let s = sentences("Hello there. See Dr. Haddad at 9 a.m. tomorrow? Yes; fine");
        let s: Vec<String> = s.iter().map(|w| w.join(" ")).collect();
        assert_eq!(
            s,
            [
                "hello there",
                "see doctor haddad at nine a.m. tomorrow",
                "yes",
                "fine"
            ]
        );
    }

    #[test]
    fn unknown_words_split_sentences() {
        let vocabulary = Vocabulary::from_dictionary("i AY\nlike L AY K\nto T UW\nbook B UH K\n");
        let mut corpus = DomainCorpus::new();
        corpus.add_text("I like to zorble book");
        assert_eq!(corpus.restrict_to(&vocabulary), 1);
        assert_eq!(
            corpus.sentences(),
            [
                vec!["i".to_owned(), "like".into(), "to".into()],
                vec!["book".to_owned()]
            ]
        );
    }

    #[test]
    fn dictionary_alternates_count_once() {
        let v = Vocabulary::from_dictionary("read R EH D\nread(2) R IY D\nRed R EH D\n\n");
        assert_eq!(v.len(), 2);
        assert!(v.contains("read") && v.contains("red"));
    }

    fn model(lines: &str) -> (NGramModel, Vec<String>) {
        let mut corpus = DomainCorpus::new();
        corpus.add_lines(lines);
        let mut vocabulary: Vec<String> = corpus.sentences().iter().flatten().cloned().collect();
        vocabulary.sort();
        vocabulary.dedup();
        vocabulary.push(EOS.to_owned());
        (NGramModel::estimate(corpus.sentences()), vocabulary)
    }

    #[test]
    fn every_context_is_a_probability_distribution() {
        let (m, vocabulary) = model(
            "i would like to book a cleaning\ni would like a check-up on tuesday\n\
             book it for tuesday\nthank you\nthank you goodbye\n",
        );
        let histories: Vec<Vec<&str>> = vec![
            vec![BOS],
            vec![BOS, "i"],
            vec!["would", "like"],
            vec!["like", "to"],
            vec!["thank", "you"],
            vec!["tuesday"],
            vec!["goodbye", "cleaning"],
            vec!["zzz"],
        ];
        for h in histories {
            let total: f64 = vocabulary.iter().map(|w| m.probability(&h, w)).sum();
            assert!((total - 1.0).abs() < 1e-6, "context {h:?} sums to {total}");
        }
    }

    #[test]
    fn a_background_keeps_every_context_a_distribution() {
        let mut corpus = DomainCorpus::new();
        corpus.add_lines("i would like to book a cleaning\nthank you goodbye\n");
        let dictionary = "i AY\nwould W UH D\nlike L AY K\nto T UW\nbook B UH K\na AH\n\
                          cleaning K L IY N IH NG\nthank TH AE NG K\nyou Y UW\n\
                          goodbye G UH D B AY\nyesterday Y EH S T ER D EY\nschool S K UW L\n";
        let vocabulary = Vocabulary::from_dictionary(dictionary);
        let unigrams = vec![
            ("yesterday".to_owned(), -3.0),
            ("school".to_owned(), -3.3),
            ("i".to_owned(), -1.5),
            ("notindictionary".to_owned(), -1.0),
            ("</s>".to_owned(), -1.0),
        ];
        let background = Background::new(&unigrams, &vocabulary, 10, 0.2);
        assert_eq!(background.len(), 3);
        let m = NGramModel::estimate_with_background(corpus.sentences(), &background);
        let mut words: Vec<String> = ["i", "would", "like", "to", "book", "a", "cleaning"]
            .iter()
            .chain(&["thank", "you", "goodbye", "yesterday", "school", EOS])
            .map(|w| (*w).to_owned())
            .collect();
        words.sort();
        for h in [
            vec![BOS],
            vec!["to", "book"],
            vec!["cleaning"],
            vec!["school"],
        ] {
            let total: f64 = words.iter().map(|w| m.probability(&h, w)).sum();
            assert!((total - 1.0).abs() < 1e-6, "context {h:?} sums to {total}");
        }
        assert!(m.probability(&["to"], "school") > 0.0);
        assert!(m.probability(&["to"], "book") > 100.0 * m.probability(&["to"], "school"));
        assert_eq!(m.probability(&["to"], "notindictionary"), 0.0);
    }

    #[test]
    fn seen_continuations_are_likelier_than_unseen() {
        let (m, _) = model("i would like to book a cleaning\nthank you goodbye\n");
        assert!(m.probability(&["like"], "to") > m.probability(&["like"], "goodbye"));
        assert!(m.probability(&["to", "book"], "a") > 0.2);
        assert!(m.probability(&["to", "book"], "cleaning") > 0.0);
    }

    #[test]
    fn arpa_header_matches_the_sections() {
        let (m, _) = model("hello there\nhello again\n");
        let arpa = m.to_arpa();
        let lines: Vec<&str> = arpa.lines().collect();
        assert_eq!(lines[0], "\\data\\");
        for n in 1..=ORDER {
            let declared: usize = lines
                .iter()
                .find_map(|l| l.strip_prefix(&format!("ngram {n}=")))
                .and_then(|v| v.parse().ok())
                .expect("count line");
            let header = format!("\\{n}-grams:");
            let start = lines.iter().position(|l| *l == header).expect("section") + 1;
            let listed = lines[start..].iter().take_while(|l| !l.is_empty()).count();
            assert_eq!(declared, listed, "order {n}");
        }
        assert!(arpa.contains("-99.000000\t<s>\t"));
        assert!(arpa.trim_end().ends_with("\\end\\"));
    }

    #[test]
    fn cached_file_is_reused_and_named_by_content() {
        let dir = std::env::temp_dir().join(format!("voxline-lm-test-{}", std::process::id()));
        let a = write_cached(&dir, "model a").expect("write");
        let again = write_cached(&dir, "model a").expect("write");
        let b = write_cached(&dir, "model b").expect("write");
        assert_eq!(a, again);
        assert_ne!(a, b);
        assert_eq!(std::fs::read_to_string(&b).expect("read"), "model b");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_builtin_phone_corpus_reads() {
        let mut corpus = DomainCorpus::new();
        corpus.add_lines(PHONE_CALLS);
        assert!(corpus.sentences().len() > 300);
        assert!(corpus
            .sentences()
            .iter()
            .any(|s| s.join(" ") == "i'd like to book an appointment"));
    }
}
