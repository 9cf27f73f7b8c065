//! `speech_config`: turn-taking, barge-in, pronunciation, silence checks and scripted lines
//! (spec §8.9, §9.2).
//!
//! Every knob is optional; [`TurnTakingSettings`], [`SilenceSchedule`] and
//! [`BackgroundAudioSettings`] give the effective values with the spec's defaults as `Duration`s.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::check;
use super::error::{join, ConfigError};
use super::ConfigSection;

/// `speech_config` of an assistant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpeechConfig {
    /// When to answer and when the caller may interrupt (standard pipeline only).
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "turnTaking")]
    pub turn_taking: Option<TurnTaking>,
    /// Literal replacements applied to text before TTS (standard pipeline only); at most 50.
    #[serde(
        default,
        deserialize_with = "check::null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub pronunciation: Vec<PronunciationRule>,
    /// Ambient sound mixed under the call.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "backgroundAudio"
    )]
    pub background_audio: Option<BackgroundAudio>,
    /// Silence checks, used when `autonomous_silence_handling` is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silence: Option<SilenceConfig>,
    /// Spoken before the assistant ends the call itself (standard pipeline only); ≤ 300 chars.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "endCallMessage"
    )]
    pub end_call_message: Option<String>,
    /// Opening line for outbound calls; falls back to `first_message`; ≤ 300 chars.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "firstMessageOutbound"
    )]
    pub first_message_outbound: Option<String>,
    /// Phrases that end the call when the assistant says them; ≤ 5, each ≤ 100 chars with at
    /// least two letters or digits (in the catalog only, spec §8.9).
    #[serde(
        default,
        deserialize_with = "check::null_as_empty",
        skip_serializing_if = "Vec::is_empty",
        alias = "endCallPhrases"
    )]
    pub end_call_phrases: Vec<String>,
}

/// `speech_config.turn_taking` as written (seconds, optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TurnTaking {
    /// Shortest pause before the assistant answers, 0.1–5 s (default 0.4).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "endpointingMinDelay"
    )]
    pub endpointing_min_delay: Option<f64>,
    /// Longest wait before answering anyway, 0.1–5 s and ≥ the minimum (default 2).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "endpointingMaxDelay"
    )]
    pub endpointing_max_delay: Option<f64>,
    /// Caller speech needed to barge in, 0.05–2 s (default 0.3).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "interruptionMinDuration"
    )]
    pub interruption_min_duration: Option<f64>,
    /// Words needed to barge in, 0–10 (default 0 = off).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "interruptionMinWords"
    )]
    pub interruption_min_words: Option<i64>,
    /// Resume speaking after a non-speech "interruption", 0.2–5 s (default 1.5).
    /// Absent = default; `null` = never resume.
    #[serde(
        default,
        deserialize_with = "check::nullable",
        skip_serializing_if = "Option::is_none",
        alias = "falseInterruptionTimeout"
    )]
    pub false_interruption_timeout: Option<Option<f64>>,
}

/// Effective turn-taking of a standard-pipeline call, defaults applied (spec §8.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TurnTakingSettings {
    /// Shortest pause after the caller stops before the assistant answers.
    pub endpointing_min_delay: Duration,
    /// Longest wait before answering even if the caller may go on.
    pub endpointing_max_delay: Duration,
    /// Caller speech needed to barge in.
    pub interruption_min_duration: Duration,
    /// Words needed to barge in; 0 = no word requirement.
    pub interruption_min_words: u32,
    /// Resume after a false interruption; `None` = disabled.
    pub false_interruption_timeout: Option<Duration>,
}

impl Default for TurnTakingSettings {
    fn default() -> Self {
        TurnTakingSettings {
            endpointing_min_delay: Duration::from_millis(400),
            endpointing_max_delay: Duration::from_secs(2),
            interruption_min_duration: Duration::from_millis(300),
            interruption_min_words: 0,
            false_interruption_timeout: Some(Duration::from_millis(1500)),
        }
    }
}

