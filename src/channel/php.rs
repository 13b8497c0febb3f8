//! PHP `serialize()` values, decoded safely and encoded: the body encoding
//! of Workerman's channel protocol (walkor/channel).
//!
//! Only plain data is accepted: `N;` (null), `b:` (bool), `i:` (int), `d:`
//! (float), `s:` (a byte string) and `a:` (an ordered array with int or
//! string keys). Objects (`O:`, `C:`), enums (`E:`), references (`r:`,
//! `R:`), escaped strings (`S:`) and anything else are refused with an
//! error that names what was found: the PHP `Channel\Server` calls
//! `unserialize()` on untrusted bytes with no `allowed_classes`, and this
//! decoder is the safe stand-in for it. Nesting is limited in depth, and no
//! allocation is sized from a count the input claims before the bytes that
//! back it are seen, so a small body cannot make a large allocation.
//!
//! Array keys follow PHP: a string key that is a canonical decimal integer
//! (`"7"`, `"-3"`, not `"07"` or `"+7"`) is the int key `7`, and a key given
//! twice keeps its first place with the last value.

use std::fmt::{self, Write as _};

/// Deepest nesting of arrays accepted (PHP itself has no limit; 64 levels
/// are far more than any channel message uses).
pub const MAX_DEPTH: usize = 64;

/// An array key: PHP arrays have int or string keys only.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PhpKey {
    /// An integer key (also what a canonical integer string becomes).
    Int(i64),
    /// A byte-string key.
    Str(Vec<u8>),
}

/// A PHP value of the kinds `serialize()` writes for plain data.
#[derive(Debug, Clone, PartialEq)]
pub enum PhpValue {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// An integer (64-bit, as PHP on 64-bit machines).
    Int(i64),
    /// A float (may be `INF`, `-INF` or `NAN`).
    Float(f64),
    /// A string: bytes, not necessarily UTF-8.
    Str(Vec<u8>),
    /// An array: entries in order, keys unique.
    Array(Vec<(PhpKey, PhpValue)>),
}

impl PhpKey {
    /// The key PHP makes of the string `bytes`: an int for a canonical
    /// decimal integer that fits 64 bits, else the string.
    pub fn from_bytes(bytes: &[u8]) -> PhpKey {
        match canonical_int(bytes) {
            Some(n) => PhpKey::Int(n),
            None => PhpKey::Str(bytes.to_vec()),
        }
    }

    /// The key as text (an int in decimal; a string lossily as UTF-8).
    pub fn to_text(&self) -> String {
        match self {
            PhpKey::Int(n) => n.to_string(),
            PhpKey::Str(s) => String::from_utf8_lossy(s).into_owned(),
        }
    }
}

/// Whether `bytes` is a decimal integer as PHP writes one (no sign but a
/// leading `-`, no leading zero, not `-0`) that fits an `i64`.
fn canonical_int(bytes: &[u8]) -> Option<i64> {
    let digits = bytes.strip_prefix(b"-").unwrap_or(bytes);
    let canonical = !digits.is_empty()
        && digits.iter().all(u8::is_ascii_digit)
        && (digits[0] != b'0' || (digits.len() == 1 && digits.len() == bytes.len()));
    if !canonical {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

impl PhpValue {
    /// A string value.
    pub fn str(s: impl AsRef<[u8]>) -> PhpValue {
        PhpValue::Str(s.as_ref().to_vec())
    }

    /// An array from entries, applying PHP's key rules (a later duplicate
    /// replaces the earlier value in its place).
    pub fn array(entries: impl IntoIterator<Item = (PhpKey, PhpValue)>) -> PhpValue {
        let mut out: Vec<(PhpKey, PhpValue)> = Vec::new();
        for (key, value) in entries {
            insert(&mut out, key, value);
        }
        PhpValue::Array(out)
    }

    /// A list (keys 0, 1, …).
    pub fn list(items: impl IntoIterator<Item = PhpValue>) -> PhpValue {
        PhpValue::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| (PhpKey::Int(i as i64), v))
                .collect(),
        )
    }

    /// The value of `key` in an array (`None` for other values).
    pub fn get(&self, key: &str) -> Option<&PhpValue> {
        let PhpValue::Array(entries) = self else {
            return None;
        };
        let key = PhpKey::from_bytes(key.as_bytes());
        entries.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Encodes as PHP's `serialize()` does.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Appends the `serialize()` form to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            PhpValue::Null => out.extend_from_slice(b"N;"),
            PhpValue::Bool(b) => out.extend_from_slice(if *b { b"b:1;" } else { b"b:0;" }),
            PhpValue::Int(n) => {
                let _ = write!(Writer(out), "i:{n};");
            }
            PhpValue::Float(f) => {
                out.extend_from_slice(b"d:");
                encode_float(*f, out);
                out.push(b';');
            }
            PhpValue::Str(s) => encode_str(s, out),
            PhpValue::Array(entries) => {
                let _ = write!(Writer(out), "a:{}:{{", entries.len());
                for (key, value) in entries {
                    match key {
                        PhpKey::Int(n) => {
                            let _ = write!(Writer(out), "i:{n};");
                        }
                        PhpKey::Str(s) => encode_str(s, out),
                    }
                    value.encode_into(out);
                }
                out.push(b'}');
            }
        }
    }
}

