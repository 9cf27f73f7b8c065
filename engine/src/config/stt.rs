//! `stt_config`: the live speech-to-text provider of a standard-pipeline assistant (spec §8.3).
//!
//! Common fields are typed and required; provider-only knobs are optional and checked against the
//! ranges of the provider that owns them. Knobs of another provider are accepted and ignored.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::check;
use super::error::{join, ConfigError};
use super::ConfigSection;

string_enum! {
    /// Live speech-to-text providers of the platform catalog (spec §8.3, §10).
    pub enum SttProvider: "provider" {
        /// Deepgram streaming (`nova-3`).
        Deepgram = "deepgram",
        /// ElevenLabs Scribe realtime (`11labs` accepted, as for TTS).
        ElevenLabs = "elevenlabs" | "11labs",
        /// Gladia (`solaria-1`).
        Gladia = "gladia",
        /// Mistral Voxtral.
        Mistral = "mistral",
        /// Google Cloud Speech (EU).
        Google = "google",
    }
}

impl SttProvider {
    /// The catalog's models for this provider, default first (spec §8.3).
    pub fn models(self) -> &'static [&'static str] {
        match self {
            SttProvider::Deepgram => &["nova-3", "nova-3-general"],
            SttProvider::ElevenLabs => &["scribe_v2_realtime"],
            SttProvider::Gladia => &["solaria-1"],
            SttProvider::Mistral => &["voxtral-mini-latest"],
            SttProvider::Google => &["chirp_3"],
        }
    }

    /// The catalog's default model for this provider.
    pub fn default_model(self) -> &'static str {
        self.models()[0]
    }
}

string_enum! {
    /// Languages an assistant can be configured to hear (spec §8.3).
    pub enum SttLanguage: "language" {
        /// Multilingual (Dutch and English).
        Multi = "multi",
        /// Dutch.
        Nl = "nl",
        /// English.
        En = "en",
        /// German.
        De = "de",
        /// French.
        Fr = "fr",
        /// Spanish.
        Es = "es",
        /// Italian.
        It = "it",
        /// Portuguese.
        Pt = "pt",
        /// Polish.
        Pl = "pl",
        /// Russian.
        Ru = "ru",
        /// Japanese.
        Ja = "ja",
        /// Korean.
        Ko = "ko",
        /// Chinese (Mandarin, simplified).
        Zh = "zh",
        /// Arabic.
        Ar = "ar",
        /// Hindi.
        Hi = "hi",
        /// Danish.
        Da = "da",
        /// Swedish.
        Sv = "sv",
        /// Norwegian (Bokmål).
        No = "no",
        /// Finnish.
        Fi = "fi",
        /// Czech.
        Cs = "cs",
        /// Hungarian.
        Hu = "hu",
        /// Romanian.
        Ro = "ro",
        /// Bulgarian.
        Bg = "bg",
        /// Croatian.
        Hr = "hr",
        /// Slovak.
        Sk = "sk",
        /// Turkish.
        Tr = "tr",
        /// Indonesian.
        Id = "id",
        /// Vietnamese.
        Vi = "vi",
    }
}

impl SttLanguage {
    /// The BCP-47 tags the platform maps this language to (spec §8.3); `multi` maps to two.
    pub fn bcp47(self) -> &'static [&'static str] {
        match self {
            SttLanguage::Multi => &["nl-NL", "en-US"],
            SttLanguage::Nl => &["nl-NL"],
            SttLanguage::En => &["en-US"],
            SttLanguage::De => &["de-DE"],
            SttLanguage::Fr => &["fr-FR"],
            SttLanguage::Es => &["es-ES"],
            SttLanguage::It => &["it-IT"],
            SttLanguage::Pt => &["pt-PT"],
            SttLanguage::Pl => &["pl-PL"],
            SttLanguage::Ru => &["ru-RU"],
            SttLanguage::Ja => &["ja-JP"],
            SttLanguage::Ko => &["ko-KR"],
            SttLanguage::Zh => &["cmn-Hans-CN"],
            SttLanguage::Ar => &["ar-XA"],
            SttLanguage::Hi => &["hi-IN"],
            SttLanguage::Da => &["da-DK"],
            SttLanguage::Sv => &["sv-SE"],
            SttLanguage::No => &["nb-NO"],
            SttLanguage::Fi => &["fi-FI"],
            SttLanguage::Cs => &["cs-CZ"],
            SttLanguage::Hu => &["hu-HU"],
            SttLanguage::Ro => &["ro-RO"],
            SttLanguage::Bg => &["bg-BG"],
            SttLanguage::Hr => &["hr-HR"],
            SttLanguage::Sk => &["sk-SK"],
            SttLanguage::Tr => &["tr-TR"],
            SttLanguage::Id => &["id-ID"],
            SttLanguage::Vi => &["vi-VN"],
        }
    }
}

