//! `tts_config`: the voice of a standard-pipeline assistant (spec §8.7); `null` for realtime.
//!
//! `provider` and `voice_id` are required. Voice ids of catalog voices (Gemini, xAI, the
//! platform's own) are checked; ElevenLabs and Inworld voice ids are free strings from the
//! account's library.

use serde::{Deserialize, Serialize};

use super::check;
use super::error::{join, ConfigError};
use super::voices;
use super::ConfigSection;

string_enum! {
    /// Text-to-speech providers (spec §8.7, §10).
    pub enum TtsProvider: "provider" {
        /// ElevenLabs; `11labs` is accepted as an alias.
        ElevenLabs = "elevenlabs" | "11labs",
        /// Inworld.
        Inworld = "inworld",
        /// Google Gemini TTS and Chirp 3 HD.
        Google = "google",
        /// xAI voices.
        Xai = "xai",
        /// The platform's own voice (beta).
        Voicedock = "voicedock",
    }
}

impl TtsProvider {
    /// The catalog's models for this provider, default first; empty for `xai` (spec §8.7).
    pub fn models(self) -> &'static [&'static str] {
        match self {
            TtsProvider::ElevenLabs => &[
                "eleven_flash_v2_5",
                "eleven_v4_turbo",
                "eleven_v4",
                "eleven_v3",
                "eleven_multilingual_v2",
                "eleven_turbo_v2_5",
            ],
            TtsProvider::Inworld => &[
                "inworld-tts-2",
                "inworld-tts-2-flash",
                "inworld-tts-1.5-max",
                "inworld-tts-1.5-mini",
            ],
            TtsProvider::Google => &[
                "gemini-3.1-flash-tts-preview",
                "gemini-2.5-flash-preview-tts",
                "gemini-2.5-pro-preview-tts",
                "chirp-3-hd",
            ],
            TtsProvider::Xai => &[],
            TtsProvider::Voicedock => &["voicedock-1"],
        }
    }

    /// The catalog's default model, if the provider has a model list.
    pub fn default_model(self) -> Option<&'static str> {
        self.models().first().copied()
    }
}

string_enum! {
    /// ElevenLabs text normalization mode.
    pub enum TextNormalization: "text normalization mode" {
        /// Provider decides.
        Auto = "auto",
        /// Always normalize.
        On = "on",
        /// Never normalize.
        Off = "off",
    }
}

/// The one voice id the `voicedock` provider accepts.
pub const VOICEDOCK_VOICE_ID: &str = "voicedock";

/// `tts_config`: provider, voice and voice tuning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TtsConfig {
    /// Provider id (required).
    pub provider: TtsProvider,
    /// Voice (required); `voiceId` accepted on input.
    #[serde(alias = "voiceId")]
    pub voice_id: String,
    /// Model; the provider default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Language code passed to the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// ElevenLabs: stability 0–1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stability: Option<f64>,
    /// ElevenLabs: similarity boost 0–1.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "similarityBoost"
    )]
    pub similarity_boost: Option<f64>,
    /// ElevenLabs: style exaggeration 0–1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style: Option<f64>,
    /// ElevenLabs: speaker boost.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "useSpeakerBoost"
    )]
    pub use_speaker_boost: Option<bool>,
    /// ElevenLabs, Inworld: speaking speed 0.5–2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<f64>,
    /// ElevenLabs: text normalization.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "applyTextNormalization"
    )]
    pub apply_text_normalization: Option<TextNormalization>,
    /// ElevenLabs: language-specific text normalization.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "applyLanguageTextNormalization"
    )]
    pub apply_language_text_normalization: Option<bool>,
    /// Google: style instructions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// Google (Chirp 3 HD): speaking rate 0.25–2 (default 1).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "speakingRate"
    )]
    pub speaking_rate: Option<f64>,
}

impl TtsConfig {
    /// A config with only provider and voice set.
    pub fn new(provider: TtsProvider, voice_id: impl Into<String>) -> Self {
        TtsConfig {
            provider,
            voice_id: voice_id.into(),
            model: None,
            language: None,
            stability: None,
            similarity_boost: None,
            style: None,
            use_speaker_boost: None,
            speed: None,
            apply_text_normalization: None,
            apply_language_text_normalization: None,
            instructions: None,
            speaking_rate: None,
        }
    }

