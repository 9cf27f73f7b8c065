//! Offline default providers: what a call uses when no API keys are configured.
//!
//! - [`espeak::EspeakTts`] (`espeak`, cargo feature `espeak`): libespeak-ng speech, streamed
//!   sentence by sentence at 24 kHz with word timings.
//! - [`pocketsphinx::PocketSphinxStt`] (`pocketsphinx`, cargo feature `pocketsphinx`):
//!   PocketSphinx with its US English model, streaming partials and finals.
//!
//! None of them touches the network. The native libraries and the speech model come from
//! Debian packages that `scripts/setup.sh` installs: `libespeak-ng-dev`, `libpocketsphinx-dev`,
//! `libsphinxbase-dev`, `pocketsphinx-en-us`. Building without them still works; the affected
//! provider then fails its sessions with `ProviderError::Config` naming the package.
//!
//! # Choosing providers
//!
//! The facade decides per stage: the assistant's own network provider when its credentials are
//! present, otherwise the offline one ([`stt_for`], [`tts_for`]).

#[cfg(feature = "espeak")]
pub mod espeak;
#[cfg(feature = "pocketsphinx")]
pub mod pocketsphinx;
#[cfg(feature = "espeak")]
mod resample;

use voxline_engine::config::Assistant;

/// The offline TTS for `assistant`: espeak-ng with its `tts_config` speed and language.
#[cfg(feature = "espeak")]
pub fn tts_for(assistant: &Assistant) -> espeak::EspeakTts {
    espeak::EspeakTts::new(espeak::EspeakConfig::from_tts_config(
        assistant.tts_config.as_ref(),
    ))
}

/// The offline STT: PocketSphinx with Debian's US English model (the only one packaged, so the
/// assistant's STT language is not consulted).
#[cfg(feature = "pocketsphinx")]
pub fn stt_for(_assistant: &Assistant) -> pocketsphinx::PocketSphinxStt {
    pocketsphinx::PocketSphinxStt::default()
}