string_enum! {
    /// Gladia processing region (spec §8.3).
    pub enum GladiaRegion: "region" {
        /// Europe (west).
        EuWest = "eu-west" | "eu_west",
        /// United States (west).
        UsWest = "us-west" | "us_west",
    }
}

/// `stt_config`: which provider transcribes the caller, with what model, in which language.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SttConfig {
    /// Provider id (required).
    pub provider: SttProvider,
    /// Model id (required); see [`SttProvider::models`] for the catalog's list.
    pub model: String,
    /// Language the caller speaks (required).
    pub language: SttLanguage,
    /// Words to boost recognition of, e.g. `["ja", "nee", "oké"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyterms: Option<Vec<String>>,

    /// Deepgram: punctuation and formatting.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "smartFormat"
    )]
    pub smart_format: Option<bool>,
    /// Deepgram: end-of-speech silence in milliseconds (0–5000). Gladia: in seconds (0.01–1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpointing: Option<f64>,
    /// Deepgram: write numbers as digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numerals: Option<bool>,
    /// Deepgram: keep "uh", "um" in transcripts.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "fillerWords"
    )]
    pub filler_words: Option<bool>,
    /// Deepgram: gap in milliseconds that ends an utterance (1000–5000).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "utteranceEndMs"
    )]
    pub utterance_end_ms: Option<i64>,
    /// Deepgram: send results without the formatting delay.
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "noDelay")]
    pub no_delay: Option<bool>,

    /// ElevenLabs: tag non-speech events (laughter, music).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "tagAudioEvents"
    )]
    pub tag_audio_events: Option<bool>,
    /// ElevenLabs: word timestamps.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "includeTimestamps"
    )]
    pub include_timestamps: Option<bool>,
    /// ElevenLabs: input sample rate, 16000 or 8000.
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "sampleRate")]
    pub sample_rate: Option<i64>,

    /// Gladia: languages to expect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub languages: Option<Vec<String>>,
    /// Gladia: follow the caller when they switch language.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "codeSwitching"
    )]
    pub code_switching: Option<bool>,
    /// Gladia: processing region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<GladiaRegion>,
    /// Gladia: domain words.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "customVocabulary"
    )]
    pub custom_vocabulary: Option<Vec<String>>,
    /// Gladia: translate transcripts.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "translationEnabled"
    )]
    pub translation_enabled: Option<bool>,
    /// Gladia: target languages of the translation.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "translationTargetLanguages"
    )]
    pub translation_target_languages: Option<Vec<String>>,
}

impl SttConfig {
    /// A config with only the required fields set.
    pub fn new(provider: SttProvider, model: impl Into<String>, language: SttLanguage) -> Self {
        SttConfig {
            provider,
            model: model.into(),
            language,
            keyterms: None,
            smart_format: None,
            endpointing: None,
            numerals: None,
            filler_words: None,
            utterance_end_ms: None,
            no_delay: None,
            tag_audio_events: None,
            include_timestamps: None,
            sample_rate: None,
            languages: None,
            code_switching: None,
            region: None,
            custom_vocabulary: None,
            translation_enabled: None,
            translation_target_languages: None,
        }
    }

    /// The provider's end-of-speech silence, converted from its unit (Deepgram ms, Gladia s).
    ///
    /// `None` when unset or when the provider has no such knob.
    pub fn endpointing(&self) -> Option<Duration> {
        let value = self.endpointing?;
        match self.provider {
            SttProvider::Deepgram => Some(Duration::from_secs_f64(value.max(0.0) / 1000.0)),
            SttProvider::Gladia => Some(Duration::from_secs_f64(value.max(0.0))),
            _ => None,
        }
    }

