//! Builds a call's providers from the assistant config: each `provider` string picks
//! its wire-protocol adapter, with endpoints and keys from config or environment.
//!
//! A hosted provider without a key cannot run; when an offline stand-in exists it takes
//! that provider's place and a notice says so, otherwise the error names the variable
//! to set. Nothing is substituted silently.

use std::sync::Arc;

use voxline_engine::config::{Assistant, LlmProvider, SttProvider, TtsProvider};
use voxline_engine::driver::ProviderSet;
use voxline_engine::provider::{
    LlmProvider as LlmTrait, ProviderError, SttProvider as SttTrait, TtsProvider as TtsTrait,
};

use crate::deepgram::{DeepgramConfig, DeepgramStt};
use crate::elevenlabs::{ElevenLabsConfig, ElevenLabsTts};
use crate::net::endpoint::{Env, Service};
use crate::net::secret::ApiKey;
use crate::openai_llm::{OpenAiLlm, OpenAiLlmConfig};
use crate::openai_tts::{OpenAiTts, OpenAiTtsConfig};
use crate::realtime::{RealtimeAdapter, RealtimeConfig, Vendor};

/// Why a call's providers could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FactoryError {
    /// The assistant names a provider this build has no adapter for.
    #[error("{stage}.provider: {provider:?} has no adapter in voxline ({hint})")]
    Unsupported {
        /// `stt_config`, `llm_config` or `tts_config`.
        stage: &'static str,
        /// The provider id.
        provider: String,
        /// What to use instead.
        hint: &'static str,
    },
    /// An adapter rejected its configuration (bad URL, no key and no stand-in).
    #[error("{stage}: {source}")]
    Provider {
        /// `stt_config`, `llm_config` or `tts_config`.
        stage: &'static str,
        /// The adapter's error.
        source: ProviderError,
    },
    /// The pipeline needs a stage the assistant does not configure.
    #[error(
        "{0} is missing: the standard pipeline needs speech-to-text, a model and text-to-speech"
    )]
    Missing(&'static str),
}

/// Stand-ins a host supplies for hosted providers that have no key; empty fields fall back
/// to the built-in offline providers (PocketSphinx, the scripted agent, espeak-ng).
#[derive(Clone, Default)]
pub struct Standins {
    /// Speech recognition without a network.
    pub stt: Option<Arc<dyn SttTrait>>,
    /// A language model without a network.
    pub llm: Option<Arc<dyn LlmTrait>>,
    /// Speech synthesis without a network.
    pub tts: Option<Arc<dyn TtsTrait>>,
}

/// What was built, and what the host should tell its user about it.
pub struct BuiltProviders {
    /// The providers, ready for `voxline_engine::driver::new_call`.
    pub set: ProviderSet,
    /// One line per stage that was substituted or points somewhere unusual.
    pub notices: Vec<String>,
}

impl std::fmt::Debug for BuiltProviders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = |o: Option<&str>| o.unwrap_or("-").to_string();
        f.debug_struct("BuiltProviders")
            .field("stt", &name(self.set.stt.as_ref().map(|p| p.name())))
            .field("llm", &name(self.set.llm.as_ref().map(|p| p.name())))
            .field("tts", &name(self.set.tts.as_ref().map(|p| p.name())))
            .field(
                "realtime",
                &name(self.set.realtime.as_ref().map(|p| p.name())),
            )
            .field("notices", &self.notices)
            .finish()
    }
}

fn has_key(service: Service, env: &dyn Env) -> bool {
    env.var(service.key_env)
        .is_some_and(|k| !k.trim().is_empty())
}

fn no_key(stage: &'static str, service: Service) -> FactoryError {
    FactoryError::Provider {
        stage,
        source: ProviderError::Config {
            provider: service.name.to_string(),
            detail: format!(
                "no API key: set {} (or configure an offline provider)",
                service.key_env
            ),
        },
    }
}