impl TurnTaking {
    /// The effective settings: configured values over the spec defaults.
    pub fn settings(&self) -> TurnTakingSettings {
        let d = TurnTakingSettings::default();
        let min_delay = secs_or(self.endpointing_min_delay, d.endpointing_min_delay);
        TurnTakingSettings {
            endpointing_min_delay: min_delay,
            // An unset maximum never falls below a configured minimum (spec §8.9 "≥ min").
            endpointing_max_delay: self
                .endpointing_max_delay
                .map_or_else(|| d.endpointing_max_delay.max(min_delay), secs),
            interruption_min_duration: secs_or(
                self.interruption_min_duration,
                d.interruption_min_duration,
            ),
            interruption_min_words: self
                .interruption_min_words
                .map_or(d.interruption_min_words, |w| {
                    u32::try_from(w.max(0)).unwrap_or(u32::MAX)
                }),
            false_interruption_timeout: match self.false_interruption_timeout {
                None => d.false_interruption_timeout,
                Some(None) => None,
                Some(Some(s)) => Some(secs(s)),
            },
        }
    }
}

/// One literal replacement applied before TTS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PronunciationRule {
    /// Text to find, 1–64 chars.
    pub from: String,
    /// Replacement, 0–128 chars.
    pub to: String,
}

string_enum! {
    /// Background clips (spec §8.9).
    pub enum BackgroundClip: "clip" {
        /// Office murmur (default).
        Office = "office",
        /// Street.
        City = "city",
        /// Nature.
        Forest = "forest",
        /// Busy room.
        CrowdedRoom = "crowded_room" | "crowdedRoom",
    }
}

/// `speech_config.background_audio` as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackgroundAudio {
    /// On or off (default off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Which clip (default office).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip: Option<BackgroundClip>,
    /// Gain 0.05–1 (default 0.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<f64>,
}

/// Effective background audio, defaults applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackgroundAudioSettings {
    /// Whether to mix a clip in.
    pub enabled: bool,
    /// The clip.
    pub clip: BackgroundClip,
    /// Linear gain.
    pub volume: f64,
}

impl Default for BackgroundAudioSettings {
    fn default() -> Self {
        BackgroundAudioSettings {
            enabled: false,
            clip: BackgroundClip::Office,
            volume: 0.3,
        }
    }
}

impl BackgroundAudio {
    /// The effective settings: configured values over the spec defaults.
    pub fn settings(&self) -> BackgroundAudioSettings {
        let d = BackgroundAudioSettings::default();
        BackgroundAudioSettings {
            enabled: self.enabled.unwrap_or(d.enabled),
            clip: self.clip.unwrap_or(d.clip),
            volume: self.volume.unwrap_or(d.volume),
        }
    }
}

/// `speech_config.silence` as written (spec §8.9, §9.2).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SilenceConfig {
    /// Lines for successive checks; at most 5, each 1–300 chars.
    #[serde(
        default,
        deserialize_with = "check::null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub messages: Vec<String>,
    /// Spoken on the last attempt before ending the call; ≤ 300 chars.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "finalMessage"
    )]
    pub final_message: Option<String>,
    /// Silence before the first check, 1–60 s (default 3).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "firstCheckSeconds"
    )]
    pub first_check_seconds: Option<f64>,
    /// Time between checks, 3–120 s (default 12).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "intervalSeconds"
    )]
    pub interval_seconds: Option<f64>,
    /// Checks before the call ends, 1–10 (default 3).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "maxAttempts"
    )]
    pub max_attempts: Option<i64>,
}

/// When and what the assistant says while the caller stays silent, defaults applied.
///
/// Defaults follow the newest source (`speech_config.silence`, first check after 3 s), not the
/// older feature page's 7 s (spec §9.2, §13 item 6). Any caller speech restarts the schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SilenceSchedule {
    /// Silence before the first check.
    pub first_check: Duration,
    /// Time between later checks.
    pub interval: Duration,
    /// Number of checks; after the last one the assistant ends the call.
    pub max_attempts: u32,
    /// Scripted lines for successive checks; a check without one gets a contextual line.
    pub messages: Vec<String>,
    /// Scripted line for the last check.
    pub final_message: Option<String>,
}

