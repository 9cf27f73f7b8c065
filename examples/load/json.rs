//! The load report's JSON layout: objects one member per line, as a pretty printer writes them,
//! but arrays on one line, so the latency histograms and the RSS series stay a line each.

use std::io::{self, Write};

use serde::Serialize;
use serde_json::ser::Formatter;

/// Writes `value` as JSON with objects indented two spaces a level and arrays inline.
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, InlineArrays::default());
    value.serialize(&mut ser)?;
    // The serializer writes only what serde_json formats: valid UTF-8.
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// A [`Formatter`] that indents objects and keeps arrays on one line.
#[derive(Default)]
struct InlineArrays {
    indent: usize,
    /// The object being written has a member.
    has_value: bool,
}

impl InlineArrays {
    fn newline<W: ?Sized + Write>(&self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b"\n")?;
        for _ in 0..self.indent {
            writer.write_all(b"  ")?;
        }
        Ok(())
    }
}

impl Formatter for InlineArrays {
    fn begin_array<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b"[")
    }

    fn end_array<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b"]")
    }

    fn begin_array_value<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.indent += 1;
        self.has_value = false;
        writer.write_all(b"{")
    }

    fn end_object<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.indent -= 1;
        if self.has_value {
            self.newline(writer)?;
        }
        writer.write_all(b"}")
    }

    fn begin_object_key<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if !first {
            writer.write_all(b",")?;
        }
        self.newline(writer)
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }

    fn end_object_value<W: ?Sized + Write>(&mut self, _writer: &mut W) -> io::Result<()> {
        self.has_value = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn objects_are_indented_and_arrays_stay_on_one_line() {
        let value = json!({
            "calls": 2,
            "empty": {},
            "none": [],
            "nested": {"counts": [1, 0, 3], "first_ms": 20.5},
            "runs": [{"a": 1}, {"b": [true, null]}],
        });
        let text = super::to_string(&value).unwrap();
        let expected = r#"{
  "calls": 2,
  "empty": {},
  "none": [],
  "nested": {
    "counts": [1, 0, 3],
    "first_ms": 20.5
  },
  "runs": [{
    "a": 1
  }, {
    "b": [true, null]
  }]
}"#;
        assert_eq!(text, expected);
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, value);
    }
}
