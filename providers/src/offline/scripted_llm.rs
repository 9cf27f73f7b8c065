//! `scripted`: a deterministic local agent, the offline stand-in for a language model.
//!
//! It is not a language model. It reads the same [`LlmRequest`] a real model gets (the system
//! prompt, the conversation, the tools) and answers with keyword and intent rules, so a call
//! with no API keys still greets, answers, books, transfers and hangs up in a believable way.
//! The same request always gives the same reply. Rules, first match wins:
//!
//! 0. **Post-call analysis.** A request without tools whose prompt holds the call's
//!    `Transcript:` gets the structured data (one JSON object for the prompt's `Schema:`,
//!    filled by the extractors of rule 5 from the caller's lines; booleans from the agent's
//!    lines, e.g. "booked") or an extractive summary (the caller's first words, the agent's
//!    fullest answer, how the call ended).
//! 1. **Tool results.** When the conversation ends with tool results, it reports them in a
//!    sentence (a `message`/`confirmation`-like field verbatim, else the result's fields; an
//!    `error` as an apology).
//! 2. **Goodbye.** "bye", "that's all", "no thanks", or "no" after "anything else?" → a
//!    goodbye; when the assistant has the `end_call` tool, a short closing and a call of it
//!    instead (the engine then speaks the assistant's `end_call_message`). A bare "thank you"
//!    gets "you're welcome".
//! 3. **A human.** Asking for a person, agent or representative → `transfer_call` (to its first
//!    destination) when the assistant has it, else an apology.
//! 4. **Business facts.** A question about opening hours, location, prices or services is
//!    answered with the system prompt's sentences on that topic (instructions such as "You
//!    are…" or "Always…" are never read out).
//! 5. **The assistant's tools.** When the caller's words overlap a tool's name (weight 2) or
//!    description (weight 1) by 2 or more, the tool is wanted: arguments are extracted from
//!    what the caller said since (weekday/today/tomorrow for day or date properties; times such
//!    as "10:30", "ten o'clock", "half past two", "3 pm"; a name after "my name is"/"this is";
//!    phone numbers; e-mail addresses; enum values; counts). Missing required arguments are
//!    asked for one question at a time, and the next answer fills the one asked; then the tool
//!    is called, without words of its own (the engine speaks the tool's `message` meanwhile).
//! 6. **Greeting.** "hello", "hi", "good morning" → an offer to help.
//! 7. **Fallback.** "I'm sorry, I didn't catch that. Could you say it another way?"
//!
//! Replies stream word by word after [`ScriptedAgentConfig::first_token_latency`], one word per
//! [`ScriptedAgentConfig::token_interval`], then the tool calls, an estimated `Usage` (about four
//! characters per token) and `Done`. No network, no model files.

use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::mpsc;
use voxline_engine::config::tools::{END_CALL_TOOL_NAME, TRANSFER_CALL_TOOL_NAME};

use super::numbers::{ONES, ORDINALS};
use voxline_engine::provider::{
    BoxFuture, ChatMessage, LlmEvent, LlmProvider, LlmRequest, ProviderError, Role, TokenUsage,
    ToolCallRequest, ToolSpec,
};

/// The provider's config name.
pub const PROVIDER: &str = "scripted";

/// What the agent says when no rule matches.
pub const FALLBACK_REPLY: &str = "I'm sorry, I didn't catch that. Could you say it another way?";

const GREETING_REPLY: &str = "Hello! How can I help you today?";
const GOODBYE_REPLY: &str = "Thank you for calling. Goodbye!";
/// The closing words before `end_call`: the engine speaks the assistant's `end_call_message`
/// (its goodbye) before it hangs up, so the agent does not say goodbye twice.
const CLOSING_REPLY: &str = "Alright, take care.";
const WELCOME_REPLY: &str = "You're welcome! Is there anything else I can help you with?";
const ANYTHING_ELSE: &str = "Is there anything else I can help you with?";

/// Timing of the streamed reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptedAgentConfig {
    /// Delay before `FirstByte` and the first word (a hosted model's time to first token).
    pub first_token_latency: Duration,
    /// Delay between words.
    pub token_interval: Duration,
}

impl Default for ScriptedAgentConfig {
    fn default() -> Self {
        ScriptedAgentConfig {
            first_token_latency: Duration::from_millis(250),
            token_interval: Duration::from_millis(25),
        }
    }
}

/// What the agent decided to do for one request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentReply {
    /// The spoken reply (may be empty when it only calls a tool).
    pub text: String,
    /// Tools to call, as (name, JSON arguments), after the text.
    pub tool_calls: Vec<(String, String)>,
}

/// The deterministic offline agent; see the module documentation for its rules.
#[derive(Clone, Debug, Default)]
pub struct ScriptedAgent {
    config: ScriptedAgentConfig,
}

impl ScriptedAgent {
    /// An agent streaming with `config` timing.
    pub fn new(config: ScriptedAgentConfig) -> Self {
        ScriptedAgent { config }
    }

    /// The timing in use.
    pub fn config(&self) -> &ScriptedAgentConfig {
        &self.config
    }

    /// The reply to `request`, without streaming it.
    pub fn reply(request: &LlmRequest) -> AgentReply {
        decide(request)
    }
}

impl LlmProvider for ScriptedAgent {
    fn name(&self) -> &str {
        PROVIDER
    }

    fn stream(
        &self,
        request: LlmRequest,
        events: mpsc::UnboundedSender<LlmEvent>,
    ) -> BoxFuture<'static, Result<(), ProviderError>> {
        let config = self.config.clone();
        Box::pin(async move {
            let reply = decide(&request);
            let prompt_tokens = estimate_tokens(&request);
            tokio::time::sleep(config.first_token_latency).await;
            let _ = events.send(LlmEvent::FirstByte);
            let mut completion_chars = 0usize;
            for (i, word) in reply.text.split_inclusive(' ').enumerate() {
                if i > 0 {
                    tokio::time::sleep(config.token_interval).await;
                }
                completion_chars += word.len();
                let _ = events.send(LlmEvent::TextDelta(word.to_owned()));
            }
            let previous_calls = request
                .messages
                .iter()
                .map(|m| m.tool_calls.len())
                .sum::<usize>();
            for (i, (name, arguments)) in reply.tool_calls.into_iter().enumerate() {
                completion_chars += name.len() + arguments.len();
                let _ = events.send(LlmEvent::ToolCall(ToolCallRequest {
                    id: format!("call_scripted_{}", previous_calls + i + 1),
                    name,
                    arguments,
                }));
            }
            let _ = events.send(LlmEvent::Usage(TokenUsage {
                prompt_tokens,
                completion_tokens: completion_chars.div_ceil(4) as u64,
            }));
            let _ = events.send(LlmEvent::Done);
            Ok(())
        })
    }
}

