//! Reading `cli.ini` and `auth.ini` the way Python's `configparser` reads them.
//!
//! What is kept from Python: `[DEFAULT]` keys show through in every section, key names are
//! case-insensitive (section names are not), `=` and `:` both separate keys from values,
//! full-line `#`/`;` comments, indented continuation lines. Added for people who copy the
//! documented example: a `;` or `#` preceded by whitespace starts an inline comment (tokens
//! and URLs never contain whitespace, so no real value is cut).

use std::collections::HashMap;
use std::path::Path;

use crate::{Error, Result};

/// The special section whose keys every other section inherits.
const DEFAULT_SECTION: &str = "DEFAULT";

/// Parsed INI content: section name → lower-cased key → value.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct IniData {
    sections: HashMap<String, HashMap<String, String>>,
}

impl IniData {
    /// Parses INI text. `origin` names the file in errors; the content never appears.
    pub(crate) fn parse(text: &str, origin: &Path) -> Result<IniData> {
        let mut parser = configparser::ini::Ini::new_cs();
        parser.set_default_section(DEFAULT_SECTION);
        parser.set_multiline(true);
        let mut defaults = parser.defaults();
        defaults.enable_inline_comments = false;
        parser.load_defaults(defaults);
        let map = parser
            .read(text.to_string())
            .map_err(|msg| Error::config(format!("cannot parse {}: {msg}", origin.display())))?;
        let sections = map
            .into_iter()
            .map(|(section, keys)| {
                let keys = keys
                    .into_iter()
                    .filter_map(|(k, v)| Some((k.to_lowercase(), strip_inline_comment(&v?).to_string())))
                    .collect();
                (section, keys)
            })
            .collect();
        Ok(IniData { sections })
    }

    /// Reads a file; a missing file is empty. Other failures are Config errors naming it.
    pub(crate) fn load(path: &Path) -> Result<IniData> {
        match std::fs::read_to_string(path) {
            Ok(text) => IniData::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(IniData::default()),
            Err(e) => Err(Error::config(format!("cannot read {}", path.display())).with_source(e)),
        }
    }

    /// Overlays `other` on `self`, key by key (`other` wins).
    pub(crate) fn merge(&mut self, other: IniData) {
        for (section, keys) in other.sections {
            self.sections.entry(section).or_default().extend(keys);
        }
    }

    /// Whether the section exists.
    pub(crate) fn has_section(&self, section: &str) -> bool {
        self.sections.contains_key(section)
    }

    /// A key of `[DEFAULT]`.
    pub(crate) fn default_value(&self, key: &str) -> Option<&str> {
        self.sections.get(DEFAULT_SECTION)?.get(key).map(String::as_str)
    }

    /// A key of an existing section, falling back to `[DEFAULT]` like Python does.
    /// `None` when the section does not exist.
    pub(crate) fn value(&self, section: &str, key: &str) -> Option<&str> {
        let keys = self.sections.get(section)?;
        keys.get(key).map(String::as_str).or_else(|| self.default_value(key))
    }
}

/// Cuts `value ; comment` / `value # comment` at whitespace followed by `;` or `#`.
fn strip_inline_comment(value: &str) -> &str {
    let bytes = value.as_bytes();
    for i in 1..bytes.len() {
        if matches!(bytes[i], b';' | b'#') && bytes[i - 1].is_ascii_whitespace() {
            return value[..i].trim_end();
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> IniData {
        IniData::parse(text, Path::new("test.ini")).unwrap()
    }

    #[test]
    fn python_configparser_semantics() {
        let ini = parse(
            "[DEFAULT]\nprofile = dev\nurl = https://default\n\n# comment\n  ; indented comment\n[profile:dev]\nTOKEN: abc\nurl=https://dev ; inline\nproject =\n[Profile:Dev]\ntoken = other\n",
        );
        assert_eq!(ini.default_value("profile"), Some("dev"));
        assert_eq!(ini.value("profile:dev", "token"), Some("abc"));
        assert_eq!(ini.value("profile:dev", "url"), Some("https://dev"));
        assert_eq!(ini.value("profile:dev", "project"), Some(""));
        assert_eq!(ini.value("Profile:Dev", "token"), Some("other"));
        assert_eq!(ini.value("Profile:Dev", "url"), Some("https://default"), "DEFAULT shows through");
        assert_eq!(ini.value("profile:none", "url"), None, "no section, no DEFAULT fallback");
        assert!(!ini.has_section("profile:DEV"), "section names are case-sensitive");
    }

    #[test]
    fn indented_lines_continue_the_previous_value() {
        let ini = parse("[p]\nkey = a\n  b\nother = c\n");
        assert_eq!(ini.value("p", "key"), Some("a\nb"));
        assert_eq!(ini.value("p", "other"), Some("c"));
    }

    #[test]
    fn inline_comments_need_whitespace_before() {
        assert_eq!(strip_inline_comment("iam ; iam | jwt"), "iam");
        assert_eq!(strip_inline_comment("iam\t# x"), "iam");
        assert_eq!(strip_inline_comment("a;b#c"), "a;b#c");
        assert_eq!(strip_inline_comment(""), "");
        assert_eq!(strip_inline_comment("; all comment"), "; all comment");
    }

    #[test]
    fn merge_overlays_per_key() {
        let mut base = parse("[p]\na = 1\nb = 2\n");
        base.merge(parse("[p]\nb = 3\n[q]\nc = 4\n"));
        assert_eq!(base.value("p", "a"), Some("1"));
        assert_eq!(base.value("p", "b"), Some("3"));
        assert_eq!(base.value("q", "c"), Some("4"));
    }

    #[test]
    fn parse_errors_name_the_file_but_not_the_content() {
        let err = IniData::parse("[profile:x\ntoken = s3cr3t\n", Path::new("/h/auth.ini")).unwrap_err();
        assert!(err.is_config());
        let msg = err.to_string();
        assert!(msg.contains("/h/auth.ini"), "{msg}");
        assert!(!msg.contains("s3cr3t"), "{msg}");
    }
}