/// Builds the providers `assistant` asks for, reading keys and base URLs from `env`;
/// `standins` fill in for hosted providers that have no key.
pub fn build_providers(
    assistant: &Assistant,
    env: &dyn Env,
    standins: &Standins,
) -> Result<BuiltProviders, FactoryError> {
    let mut notices = Vec::new();
    if let Some(settings) = assistant.realtime() {
        let wrap = |source| FactoryError::Provider {
            stage: "llm_config",
            source,
        };
        let vendor = Vendor::from_provider(settings.provider).ok_or(FactoryError::Unsupported {
            stage: "llm_config",
            provider: settings.provider.as_str().to_string(),
            hint: "the realtime pipeline speaks xai_realtime and openai_realtime",
        })?;
        if !has_key(vendor.service(), env) {
            return Err(no_key("llm_config", vendor.service()));
        }
        let config = RealtimeConfig::from_settings(&settings).map_err(wrap)?;
        let adapter = RealtimeAdapter::with_env(config, env).map_err(wrap)?;
        return Ok(BuiltProviders {
            set: ProviderSet {
                realtime: Some(Arc::new(adapter)),
                ..ProviderSet::default()
            },
            notices,
        });
    }
    let set = ProviderSet {
        stt: Some(build_stt(assistant, env, standins, &mut notices)?),
        llm: Some(build_llm(assistant, env, standins, &mut notices)?),
        tts: Some(build_tts(assistant, env, standins, &mut notices)?),
        realtime: None,
    };
    Ok(BuiltProviders { set, notices })
}

/// The stand-in for a hosted provider without a key: the host's, else the built-in offline one.
fn standin<T: ?Sized>(
    stage: &'static str,
    what: &str,
    service: Service,
    standin: Option<Arc<T>>,
    notices: &mut Vec<String>,
) -> Result<Arc<T>, FactoryError> {
    match standin {
        Some(s) => {
            notices.push(format!(
                "{stage}: no {} set, so the offline {what} stands in for {}",
                service.key_env, service.name
            ));
            Ok(s)
        }
        None => Err(no_key(stage, service)),
    }
}

/// The built-in offline recogniser (PocketSphinx), when this build has it.
fn offline_stt(assistant: &Assistant, standins: &Standins) -> Option<Arc<dyn SttTrait>> {
    if let Some(s) = &standins.stt {
        return Some(s.clone());
    }
    #[cfg(feature = "pocketsphinx")]
    {
        Some(Arc::new(crate::offline::stt_for(assistant)))
    }
    #[cfg(not(feature = "pocketsphinx"))]
    {
        let _ = assistant;
        None
    }
}

/// The built-in offline voice (espeak-ng), when this build has it.
fn offline_tts(assistant: &Assistant, standins: &Standins) -> Option<Arc<dyn TtsTrait>> {
    if let Some(s) = &standins.tts {
        return Some(s.clone());
    }
    #[cfg(feature = "espeak")]
    {
        Some(Arc::new(crate::offline::tts_for(assistant)))
    }
    #[cfg(not(feature = "espeak"))]
    {
        let _ = assistant;
        None
    }
}

/// The offline agent: the host's stand-in, else the built-in scripted agent.
fn offline_llm(standins: &Standins) -> Arc<dyn LlmTrait> {
    match &standins.llm {
        Some(s) => s.clone(),
        None => Arc::new(crate::offline::scripted_llm::ScriptedAgent::default()),
    }
}

fn build_stt(
    assistant: &Assistant,
    env: &dyn Env,
    standins: &Standins,
    notices: &mut Vec<String>,
) -> Result<Arc<dyn SttTrait>, FactoryError> {
    let stt = assistant
        .stt_config
        .as_ref()
        .ok_or(FactoryError::Missing("stt_config"))?;
    let wrap = |source| FactoryError::Provider {
        stage: "stt_config",
        source,
    };
    match stt.provider {
        SttProvider::Deepgram => {
            if !has_key(Service::DEEPGRAM, env) {
                return standin(
                    "stt_config",
                    "recogniser (PocketSphinx)",
                    Service::DEEPGRAM,
                    offline_stt(assistant, standins),
                    notices,
                );
            }
            let cfg = DeepgramConfig::from_stt_config(stt).map_err(wrap)?;
            Ok(Arc::new(DeepgramStt::with_env(cfg, env).map_err(wrap)?))
        }
        SttProvider::Pocketsphinx => {
            offline_stt(assistant, standins).ok_or(FactoryError::Unsupported {
                stage: "stt_config",
                provider: "pocketsphinx".into(),
                hint: "this build has no offline recogniser",
            })
        }
        other => Err(FactoryError::Unsupported {
            stage: "stt_config",
            provider: other.as_str().to_string(),
            hint: "use deepgram, or pocketsphinx offline",
        }),
    }
}