    /// The model to use: the configured one, else the provider default.
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref().or(self.provider.default_model())
    }

    /// False for ElevenLabs v3/v4 models, which honour only `stability` and
    /// `apply_text_normalization` of the voice settings (spec §8.7).
    pub fn full_voice_settings_apply(&self) -> bool {
        !(self.provider == TtsProvider::ElevenLabs
            && matches!(
                self.model(),
                Some("eleven_v3" | "eleven_v4" | "eleven_v4_turbo")
            ))
    }
}

impl ConfigSection for TtsConfig {
    /// Ranges from spec §8.7, rejected when outside (the spec does not say to clamp).
    fn validate_at(&self, path: &str) -> Result<(), ConfigError> {
        let voice_path = join(path, "voice_id");
        check::non_blank(&voice_path, &self.voice_id)?;
        let catalog: Option<&[&'static str]> = match self.provider {
            TtsProvider::Google => Some(voices::GEMINI_VOICES),
            TtsProvider::Xai => Some(voices::XAI_VOICES),
            TtsProvider::Voicedock => Some(&[VOICEDOCK_VOICE_ID]),
            TtsProvider::ElevenLabs | TtsProvider::Inworld => None,
        };
        if let Some(catalog) = catalog {
            if !catalog.contains(&self.voice_id.as_str()) {
                return Err(ConfigError::unknown(
                    voice_path,
                    "voice",
                    &self.voice_id,
                    catalog,
                ));
            }
        }
        if let Some(model) = &self.model {
            check::non_blank(&join(path, "model"), model)?;
        }
        for (name, value) in [
            ("stability", self.stability),
            ("similarity_boost", self.similarity_boost),
            ("style", self.style),
        ] {
            check::opt_range_f64(&join(path, name), value, 0.0, 1.0)?;
        }
        check::opt_range_f64(&join(path, "speed"), self.speed, 0.5, 2.0)?;
        check::opt_range_f64(&join(path, "speaking_rate"), self.speaking_rate, 0.25, 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_provider_and_camel_voice_id() {
        let tts = TtsConfig::from_json(r#"{"provider":"11labs","voiceId":"abc"}"#).unwrap();
        assert_eq!(tts.provider, TtsProvider::ElevenLabs);
        assert_eq!(tts.model(), Some("eleven_flash_v2_5"));
        let out = serde_json::to_value(&tts).unwrap();
        assert_eq!(
            out,
            serde_json::json!({"provider":"elevenlabs","voice_id":"abc"})
        );
    }

    #[test]
    fn catalog_voices_are_checked() {
        assert!(TtsConfig::from_json(r#"{"provider":"google","voice_id":"Kore"}"#).is_ok());
        let err = TtsConfig::from_json(r#"{"provider":"xai","voice_id":"Kore"}"#).unwrap_err();
        assert_eq!(err.path(), "voice_id");
        assert!(TtsConfig::from_json(r#"{"provider":"voicedock","voice_id":"voicedock"}"#).is_ok());
    }

    #[test]
    fn ranges_are_enforced() {
        let err =
            TtsConfig::from_json(r#"{"provider":"elevenlabs","voice_id":"v","stability":1.2}"#)
                .unwrap_err();
        assert_eq!(err.to_string(), "stability: 1.2 out of range 0..=1");
        let err =
            TtsConfig::from_json(r#"{"provider":"inworld","voice_id":"v","speed":3}"#).unwrap_err();
        assert_eq!(err.path(), "speed");
    }

    #[test]
    fn missing_voice_is_named() {
        let err = TtsConfig::from_json(r#"{"provider":"elevenlabs"}"#).unwrap_err();
        assert_eq!(err.to_string(), "voice_id: missing required field");
    }

    #[test]
    fn v3_models_limit_voice_settings() {
        let mut tts = TtsConfig::new(TtsProvider::ElevenLabs, "v");
        assert!(tts.full_voice_settings_apply());
        tts.model = Some("eleven_v3".into());
        assert!(!tts.full_voice_settings_apply());
    }
}