/// Inserts `key` as PHP does: a key already present keeps its place and
/// takes the new value.
fn insert(entries: &mut Vec<(PhpKey, PhpValue)>, key: PhpKey, value: PhpValue) {
    match entries.iter_mut().find(|(k, _)| *k == key) {
        Some(slot) => slot.1 = value,
        None => entries.push((key, value)),
    }
}

/// `fmt::Write` over a byte vector, for the numbers.
struct Writer<'a>(&'a mut Vec<u8>);

impl fmt::Write for Writer<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Appends `s:<len>:"<bytes>";`.
pub(crate) fn encode_str(s: &[u8], out: &mut Vec<u8>) {
    let _ = write!(Writer(out), "s:{}:\"", s.len());
    out.extend_from_slice(s);
    out.extend_from_slice(b"\";");
}

/// Writes a float in a form PHP's `unserialize()` reads back to the same
/// value (the shortest round-trip digits; `INF`, `-INF`, `NAN` as PHP).
fn encode_float(f: f64, out: &mut Vec<u8>) {
    if f.is_nan() {
        out.extend_from_slice(b"NAN");
    } else if f.is_infinite() {
        out.extend_from_slice(if f > 0.0 { b"INF" } else { b"-INF" });
    } else {
        // Debug gives the shortest digits that round-trip: "0.1", "1.0",
        // "1e25", "-1.5e-7", all of which PHP reads.
        let _ = write!(Writer(out), "{f:?}");
    }
}

/// Why a body is not an acceptable PHP value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhpError {
    /// Byte offset where the problem was found.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for PhpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.message, self.offset)
    }
}

impl std::error::Error for PhpError {}

/// Decodes one whole value; bytes after it are an error.
///
/// # Errors
///
/// [`PhpError`] for anything but the plain-data codes, bad syntax, nesting
/// deeper than [`MAX_DEPTH`], or trailing bytes.
pub fn decode(input: &[u8]) -> Result<PhpValue, PhpError> {
    let mut parser = Parser::new(input);
    let value = parser.value()?;
    parser.end()?;
    Ok(value)
}

