//! Offline default providers: what a call uses when no API keys are configured.
//!
//! - [`espeak::EspeakTts`] (`espeak`, cargo feature `espeak`): libespeak-ng speech, streamed
//!   sentence by sentence at 24 kHz with word timings.
//! - [`pocketsphinx::PocketSphinxStt`] (`pocketsphinx`, cargo feature `pocketsphinx`):
//!   PocketSphinx with its US English model, streaming partials and finals.
//! - [`scripted_llm::ScriptedAgent`] (`scripted`): a deterministic rule-based agent driven by
//!   the assistant's system prompt and tools. It is a stand-in, not a language model; when
//!   `OPENAI_BASE_URL` points at an OpenAI-compatible server (a local llama.cpp or Ollama, say)
//!   [`llm_for`] picks that server instead.
//!
//! None of them touches the network. The native libraries and the speech model come from
//! Debian packages that `scripts/setup.sh` installs: `libespeak-ng-dev`, `libpocketsphinx-dev`,
//! `libsphinxbase-dev`, `pocketsphinx-en-us`. Building without them still works; the affected
//! provider then fails its sessions with `ProviderError::Config` naming the package.
//!
//! # Choosing providers
//!
//! The facade decides per stage. For each of STT, LLM and TTS it uses the assistant's own
//! network provider when that provider's credentials are present, and otherwise the offline one
//! from [`stt_for`], [`llm_for`] and [`tts_for`]. [`llm_for`] itself prefers an
//! OpenAI-compatible server when `OPENAI_BASE_URL` is set, and returns
//! [`LlmChoice::OpenAiCompatible`] for the facade to build with the OpenAI adapter.

pub mod domain_lm;
#[cfg(feature = "espeak")]
pub mod espeak;
mod numbers;
#[cfg(feature = "pocketsphinx")]
pub mod pocketsphinx;
#[cfg(feature = "espeak")]
mod resample;
pub mod scripted_llm;

use voxline_engine::config::Assistant;

pub use scripted_llm::{AgentReply, ScriptedAgent, ScriptedAgentConfig};

/// Environment variable naming an OpenAI-compatible server (e.g. `http://127.0.0.1:11434/v1`).
pub const OPENAI_BASE_URL_VAR: &str = "OPENAI_BASE_URL";

/// Environment variable with the key for that server (optional: local servers need none).
pub const OPENAI_API_KEY_VAR: &str = "OPENAI_API_KEY";

/// Environment variable naming the model to ask that server for; the assistant's
/// `llm_config.model` when unset.
pub const OPENAI_MODEL_VAR: &str = "OPENAI_MODEL";

/// An OpenAI-compatible chat-completions server to use instead of the scripted agent.
#[derive(Clone, PartialEq, Eq)]
pub struct OpenAiCompatible {
    /// Base URL as given in `OPENAI_BASE_URL`, without a trailing slash.
    pub base_url: String,
    /// Bearer key from `OPENAI_API_KEY`, if set.
    pub api_key: Option<String>,
    /// Model id: `OPENAI_MODEL`, else the assistant's model.
    pub model: String,
}

impl std::fmt::Debug for OpenAiCompatible {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiCompatible")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("model", &self.model)
            .finish()
    }
}

/// Which language model an assistant gets when its own provider has no credentials.
#[derive(Clone, Debug)]
pub enum LlmChoice {
    /// `OPENAI_BASE_URL` is set: the facade builds the OpenAI adapter against this server.
    OpenAiCompatible(OpenAiCompatible),
    /// Nothing configured: the deterministic offline agent.
    Scripted(ScriptedAgent),
}

