//! Where a provider lives and which key it takes: explicit config first, then the
//! environment (`OPENAI_API_KEY`, `OPENAI_BASE_URL`, …), then the service's default URL.
//!
//! The environment is read through [`Env`], so tests pass a map instead of mutating the
//! process environment.

use std::collections::HashMap;

use voxline_engine::provider::ProviderError;

use super::secret::ApiKey;

/// A source of environment variables; the process environment or anything a test supplies.
pub trait Env: Send + Sync {
    /// The value of `name`, if set.
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

impl Env for HashMap<&str, &str> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).map(|v| v.to_string())
    }
}

impl<F> Env for F
where
    F: Fn(&str) -> Option<String> + Send + Sync,
{
    fn var(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// An environment with no variables, for configs that must be fully explicit.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoEnv;

impl Env for NoEnv {
    fn var(&self, _name: &str) -> Option<String> {
        None
    }
}

/// A hosted service's defaults: its name, the env vars it reads and its public base URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Service {
    /// The provider name used in errors (`openai`, `deepgram`, …).
    pub name: &'static str,
    /// The env var holding the API key.
    pub key_env: &'static str,
    /// The env var overriding the base URL.
    pub base_url_env: &'static str,
    /// The base URL when neither config nor env gives one.
    pub default_base_url: &'static str,
}

impl Service {
    /// OpenAI's REST API (chat completions, speech).
    pub const OPENAI: Service = Service {
        name: "openai",
        key_env: "OPENAI_API_KEY",
        base_url_env: "OPENAI_BASE_URL",
        default_base_url: "https://api.openai.com/v1",
    };
    /// Deepgram's streaming API (WebSocket).
    pub const DEEPGRAM: Service = Service {
        name: "deepgram",
        key_env: "DEEPGRAM_API_KEY",
        base_url_env: "DEEPGRAM_BASE_URL",
        default_base_url: "wss://api.deepgram.com",
    };
    /// ElevenLabs over HTTP (streaming speech endpoint).
    pub const ELEVENLABS: Service = Service {
        name: "elevenlabs",
        key_env: "ELEVENLABS_API_KEY",
        base_url_env: "ELEVENLABS_BASE_URL",
        default_base_url: "https://api.elevenlabs.io",
    };
    /// ElevenLabs over WebSocket (`stream-input`, `multi-stream-input`). Shares the env vars
    /// of [`Service::ELEVENLABS`]; an `http(s)` override is turned into `ws(s)`.
    pub const ELEVENLABS_WS: Service = Service {
        name: "elevenlabs",
        key_env: "ELEVENLABS_API_KEY",
        base_url_env: "ELEVENLABS_BASE_URL",
        default_base_url: "wss://api.elevenlabs.io",
    };
    /// xAI's OpenAI-compatible REST API (chat completions; realtime lives under it too).
    pub const XAI: Service = Service {
        name: "xai",
        key_env: "XAI_API_KEY",
        base_url_env: "XAI_BASE_URL",
        default_base_url: "https://api.x.ai/v1",
    };
    /// Mistral's OpenAI-compatible chat API.
    pub const MISTRAL: Service = Service {
        name: "mistral",
        key_env: "MISTRAL_API_KEY",
        base_url_env: "MISTRAL_BASE_URL",
        default_base_url: "https://api.mistral.ai/v1",
    };
    /// Groq's OpenAI-compatible chat API.
    pub const GROQ: Service = Service {
        name: "groq",
        key_env: "GROQ_API_KEY",
        base_url_env: "GROQ_BASE_URL",
        default_base_url: "https://api.groq.com/openai/v1",
    };

    /// Resolves base URL and key: `base_url`/`api_key` from config win, then the env vars,
    /// then the default URL (the key has no default). Blank values count as unset.
    pub fn resolve(
        &self,
        base_url: Option<&str>,
        api_key: Option<&ApiKey>,
        env: &dyn Env,
    ) -> Result<Endpoint, ProviderError> {
        let explicit_url = non_blank(base_url.map(str::to_string));
        let env_url = non_blank(env.var(self.base_url_env));
        let base_url_is_default = explicit_url.is_none() && env_url.is_none();
        let raw_url = explicit_url
            .or(env_url)
            .unwrap_or_else(|| self.default_base_url.to_string());
        let mut base_url = normalize_base_url(&raw_url).ok_or_else(|| ProviderError::Config {
            provider: self.name.to_string(),
            detail: format!("base URL {raw_url:?} is not an http(s) or ws(s) URL"),
        })?;
        if self.default_base_url.starts_with("ws") {
            base_url = to_ws_scheme(&base_url);
        }
        let api_key = api_key
            .filter(|k| !k.is_empty())
            .cloned()
            .or_else(|| ApiKey::from_config(env.var(self.key_env).as_deref()));
        Ok(Endpoint {
            service: *self,
            base_url,
            base_url_is_default,
            api_key,
        })
    }
}

/// A resolved service address with its key (if any). `Debug` hides the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The service this endpoint was resolved for.
    pub service: Service,
    /// Base URL without a trailing slash, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// True when neither config nor env named a base URL (the public service is used).
    pub base_url_is_default: bool,
    /// The API key, when config or env gave one.
    pub api_key: Option<ApiKey>,
}