fn estimate_tokens(request: &LlmRequest) -> u64 {
    let messages: usize = request
        .messages
        .iter()
        .map(|m| {
            m.content.len()
                + m.tool_calls
                    .iter()
                    .map(|c| c.name.len() + c.arguments.len())
                    .sum::<usize>()
                + 4
        })
        .sum();
    let tools: usize = request
        .tools
        .iter()
        .map(|t| t.name.len() + t.description.len() + t.parameters.to_string().len())
        .sum();
    (messages + tools).div_ceil(4) as u64
}

// ---------------------------------------------------------------------------------------------
// Decision

fn decide(request: &LlmRequest) -> AgentReply {
    let messages = &request.messages;
    if let Some(reply) = post_call_analysis(request) {
        return reply;
    }
    if let Some(reply) = after_tool_results(messages, &request.tools) {
        return reply;
    }
    let Some(user_index) = messages.iter().rposition(|m| m.role == Role::User) else {
        return say(GREETING_REPLY);
    };
    let user = Utterance::new(&messages[user_index].content);
    let previous_agent = messages[..user_index]
        .iter()
        .rev()
        .find(|m| m.role == Role::Assistant)
        .map(|m| m.content.to_lowercase())
        .unwrap_or_default();
    let tools = &request.tools;

    if let Some(reply) = goodbye(&user, &previous_agent, tools) {
        return reply;
    }
    if let Some(reply) = human(&user, tools) {
        return reply;
    }
    // A question about the business wins unless the caller is asking for a tool without a
    // question word ("can I book…" mentions no hours even if it says "open").
    let wants_tool = best_tool(&user, tools).is_some();
    if !wants_tool || user.has_any(&["what", "when", "where", "how", "which"]) {
        let system = system_prompt(messages);
        if let Some(reply) = business_fact(&user, &system) {
            return reply;
        }
    }
    if let Some(reply) = tool_intent(messages, tools) {
        return reply;
    }
    if user.has_any(&[
        "hello",
        "hi",
        "hey",
        "morning",
        "afternoon",
        "evening",
        "hiya",
    ]) {
        return say(GREETING_REPLY);
    }
    say(FALLBACK_REPLY)
}

/// Rule 0: a post-call analysis request (no tools, and a prompt that holds the call's
/// `Transcript:` in the platform's `role: content` lines). With a `Schema:` (or a request for
/// JSON) the reply is one JSON object filled from what the caller said; otherwise a short
/// extractive summary.
fn post_call_analysis(request: &LlmRequest) -> Option<AgentReply> {
    if !request.tools.is_empty() {
        return None;
    }
    let prompt: String = request
        .messages
        .iter()
        .map(|m| m.content.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let start = prompt.find("Transcript:")? + "Transcript:".len();
    let rest = &prompt[start..];
    let (transcript, ended) = match rest.find("Call ended because:") {
        Some(i) => (
            &rest[..i],
            rest[i + "Call ended because:".len()..]
                .lines()
                .next()
                .unwrap_or(""),
        ),
        None => (rest, ""),
    };
    let lines = transcript_lines(transcript);
    let schema = prompt.find("Schema:").and_then(|i| {
        let from = i + prompt[i..].find('{')?;
        serde_json::Deserializer::from_str(&prompt[from..])
            .into_iter::<Value>()
            .next()?
            .ok()
    });
    let wants_json = schema.is_some() || prompt.contains("JSON");
    let reply = if wants_json {
        let schema = schema.unwrap_or(Value::Null);
        Value::Object(structured_data(&schema, &lines, ended)).to_string()
    } else {
        summary(&lines, ended.trim())
    };
    Some(say(&reply))
}

/// The (role, text) lines of a transcript in `role: content` form; a line without a role
/// continues the one before.
fn transcript_lines(transcript: &str) -> Vec<(Role, String)> {
    let mut lines: Vec<(Role, String)> = Vec::new();
    for line in transcript.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let parsed = [
            ("user:", Role::User),
            ("assistant:", Role::Assistant),
            ("system:", Role::System),
        ]
        .into_iter()
        .find_map(|(prefix, role)| {
            line.strip_prefix(prefix)
                .map(|t| (role, t.trim().to_owned()))
        });
        match (parsed, lines.last_mut()) {
            (Some(entry), _) => lines.push(entry),
            (None, Some(last)) => {
                last.1.push(' ');
                last.1.push_str(line);
            }
            (None, None) => {}
        }
    }
    lines
}

/// Words that show the agent confirmed something (a booking, an order, a change).
const CONFIRMED_WORDS: &[&str] = &["booked", "confirmed", "scheduled", "all set", "reserved"];

/// Fills `schema`'s properties from the caller's lines with the tool-argument extractors;
/// booleans are read from the agent's lines (something booked or confirmed, a call-back or
/// follow-up promised, a transfer); an enum nothing matched takes "other" when it has it;
/// anything else the call did not say is null.
fn structured_data(schema: &Value, lines: &[(Role, String)], ended: &str) -> Map<String, Value> {
    let fields = ArgSchema::from_schema(schema);
    let mut data = Map::new();
    for (_, text) in lines.iter().filter(|(r, _)| *r == Role::User) {
        fields.extract(&Utterance::new(text), &mut data);
    }
    let agent: String = lines
        .iter()
        .filter(|(r, _)| *r == Role::Assistant)
        .map(|(_, t)| t.to_lowercase())
        .collect::<Vec<_>>()
        .join(" ");
    let everything = format!("{} {}", transcript_words(lines), ended.to_lowercase());
    let properties = schema.get("properties").and_then(Value::as_object);
    for (name, spec) in properties.into_iter().flatten() {
        if data.contains_key(name) {
            continue;
        }
        let kinds: Vec<&str> = match spec.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let key = name.to_lowercase();
        let value = if kinds.contains(&"boolean") {
            let flag = if ["booked", "confirmed", "scheduled", "success", "completed"]
                .iter()
                .any(|k| key.contains(k))
            {
                CONFIRMED_WORDS.iter().any(|w| agent.contains(w))
            } else if key.contains("follow")
                || key.contains("callback")
                || key.contains("call_back")
            {
                ["call you back", "call back", "follow up", "get back to you"]
                    .iter()
                    .any(|w| everything.contains(w))
            } else if key.contains("transfer") {
                everything.contains("transfer")
            } else {
                false
            };
            Value::Bool(flag)
        } else if let Some(choices) = spec.get("enum").and_then(Value::as_array) {
            choices
                .iter()
                .find(|c| c.as_str() == Some("other"))
                .cloned()
                .unwrap_or(Value::Null)
        } else {
            Value::Null
        };
        data.insert(name.clone(), value);
    }
    data
}