impl Default for SilenceSchedule {
    fn default() -> Self {
        SilenceSchedule {
            first_check: Duration::from_secs(3),
            interval: Duration::from_secs(12),
            max_attempts: 3,
            messages: Vec::new(),
            final_message: None,
        }
    }
}

impl SilenceSchedule {
    /// Time since the caller went silent at which check `attempt` (0-based) fires;
    /// `None` once all attempts are used.
    pub fn check_at(&self, attempt: u32) -> Option<Duration> {
        (attempt < self.max_attempts).then(|| self.first_check + self.interval * attempt)
    }

    /// True when `attempt` (0-based) is the last check before hanging up.
    pub fn is_final(&self, attempt: u32) -> bool {
        attempt + 1 == self.max_attempts
    }

    /// The scripted line for check `attempt`: the final message on the last check if set,
    /// else the attempt's entry in `messages`; `None` asks for a contextual line instead.
    pub fn message_for(&self, attempt: u32) -> Option<&str> {
        if self.is_final(attempt) {
            if let Some(m) = &self.final_message {
                return Some(m);
            }
        }
        usize::try_from(attempt)
            .ok()
            .and_then(|i| self.messages.get(i))
            .map(String::as_str)
    }
}

impl SilenceConfig {
    /// The effective schedule: configured values over the spec defaults.
    pub fn schedule(&self) -> SilenceSchedule {
        let d = SilenceSchedule::default();
        SilenceSchedule {
            first_check: secs_or(self.first_check_seconds, d.first_check),
            interval: secs_or(self.interval_seconds, d.interval),
            max_attempts: self.max_attempts.map_or(d.max_attempts, |n| {
                u32::try_from(n.max(1)).unwrap_or(u32::MAX)
            }),
            messages: self.messages.clone(),
            final_message: self.final_message.clone().filter(|m| !m.trim().is_empty()),
        }
    }
}

impl SpeechConfig {
    /// Effective turn-taking (spec defaults when `turn_taking` is absent).
    pub fn turn_taking_settings(&self) -> TurnTakingSettings {
        self.turn_taking
            .as_ref()
            .map_or_else(TurnTakingSettings::default, TurnTaking::settings)
    }

    /// Effective silence schedule (spec defaults when `silence` is absent).
    pub fn silence_schedule(&self) -> SilenceSchedule {
        self.silence
            .as_ref()
            .map_or_else(SilenceSchedule::default, SilenceConfig::schedule)
    }

    /// Effective background audio (off when `background_audio` is absent).
    pub fn background_audio_settings(&self) -> BackgroundAudioSettings {
        self.background_audio
            .as_ref()
            .map_or_else(BackgroundAudioSettings::default, BackgroundAudio::settings)
    }

    /// Applies the pronunciation rules, in order, to `text` (literal, case-sensitive).
    pub fn apply_pronunciation(&self, text: &str) -> String {
        self.pronunciation
            .iter()
            .filter(|r| !r.from.is_empty())
            .fold(text.to_owned(), |acc, r| acc.replace(&r.from, &r.to))
    }
}

fn secs(value: f64) -> Duration {
    Duration::try_from_secs_f64(value).unwrap_or(Duration::ZERO)
}

fn secs_or(value: Option<f64>, default: Duration) -> Duration {
    value.map_or(default, secs)
}

fn optional_text(path: &str, text: &Option<String>, max: usize) -> Result<(), ConfigError> {
    text.as_deref()
        .map_or(Ok(()), |t| check::chars(path, t, 0, max))
}