/// A decoder over a body, exposed to the channel dialect so that it can
/// walk the top-level array and keep the bytes of `data` as they came.
pub(crate) struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    pub(crate) fn new(input: &'a [u8]) -> Self {
        Parser {
            input,
            pos: 0,
            depth: 0,
        }
    }

    /// Where the parser is.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// The input between two positions.
    pub(crate) fn slice(&self, start: usize, end: usize) -> &'a [u8] {
        &self.input[start..end]
    }

    fn error<T>(&self, message: impl Into<String>) -> Result<T, PhpError> {
        Err(PhpError {
            offset: self.pos,
            message: message.into(),
        })
    }

    /// Checks that nothing follows.
    pub(crate) fn end(&self) -> Result<(), PhpError> {
        if self.pos == self.input.len() {
            Ok(())
        } else {
            self.error("unexpected bytes after the value")
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), PhpError> {
        if self.input.get(self.pos) == Some(&byte) {
            self.pos += 1;
            Ok(())
        } else {
            self.error(format!("expected '{}'", byte as char))
        }
    }

    /// The bytes up to (not including) `stop`, which is consumed.
    fn until(&mut self, stop: u8, max: usize) -> Result<&'a [u8], PhpError> {
        let rest = &self.input[self.pos..];
        match rest.iter().take(max + 1).position(|&b| b == stop) {
            Some(n) => {
                self.pos += n + 1;
                Ok(&rest[..n])
            }
            None => self.error(format!("expected '{}'", stop as char)),
        }
    }

    /// A decimal integer (PHP accepts a leading `+` or `-`) ended by `stop`.
    fn int_until(&mut self, stop: u8) -> Result<i64, PhpError> {
        let start = self.pos;
        let text = self.until(stop, 21)?;
        let digits = text
            .strip_prefix(b"-")
            .or_else(|| text.strip_prefix(b"+"))
            .unwrap_or(text);
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            self.pos = start;
            return self.error("expected an integer");
        }
        let text = std::str::from_utf8(text).unwrap_or_default();
        match text.trim_start_matches('+').parse() {
            Ok(n) => Ok(n),
            Err(_) => {
                self.pos = start;
                self.error("integer out of the 64-bit range")
            }
        }
    }

    /// A length or count ended by `stop`: no sign, fits `usize`.
    fn count_until(&mut self, stop: u8) -> Result<usize, PhpError> {
        let start = self.pos;
        let n = self.int_until(stop)?;
        match usize::try_from(n) {
            Ok(n) if self.input[start] != b'+' => Ok(n),
            _ => {
                self.pos = start;
                self.error("expected a length")
            }
        }
    }

    /// `s:<len>:"<bytes>"` after the type letter and its colon, up to and
    /// including the closing quote (the `;` or key end is the caller's).
    fn string_body(&mut self) -> Result<&'a [u8], PhpError> {
        let len = self.count_until(b':')?;
        self.expect(b'"')?;
        let available = self.input.len() - self.pos;
        if len > available {
            return self.error(format!(
                "string of {len} bytes is longer than the {available} bytes left"
            ));
        }
        let bytes = &self.input[self.pos..self.pos + len];
        self.pos += len;
        self.expect(b'"')?;
        Ok(bytes)
    }

    /// The type letter and its separator.
    fn tag(&mut self) -> Result<u8, PhpError> {
        let Some(&tag) = self.input.get(self.pos) else {
            return self.error("expected a value, found the end");
        };
        match tag {
            b'N' => {
                self.pos += 1;
                self.expect(b';')?;
                return Ok(tag);
            }
            b'b' | b'i' | b'd' | b's' | b'a' => {}
            b'O' | b'C' => return self.error("objects are refused (O:/C:)"),
            b'r' | b'R' => return self.error("references are refused (r:/R:)"),
            b'E' => return self.error("enums are refused (E:)"),
            b'S' => return self.error("escaped strings are refused (S:)"),
            other => {
                return self.error(format!(
                    "unknown value code {:?}",
                    char::from(other).escape_default().to_string()
                ));
            }
        }
        self.pos += 1;
        self.expect(b':')?;
        Ok(tag)
    }

    /// An array key as it is written, string keys borrowed (no PHP
    /// coercion: for matching the known names of a request).
    pub(crate) fn key_bytes(&mut self) -> Result<Option<&'a [u8]>, PhpError> {
        match self.input.get(self.pos) {
            Some(b's') => {
                self.pos += 1;
                self.expect(b':')?;
                let bytes = self.string_body()?;
                self.expect(b';')?;
                Ok(Some(bytes))
            }
            _ => self.key().map(|_| None),
        }
    }

    /// An array key: `i:<n>;` or `s:<len>:"…";`.
    pub(crate) fn key(&mut self) -> Result<PhpKey, PhpError> {
        match self.input.get(self.pos) {
            Some(b'i') => {
                self.pos += 1;
                self.expect(b':')?;
                Ok(PhpKey::Int(self.int_until(b';')?))
            }
            Some(b's') => {
                self.pos += 1;
                self.expect(b':')?;
                let bytes = self.string_body()?;
                self.expect(b';')?;
                Ok(PhpKey::from_bytes(bytes))
            }
            _ => self.error("expected an array key (i: or s:)"),
        }
    }

    /// `a:<n>:{`: returns `n`, after checking the input can hold that many
    /// entries (the smallest, `i:0;N;`, takes 6 bytes).
    pub(crate) fn array_open(&mut self) -> Result<usize, PhpError> {
        if self.input.get(self.pos) != Some(&b'a') {
            return self.error("expected an array (a:)");
        }
        self.tag()?;
        self.array_head()
    }

    fn array_head(&mut self) -> Result<usize, PhpError> {
        let n = self.count_until(b':')?;
        self.expect(b'{')?;
        let left = self.input.len() - self.pos;
        if n > left / 6 {
            return self.error(format!(
                "array of {n} entries cannot fit in the {left} bytes left"
            ));
        }
        Ok(n)
    }

    /// The `}` closing an array.
    pub(crate) fn array_close(&mut self) -> Result<(), PhpError> {
        self.expect(b'}')
    }

    /// One value, nested arrays included.
    pub(crate) fn value(&mut self) -> Result<PhpValue, PhpError> {
        let tag = self.tag()?;
        match tag {
            b'N' => Ok(PhpValue::Null),
            b'b' => {
                let value = match self.input.get(self.pos) {
                    Some(b'0') => false,
                    Some(b'1') => true,
                    _ => return self.error("expected 0 or 1"),
                };
                self.pos += 1;
                self.expect(b';')?;
                Ok(PhpValue::Bool(value))
            }
            b'i' => Ok(PhpValue::Int(self.int_until(b';')?)),
            b'd' => {
                let start = self.pos;
                let text = self.until(b';', 64)?;
                match parse_float(text) {
                    Some(f) => Ok(PhpValue::Float(f)),
                    None => {
                        self.pos = start;
                        self.error("expected a float")
                    }
                }
            }
            b's' => {
                let bytes = self.string_body()?;
                self.expect(b';')?;
                Ok(PhpValue::Str(bytes.to_vec()))
            }
            _ => {
                if self.depth >= MAX_DEPTH {
                    return self.error(format!("arrays nested deeper than {MAX_DEPTH}"));
                }
                self.depth += 1;
                let n = self.array_head()?;
                let mut entries = Vec::with_capacity(n);
                for _ in 0..n {
                    let key = self.key()?;
                    let value = self.value()?;
                    insert(&mut entries, key, value);
                }
                self.array_close()?;
                self.depth -= 1;
                Ok(PhpValue::Array(entries))
            }
        }
    }
}