/// The language model for `assistant` when its own provider has no credentials: an
/// OpenAI-compatible server when `env("OPENAI_BASE_URL")` is set and not blank, else the
/// scripted agent. `env` reads an environment variable (pass `|k| std::env::var(k).ok()`;
/// tests pass a map).
pub fn llm_for(assistant: &Assistant, env: impl Fn(&str) -> Option<String>) -> LlmChoice {
    let non_blank = |key: &str| {
        env(key)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    match non_blank(OPENAI_BASE_URL_VAR) {
        Some(base_url) => LlmChoice::OpenAiCompatible(OpenAiCompatible {
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key: non_blank(OPENAI_API_KEY_VAR),
            model: non_blank(OPENAI_MODEL_VAR)
                .unwrap_or_else(|| assistant.llm_config.model.clone()),
        }),
        None => LlmChoice::Scripted(ScriptedAgent::default()),
    }
}

/// The offline TTS for `assistant`: espeak-ng with its `tts_config` speed and language.
#[cfg(feature = "espeak")]
pub fn tts_for(assistant: &Assistant) -> espeak::EspeakTts {
    espeak::EspeakTts::new(espeak::EspeakConfig::from_tts_config(
        assistant.tts_config.as_ref(),
    ))
}

/// The offline STT: PocketSphinx with Debian's US English acoustic model (the only one
/// packaged, so the assistant's STT language is not consulted) and a language model of the
/// assistant's domain ([`domain_lm`]). Recognisers are shared by assistants with the same
/// domain model, so later calls reuse the decoders (and what they adapted to) of earlier ones.
/// When the domain model cannot be built (no dictionary installed), the general model is used
/// and its sessions report the missing package.
#[cfg(feature = "pocketsphinx")]
pub fn stt_for(assistant: &Assistant) -> pocketsphinx::PocketSphinxStt {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};

    type Shared = Mutex<HashMap<pocketsphinx::SearchModel, pocketsphinx::PocketSphinxStt>>;
    static SHARED: OnceLock<Shared> = OnceLock::new();
    let config = pocketsphinx::PocketSphinxConfig::for_assistant(assistant)
        .unwrap_or_else(|_| pocketsphinx::PocketSphinxConfig::default());
    let mut shared = SHARED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    shared
        .entry(config.search.clone())
        .or_insert_with(|| pocketsphinx::PocketSphinxStt::new(config))
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use voxline_engine::config::{LlmConfig, LlmProvider};

    fn assistant() -> Assistant {
        Assistant::new(LlmConfig::new(LlmProvider::OpenAi, "gpt-5.4"))
    }

    #[test]
    fn scripted_without_a_server() {
        let env: HashMap<&str, &str> = HashMap::new();
        let choice = llm_for(&assistant(), |k| env.get(k).map(|v| v.to_string()));
        assert!(matches!(choice, LlmChoice::Scripted(_)));
        let blank = llm_for(&assistant(), |k| {
            (k == OPENAI_BASE_URL_VAR).then(|| " ".into())
        });
        assert!(matches!(blank, LlmChoice::Scripted(_)));
    }

    #[test]
    fn openai_compatible_server_when_base_url_is_set() {
        let env: HashMap<&str, &str> = [
            (OPENAI_BASE_URL_VAR, "http://127.0.0.1:11434/v1/"),
            (OPENAI_MODEL_VAR, "llama3.2"),
        ]
        .into();
        match llm_for(&assistant(), |k| env.get(k).map(|v| v.to_string())) {
            LlmChoice::OpenAiCompatible(s) => {
                assert_eq!(s.base_url, "http://127.0.0.1:11434/v1");
                assert_eq!(s.model, "llama3.2");
                assert_eq!(s.api_key, None);
            }
            other => panic!("expected a server, got {other:?}"),
        }
        let env: HashMap<&str, &str> = [
            (OPENAI_BASE_URL_VAR, "http://h/v1"),
            (OPENAI_API_KEY_VAR, "k"),
        ]
        .into();
        match llm_for(&assistant(), |k| env.get(k).map(|v| v.to_string())) {
            LlmChoice::OpenAiCompatible(s) => {
                assert_eq!(s.model, "gpt-5.4");
                assert_eq!(s.api_key.as_deref(), Some("k"));
                assert!(!format!("{s:?}").contains("\"k\""));
            }
            other => panic!("expected a server, got {other:?}"),
        }
    }
}
