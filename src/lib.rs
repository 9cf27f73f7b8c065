//! voxline: an embedded realtime voice engine for AI phone agents.
//!
//! The facade a telephony host uses: build a [`Voxline`] from the environment, hand it
//! an assistant (the platform's JSON) and the call's media transport, and get back the
//! call task to spawn, its control handle and its ordered event stream. [`RtpEndpoint`] is
//! the bare media endpoint (jitter buffer, codecs, pacing) for hosts that bring their own logic.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use voxline::{CallDirection, Voxline};
//! use voxline::engine::media::MediaConfig;
//! use voxline::codecs::PayloadRegistry;
//!
//! let voxline = Voxline::from_env();
//! let assistant = voxline::engine::config::Assistant::from_json(r#"{
//!     "first_message": "Hello!",
//!     "stt_config": {"provider": "deepgram", "model": "nova-3", "language": "en"},
//!     "llm_config": {"provider": "openai", "model": "gpt-4.1"},
//!     "tts_config": {"provider": "elevenlabs", "voice_id": "EXAVITQu4vr4xnSDxMaL"}
//! }"#)?;
//! let socket = tokio::net::UdpSocket::bind("0.0.0.0:40000").await?;
//! let media = MediaConfig::new(PayloadRegistry::new(), 0); // PCMU, remote learned
//! let call = voxline.prepare_call(&assistant, CallDirection::Inbound, socket, media)?;
//! for notice in &call.notices {
//!     eprintln!("{notice}");
//! }
//! let outcome = tokio::spawn(call.task.run());
//! # Ok(()) }
//! ```
//!
//! With many calls in one process, pass a [`PolledUdpSocket`] instead of the tokio socket: it is
//! read at each 20 ms tick, with the kernel's arrival stamps, rather than waking the call for
//! every packet (one wake-up per call per frame instead of two; see `BENCHMARKS.md`).

use std::sync::Arc;

pub use voxline_codecs as codecs;
pub use voxline_engine as engine;
pub use voxline_providers as providers;

pub use voxline_engine::call::CallSettings;
pub use voxline_engine::config::{Assistant, CallDirection};
pub use voxline_engine::driver::{CallControl, CallOutcome, CallTask, DriverOptions, EventStream};
pub use voxline_providers::factory::{BuiltProviders, FactoryError, Standins};

use voxline_engine::driver::new_call;
pub use voxline_engine::media::{
    EndpointAudio, EndpointError, EndpointOptions, EndpointStats, MediaConfig, PolledUdpSocket,
    ReceiverReport, RtpEndpoint,
};
use voxline_engine::media::{MediaError, PacketTransport, RtpPort};
use voxline_providers::net::endpoint::{Env, ProcessEnv};

/// Why a call could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum VoxlineError {
    /// The assistant's providers could not be built.
    #[error(transparent)]
    Providers(#[from] FactoryError),
    /// The media configuration cannot be used.
    #[error(transparent)]
    Media(#[from] MediaError),
}

/// Builds calls: providers by name from the assistant, keys and endpoints from the environment.
#[derive(Clone)]
pub struct Voxline {
    env: Arc<dyn Env>,
    standins: Standins,
    options: DriverOptions,
}

/// A call ready to run: spawn `task.run()`, keep `control` and read `events`.
pub struct PreparedCall<T: PacketTransport> {
    /// The call task (media clock, turn-taking, provider sessions).
    pub task: CallTask<RtpPort<T>>,
    /// Commands, tool results and hang-up.
    pub control: CallControl,
    /// The ordered event stream.
    pub events: EventStream,
    /// Which providers were substituted or point somewhere unusual, one line each.
    pub notices: Vec<String>,
    /// The providers the call uses (the model also serves post-call analysis).
    pub providers: voxline_engine::driver::ProviderSet,
    /// The settings the call runs with.
    pub settings: CallSettings,
}

/// No overrides: hosted providers without a key are replaced by the built-in offline ones
/// (PocketSphinx for speech recognition, the scripted agent — or the OpenAI-compatible server
/// at `OPENAI_BASE_URL` — for the model, espeak-ng for the voice), each with a notice.
/// Pass other [`Standins`] to [`Voxline::with_standins`] to substitute your own.
pub fn offline_standins() -> Standins {
    Standins::default()
}

impl Voxline {
    /// Keys and base URLs from the process environment.
    pub fn from_env() -> Self {
        Voxline::with_env(Arc::new(ProcessEnv))
    }

    /// Keys and base URLs from `env` (a map in tests, a secrets store in a host).
    pub fn with_env(env: Arc<dyn Env>) -> Self {
        Voxline {
            env,
            standins: Standins::default(),
            options: DriverOptions::default(),
        }
    }

    /// Offline providers that stand in for hosted ones without keys.
    pub fn with_standins(mut self, standins: Standins) -> Self {
        self.standins = standins;
        self
    }

    /// Driver options (VAD, rate limit, answering) for every call.
    pub fn with_options(mut self, options: DriverOptions) -> Self {
        self.options = options;
        self
    }

    /// Builds the providers an assistant asks for, without starting a call.
    pub fn providers_for(&self, assistant: &Assistant) -> Result<BuiltProviders, FactoryError> {
        voxline_providers::factory::build_providers(assistant, self.env.as_ref(), &self.standins)
    }

    /// Prepares a call of `assistant` whose RTP media runs over `transport`.
    pub fn prepare_call<T: PacketTransport>(
        &self,
        assistant: &Assistant,
        direction: CallDirection,
        transport: T,
        media: MediaConfig,
    ) -> Result<PreparedCall<T>, VoxlineError> {
        let built = self.providers_for(assistant)?;
        let settings = CallSettings::from_assistant(assistant, direction);
        let port = RtpPort::new(transport, &media)?;
        let (task, control, events) = new_call(
            settings.clone(),
            built.set.clone(),
            port,
            self.options.clone(),
        );
        Ok(PreparedCall {
            task,
            control,
            events,
            notices: built.notices,
            providers: built.set,
            settings,
        })
    }
}
