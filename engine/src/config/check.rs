//! Small checks and serde helpers shared by the config sections.
//!
//! Range and length checks return a [`ConfigError`] naming the field; the serde helpers read
//! `null` the way the platform means it (an absent list, or "explicitly off").

use serde::{Deserialize, Deserializer};

use super::error::ConfigError;

/// Rejects `value` at `path` unless it lies in `min..=max`.
pub(crate) fn range_f64(path: &str, value: f64, min: f64, max: f64) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::out_of_range(path, value, min, max))
    }
}

/// Rejects `value` at `path` unless it lies in `min..=max`.
pub(crate) fn range_i64(path: &str, value: i64, min: i64, max: i64) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::out_of_range(path, value, min, max))
    }
}

/// Checks an optional number against `min..=max`.
pub(crate) fn opt_range_f64(
    path: &str,
    value: Option<f64>,
    min: f64,
    max: f64,
) -> Result<(), ConfigError> {
    value.map_or(Ok(()), |v| range_f64(path, v, min, max))
}

/// Checks an optional integer against `min..=max`.
pub(crate) fn opt_range_i64(
    path: &str,
    value: Option<i64>,
    min: i64,
    max: i64,
) -> Result<(), ConfigError> {
    value.map_or(Ok(()), |v| range_i64(path, v, min, max))
}

/// Clamps `value` into `min..=max` (for fields the spec says are clamped, not rejected).
pub(crate) fn clamp_f64(value: &mut Option<f64>, min: f64, max: f64) {
    if let Some(v) = value {
        *v = if v.is_nan() { min } else { v.clamp(min, max) };
    }
}

/// Clamps `value` into `min..=max` (for fields the spec says are clamped, not rejected).
pub(crate) fn clamp_i64(value: &mut Option<i64>, min: i64, max: i64) {
    if let Some(v) = value {
        *v = (*v).clamp(min, max);
    }
}

/// Rejects a string whose length in characters is outside `min..=max`.
pub(crate) fn chars(path: &str, text: &str, min: usize, max: usize) -> Result<(), ConfigError> {
    let n = text.chars().count();
    if n < min {
        if min == 1 {
            return Err(ConfigError::invalid(path, "must not be empty"));
        }
        return Err(ConfigError::invalid(
            path,
            format!("{n} characters, at least {min} required"),
        ));
    }
    if n > max {
        return Err(ConfigError::invalid(
            path,
            format!("{n} characters, at most {max} allowed"),
        ));
    }
    Ok(())
}

/// Rejects a list longer than `max` items.
pub(crate) fn max_items(path: &str, len: usize, max: usize) -> Result<(), ConfigError> {
    if len > max {
        Err(ConfigError::invalid(
            path,
            format!("{len} items, at most {max} allowed"),
        ))
    } else {
        Ok(())
    }
}

/// Rejects an empty or all-whitespace string.
pub(crate) fn non_blank(path: &str, text: &str) -> Result<(), ConfigError> {
    if text.trim().is_empty() {
        Err(ConfigError::invalid(path, "must not be empty"))
    } else {
        Ok(())
    }
}

/// Rejects anything but an absolute `http://` or `https://` URL with a host.
pub(crate) fn http_url(path: &str, url: &str) -> Result<(), ConfigError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') && !url.contains(' ') => Ok(()),
        _ => Err(ConfigError::invalid(
            path,
            format!("\"{url}\" is not an http(s) URL"),
        )),
    }
}

/// Reads `null` as an empty list, so `"tools": null` means the same as leaving `tools` out.
pub(crate) fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

/// Reads a field where absent (`None`), `null` (`Some(None)`) and a value differ.
pub(crate) fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_accept_bounds_and_reject_outside() {
        assert!(range_f64("x", 0.1, 0.1, 5.0).is_ok());
        assert!(range_f64("x", 5.0, 0.1, 5.0).is_ok());
        let err = range_f64("x", 5.5, 0.1, 5.0).unwrap_err();
        assert_eq!(err.to_string(), "x: 5.5 out of range 0.1..=5");
        assert!(range_f64("x", f64::NAN, 0.0, 1.0).is_err());
        assert!(range_i64("x", -1, 0, 10).is_err());
    }

    #[test]
    fn clamps_hold_values_in_range() {
        let mut v = Some(3.0);
        clamp_f64(&mut v, 0.7, 1.5);
        assert_eq!(v, Some(1.5));
        let mut v = Some(-5);
        clamp_i64(&mut v, 0, 2000);
        assert_eq!(v, Some(0));
    }

    #[test]
    fn urls_must_be_http() {
        assert!(http_url("u", "https://example.com/hook").is_ok());
        assert!(http_url("u", "http://localhost:8080").is_ok());
        assert!(http_url("u", "ftp://example.com").is_err());
        assert!(http_url("u", "https://").is_err());
    }

    #[test]
    fn char_limits_count_characters() {
        assert!(chars("t", "oké", 1, 3).is_ok());
        assert!(chars("t", "", 1, 3).is_err());
        assert!(chars("t", "abcd", 0, 3).is_err());
    }
}
