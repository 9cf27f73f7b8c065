//! Voice catalogs the platform validates voice names against (spec §8.5–§8.7, §10).
//!
//! Voices travel as plain strings (`llm_config.voice`, `tts_config.voice_id`); these lists say
//! which strings a provider accepts and which one it uses by default.

/// The xAI voices (schema XAIRealtimeVoice, 26 in the current catalog); default `ara`.
/// Used by `xai_realtime` (`llm_config.voice`) and by the `xai` TTS (`tts_config.voice_id`).
pub const XAI_VOICES: &[&str] = &[
    "ara", "eve", "leo", "rex", "sal", "altair", "atlas", "carina", "castor", "celeste", "cosmo",
    "helios", "helix", "iris", "kepler", "lumen", "luna", "lux", "naksh", "orion", "perseus",
    "rigel", "sirius", "ursa", "zagan", "zenith",
];

/// Default xAI voice.
pub const XAI_DEFAULT_VOICE: &str = "ara";

/// The 30 Gemini voices; `google_realtime` defaults to `Puck`, the `google` TTS to `Kore`.
pub const GEMINI_VOICES: &[&str] = &[
    "Puck",
    "Achernar",
    "Achird",
    "Algenib",
    "Algieba",
    "Alnilam",
    "Aoede",
    "Autonoe",
    "Callirrhoe",
    "Charon",
    "Despina",
    "Enceladus",
    "Erinome",
    "Fenrir",
    "Gacrux",
    "Iapetus",
    "Kore",
    "Laomedeia",
    "Leda",
    "Orus",
    "Pulcherrima",
    "Rasalgethi",
    "Sadachbia",
    "Sadaltager",
    "Schedar",
    "Sulafat",
    "Umbriel",
    "Vindemiatrix",
    "Zephyr",
    "Zubenelgenubi",
];

/// Default voice of Gemini Live (`google_realtime`).
pub const GEMINI_LIVE_DEFAULT_VOICE: &str = "Puck";

/// Default voice of the Gemini TTS (`tts_config.provider = "google"`).
pub const GEMINI_TTS_DEFAULT_VOICE: &str = "Kore";

/// The voices of OpenAI GPT-Live (`openai_live`); default `marin`.
pub const OPENAI_LIVE_VOICES: &[&str] = &["marin", "beacon", "cinder", "stone", "vesper"];

/// Default voice of OpenAI GPT-Live.
pub const OPENAI_LIVE_DEFAULT_VOICE: &str = "marin";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_sizes_match_the_spec() {
        assert_eq!(XAI_VOICES.len(), 26);
        assert_eq!(GEMINI_VOICES.len(), 30);
        assert_eq!(OPENAI_LIVE_VOICES.len(), 5);
        assert!(XAI_VOICES.contains(&XAI_DEFAULT_VOICE));
        assert!(GEMINI_VOICES.contains(&GEMINI_TTS_DEFAULT_VOICE));
    }
}