impl Endpoint {
    /// `base_url` joined with `path` (which should start with `/`).
    pub fn url(&self, path: &str) -> String {
        join_url(&self.base_url, path)
    }

    /// The key, or a configuration error naming where it can come from.
    pub fn require_key(&self) -> Result<&ApiKey, ProviderError> {
        self.api_key.as_ref().ok_or_else(|| ProviderError::Config {
            provider: self.service.name.to_string(),
            detail: format!(
                "no API key: set api_key in the config or {}",
                self.service.key_env
            ),
        })
    }

    /// The key when the public service is used (it always needs one); optional when a
    /// custom base URL points at a self-hosted server (llama.cpp, vLLM, Ollama).
    pub fn key_for_base_url(&self) -> Result<Option<&ApiKey>, ProviderError> {
        if self.base_url_is_default {
            self.require_key().map(Some)
        } else {
            Ok(self.api_key.as_ref())
        }
    }
}

/// Resolves an OpenAI-style adapter's endpoint under its own `provider` name. With a `service`,
/// gaps in `base_url`/`api_key` are filled from that service's environment variables, and the
/// public service (no base URL named anywhere) needs a key; without one (a self-hosted server)
/// no environment is read, the OpenAI defaults apply and the key is optional. Configuration
/// errors name `provider`.
pub fn resolve_named(
    provider: &str,
    service: Option<Service>,
    base_url: Option<&str>,
    api_key: Option<&ApiKey>,
    env: &dyn Env,
) -> Result<Endpoint, ProviderError> {
    let named = |e: ProviderError| match e {
        ProviderError::Config { detail, .. } => ProviderError::Config {
            provider: provider.to_string(),
            detail,
        },
        other => other,
    };
    let (needs_key, service, env): (bool, Service, &dyn Env) = match service {
        Some(service) => (true, service, env),
        None => (false, Service::OPENAI, &NoEnv),
    };
    let endpoint = service.resolve(base_url, api_key, env).map_err(named)?;
    if needs_key && endpoint.base_url_is_default {
        endpoint.require_key().map_err(named)?;
    }
    Ok(endpoint)
}

/// Joins a base URL and a path with exactly one `/` between them.
pub fn join_url(base: &str, path: &str) -> String {
    let base = base.trim_end_matches('/');
    let path = path.trim_start_matches('/');
    if path.is_empty() {
        base.to_string()
    } else {
        format!("{base}/{path}")
    }
}

/// Turns `http://` into `ws://` and `https://` into `wss://`; other URLs are returned as is.
pub fn to_ws_scheme(url: &str) -> String {
    if let Some(rest) = url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        url.to_string()
    }
}

/// Turns `ws://` into `http://` and `wss://` into `https://`; other URLs are returned as is.
pub fn to_http_scheme(url: &str) -> String {
    if let Some(rest) = url.strip_prefix("wss://") {
        format!("https://{rest}")
    } else if let Some(rest) = url.strip_prefix("ws://") {
        format!("http://{rest}")
    } else {
        url.to_string()
    }
}