fn transcript_words(lines: &[(Role, String)]) -> String {
    lines
        .iter()
        .map(|(_, t)| t.to_lowercase())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Two or three sentences: what the caller said first, the agent's fullest answer, and why
/// the call ended.
fn summary(lines: &[(Role, String)], ended: &str) -> String {
    let first_user_at = lines
        .iter()
        .position(|(r, t)| *r == Role::User && !t.is_empty());
    let first_user = first_user_at.map(|i| &lines[i]);
    // The agent's greeting: its first line, when it came before the caller spoke.
    let greeting = lines
        .iter()
        .position(|(r, _)| *r == Role::Assistant)
        .filter(|i| first_user_at.is_none_or(|u| *i < u));
    let answer = lines
        .iter()
        .enumerate()
        .filter(|(i, (r, _))| *r == Role::Assistant && Some(*i) != greeting)
        .map(|(_, (_, t))| t)
        .max_by_key(|t| {
            let lower = t.to_lowercase();
            (CONFIRMED_WORDS.iter().any(|w| lower.contains(w)), t.len())
        });
    let mut out = match first_user {
        Some((_, said)) => format!("The caller said: \"{}\".", said.trim_end_matches('.')),
        None => "The caller said nothing.".to_owned(),
    };
    if let Some(answer) = answer {
        out.push_str(&format!(
            " The agent answered: \"{}\".",
            answer.trim_end_matches('.')
        ));
    }
    if !ended.is_empty() {
        out.push_str(&format!(
            " The call ended: {}.",
            ended.replace(['_', '-'], " ")
        ));
    }
    out
}

fn say(text: &str) -> AgentReply {
    AgentReply {
        text: text.to_owned(),
        tool_calls: Vec::new(),
    }
}

fn system_prompt(messages: &[ChatMessage]) -> String {
    messages
        .iter()
        .filter(|m| m.role == Role::System)
        .map(|m| m.content.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

fn has_tool(tools: &[ToolSpec], name: &str) -> bool {
    tools.iter().any(|t| t.name == name)
}

/// A caller utterance, normalised for matching.
struct Utterance {
    /// Lowercase text with punctuation other than `:`, `'`, `@`, `.` inside words removed.
    text: String,
    /// Lowercase words.
    words: Vec<String>,
    /// Stems of the words.
    stems: Vec<String>,
}

impl Utterance {
    fn new(raw: &str) -> Self {
        let lower = raw.to_lowercase().replace(['’', '‘'], "'");
        let cleaned: String = lower
            .chars()
            .map(|c| {
                if c.is_alphanumeric() || matches!(c, '\'' | ':' | '@' | '.' | '-' | '+') {
                    c
                } else {
                    ' '
                }
            })
            .collect();
        let words: Vec<String> = cleaned
            .split_whitespace()
            .map(|w| {
                w.trim_matches(|c: char| matches!(c, '.' | '\'' | '-' | ':'))
                    .to_owned()
            })
            .filter(|w| !w.is_empty())
            .collect();
        let stems = words.iter().map(|w| stem(w)).collect();
        Utterance {
            text: words.join(" "),
            words,
            stems,
        }
    }

    fn has_any(&self, words: &[&str]) -> bool {
        self.words.iter().any(|w| words.contains(&w.as_str()))
    }

    fn has_phrase(&self, phrases: &[&str]) -> bool {
        let padded = format!(" {} ", self.text);
        phrases.iter().any(|p| padded.contains(&format!(" {p} ")))
    }
}

/// A crude English stem: enough to match "booking"/"booked"/"books" with "book".
fn stem(word: &str) -> String {
    let w = word.trim_end_matches("'s");
    let n = w.chars().count();
    let cut = |suffix: &str, min: usize| n >= min && w.ends_with(suffix);
    let stemmed = if cut("ing", 6) {
        &w[..w.len() - 3]
    } else if cut("ies", 5) {
        return format!("{}y", &w[..w.len() - 3]);
    } else if cut("ed", 5) {
        &w[..w.len() - 2]
    } else if cut("s", 4) && !w.ends_with("ss") && !w.ends_with("us") {
        &w[..w.len() - 1]
    } else {
        w
    };
    stemmed.to_owned()
}

const STOPWORDS: &[&str] = &[
    "a", "an", "the", "to", "for", "of", "and", "or", "in", "on", "at", "with", "by", "from", "is",
    "are", "be", "this", "that", "it", "use", "used", "when", "caller", "user", "customer", "call",
    "tool", "function", "want", "wants", "like", "would", "ask", "asks", "their", "his", "her",
    "new", "should", "can", "will", "if", "as", "you", "your", "our", "we", "i", "me", "my",
    "please", "about", "any", "all", "into", "get", "given", "need", "needs", "some", "so", "do",
    "does", "what", "which", "who", "how", "them", "they", "has", "have", "not", "no", "yes",
    "one", "up", "out", "then", "there", "here", "just", "also", "make", "let", "person", "people",
    "name", "time", "day", "date",
];

fn keywords(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for part in text.split(|c: char| !c.is_alphanumeric()) {
        // Split camelCase as well as snake_case.
        let mut word = String::new();
        let mut prev_lower = false;
        for c in part.chars() {
            if c.is_uppercase() && prev_lower {
                push_keyword(&mut out, &word);
                word.clear();
            }
            prev_lower = c.is_lowercase();
            word.extend(c.to_lowercase());
        }
        push_keyword(&mut out, &word);
    }
    out
}

fn push_keyword(out: &mut Vec<String>, word: &str) {
    if word.len() < 3 || STOPWORDS.contains(&word) || word.chars().all(|c| c.is_ascii_digit()) {
        return;
    }
    let s = stem(word);
    if !out.contains(&s) {
        out.push(s);
    }
}

// ---------------------------------------------------------------------------------------------
// Rules 2 and 3: goodbye, a human

fn goodbye(user: &Utterance, previous_agent: &str, tools: &[ToolSpec]) -> Option<AgentReply> {
    let closing = user.has_any(&["bye", "goodbye", "bye-bye", "farewell"])
        || user.has_phrase(&[
            "that's all",
            "that is all",
            "that's it",
            "nothing else",
            "hang up",
            "no thanks",
            "no thank you",
            "have a nice day",
            "have a good day",
        ]);
    let declined = previous_agent.contains("anything else")
        && user.words.len() <= 4
        && user.has_any(&["no", "nope", "nah", "not"]);
    if closing || declined {
        if !has_tool(tools, END_CALL_TOOL_NAME) {
            return Some(say(GOODBYE_REPLY));
        }
        let mut reply = say(CLOSING_REPLY);
        reply
            .tool_calls
            .push((END_CALL_TOOL_NAME.to_owned(), "{}".to_owned()));
        return Some(reply);
    }
    if user.words.len() <= 5 && user.has_phrase(&["thank you", "thanks", "thank you very much"]) {
        return Some(say(WELCOME_REPLY));
    }
    None
}

fn human(user: &Utterance, tools: &[ToolSpec]) -> Option<AgentReply> {
    let asks = user.has_any(&[
        "human",
        "person",
        "representative",
        "operator",
        "receptionist",
        "someone",
        "somebody",
        "agent",
        "staff",
    ]) && (user.has_any(&[
        "speak", "talk", "transfer", "connect", "put", "get", "want", "need",
    ]) || user.words.len() <= 4);
    if !asks {
        return None;
    }
    let Some(tool) = tools.iter().find(|t| t.name == TRANSFER_CALL_TOOL_NAME) else {
        return Some(say(
            "I'm sorry, I can't transfer you to a person right now, but I'm happy to help. \
             What can I do for you?",
        ));
    };
    let mut args = Map::new();
    if let Some(first) = tool
        .parameters
        .pointer("/properties/destination/enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        args.insert("destination".to_owned(), first.clone());
    }
    Some(AgentReply {
        text: "Of course, let me transfer you now.".to_owned(),
        tool_calls: vec![(
            TRANSFER_CALL_TOOL_NAME.to_owned(),
            Value::Object(args).to_string(),
        )],
    })
}

// ---------------------------------------------------------------------------------------------
// Rule 4: business facts from the system prompt

struct Topic {
    /// Caller words or phrases that ask about it.
    asked_by: &'static [&'static str],
    /// Prompt words that state it.
    stated_by: &'static [&'static str],
    /// Said when the prompt has nothing on it.
    unknown: &'static str,
}

const TOPICS: &[Topic] = &[
    Topic {
        asked_by: &[
            "hours",
            "hour",
            "open",
            "opening",
            "close",
            "closing",
            "closed",
            "when are you",
        ],
        stated_by: &[
            "open",
            "opening",
            "hours",
            "closed",
            "close",
            "monday",
            "tuesday",
            "wednesday",
            "thursday",
            "friday",
            "saturday",
            "sunday",
            "weekdays",
            "weekends",
            "a.m.",
            "p.m.",
        ],
        unknown: "I'm sorry, I don't have our opening hours in front of me.",
    },
    Topic {
        asked_by: &[
            "where",
            "address",
            "located",
            "location",
            "directions",
            "find you",
            "parking",
        ],
        stated_by: &[
            "address", "located", "location", "street", "road", "avenue", "lane", "square",
            "floor", "parking", "suite", "st.", "ave",
        ],
        unknown: "I'm sorry, I don't have the address in front of me.",
    },
    Topic {
        asked_by: &[
            "price",
            "prices",
            "cost",
            "costs",
            "how much",
            "fee",
            "fees",
            "charge",
            "expensive",
            "cheap",
            "pricing",
        ],
        stated_by: &[
            "price", "prices", "cost", "costs", "fee", "fees", "charge", "$", "€", "£", "dollars",
            "euros", "pounds", "free",
        ],
        unknown: "I'm sorry, I don't have our prices in front of me.",
    },
    Topic {
        asked_by: &[
            "services",
            "service",
            "offer",
            "provide",
            "treatments",
            "what do you do",
            "do you do",
        ],
        stated_by: &[
            "offer",
            "offers",
            "services",
            "service",
            "provide",
            "provides",
            "treatments",
            "specialize",
            "specialise",
            "including",
        ],
        unknown: "I'm sorry, I don't have the list of services in front of me.",
    },
];

fn business_fact(user: &Utterance, system: &str) -> Option<AgentReply> {
    let topic = TOPICS.iter().find(|t| user.has_phrase(t.asked_by))?;
    let facts: Vec<&str> = sentences(system)
        .into_iter()
        .filter(|s| is_fact(s))
        .filter(|s| {
            let lower = s.to_lowercase();
            topic.stated_by.iter().any(|k| {
                if k.chars().all(char::is_alphabetic) {
                    lower
                        .split(|c: char| !c.is_alphanumeric() && c != '.')
                        .any(|w| w.trim_end_matches('.') == *k)
                } else {
                    lower.contains(k)
                }
            })
        })
        .take(2)
        .collect();
    if facts.is_empty() {
        return Some(say(&format!("{} {ANYTHING_ELSE}", topic.unknown)));
    }
    Some(say(&format!("{} {ANYTHING_ELSE}", facts.join(" "))))
}

/// Splits text into sentences at `.`, `!`, `?` followed by a space or the end, and at newlines.
fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for line in text.lines() {
        let bytes = line.as_bytes();
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let end_mark = matches!(b, b'.' | b'!' | b'?');
            let boundary = bytes.get(i + 1).is_none_or(|n| *n == b' ');
            // Abbreviations do not end a sentence: titles ("Dr.", "St.") never, "a.m."-style
            // ones and single letters only when a capitalised word follows.
            let abbreviation = b == b'.' && {
                let word_start = line[..i].rfind(' ').map_or(0, |p| p + 1);
                let word = &line[word_start..i];
                let title = [
                    "St", "Dr", "Mr", "Mrs", "Ms", "Ave", "No", "approx", "e.g", "i.e",
                ]
                .contains(&word);
                let next_capital = line[i + 1..]
                    .trim_start()
                    .chars()
                    .next()
                    .is_some_and(char::is_uppercase);
                title || ((word.len() <= 1 || word.contains('.')) && !next_capital)
            };
            if end_mark && boundary && !abbreviation {
                let s = line[start..=i].trim();
                if !s.is_empty() {
                    out.push(s);
                }
                start = i + 1;
            }
        }
        let rest = line[start..].trim();
        if !rest.is_empty() {
            out.push(rest);
        }
    }
    out
}

