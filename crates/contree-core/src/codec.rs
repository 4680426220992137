//! The stream value codec: how raw bytes travel inside JSON.
//!
//! Process output, stdin and stream events carry bytes as `{"value": str, "encoding":
//! "ascii" | "base64"}` (wire-protocol.md §2, "Byte payloads in JSON"). Server and client
//! share one rule: the payload is sent as `ascii` text iff **every** byte is printable ASCII
//! (32..=126) or one of `\t`, `\n`, `\r`; otherwise it is the standard base64 (with padding)
//! of the raw bytes. Empty input is ascii `""`.
//!
//! Decoding is lenient, because other servers and older versions exist:
//! - an `encoding` other than `base64` (any casing) is read as [`Encoding::Ascii`], i.e. raw
//!   text. Its bytes are the UTF-8 bytes of the JSON string: identical to the wire bytes for
//!   conforming `ascii` payloads, and lossless for non-ASCII text a server may send as is.
//!   (The Python SDK decodes unknown encodings as latin-1, which agrees on every ASCII
//!   payload and fails on characters above U+00FF; UTF-8 never fails.)
//! - base64 may omit its padding and may contain ASCII whitespace (line breaks), both of
//!   which are ignored. Any other invalid base64 is an [`Error::decode`].
//!
//! ```
//! use contree_core::codec::{decode, encode, Encoding};
//!
//! assert_eq!(encode(b"hello\n"), ("hello\n".to_string(), Encoding::Ascii));
//! assert_eq!(encode(&[0xff, 0x00]), ("/wA=".to_string(), Encoding::Base64));
//! assert_eq!(decode("/wA=", Encoding::Base64).unwrap(), vec![0xff, 0x00]);
//! ```

use std::fmt;

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// How a byte payload is represented in its JSON string.
///
/// Serializes as `"ascii"` / `"base64"`. Deserializing accepts any casing of `base64`, and
/// reads every other value (including `null` and unknown names such as `"utf-8"` or
/// `"latin-1"`) as [`Encoding::Ascii`]: the value is then taken as raw text, so an unknown
/// encoding never fails a whole response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Encoding {
    /// The string is the payload itself (printable ASCII plus `\t` `\n` `\r`).
    #[default]
    Ascii,
    /// The string is the standard base64 of the payload.
    Base64,
}