impl ConfigSection for SpeechConfig {
    /// Ranges and limits from spec §8.9, rejected when outside (the spec does not say to clamp).
    fn validate_at(&self, path: &str) -> Result<(), ConfigError> {
        if let Some(tt) = &self.turn_taking {
            let at = join(path, "turn_taking");
            check::opt_range_f64(
                &join(&at, "endpointing_min_delay"),
                tt.endpointing_min_delay,
                0.1,
                5.0,
            )?;
            check::opt_range_f64(
                &join(&at, "endpointing_max_delay"),
                tt.endpointing_max_delay,
                0.1,
                5.0,
            )?;
            let effective = tt.settings();
            if effective.endpointing_max_delay < effective.endpointing_min_delay {
                return Err(ConfigError::invalid(
                    join(&at, "endpointing_max_delay"),
                    format!(
                        "{} s is below endpointing_min_delay ({} s)",
                        effective.endpointing_max_delay.as_secs_f64(),
                        effective.endpointing_min_delay.as_secs_f64()
                    ),
                ));
            }
            check::opt_range_f64(
                &join(&at, "interruption_min_duration"),
                tt.interruption_min_duration,
                0.05,
                2.0,
            )?;
            check::opt_range_i64(
                &join(&at, "interruption_min_words"),
                tt.interruption_min_words,
                0,
                10,
            )?;
            check::opt_range_f64(
                &join(&at, "false_interruption_timeout"),
                tt.false_interruption_timeout.flatten(),
                0.2,
                5.0,
            )?;
        }

        let at = join(path, "pronunciation");
        check::max_items(&at, self.pronunciation.len(), 50)?;
        for (i, rule) in self.pronunciation.iter().enumerate() {
            let item = join(&at, &format!("[{i}]"));
            check::chars(&join(&item, "from"), &rule.from, 1, 64)?;
            check::chars(&join(&item, "to"), &rule.to, 0, 128)?;
        }

        if let Some(bg) = &self.background_audio {
            check::opt_range_f64(&join(path, "background_audio.volume"), bg.volume, 0.05, 1.0)?;
        }

        if let Some(silence) = &self.silence {
            let at = join(path, "silence");
            let messages = join(&at, "messages");
            check::max_items(&messages, silence.messages.len(), 5)?;
            for (i, m) in silence.messages.iter().enumerate() {
                check::chars(&join(&messages, &format!("[{i}]")), m, 1, 300)?;
            }
            optional_text(&join(&at, "final_message"), &silence.final_message, 300)?;
            check::opt_range_f64(
                &join(&at, "first_check_seconds"),
                silence.first_check_seconds,
                1.0,
                60.0,
            )?;
            check::opt_range_f64(
                &join(&at, "interval_seconds"),
                silence.interval_seconds,
                3.0,
                120.0,
            )?;
            check::opt_range_i64(&join(&at, "max_attempts"), silence.max_attempts, 1, 10)?;
        }

        optional_text(&join(path, "end_call_message"), &self.end_call_message, 300)?;
        optional_text(
            &join(path, "first_message_outbound"),
            &self.first_message_outbound,
            300,
        )?;

        let at = join(path, "end_call_phrases");
        check::max_items(&at, self.end_call_phrases.len(), 5)?;
        for (i, phrase) in self.end_call_phrases.iter().enumerate() {
            let item = join(&at, &format!("[{i}]"));
            check::chars(&item, phrase, 1, 100)?;
            if phrase.chars().filter(|c| c.is_alphanumeric()).count() < 2 {
                return Err(ConfigError::invalid(
                    item,
                    "needs at least two letters or digits",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_spec() {
        let s = SpeechConfig::default();
        let tt = s.turn_taking_settings();
        assert_eq!(tt.endpointing_min_delay, Duration::from_millis(400));
        assert_eq!(tt.endpointing_max_delay, Duration::from_secs(2));
        assert_eq!(tt.interruption_min_duration, Duration::from_millis(300));
        assert_eq!(tt.interruption_min_words, 0);
        assert_eq!(
            tt.false_interruption_timeout,
            Some(Duration::from_millis(1500))
        );
        let bg = s.background_audio_settings();
        assert!(!bg.enabled);
        assert_eq!(bg.clip, BackgroundClip::Office);
        assert_eq!(s.silence_schedule(), SilenceSchedule::default());
    }

    #[test]
    fn false_interruption_timeout_null_disables() {
        let s = SpeechConfig::from_json(r#"{"turn_taking":{"false_interruption_timeout":null}}"#)
            .unwrap();
        assert_eq!(s.turn_taking_settings().false_interruption_timeout, None);
        let out = serde_json::to_value(&s).unwrap();
        assert!(out["turn_taking"]["false_interruption_timeout"].is_null());
        assert!(out["turn_taking"]
            .as_object()
            .unwrap()
            .contains_key("false_interruption_timeout"));
        let s =
            SpeechConfig::from_json(r#"{"turnTaking":{"falseInterruptionTimeout":0.8}}"#).unwrap();
        assert_eq!(
            s.turn_taking_settings().false_interruption_timeout,
            Some(Duration::from_millis(800))
        );
    }

    #[test]
    fn out_of_range_turn_taking_is_rejected() {
        let err =
            SpeechConfig::from_json(r#"{"turn_taking":{"endpointing_max_delay":90}}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "turn_taking.endpointing_max_delay: 90 out of range 0.1..=5"
        );
        let err = SpeechConfig::from_json(
            r#"{"turn_taking":{"endpointing_min_delay":3,"endpointing_max_delay":1}}"#,
        )
        .unwrap_err();
        assert_eq!(err.path(), "turn_taking.endpointing_max_delay");
        let err = SpeechConfig::from_json(r#"{"turn_taking":{"interruption_min_words":11}}"#)
            .unwrap_err();
        assert_eq!(err.path(), "turn_taking.interruption_min_words");
    }

    #[test]
    fn unset_max_delay_follows_a_larger_min() {
        let s = SpeechConfig::from_json(r#"{"turn_taking":{"endpointing_min_delay":3}}"#).unwrap();
        let tt = s.turn_taking_settings();
        assert_eq!(tt.endpointing_min_delay, Duration::from_secs(3));
        assert_eq!(tt.endpointing_max_delay, Duration::from_secs(3));
    }

    #[test]
    fn silence_schedule_offsets_and_messages() {
        let s = SpeechConfig::from_json(
            r#"{"silence":{"messages":["Are you there?","Still here."],"final_message":"Bye now.",
                "first_check_seconds":5,"interval_seconds":10,"max_attempts":3}}"#,
        )
        .unwrap();
        let plan = s.silence_schedule();
        assert_eq!(plan.check_at(0), Some(Duration::from_secs(5)));
        assert_eq!(plan.check_at(2), Some(Duration::from_secs(25)));
        assert_eq!(plan.check_at(3), None);
        assert_eq!(plan.message_for(0), Some("Are you there?"));
        assert_eq!(plan.message_for(1), Some("Still here."));
        assert_eq!(plan.message_for(2), Some("Bye now."));
        assert!(plan.is_final(2));
    }

    #[test]
    fn limits_on_lists_and_text() {
        let err = SpeechConfig::from_json(r#"{"end_call_phrases":["ok","?!"]}"#).unwrap_err();
        assert_eq!(err.path(), "end_call_phrases[1]");
        let err =
            SpeechConfig::from_json(r#"{"pronunciation":[{"from":"","to":"x"}]}"#).unwrap_err();
        assert_eq!(err.path(), "pronunciation[0].from");
        let long = "x".repeat(301);
        let err =
            SpeechConfig::from_json(&format!(r#"{{"end_call_message":"{long}"}}"#)).unwrap_err();
        assert_eq!(err.path(), "end_call_message");
        let err = SpeechConfig::from_json(r#"{"silence":{"max_attempts":0}}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "silence.max_attempts: 0 out of range 1..=10"
        );
    }

    #[test]
    fn pronunciation_is_literal_and_ordered() {
        let s = SpeechConfig::from_json(
            r#"{"pronunciation":[{"from":"HMS","to":"H M S"},{"from":"NL","to":"Nederland"}]}"#,
        )
        .unwrap();
        assert_eq!(s.apply_pronunciation("HMS in NL"), "H M S in Nederland");
    }
}
