//! Splits streamed model text into speakable chunks at sentence and clause boundaries,
//! so TTS can start on the first clause instead of waiting for the whole reply.

/// Accumulates text deltas and yields chunks at natural boundaries.
#[derive(Debug, Default, Clone)]
pub struct TextChunker {
    pending: String,
    emitted_any: bool,
}

/// Shortest clause (in chars) cut at a comma-like boundary; shorter ones wait for more text.
const MIN_CLAUSE: usize = 24;
/// The first chunk is cut earlier to start speaking sooner.
const MIN_FIRST_CLAUSE: usize = 12;
/// Text this long is cut at the last space even without punctuation.
const MAX_CHUNK: usize = 180;

impl TextChunker {
    /// A chunker with nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a delta and returns every complete chunk it made available.
    pub fn push(&mut self, delta: &str) -> Vec<String> {
        self.pending.push_str(delta);
        let mut out = Vec::new();
        while let Some(cut) = self.find_cut() {
            let chunk: String = self.pending.drain(..cut).collect();
            let chunk = chunk.trim().to_string();
            if !chunk.is_empty() {
                self.emitted_any = true;
                out.push(chunk);
            }
        }
        out
    }

    /// Returns whatever is left (the end of the reply).
    pub fn finish(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.pending);
        let rest = rest.trim();
        (!rest.is_empty()).then(|| rest.to_string())
    }

    fn find_cut(&self) -> Option<usize> {
        let text = &self.pending;
        let min_clause = if self.emitted_any {
            MIN_CLAUSE
        } else {
            MIN_FIRST_CLAUSE
        };
        let chars: Vec<(usize, char)> = text.char_indices().collect();
        for (i, &(pos, c)) in chars.iter().enumerate() {
            // A boundary needs the following char to be whitespace (so "3.5" or "e.g." mid-word doesn't cut).
            let next_is_space = chars.get(i + 1).is_some_and(|&(_, n)| n.is_whitespace());
            if !next_is_space {
                continue;
            }
            let end = pos + c.len_utf8();
            match c {
                '.' | '!' | '?' | '…' | ';' | ':' => {
                    if c == '.' && is_abbreviation(&text[..pos]) {
                        continue;
                    }
                    return Some(end);
                }
                ',' | '—' | '–' if end >= min_clause => return Some(end),
                _ => {}
            }
        }
        if text.len() >= MAX_CHUNK {
            return text[..MAX_CHUNK].rfind(' ').filter(|&p| p > 0);
        }
        None
    }
}

fn is_abbreviation(before: &str) -> bool {
    let word = before
        .rsplit(|c: char| c.is_whitespace())
        .next()
        .unwrap_or("");
    matches!(
        word.to_ascii_lowercase().as_str(),
        "mr" | "mrs" | "ms" | "dr" | "st" | "vs" | "etc" | "e.g" | "i.e" | "no" | "approx"
    ) || (word.len() == 1 && word.chars().all(|c| c.is_ascii_uppercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_at_sentences_across_deltas() {
        let mut c = TextChunker::new();
        let mut out = Vec::new();
        for d in [
            "Hel",
            "lo there! How ",
            "can I he",
            "lp you today? We",
            " open at 9.",
        ] {
            out.extend(c.push(d));
        }
        out.extend(c.finish());
        assert_eq!(
            out,
            vec!["Hello there!", "How can I help you today?", "We open at 9."]
        );
    }

    #[test]
    fn first_clause_cut_early_and_decimals_kept() {
        let mut c = TextChunker::new();
        let out = c.push("Sure, the price is 3.5 euros per month, billed yearly ");
        assert_eq!(out, vec!["Sure, the price is 3.5 euros per month,"]);
        assert_eq!(c.finish().as_deref(), Some("billed yearly"));
    }

    #[test]
    fn abbreviations_do_not_cut() {
        let mut c = TextChunker::new();
        let out = c.push("Dr. Smith will see you at noon. ");
        assert_eq!(out, vec!["Dr. Smith will see you at noon."]);
    }

    #[test]
    fn long_text_without_punctuation_is_cut_at_a_space() {
        let mut c = TextChunker::new();
        let long = "word ".repeat(60);
        let out = c.push(&long);
        assert!(!out.is_empty());
        assert!(out.iter().all(|s| s.len() <= MAX_CHUNK));
    }
}