/// True for a sentence that states a fact rather than instructing the model.
fn is_fact(sentence: &str) -> bool {
    let lower = sentence
        .trim_start_matches(['-', '*', '•', ' '])
        .to_lowercase();
    let first = lower.split_whitespace().next().unwrap_or("");
    const INSTRUCTIONS: &[&str] = &[
        "you", "you're", "always", "never", "be", "keep", "do", "don't", "ask", "use", "speak",
        "respond", "answer", "if", "when", "only", "make", "avoid", "greet", "help", "try",
        "remember", "please", "act", "your", "confirm", "collect", "offer", "transfer", "end",
    ];
    !INSTRUCTIONS.contains(&first) && !lower.contains("you are") && !sentence.ends_with('?')
}

// ---------------------------------------------------------------------------------------------
// Rule 5: tools and their arguments

/// How well `user` matches `tool`: 2 per name keyword, 1 per description keyword.
fn tool_score(user: &Utterance, tool: &ToolSpec) -> usize {
    let name = keywords(&tool.name);
    let description: Vec<String> = keywords(&tool.description)
        .into_iter()
        .filter(|k| !name.contains(k))
        .collect();
    let hits = |keys: &[String]| {
        keys.iter()
            .filter(|k| user.stems.iter().any(|s| s == *k))
            .count()
    };
    2 * hits(&name) + hits(&description)
}