fn non_blank(value: Option<String>) -> Option<String> {
    value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn normalize_base_url(raw: &str) -> Option<String> {
    let url = raw.trim().trim_end_matches('/');
    let lower = url.to_ascii_lowercase();
    let rest = ["https://", "http://", "wss://", "ws://"]
        .iter()
        .find_map(|scheme| lower.strip_prefix(scheme))?;
    if rest.is_empty() || rest.starts_with('/') {
        return None;
    }
    Some(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&'static str, &'static str)]) -> HashMap<&'static str, &'static str> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn defaults_without_config_or_env() {
        let ep = Service::OPENAI.resolve(None, None, &NoEnv).unwrap();
        assert_eq!(ep.base_url, "https://api.openai.com/v1");
        assert!(ep.base_url_is_default);
        assert!(ep.api_key.is_none());
        let err = ep.require_key().unwrap_err();
        assert!(err.to_string().contains("OPENAI_API_KEY"), "{err}");
        assert!(ep.key_for_base_url().is_err());
        assert_eq!(
            ep.url("/chat/completions"),
            "https://api.openai.com/v1/chat/completions"
        );
    }

    #[test]
    fn env_fills_in_what_config_leaves_out() {
        let e = env(&[
            ("DEEPGRAM_API_KEY", "dg-key-1"),
            ("DEEPGRAM_BASE_URL", "ws://127.0.0.1:9000/"),
        ]);
        let ep = Service::DEEPGRAM.resolve(None, None, &e).unwrap();
        assert_eq!(ep.base_url, "ws://127.0.0.1:9000");
        assert!(!ep.base_url_is_default);
        assert_eq!(ep.require_key().unwrap().expose(), "dg-key-1");
    }

    #[test]
    fn config_beats_env() {
        let e = env(&[("XAI_API_KEY", "env-key"), ("XAI_BASE_URL", "https://env")]);
        let key = ApiKey::new("cfg-key");
        let ep = Service::XAI
            .resolve(Some("https://cfg.example/v1"), Some(&key), &e)
            .unwrap();
        assert_eq!(ep.base_url, "https://cfg.example/v1");
        assert_eq!(ep.api_key.unwrap().expose(), "cfg-key");
    }

    #[test]
    fn blank_values_fall_through() {
        let e = env(&[("OPENAI_API_KEY", "  "), ("OPENAI_BASE_URL", "")]);
        let ep = Service::OPENAI
            .resolve(Some(" "), Some(&ApiKey::new("")), &e)
            .unwrap();
        assert!(ep.base_url_is_default);
        assert!(ep.api_key.is_none());
    }

    #[test]
    fn elevenlabs_ws_follows_an_http_override() {
        let e = env(&[("ELEVENLABS_BASE_URL", "http://127.0.0.1:7000")]);
        let http = Service::ELEVENLABS.resolve(None, None, &e).unwrap();
        let ws = Service::ELEVENLABS_WS.resolve(None, None, &e).unwrap();
        assert_eq!(http.base_url, "http://127.0.0.1:7000");
        assert_eq!(ws.base_url, "ws://127.0.0.1:7000");
        let default_ws = Service::ELEVENLABS_WS.resolve(None, None, &NoEnv).unwrap();
        assert_eq!(default_ws.base_url, "wss://api.elevenlabs.io");
    }

    #[test]
    fn closures_work_as_env() {
        let e = |name: &str| (name == "OPENAI_API_KEY").then(|| "from-closure".to_string());
        let ep = Service::OPENAI.resolve(None, None, &e).unwrap();
        assert_eq!(ep.api_key.unwrap().expose(), "from-closure");
    }

    #[test]
    fn rejects_non_urls_and_keeps_local_servers_keyless() {
        let err = Service::OPENAI
            .resolve(Some("localhost:8080"), None, &NoEnv)
            .unwrap_err();
        assert_eq!(err.kind(), "config");
        let ep = Service::OPENAI
            .resolve(Some("http://localhost:11434/v1"), None, &NoEnv)
            .unwrap();
        assert_eq!(ep.key_for_base_url().unwrap(), None);
    }

    #[test]
    fn named_adapters_need_a_key_only_for_the_public_service() {
        // The public service without a key: an error naming the adapter and the key's variable.
        let err = resolve_named("my-llm", Some(Service::XAI), None, None, &NoEnv).unwrap_err();
        assert_eq!(err.kind(), "config");
        assert!(err.to_string().starts_with("my-llm:"), "{err}");
        assert!(err.to_string().contains("XAI_API_KEY"), "{err}");
        // A key from the service's environment satisfies it.
        let ep = resolve_named(
            "my-llm",
            Some(Service::XAI),
            None,
            None,
            &env(&[("XAI_API_KEY", "k")]),
        )
        .unwrap();
        assert_eq!(ep.api_key.unwrap().expose(), "k");
        // A base URL of its own (a self-hosted server) may go without.
        let ep = resolve_named(
            "local",
            Some(Service::OPENAI),
            Some("http://127.0.0.1:8080/v1"),
            None,
            &NoEnv,
        )
        .unwrap();
        assert!(ep.api_key.is_none());
        // Without a service nothing is read from the environment and no key is demanded.
        let ep = resolve_named(
            "local",
            None,
            None,
            None,
            &env(&[("OPENAI_API_KEY", "k"), ("OPENAI_BASE_URL", "http://x")]),
        )
        .unwrap();
        assert!(ep.api_key.is_none());
        assert_eq!(ep.base_url, "https://api.openai.com/v1");
        // A bad URL is reported under the adapter's name.
        let err = resolve_named("local", None, Some("nope"), None, &NoEnv).unwrap_err();
        assert!(err.to_string().starts_with("local:"), "{err}");
    }

    #[test]
    fn scheme_conversions() {
        assert_eq!(to_ws_scheme("https://a/b"), "wss://a/b");
        assert_eq!(to_http_scheme("ws://a:1"), "http://a:1");
        assert_eq!(join_url("http://a/v1/", "/x"), "http://a/v1/x");
    }
}