    /// Boost words, empty when none are configured.
    pub fn keyterms(&self) -> &[String] {
        self.keyterms.as_deref().unwrap_or(&[])
    }
}

impl ConfigSection for SttConfig {
    /// Ranges from spec §8.3; the spec does not say to clamp, so out-of-range values are rejected.
    fn validate_at(&self, path: &str) -> Result<(), ConfigError> {
        check::non_blank(&join(path, "model"), &self.model)?;
        for (i, term) in self.keyterms().iter().enumerate() {
            check::non_blank(&join(path, &format!("keyterms[{i}]")), term)?;
        }
        match self.provider {
            SttProvider::Deepgram => {
                check::opt_range_f64(&join(path, "endpointing"), self.endpointing, 0.0, 5000.0)?;
                check::opt_range_i64(
                    &join(path, "utterance_end_ms"),
                    self.utterance_end_ms,
                    1000,
                    5000,
                )?;
            }
            SttProvider::ElevenLabs => {
                if let Some(rate) = self.sample_rate {
                    if rate != 16000 && rate != 8000 {
                        return Err(ConfigError::invalid(
                            join(path, "sample_rate"),
                            format!("{rate} is not a supported rate (expected 16000 or 8000)"),
                        ));
                    }
                }
            }
            SttProvider::Gladia => {
                check::opt_range_f64(&join(path, "endpointing"), self.endpointing, 0.01, 1.0)?;
            }
            SttProvider::Mistral | SttProvider::Google => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_documented_example() {
        let stt = SttConfig::from_json(
            r#"{"provider":"deepgram","model":"nova-3-general","language":"nl","keyterms":["ja","nee","oké"]}"#,
        )
        .unwrap();
        assert_eq!(stt.provider, SttProvider::Deepgram);
        assert_eq!(stt.language.bcp47(), ["nl-NL"]);
        assert_eq!(stt.keyterms(), ["ja", "nee", "oké"]);
    }

    #[test]
    fn missing_model_names_the_field() {
        let err = SttConfig::from_json(r#"{"provider":"deepgram","language":"en"}"#).unwrap_err();
        assert_eq!(err.path(), "model");
        assert_eq!(err.to_string(), "model: missing required field");
    }

    #[test]
    fn unknown_language_lists_the_choices() {
        let err =
            SttConfig::from_json(r#"{"provider":"deepgram","model":"nova-3","language":"xx"}"#)
                .unwrap_err();
        assert_eq!(err.path(), "language");
        assert!(err.to_string().contains("unknown language \"xx\""));
        assert!(err.to_string().contains("multi, nl, en"));
    }

    #[test]
    fn endpointing_unit_follows_provider() {
        let mut stt = SttConfig::new(SttProvider::Deepgram, "nova-3", SttLanguage::En);
        stt.endpointing = Some(300.0);
        assert_eq!(stt.endpointing(), Some(Duration::from_millis(300)));
        stt.provider = SttProvider::Gladia;
        stt.endpointing = Some(0.5);
        assert_eq!(stt.endpointing(), Some(Duration::from_millis(500)));
        stt.endpointing = Some(300.0);
        let err = stt.validate_at("stt_config").unwrap_err();
        assert_eq!(
            err.to_string(),
            "stt_config.endpointing: 300 out of range 0.01..=1"
        );
    }

    #[test]
    fn deepgram_ranges_and_elevenlabs_rates() {
        let err = SttConfig::from_json(
            r#"{"provider":"deepgram","model":"nova-3","language":"en","utteranceEndMs":500}"#,
        )
        .unwrap_err();
        assert_eq!(err.path(), "utterance_end_ms");
        let err = SttConfig::from_json(
            r#"{"provider":"elevenlabs","model":"scribe_v2_realtime","language":"en","sample_rate":44100}"#,
        )
        .unwrap_err();
        assert_eq!(err.path(), "sample_rate");
    }
}
