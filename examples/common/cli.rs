//! Command-line parsing helpers and the examples' error type.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;

use voxline::engine::config::Assistant;

/// Everything that can stop an example, with a message for the user.
#[derive(Debug)]
pub enum AppError {
    /// A bad command line (exit status 2).
    Usage(String),
    /// An input file named on the command line cannot be used (exit status 2).
    Input {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// An output file cannot be written (exit status 1).
    Output {
        /// The file or folder.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// The call could not be set up: providers, sockets, codecs (exit status 1).
    Setup(String),
    /// The call ran but failed (exit status 1).
    Call(String),
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppError::Usage(m) | AppError::Setup(m) | AppError::Call(m) => f.write_str(m),
            AppError::Input { path, detail } => write!(f, "{}: {detail}", path.display()),
            AppError::Output { path, detail } => {
                write!(f, "cannot write {}: {detail}", path.display())
            }
        }
    }
}

impl std::error::Error for AppError {}

impl AppError {
    /// The process exit status: 2 for what the user typed, 1 for everything else.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            AppError::Usage(_) | AppError::Input { .. } => ExitCode::from(2),
            _ => ExitCode::FAILURE,
        }
    }

    /// Prints the error (and the usage line for command-line mistakes) to stderr.
    pub fn report(&self, usage: &str) -> ExitCode {
        match self {
            AppError::Usage(_) => eprintln!("error: {self}\n{usage}"),
            _ => eprintln!("error: {self}"),
        }
        self.exit_code()
    }
}

/// The next argument as the value of `flag`.
pub fn value(it: &mut impl Iterator<Item = String>, flag: &str) -> Result<String, AppError> {
    it.next()
        .ok_or_else(|| AppError::Usage(format!("{flag} needs a value")))
}

/// Parses `v` as a number for `flag`.
pub fn number<T: FromStr>(flag: &str, v: &str) -> Result<T, AppError> {
    v.trim()
        .parse()
        .map_err(|_| AppError::Usage(format!("{flag}: {v:?} is not a valid number")))
}

/// Parses `v` as a number of seconds in `min..=max` for `flag`.
pub fn seconds(flag: &str, v: &str, min: f64, max: f64) -> Result<f64, AppError> {
    let s: f64 = number(flag, v)?;
    if s.is_finite() && (min..=max).contains(&s) {
        Ok(s)
    } else {
        Err(AppError::Usage(format!(
            "{flag}: {v} is outside {min}-{max} seconds"
        )))
    }
}

/// Parses `v` as a socket address for `flag`.
pub fn address(flag: &str, v: &str) -> Result<SocketAddr, AppError> {
    v.trim().parse().map_err(|_| {
        AppError::Usage(format!(
            "{flag}: {v:?} is not an address like 127.0.0.1:5004"
        ))
    })
}

/// Parses `v` as an http(s) URL for `flag`.
pub fn url(flag: &str, v: &str) -> Result<String, AppError> {
    let v = v.trim();
    let rest = v
        .strip_prefix("http://")
        .or_else(|| v.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() && !host.starts_with('/') => Ok(v.to_string()),
        _ => Err(AppError::Usage(format!(
            "{flag}: {v:?} is not an http:// or https:// URL"
        ))),
    }
}

/// The usage block of an example: the ```text block of its top doc comment.
pub fn help_from_doc(doc: &str, title: &str) -> String {
    let usage: Vec<&str> = doc
        .lines()
        .skip_while(|l| !l.starts_with("//! ```text"))
        .skip(1)
        .take_while(|l| !l.starts_with("//! ```"))
        .map(|l| l.trim_start_matches("//!").strip_prefix(' ').unwrap_or(""))
        .collect();
    format!("{title}\n\n{}", usage.join("\n"))
}

/// A path that works from the repository root and from anywhere else: as given when it
/// exists, else relative to the repository (for the defaults under `examples/` and `assets/`).
pub fn repo_path(path: &Path) -> PathBuf {
    if path.is_absolute() || path.exists() {
        return path.to_path_buf();
    }
    let in_repo = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    if in_repo.exists() {
        in_repo
    } else {
        path.to_path_buf()
    }
}

/// An assistant file: the validated assistant and its JSON object as written (the webhooks
/// echo it, extra keys included).
pub struct AssistantFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// The validated assistant.
    pub assistant: Assistant,
    /// The JSON object as written.
    pub json: serde_json::Map<String, serde_json::Value>,
}

/// Reads and validates an assistant in the platform's JSON format.
pub fn read_assistant(path: &Path) -> Result<AssistantFile, AppError> {
    let path = repo_path(path);
    let bad = |detail: String| AppError::Input {
        path: path.clone(),
        detail,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
    let assistant =
        Assistant::from_json(&text).map_err(|e| bad(format!("not a valid assistant: {e}")))?;
    let json = match serde_json::from_str(&text) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => return Err(bad("the assistant must be a JSON object".into())),
    };
    Ok(AssistantFile {
        path,
        assistant,
        json,
    })
}