/// The caller-facing tools: everything but the built-ins.
fn function_tools(tools: &[ToolSpec]) -> impl Iterator<Item = &ToolSpec> {
    tools
        .iter()
        .filter(|t| t.name != END_CALL_TOOL_NAME && t.name != TRANSFER_CALL_TOOL_NAME)
}

fn best_tool<'a>(user: &Utterance, tools: &'a [ToolSpec]) -> Option<&'a ToolSpec> {
    let mut best: Option<(&ToolSpec, usize)> = None;
    for tool in function_tools(tools) {
        let score = tool_score(user, tool);
        if score >= 2 && best.is_none_or(|(_, s)| score > s) {
            best = Some((tool, score));
        }
    }
    best.map(|(t, _)| t)
}

fn tool_intent(messages: &[ChatMessage], tools: &[ToolSpec]) -> Option<AgentReply> {
    // The current episode: user messages since the agent last called a tool.
    let episode_start = messages
        .iter()
        .rposition(|m| m.role == Role::Assistant && !m.tool_calls.is_empty())
        .map_or(0, |i| i + 1);
    let episode = &messages[episode_start..];
    let users: Vec<(usize, Utterance)> = episode
        .iter()
        .enumerate()
        .filter(|(_, m)| m.role == Role::User)
        .map(|(i, m)| (i, Utterance::new(&m.content)))
        .collect();
    // The most recent user message that asked for a tool sets the intent.
    let (intent_at, tool) = users
        .iter()
        .enumerate()
        .rev()
        .find_map(|(k, (_, u))| best_tool(u, tools).map(|t| (k, t)))?;
    let schema = ArgSchema::of(tool);
    let mut args = Map::new();
    let mut asked: Option<String> = None;
    for (_, user) in &users[intent_at..] {
        let before = args.len();
        schema.extract(user, &mut args);
        // An answer to our own question fills the property asked when no extractor did.
        if let Some(p) = asked.take() {
            if !args.contains_key(&p) && args.len() == before {
                if let Some(value) = schema.free_text(&p, user) {
                    args.insert(p, value);
                }
            }
        }
        asked = schema.missing(&args).first().cloned();
    }
    let missing = schema.missing(&args);
    if missing.is_empty() {
        // No words of its own: the engine speaks the tool's `message` while it runs, and
        // the result gets its own reply.
        return Some(AgentReply {
            text: String::new(),
            tool_calls: vec![(tool.name.clone(), Value::Object(args).to_string())],
        });
    }
    let question = schema.question(&missing);
    // The caller just asked for it: acknowledge before the first question.
    let text = if intent_at + 1 == users.len() {
        format!("Sure, I can help with that. {question}")
    } else {
        question
    };
    Some(say(&text))
}

/// What kind of value a tool property holds, judged from its name, description and schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Day,
    Time,
    Name,
    Phone,
    Email,
    Count,
    Enum,
    Other,
}

struct Property {
    name: String,
    slot: Slot,
    numeric: bool,
    choices: Vec<String>,
}

struct ArgSchema {
    properties: Vec<Property>,
    required: Vec<String>,
}

impl ArgSchema {
    fn of(tool: &ToolSpec) -> Self {
        ArgSchema::from_schema(&tool.parameters)
    }