impl Parser<'_> {
    /// Checks one value, nested arrays included, as [`Parser::value`] does,
    /// without building it: published data is passed on as its bytes.
    pub(crate) fn skip_value(&mut self) -> Result<(), PhpError> {
        let tag = self.tag()?;
        match tag {
            b'N' => Ok(()),
            b'b' => {
                if !matches!(self.input.get(self.pos), Some(b'0' | b'1')) {
                    return self.error("expected 0 or 1");
                }
                self.pos += 1;
                self.expect(b';')
            }
            b'i' => self.int_until(b';').map(drop),
            b'd' => {
                let start = self.pos;
                let text = self.until(b';', 64)?;
                if parse_float(text).is_none() {
                    self.pos = start;
                    return self.error("expected a float");
                }
                Ok(())
            }
            b's' => {
                self.string_body()?;
                self.expect(b';')
            }
            _ => {
                if self.depth >= MAX_DEPTH {
                    return self.error(format!("arrays nested deeper than {MAX_DEPTH}"));
                }
                self.depth += 1;
                let n = self.array_head()?;
                for _ in 0..n {
                    self.key()?;
                    self.skip_value()?;
                }
                self.array_close()?;
                self.depth -= 1;
                Ok(())
            }
        }
    }
}

/// A float as PHP writes it: decimal, with an optional exponent, or `INF`,
/// `-INF`, `NAN`.
fn parse_float(text: &[u8]) -> Option<f64> {
    match text {
        b"INF" => return Some(f64::INFINITY),
        b"-INF" => return Some(f64::NEG_INFINITY),
        b"NAN" => return Some(f64::NAN),
        _ => {}
    }
    let ok = !text.is_empty()
        && text
            .iter()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
    if !ok {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> PhpValue {
        PhpValue::str(text)
    }

    #[test]
    fn decodes_the_issue_s_publish_body() {
        let body = br#"a:3:{s:4:"type";s:7:"publish";s:8:"channels";a:1:{i:0;s:13:"send_to_group";}s:4:"data";a:2:{s:8:"group_id";s:3:"123";s:7:"message";s:5:"hello";}}"#;
        assert_eq!(body.len() + 4, 149);
        let value = decode(body).unwrap();
        assert_eq!(value.get("type"), Some(&s("publish")));
        assert_eq!(
            value.get("channels"),
            Some(&PhpValue::list([s("send_to_group")]))
        );
        let data = value.get("data").unwrap();
        assert_eq!(data.get("group_id"), Some(&s("123")));
        assert_eq!(data.get("message"), Some(&s("hello")));
        assert_eq!(value.encode(), body.to_vec(), "encodes back byte for byte");
    }

    #[test]
    fn scalars_decode_and_encode_as_php_writes_them() {
        for (text, value) in [
            (&b"N;"[..], PhpValue::Null),
            (b"b:1;", PhpValue::Bool(true)),
            (b"b:0;", PhpValue::Bool(false)),
            (b"i:-42;", PhpValue::Int(-42)),
            (b"i:9223372036854775807;", PhpValue::Int(i64::MAX)),
            (b"d:0.1;", PhpValue::Float(0.1)),
            (b"d:-INF;", PhpValue::Float(f64::NEG_INFINITY)),
            (b"s:2:\"\xc3\xa9\";", PhpValue::Str(vec![0xc3, 0xa9])),
            (b"s:3:\"a\"b\";", s("a\"b")),
            (b"s:0:\"\";", s("")),
        ] {
            assert_eq!(decode(text).unwrap(), value, "{}", text.escape_ascii());
            assert_eq!(value.encode(), text.to_vec());
        }
        // Forms PHP reads that it does not write.
        assert_eq!(decode(b"i:+5;").unwrap(), PhpValue::Int(5));
        assert_eq!(decode(b"d:1.0E+25;").unwrap(), PhpValue::Float(1e25));
        assert_eq!(decode(b"d:5;").unwrap(), PhpValue::Float(5.0));
        assert!(matches!(decode(b"d:NAN;").unwrap(), PhpValue::Float(f) if f.is_nan()));
    }

    #[test]
    fn integer_string_keys_are_int_keys_and_duplicates_keep_their_place() {
        let value = decode(br#"a:3:{s:1:"7";s:1:"a";s:2:"07";s:1:"b";i:7;s:1:"c";}"#).unwrap();
        assert_eq!(
            value,
            PhpValue::Array(vec![
                (PhpKey::Int(7), s("c")),
                (PhpKey::Str(b"07".to_vec()), s("b")),
            ])
        );
        assert_eq!(value.get("7"), Some(&s("c")));
        for (key, int) in [
            ("-3", Some(-3)),
            ("0", Some(0)),
            ("-0", None),
            ("+1", None),
            ("", None),
            ("9223372036854775808", None),
            ("1a", None),
        ] {
            assert_eq!(
                PhpKey::from_bytes(key.as_bytes()),
                match int {
                    Some(n) => PhpKey::Int(n),
                    None => PhpKey::Str(key.as_bytes().to_vec()),
                },
                "{key:?}"
            );
        }
    }

    #[test]
    fn objects_references_and_other_codes_are_refused_with_what_they_are() {
        for (body, says) in [
            (&br#"O:8:"stdClass":0:{}"#[..], "objects"),
            (br#"a:1:{i:0;O:8:"stdClass":0:{}}"#, "objects"),
            (
                br#"C:11:"ArrayObject":21:{x:i:0;a:0:{};m:a:0:{}}"#,
                "objects",
            ),
            (b"a:2:{i:0;i:1;i:1;r:2;}", "references"),
            (b"a:2:{i:0;i:1;i:1;R:2;}", "references"),
            (br#"E:7:"Foo:Bar";"#, "enums"),
            (br#"S:1:"\61";"#, "escaped"),
            (b"x:1;", "unknown value code"),
            (b"", "the end"),
            (b"i:1", "expected ';'"),
            (b"i:1;i:2;", "after the value"),
            (b"i:99999999999999999999;", "64-bit"),
            (br#"s:9:"abc";"#, "longer than"),
            (br#"s:-1:"";"#, "length"),
            (b"a:1000000:{}", "cannot fit"),
            (b"a:1:{d:1.5;i:1;}", "array key"),
            (b"b:2;", "0 or 1"),
            (b"d:1x;", "float"),
        ] {
            let error = decode(body).unwrap_err().to_string();
            assert!(
                error.contains(says),
                "{}: {error:?} should say {says:?}",
                body.escape_ascii()
            );
        }
    }

    #[test]
    fn checking_without_building_agrees_with_decoding() {
        for body in [
            &br#"a:2:{i:0;d:1.5;s:1:"k";a:1:{i:0;b:1;}}"#[..],
            br#"a:1:{i:0;O:8:"stdClass":0:{}}"#,
            b"a:1:{i:0;R:1;}",
            b"d:x;",
            b"b:3;",
            b"N;",
        ] {
            let mut parser = Parser::new(body);
            let skipped = parser.skip_value().and_then(|()| parser.end());
            assert_eq!(
                skipped.map_err(|e| e.message),
                decode(body).map(drop).map_err(|e| e.message),
                "{}",
                body.escape_ascii()
            );
        }
    }

    #[test]
    fn nesting_is_limited() {
        let mut body = Vec::new();
        for _ in 0..=MAX_DEPTH {
            body.extend_from_slice(b"a:1:{i:0;");
        }
        body.extend_from_slice(b"N;");
        body.extend(std::iter::repeat_n(b'}', MAX_DEPTH + 1));
        assert!(decode(&body).unwrap_err().to_string().contains("deeper"));
        // One level less is fine.
        assert!(decode(&body[9..body.len() - 1]).is_ok());
    }
}