impl Encoding {
    /// The wire spelling: `"ascii"` or `"base64"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Ascii => "ascii",
            Encoding::Base64 => "base64",
        }
    }

    /// Reads a wire spelling leniently: any casing of `base64` is [`Encoding::Base64`],
    /// anything else is [`Encoding::Ascii`] (raw text).
    pub fn from_wire(value: &str) -> Encoding {
        if value.trim().eq_ignore_ascii_case("base64") { Encoding::Base64 } else { Encoding::Ascii }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Encoding {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Encoding {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let value = Option::<String>::deserialize(deserializer)?;
        Ok(value.as_deref().map_or(Encoding::Ascii, Encoding::from_wire))
    }
}

/// Whether `byte` may travel unencoded: printable ASCII 32..=126, or `\t`, `\n`, `\r`.
fn is_plain(byte: u8) -> bool {
    matches!(byte, 32..=126 | b'\t' | b'\n' | b'\r')
}

/// The encoding [`encode`] picks for `bytes`: ascii iff every byte is printable ASCII
/// (32..=126) or `\t` `\n` `\r`, base64 otherwise. Empty input is ascii.
pub fn choose_encoding(bytes: &[u8]) -> Encoding {
    if bytes.iter().all(|&b| is_plain(b)) { Encoding::Ascii } else { Encoding::Base64 }
}

/// Encodes bytes for a JSON payload, returning the string and the encoding used.
///
/// ```
/// use contree_core::codec::{encode, Encoding};
/// assert_eq!(encode(b""), (String::new(), Encoding::Ascii));
/// assert_eq!(encode(b"a\tb\r\n").1, Encoding::Ascii);
/// assert_eq!(encode("é".as_bytes()).1, Encoding::Base64);
/// ```
pub fn encode(bytes: &[u8]) -> (String, Encoding) {
    match choose_encoding(bytes) {
        // Every byte is ASCII here, so mapping bytes to chars is exact.
        Encoding::Ascii => (bytes.iter().map(|&b| char::from(b)).collect(), Encoding::Ascii),
        Encoding::Base64 => (STANDARD.encode(bytes), Encoding::Base64),
    }
}

/// Accepts padded and unpadded input alike: some producers strip the `=`.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes a JSON payload back to bytes.
///
/// `Ascii` yields the UTF-8 bytes of `value` (see the module docs for why unknown encodings
/// land here). `Base64` ignores ASCII whitespace and missing padding; anything else that is
/// not standard base64 is an error of kind [`Decode`](crate::ErrorKind::Decode).
///
/// ```
/// use contree_core::codec::{decode, Encoding};
/// assert_eq!(decode("aGkK", Encoding::Base64).unwrap(), b"hi\n");
/// assert_eq!(decode("hi\n", Encoding::Ascii).unwrap(), b"hi\n");
/// assert!(decode("not base64!", Encoding::Base64).unwrap_err().is_decode());
/// ```
pub fn decode(value: &str, encoding: Encoding) -> Result<Vec<u8>> {
    match encoding {
        Encoding::Ascii => Ok(value.as_bytes().to_vec()),
        Encoding::Base64 => {
            let result = if value.bytes().any(|b| b.is_ascii_whitespace()) {
                let compact: Vec<u8> = value.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
                LENIENT_BASE64.decode(compact)
            } else {
                LENIENT_BASE64.decode(value)
            };
            result.map_err(|e| Error::decode("stream value is not valid base64", e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn empty_is_ascii() {
        assert_eq!(encode(b""), (String::new(), Encoding::Ascii));
        assert_eq!(decode("", Encoding::Ascii).unwrap(), Vec::<u8>::new());
        assert_eq!(decode("", Encoding::Base64).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn boundary_bytes_pick_the_right_encoding() {
        for b in [b'\t', b'\n', b'\r', 32, 126] {
            assert_eq!(choose_encoding(&[b]), Encoding::Ascii, "byte {b}");
        }
        for b in [0u8, 8, 11, 12, 31, 127, 128, 255] {
            assert_eq!(choose_encoding(&[b]), Encoding::Base64, "byte {b}");
        }
        // One bad byte anywhere forces base64 for the whole payload.
        assert_eq!(encode(b"hello\x00world").1, Encoding::Base64);
    }

    #[test]
    fn base64_is_standard_alphabet_with_padding() {
        assert_eq!(encode(&[0xfb, 0xff]).0, "+/8=");
        assert_eq!(decode("+/8=", Encoding::Base64).unwrap(), vec![0xfb, 0xff]);
    }

    #[test]
    fn decode_tolerates_missing_padding_and_whitespace() {
        assert_eq!(decode("aGk", Encoding::Base64).unwrap(), b"hi");
        assert_eq!(decode("aGVs\nbG8K\r\n", Encoding::Base64).unwrap(), b"hello\n");
    }

    #[test]
    fn bad_base64_is_a_decode_error() {
        let err = decode("@@@@", Encoding::Base64).unwrap_err();
        assert!(err.is_decode(), "{err:?}");
        // URL-safe alphabet is not standard base64.
        assert!(decode("-_8=", Encoding::Base64).is_err());
    }

    #[test]
    fn ascii_decode_keeps_non_ascii_text_as_utf8() {
        assert_eq!(decode("é", Encoding::Ascii).unwrap(), "é".as_bytes());
    }

    #[test]
    fn encoding_serde_is_lowercase_and_lenient() {
        assert_eq!(serde_json::to_string(&Encoding::Ascii).unwrap(), r#""ascii""#);
        assert_eq!(serde_json::to_string(&Encoding::Base64).unwrap(), r#""base64""#);
        let parse = |s: &str| serde_json::from_str::<Encoding>(s).unwrap();
        assert_eq!(parse(r#""base64""#), Encoding::Base64);
        assert_eq!(parse(r#""BASE64""#), Encoding::Base64);
        assert_eq!(parse(r#""ascii""#), Encoding::Ascii);
        assert_eq!(parse(r#""latin-1""#), Encoding::Ascii);
        assert_eq!(parse(r#""utf-8""#), Encoding::Ascii);
        assert_eq!(parse("null"), Encoding::Ascii);
        assert!(serde_json::from_str::<Encoding>("3").is_err());
    }

    proptest! {
        #[test]
        fn roundtrip_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let (value, encoding) = encode(&bytes);
            prop_assert_eq!(decode(&value, encoding).unwrap(), bytes);
        }

        #[test]
        fn encoding_choice_follows_the_rule(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let all_plain = bytes.iter().all(|&b| (32..=126).contains(&b) || b == b'\t' || b == b'\n' || b == b'\r');
            let (_, encoding) = encode(&bytes);
            prop_assert_eq!(encoding == Encoding::Ascii, all_plain);
        }

        #[test]
        fn ascii_output_is_the_bytes_unchanged(text in "[ -~\t\n\r]{0,256}") {
            let (value, encoding) = encode(text.as_bytes());
            prop_assert_eq!(encoding, Encoding::Ascii);
            prop_assert_eq!(value.as_bytes(), text.as_bytes());
        }

        #[test]
        fn base64_output_is_standard_base64(bytes in proptest::collection::vec(any::<u8>(), 1..256)) {
            prop_assume!(choose_encoding(&bytes) == Encoding::Base64);
            let (value, _) = encode(&bytes);
            prop_assert_eq!(value, STANDARD.encode(&bytes));
        }
    }
}