    /// The properties of a JSON Schema object.
    fn from_schema(parameters: &Value) -> Self {
        let required: Vec<String> = parameters
            .get("required")
            .and_then(Value::as_array)
            .map(|r| {
                r.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let mut properties = Vec::new();
        if let Some(props) = parameters.get("properties").and_then(Value::as_object) {
            for (name, spec) in props {
                let description = spec
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let kind = spec.get("type").and_then(Value::as_str).unwrap_or("string");
                let format = spec.get("format").and_then(Value::as_str).unwrap_or("");
                let choices: Vec<String> = spec
                    .get("enum")
                    .and_then(Value::as_array)
                    .map(|e| {
                        e.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default();
                let key = format!("{} {}", name, description).to_lowercase();
                let numeric = matches!(kind, "integer" | "number");
                let slot = if !choices.is_empty() {
                    Slot::Enum
                } else if format == "email" || key.contains("email") || key.contains("e-mail") {
                    Slot::Email
                } else if key.contains("phone") || key.contains("mobile") {
                    Slot::Phone
                } else if format == "time" || name.to_lowercase().contains("time") {
                    Slot::Time
                } else if format == "date"
                    || name.to_lowercase().contains("day")
                    || name.to_lowercase().contains("date")
                {
                    Slot::Day
                } else if name.to_lowercase().contains("name") {
                    Slot::Name
                } else if numeric {
                    Slot::Count
                } else if format == "date-time" || key.contains("when") {
                    Slot::Day
                } else {
                    Slot::Other
                };
                properties.push(Property {
                    name: name.clone(),
                    slot,
                    numeric,
                    choices,
                });
            }
        }
        ArgSchema {
            properties,
            required,
        }
    }

    /// Fills the properties whose values `user` states.
    fn extract(&self, user: &Utterance, args: &mut Map<String, Value>) {
        for p in &self.properties {
            let value = match p.slot {
                Slot::Day => extract_day(user).map(Value::String),
                Slot::Time => extract_time(user).map(Value::String),
                Slot::Name => extract_name(user).map(Value::String),
                Slot::Phone => extract_phone(user).map(Value::String),
                Slot::Email => extract_email(user).map(Value::String),
                Slot::Count => extract_count(user).map(|n| Value::from(n as u64)),
                Slot::Enum => extract_choice(user, &p.choices).map(Value::String),
                Slot::Other => None,
            };
            if let Some(v) = value {
                let v = match (&v, p.numeric) {
                    (Value::String(s), true) => s.parse::<f64>().ok().map(Value::from).unwrap_or(v),
                    _ => v,
                };
                args.insert(p.name.clone(), v);
            }
        }
    }

    /// The caller's whole answer as the value of a free-text property.
    fn free_text(&self, name: &str, user: &Utterance) -> Option<Value> {
        let p = self.properties.iter().find(|p| p.name == name)?;
        if p.slot != Slot::Other && p.slot != Slot::Name {
            return None;
        }
        let mut text = user.text.as_str();
        for lead in [
            "it's ",
            "it is ",
            "that's ",
            "that is ",
            "i'd like ",
            "i want ",
            "i need ",
            "for ",
            "my name is ",
            "this is ",
            "i'm ",
            "i am ",
            "it's for ",
            "its ",
        ] {
            if let Some(rest) = text.strip_prefix(lead) {
                text = rest;
            }
        }
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        Some(Value::String(if p.slot == Slot::Name {
            capitalise_words(text)
        } else {
            text.to_owned()
        }))
    }

    /// Required properties without a value, in schema order.
    fn missing(&self, args: &Map<String, Value>) -> Vec<String> {
        self.properties
            .iter()
            .filter(|p| self.required.contains(&p.name) && !args.contains_key(&p.name))
            .map(|p| p.name.clone())
            .chain(
                // Required names the schema does not describe still have to be asked for.
                self.required
                    .iter()
                    .filter(|r| {
                        !self.properties.iter().any(|p| &p.name == *r) && !args.contains_key(*r)
                    })
                    .cloned(),
            )
            .collect()
    }

    fn question(&self, missing: &[String]) -> String {
        let slot = |name: &str| {
            self.properties
                .iter()
                .find(|p| p.name == name)
                .map_or(Slot::Other, |p| p.slot)
        };
        let Some(first) = missing.first() else {
            return String::new();
        };
        let second = missing.get(1).map(|s| slot(s));
        match (slot(first), second) {
            (Slot::Day, Some(Slot::Time)) | (Slot::Time, Some(Slot::Day)) => {
                "What day and time would you like?".to_owned()
            }
            (Slot::Day, _) => "What day would you like?".to_owned(),
            (Slot::Time, _) => "What time would suit you?".to_owned(),
            (Slot::Name, _) => "May I have your name, please?".to_owned(),
            (Slot::Phone, _) => "What's the best phone number to reach you?".to_owned(),
            (Slot::Email, _) => "What's your email address?".to_owned(),
            (Slot::Count, _) => format!("How many {}?", humanise(first)),
            (Slot::Enum, _) => {
                let choices = self
                    .properties
                    .iter()
                    .find(|p| &p.name == first)
                    .map(|p| p.choices.join(", "))
                    .unwrap_or_default();
                format!("Which {} would you like: {choices}?", humanise(first))
            }
            (Slot::Other, _) => format!("Could you tell me the {}?", humanise(first)),
        }
    }
}

fn humanise(name: &str) -> String {
    keywords_plain(name).join(" ")
}

/// A property or tool name as lowercase words (`bookAppointment`, `party_size` → words).
fn keywords_plain(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if !c.is_alphanumeric() {
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
        prev_lower = c.is_lowercase();
        word.extend(c.to_lowercase());
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

fn capitalise_words(text: &str) -> String {
    text.split_whitespace()
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_uppercase().chain(c).collect(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

const WEEKDAYS: &[&str] = &[
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

const MONTHS: &[&str] = &[
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// A weekday ("next Tuesday" → "next Tuesday"), "today"/"tomorrow", or a month day.
fn extract_day(user: &Utterance) -> Option<String> {
    let w = &user.words;
    for (i, word) in w.iter().enumerate() {
        if WEEKDAYS.contains(&word.as_str()) {
            let day = capitalise_words(word);
            return Some(match i.checked_sub(1).map(|p| w[p].as_str()) {
                Some("next") => format!("next {day}"),
                Some("this") => format!("this {day}"),
                _ => day,
            });
        }
        if word == "today" || word == "tomorrow" || word == "tonight" {
            return Some(word.clone());
        }
        if word == "day" && i >= 2 && w[i - 2] == "the" && w[i - 1] == "after" {
            return Some("the day after tomorrow".to_owned());
        }
        if MONTHS.contains(&word.as_str()) && word != "may" {
            let month = capitalise_words(word);
            let day_after = w.get(i + 1).and_then(|d| ordinal(d));
            let day_before = i.checked_sub(1).and_then(|p| ordinal(&w[p])).or_else(|| {
                i.checked_sub(2)
                    .filter(|p| w[p + 1] == "of")
                    .and_then(|p| ordinal(&w[p]))
            });
            if let Some(d) = day_after.or(day_before) {
                return Some(format!("{month} {d}"));
            }
        }
    }
    None
}

fn ordinal(word: &str) -> Option<u32> {
    let digits = word.trim_end_matches(|c: char| c.is_alphabetic());
    if let Ok(n) = digits.parse::<u32>() {
        return (1..=31).contains(&n).then_some(n);
    }
    ORDINALS[1..=20]
        .iter()
        .position(|o| *o == word)
        .map(|p| p as u32 + 1)
}

fn small_number(word: &str) -> Option<u32> {
    if let Ok(n) = word.parse::<u32>() {
        return Some(n);
    }
    // "zero" to "twelve".
    ONES[..=12]
        .iter()
        .position(|n| *n == word)
        .map(|p| p as u32)
}

fn minutes_word(words: &[String], i: usize) -> Option<(u32, usize)> {
    let w = words.get(i)?.as_str();
    let tens = match w {
        "fifteen" => return Some((15, 1)),
        "thirty" => 30,
        "forty" => 40,
        "fifty" => 50,
        "twenty" => 20,
        "ten" => return Some((10, 1)),
        "oh" | "o" => {
            let n = small_number(words.get(i + 1)?)?;
            return (1..=9).contains(&n).then_some((n, 2));
        }
        _ => {
            let n: u32 = w.parse().ok()?;
            return (n < 60 && w.len() == 2).then_some((n, 1));
        }
    };
    match words.get(i + 1).and_then(|n| small_number(n)) {
        Some(n) if (1..=9).contains(&n) => Some((tens + n, 2)),
        _ => Some((tens, 1)),
    }
}

/// A clock time as `HH:MM` (24-hour when am/pm says so, else as spoken).
fn extract_time(user: &Utterance) -> Option<String> {
    let w = &user.words;
    let meridiem = |j: usize| -> Option<bool> {
        match w.get(j).map(String::as_str) {
            Some("am" | "a.m" | "a.m." | "morning") => Some(false),
            Some("pm" | "p.m" | "p.m." | "afternoon" | "evening") => Some(true),
            Some("in") => match w.get(j + 2).map(String::as_str) {
                Some("morning") => Some(false),
                Some("afternoon" | "evening") => Some(true),
                _ => None,
            },
            _ => None,
        }
    };
    let finish = |hour: u32, minute: u32, pm: Option<bool>| -> Option<String> {
        if hour > 23 || minute > 59 {
            return None;
        }
        let hour = match pm {
            Some(true) if hour < 12 => hour + 12,
            Some(false) if hour == 12 => 0,
            _ => hour,
        };
        Some(format!("{hour:02}:{minute:02}"))
    };
    for (i, word) in w.iter().enumerate() {
        // "10:30", "10.30", "10:30pm"
        let (core, suffix) = split_suffix(word);
        if let Some((h, m)) = core.split_once([':', '.']) {
            if let (Ok(h), Ok(m)) = (h.parse::<u32>(), m.parse::<u32>()) {
                if m < 60 && h < 24 && !h.to_string().is_empty() {
                    let pm = suffix.map(|s| s == "pm").or_else(|| meridiem(i + 1));
                    return finish(h, m, pm);
                }
            }
        }
        // "half past two", "quarter past ten", "quarter to three"
        if matches!(word.as_str(), "half" | "quarter") {
            let rel = w.get(i + 1).map(String::as_str);
            if let Some(h) = w.get(i + 2).and_then(|h| small_number(h)) {
                let pm = meridiem(i + 3);
                match (word.as_str(), rel) {
                    ("half", Some("past")) => return finish(h, 30, pm),
                    ("quarter", Some("past")) => return finish(h, 15, pm),
                    ("quarter", Some("to")) if h > 0 => return finish(h - 1, 45, pm),
                    _ => {}
                }
            }
        }
        // "10am", "3pm"
        if let (Some(s), Ok(h)) = (suffix, core.parse::<u32>()) {
            if (1..=12).contains(&h) {
                return finish(h, 0, Some(s == "pm"));
            }
        }
        let Some(h) = small_number(word) else {
            continue;
        };
        if !(1..=12).contains(&h) && word.parse::<u32>().is_err() {
            continue;
        }
        match w.get(i + 1).map(String::as_str) {
            Some("o'clock" | "oclock") => return finish(h, 0, meridiem(i + 2)),
            Some("am" | "pm" | "a.m" | "p.m" | "a.m." | "p.m.") => {
                return finish(h, 0, meridiem(i + 1))
            }
            _ => {}
        }
        // "ten thirty", "two fifteen pm" after "at"
        let after_at = i > 0 && w[i - 1] == "at";
        if let Some((m, used)) = minutes_word(w, i + 1) {
            if after_at || meridiem(i + 1 + used).is_some() {
                return finish(h, m, meridiem(i + 1 + used));
            }
        }
        if after_at && (1..=12).contains(&h) {
            return finish(h, 0, meridiem(i + 1));
        }
    }
    None
}

fn split_suffix(word: &str) -> (&str, Option<&'static str>) {
    for (suffix, name) in [("am", "am"), ("pm", "pm"), ("a.m", "am"), ("p.m", "pm")] {
        if let Some(core) = word.strip_suffix(suffix) {
            if !core.is_empty() && core.chars().next().is_some_and(|c| c.is_ascii_digit()) {
                return (core, Some(name));
            }
        }
    }
    (word, None)
}

/// A name after "my name is", "this is", "i'm", "it's", "name's".
fn extract_name(user: &Utterance) -> Option<String> {
    const STOP: &[&str] = &[
        "and", "i", "i'd", "i'm", "calling", "from", "with", "to", "please", "but", "so", "here",
        "speaking", "again", "the", "a", "on", "at", "for", "would", "like", "want", "need",
    ];
    let w = &user.words;
    let starts: [&[&str]; 4] = [
        &["my", "name", "is"],
        &["name", "is"],
        &["this", "is"],
        &["call", "me"],
    ];
    for lead in starts {
        if let Some(i) = w.windows(lead.len()).position(|win| win == lead) {
            let name: Vec<&str> = w[i + lead.len()..]
                .iter()
                .map(String::as_str)
                .take_while(|t| {
                    !STOP.contains(t)
                        && t.chars()
                            .all(|c| c.is_alphabetic() || c == '-' || c == '\'')
                })
                .take(3)
                .collect();
            if !name.is_empty() {
                return Some(capitalise_words(&name.join(" ")));
            }
        }
    }
    None
}

/// At least seven digits, spoken as digits or digit words.
fn extract_phone(user: &Utterance) -> Option<String> {
    let mut digits = String::new();
    let mut best = String::new();
    for word in &user.words {
        let part: Option<String> = if word
            .chars()
            .all(|c| c.is_ascii_digit() || c == '+' || c == '-')
        {
            Some(
                word.chars()
                    .filter(|c| c.is_ascii_digit() || *c == '+')
                    .collect(),
            )
        } else {
            match word.as_str() {
                "oh" | "o" => Some("0".to_owned()),
                other => small_number(other)
                    .filter(|n| *n <= 9)
                    .map(|n| n.to_string()),
            }
        };
        match part {
            Some(p) => digits.push_str(&p),
            None => {
                if digits.len() > best.len() {
                    best = std::mem::take(&mut digits);
                }
                digits.clear();
            }
        }
    }
    if digits.len() > best.len() {
        best = digits;
    }
    (best.chars().filter(char::is_ascii_digit).count() >= 7).then_some(best)
}

fn extract_email(user: &Utterance) -> Option<String> {
    if let Some(w) = user.words.iter().find(|w| {
        w.contains('@')
            && w.split_once('@')
                .is_some_and(|(a, b)| !a.is_empty() && b.contains('.'))
    }) {
        return Some(w.clone());
    }
    // "john at example dot com"
    let w = &user.words;
    let at = w.iter().position(|t| t == "at")?;
    let dot = w[at..].iter().position(|t| t == "dot")? + at;
    if at == 0 || dot + 1 >= w.len() || dot <= at + 1 {
        return None;
    }
    Some(format!(
        "{}@{}.{}",
        w[at - 1],
        w[at + 1..dot].join(""),
        w[dot + 1]
    ))
}

fn extract_count(user: &Utterance) -> Option<u32> {
    user.words.iter().find_map(|w| {
        if w.contains([':', '.']) {
            return None;
        }
        small_number(w).filter(|n| (1..=50).contains(n))
    })
}

fn extract_choice(user: &Utterance, choices: &[String]) -> Option<String> {
    choices
        .iter()
        .find(|c| {
            let words = keywords_plain(c);
            !words.is_empty()
                && words
                    .iter()
                    .all(|k| user.stems.contains(&stem(k)) || user.words.contains(k))
        })
        .cloned()
}

// ---------------------------------------------------------------------------------------------
// Rule 1: tool results

fn after_tool_results(messages: &[ChatMessage], tools: &[ToolSpec]) -> Option<AgentReply> {
    let last = messages.last()?;
    if last.role != Role::Tool {
        return None;
    }
    let first_result = messages
        .iter()
        .rposition(|m| m.role != Role::Tool)
        .map_or(0, |i| i + 1);
    let calls: Vec<&ToolCallRequest> = messages[..first_result]
        .iter()
        .rev()
        .find(|m| m.role == Role::Assistant && !m.tool_calls.is_empty())
        .map(|m| m.tool_calls.iter().collect())
        .unwrap_or_default();
    let mut parts: Vec<String> = Vec::new();
    let mut builtin_only = true;
    for result in &messages[first_result..] {
        let name = result
            .tool_call_id
            .as_deref()
            .and_then(|id| calls.iter().find(|c| c.id == id))
            .map(|c| c.name.as_str())
            .unwrap_or("");
        if name == END_CALL_TOOL_NAME || name == TRANSFER_CALL_TOOL_NAME {
            continue;
        }
        builtin_only = false;
        let known = tools.iter().any(|t| t.name == name);
        parts.push(describe_result(
            if known { name } else { "" },
            &result.content,
        ));
    }
    if builtin_only {
        // The engine hangs up or transfers after a built-in: nothing more to say.
        return Some(AgentReply::default());
    }
    let text = format!("{} {ANYTHING_ELSE}", parts.join(" "));
    Some(say(&text))
}

fn describe_result(tool: &str, content: &str) -> String {
    let action = if tool.is_empty() {
        "that".to_owned()
    } else {
        humanise(tool)
    };
    let value: Value = match serde_json::from_str(content) {
        Ok(v) => v,
        Err(_) => {
            let text = content.trim();
            return if text.is_empty() {
                format!("I've taken care of {action}.")
            } else {
                sentence(text)
            };
        }
    };
    let Value::Object(map) = value else {
        return match value {
            Value::String(s) => sentence(&s),
            Value::Bool(false) => format!("I'm sorry, {action} didn't go through."),
            other => format!("I've taken care of {action}: {other}."),
        };
    };
    if let Some(error) = map.get("error").filter(|e| !e.is_null()) {
        let detail = match error {
            Value::String(s) => s.clone(),
            Value::Object(o) => o
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("an error occurred")
                .to_owned(),
            other => other.to_string(),
        };
        return format!(
            "I'm sorry, I couldn't complete {action}: {}.",
            detail.trim_end_matches('.')
        );
    }
    for flag in ["success", "ok", "confirmed", "available", "booked"] {
        if map.get(flag) == Some(&Value::Bool(false)) {
            let why = text_field(&map)
                .map(|t| format!(" {}", sentence(&t)))
                .unwrap_or_default();
            return format!("I'm sorry, {action} didn't go through.{why}");
        }
    }
    if let Some(text) = text_field(&map) {
        if text.eq_ignore_ascii_case("started") || text.eq_ignore_ascii_case("pending") {
            return format!("I've started {action} for you.");
        }
        return sentence(&text);
    }
    let details: Vec<String> = map
        .iter()
        .filter(|(k, _)| !["success", "ok", "confirmed", "status", "id"].contains(&k.as_str()))
        .filter_map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(true) => "yes".to_owned(),
                _ => return None,
            };
            Some(format!("{} {}", humanise(k), v))
        })
        .take(4)
        .collect();
    if details.is_empty() {
        format!("All done: {action} is complete.")
    } else {
        format!(
            "All done: {action} is complete, with {}.",
            details.join(", ")
        )
    }
}

/// The human-readable field of a tool result, if it has one.
fn text_field(map: &Map<String, Value>) -> Option<String> {
    [
        "message",
        "confirmation",
        "result",
        "summary",
        "text",
        "details",
        "status",
    ]
    .iter()
    .find_map(|k| map.get(*k).and_then(Value::as_str))
    .map(str::to_owned)
    .filter(|s| !s.trim().is_empty())
}

fn sentence(text: &str) -> String {
    let t = text.trim();
    let mut out = String::with_capacity(t.len() + 1);
    let mut chars = t.chars();
    if let Some(f) = chars.next() {
        out.extend(f.to_uppercase());
        out.push_str(chars.as_str());
    }
    if !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Utterance {
        Utterance::new(s)
    }

    #[test]
    fn times() {
        assert_eq!(extract_time(&u("at ten o'clock")).as_deref(), Some("10:00"));
        assert_eq!(extract_time(&u("10:30 please")).as_deref(), Some("10:30"));
        assert_eq!(extract_time(&u("around 3pm")).as_deref(), Some("15:00"));
        assert_eq!(
            extract_time(&u("half past two in the afternoon")).as_deref(),
            Some("14:30")
        );
        assert_eq!(
            extract_time(&u("quarter to nine")).as_deref(),
            Some("08:45")
        );
        assert_eq!(extract_time(&u("at ten thirty")).as_deref(), Some("10:30"));
        assert_eq!(extract_time(&u("at two")).as_deref(), Some("02:00"));
        assert_eq!(extract_time(&u("four pm")).as_deref(), Some("16:00"));
        assert_eq!(extract_time(&u("I have two kids")), None);
    }

    #[test]
    fn days() {
        assert_eq!(
            extract_day(&u("Can I come on Tuesday?")).as_deref(),
            Some("Tuesday")
        );
        assert_eq!(
            extract_day(&u("next friday works")).as_deref(),
            Some("next Friday")
        );
        assert_eq!(
            extract_day(&u("tomorrow morning")).as_deref(),
            Some("tomorrow")
        );
        assert_eq!(
            extract_day(&u("on the 3rd of March")).as_deref(),
            Some("March 3")
        );
        assert_eq!(extract_day(&u("March fifth")).as_deref(), Some("March 5"));
        assert_eq!(extract_day(&u("I may come")), None);
    }

    #[test]
    fn names_phones_emails() {
        assert_eq!(
            extract_name(&u("Hi, my name is john smith and I")).as_deref(),
            Some("John Smith")
        );
        assert_eq!(
            extract_name(&u("this is Ann calling")).as_deref(),
            Some("Ann")
        );
        assert_eq!(
            extract_phone(&u("it's 555 123 4567")).as_deref(),
            Some("5551234567")
        );
        assert_eq!(
            extract_phone(&u("five five five one two three four")).as_deref(),
            Some("5551234")
        );
        assert_eq!(
            extract_email(&u("mail me at a.b@example.com")).as_deref(),
            Some("a.b@example.com")
        );
        assert_eq!(
            extract_email(&u("john at example dot com")).as_deref(),
            Some("john@example.com")
        );
    }

    #[test]
    fn stems_match_inflections() {
        assert_eq!(stem("booking"), "book");
        assert_eq!(stem("booked"), "book");
        assert_eq!(stem("appointments"), "appointment");
        assert_eq!(stem("address"), "address");
        assert_eq!(keywords("bookAppointment"), vec!["book", "appointment"]);
    }

    #[test]
    fn sentences_and_facts() {
        let prompt = "You are the receptionist of Bright Smile Dental. We are open Monday to \
                      Friday from 9 a.m. to 5 p.m. Our address is 12 Harbour St. in Leeds. \
                      Always be polite.";
        let s = sentences(prompt);
        assert_eq!(s.len(), 4, "{s:?}");
        assert!(!is_fact(s[0]));
        assert!(is_fact(s[1]));
        assert!(s[2].starts_with("Our address is 12 Harbour St. in Leeds"));
        assert!(!is_fact(s[3]));
    }

    #[test]
    fn results_become_sentences() {
        assert_eq!(
            describe_result(
                "book_appointment",
                r#"{"message":"booked for Tuesday at 10:00"}"#
            ),
            "Booked for Tuesday at 10:00."
        );
        assert!(
            describe_result("book_appointment", r#"{"error":"slot taken"}"#)
                .contains("couldn't complete book appointment: slot taken")
        );
        assert_eq!(
            describe_result("book_appointment", r#"{"confirmed":true,"day":"Tuesday"}"#),
            "All done: book appointment is complete, with day Tuesday."
        );
        assert_eq!(describe_result("x", "plain text"), "Plain text.");
    }
}