fn build_llm(
    assistant: &Assistant,
    env: &dyn Env,
    standins: &Standins,
    notices: &mut Vec<String>,
) -> Result<Arc<dyn LlmTrait>, FactoryError> {
    let llm = &assistant.llm_config;
    let wrap = |source| FactoryError::Provider {
        stage: "llm_config",
        source,
    };
    let temperature = llm.temperature.map(|t| t as f32);
    let max_tokens = llm
        .max_completion_tokens
        .and_then(|t| u32::try_from(t).ok());
    let (mut cfg, service) = match llm.provider {
        LlmProvider::OpenAi => (OpenAiLlmConfig::openai(llm.model.clone()), Service::OPENAI),
        LlmProvider::Xai => (OpenAiLlmConfig::xai(llm.model.clone()), Service::XAI),
        LlmProvider::Mistral => (OpenAiLlmConfig::mistral(llm.model.clone()), Service::MISTRAL),
        LlmProvider::Groq => (OpenAiLlmConfig::groq(llm.model.clone()), Service::GROQ),
        LlmProvider::Scripted => return Ok(offline_llm(standins)),
        other => {
            return Err(FactoryError::Unsupported {
                stage: "llm_config",
                provider: other.as_str().to_string(),
                hint: "use openai, xai, mistral, groq, or any OpenAI-compatible server through OPENAI_BASE_URL",
            })
        }
    };
    cfg.temperature = temperature;
    cfg.max_tokens = max_tokens;
    if !has_key(service, env) {
        // A local OpenAI-compatible server (llama.cpp, Ollama, vLLM) takes over when its URL is set.
        if let Some(base) = env.var("OPENAI_BASE_URL").filter(|b| !b.trim().is_empty()) {
            let mut local =
                OpenAiLlmConfig::compatible("openai-compatible", base.clone(), llm.model.clone());
            local.api_key = ApiKey::from_config(env.var("OPENAI_API_KEY").as_deref());
            local.temperature = temperature;
            local.max_tokens = max_tokens;
            notices.push(format!(
                "llm_config: no {} set, so the OpenAI-compatible server at {base} (OPENAI_BASE_URL) answers",
                service.key_env
            ));
            return Ok(Arc::new(OpenAiLlm::with_env(local, env).map_err(wrap)?));
        }
        return standin(
            "llm_config",
            "scripted agent",
            service,
            Some(offline_llm(standins)),
            notices,
        );
    }
    Ok(Arc::new(OpenAiLlm::with_env(cfg, env).map_err(wrap)?))
}

fn build_tts(
    assistant: &Assistant,
    env: &dyn Env,
    standins: &Standins,
    notices: &mut Vec<String>,
) -> Result<Arc<dyn TtsTrait>, FactoryError> {
    let tts = assistant
        .tts_config
        .as_ref()
        .ok_or(FactoryError::Missing("tts_config"))?;
    let wrap = |source| FactoryError::Provider {
        stage: "tts_config",
        source,
    };
    match tts.provider {
        TtsProvider::ElevenLabs => {
            if !has_key(Service::ELEVENLABS, env) {
                return standin(
                    "tts_config",
                    "voice (espeak-ng)",
                    Service::ELEVENLABS,
                    offline_tts(assistant, standins),
                    notices,
                );
            }
            let cfg = ElevenLabsConfig::from_tts_config(tts).map_err(wrap)?;
            Ok(Arc::new(ElevenLabsTts::with_env(cfg, env).map_err(wrap)?))
        }
        TtsProvider::OpenAi => {
            if !has_key(Service::OPENAI, env) {
                return standin(
                    "tts_config",
                    "voice (espeak-ng)",
                    Service::OPENAI,
                    offline_tts(assistant, standins),
                    notices,
                );
            }
            let model = tts
                .model
                .clone()
                .unwrap_or_else(|| "gpt-4o-mini-tts".to_string());
            let mut cfg = OpenAiTtsConfig::new(model, tts.voice_id.clone());
            cfg.speed = tts.speed.map(|s| s as f32);
            Ok(Arc::new(OpenAiTts::with_env(cfg, env).map_err(wrap)?))
        }
        TtsProvider::Espeak => offline_tts(assistant, standins).ok_or(FactoryError::Unsupported {
            stage: "tts_config",
            provider: "espeak".into(),
            hint: "this build has no offline voice",
        }),
        other => Err(FactoryError::Unsupported {
            stage: "tts_config",
            provider: other.as_str().to_string(),
            hint: "use elevenlabs or openai, or espeak offline",
        }),
    }
}
