//! Reading an image without running it: directory listings (`GET /inspect/{uuid}/list`) and
//! grep (`GET /inspect/{uuid}/grep`).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::serde_util::{self, string_enum};

/// A file owner or group: a name when the image knows one, else the numeric ID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NameOrId {
    /// A user or group name, e.g. `"root"`.
    Name(String),
    /// A numeric UID or GID.
    Id(i64),
}

impl Default for NameOrId {
    fn default() -> Self {
        NameOrId::Name(String::new())
    }
}

impl fmt::Display for NameOrId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameOrId::Name(name) => f.write_str(name),
            NameOrId::Id(id) => write!(f, "{id}"),
        }
    }
}

/// One entry of a directory listing. Spec `FileItem`.
///
/// Every field is required by the spec; missing ones read as zero/empty/false here so one
/// odd entry does not fail the listing.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FileItem {
    /// File size in bytes.
    #[serde(deserialize_with = "serde_util::i64_or_zero")]
    pub size: i64,
    /// File name, relative to the listed directory.
    pub path: String,
    /// Owner name or UID.
    pub owner: NameOrId,
    /// Group name or GID.
    pub group: NameOrId,
    /// User ID of the owner.
    pub uid: u32,
    /// Group ID of the file.
    pub gid: u32,
    /// Full `st_mode` (type and permission bits), e.g. `33188` = `0o100644`.
    pub mode: u32,
    /// Last modification time, Unix seconds.
    #[serde(deserialize_with = "serde_util::i64_or_zero")]
    pub mtime: i64,
    /// Number of hard links.
    pub nlink: u64,
    /// True if the item is a directory.
    pub is_dir: bool,
    /// True if the item is a regular file.
    pub is_regular: bool,
    /// True if the item is a symbolic link.
    pub is_symlink: bool,
    /// True if the item is a socket.
    pub is_socket: bool,
    /// True if the item is a FIFO (named pipe).
    pub is_fifo: bool,
    /// Target of the symbolic link; empty otherwise.
    pub symlink_to: String,
}

impl FileItem {
    /// The permission bits of `mode` (`mode & 0o7777`).
    pub fn permissions(&self) -> u32 {
        self.mode & 0o7777
    }
}

/// Answer of `GET /inspect/{uuid}/list`. Spec `DirectoryList`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DirectoryList {
    /// The directory path that was listed.
    #[serde(default)]
    pub path: String,
    /// The entries of the directory.
    #[serde(default, deserialize_with = "serde_util::null_default")]
    pub files: Vec<FileItem>,
}

/// One match inside a grep line. Spec `GrepSubmatch`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct GrepSubmatch {
    /// The matched text.
    pub text: String,
    /// Byte offset of the match start within the line.
    pub start: u64,
    /// Byte offset of the match end within the line.
    pub end: u64,
}

string_enum! {
    /// Whether a grep row is a match or a context line (ripgrep's `--json` message type).
    #[derive(Default)]
    pub enum GrepMatchType {
        /// An actual match.
        #[default]
        Match => "match",
        /// A before/after context line.
        Context => "context",
    }
}

/// One line of grep output. Spec `GrepMatch`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct GrepMatch {
    /// File path relative to the image root.
    pub path: String,
    /// 1-based line number.
    pub line_number: u64,
    /// Byte offset of the line from the start of the file.
    pub absolute_offset: u64,
    /// The line, including its terminator (capped at 4096 bytes).
    pub line_text: String,
    /// Real byte length of the line; greater than `line_text` when the line was capped.
    pub line_bytes: u64,
    /// The matches within the line; empty for context lines.
    #[serde(deserialize_with = "serde_util::null_default")]
    pub submatches: Vec<GrepSubmatch>,
    /// `match` or `context`.
    #[serde(rename = "type")]
    pub match_type: GrepMatchType,
}

impl GrepMatch {
    /// Whether this row is an actual match (not a context line).
    pub fn is_match(&self) -> bool {
        self.match_type == GrepMatchType::Match
    }

    /// Whether this row is a `before`/`after` context line.
    pub fn is_context(&self) -> bool {
        self.match_type == GrepMatchType::Context
    }
}

/// How grep compares letters: the `case` query parameter of `GET /inspect/{uuid}/grep`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum GrepCase {
    /// Letters must match exactly (the server's default).
    #[default]
    Sensitive,
    /// Upper and lower case are the same.
    Insensitive,
    /// Insensitive, unless a pattern holds an upper-case letter (ripgrep's `--smart-case`;
    /// escapes such as `\W` do not count).
    Smart,
}

impl GrepCase {
    /// The wire spelling: `sensitive`, `insensitive` or `smart`.
    pub fn as_str(&self) -> &'static str {
        match self {
            GrepCase::Sensitive => "sensitive",
            GrepCase::Insensitive => "insensitive",
            GrepCase::Smart => "smart",
        }
    }

    /// Reads the wire spelling (exact, as the spec's enum); `None` for anything else.
    pub fn from_wire(value: &str) -> Option<GrepCase> {
        match value {
            "sensitive" => Some(GrepCase::Sensitive),
            "insensitive" => Some(GrepCase::Insensitive),
            "smart" => Some(GrepCase::Smart),
            _ => None,
        }
    }
}

impl fmt::Display for GrepCase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Answer of `GET /inspect/{uuid}/grep`. Spec `GrepResult`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct GrepResult {
    /// The first path searched; each row's own `path` says which root it came from.
    pub path: String,
    /// The patterns searched for.
    #[serde(deserialize_with = "serde_util::null_default")]
    pub patterns: Vec<String>,
    /// File-ordered lines: matches and, when requested, context.
    #[serde(deserialize_with = "serde_util::null_default")]
    pub matches: Vec<GrepMatch>,
    /// True when `max_total` or the search deadline stopped the search early.
    pub truncated: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn directory_list_parses_spec_example() {
        let list: DirectoryList = serde_json::from_value(json!({
            "path": "/etc",
            "files": [{
                "size": 1024, "path": "passwd", "owner": "root", "group": 0, "uid": 0, "gid": 0,
                "mode": 33188, "mtime": 1640995200, "nlink": 1, "is_dir": false, "is_regular": true,
                "is_symlink": false, "is_socket": false, "is_fifo": false, "symlink_to": "",
                "future_field": [1, 2]
            }]
        }))
        .unwrap();
        let item = &list.files[0];
        assert_eq!(list.path, "/etc");
        assert_eq!(item.owner, NameOrId::Name("root".into()));
        assert_eq!(item.group, NameOrId::Id(0));
        assert_eq!(item.permissions(), 0o644);
        assert_eq!(item.mtime, 1640995200);
        assert!(item.is_regular && !item.is_dir);
        let back = serde_json::to_value(item).unwrap();
        assert_eq!(back["owner"], json!("root"));
        assert_eq!(back["group"], json!(0));
    }

    #[test]
    fn file_item_tolerates_missing_fields() {
        let item: FileItem = serde_json::from_value(json!({"path": "x", "is_dir": true})).unwrap();
        assert!(item.is_dir);
        assert_eq!(item.size, 0);
        assert_eq!(item.symlink_to, "");
    }

    #[test]
    fn grep_result_parses_spec_example() {
        let r: GrepResult = serde_json::from_value(json!({
            "path": "/etc",
            "patterns": ["^PermitRootLogin"],
            "matches": [{
                "path": "/etc/ssh/sshd_config", "line_number": 57, "absolute_offset": 1712,
                "line_text": "#PermitRootLogin prohibit-password\n", "line_bytes": 8192,
                "submatches": [{"text": "PermitRootLogin", "start": 1, "end": 16}],
                "type": "match"
            }, {
                "path": "/etc/ssh/sshd_config", "line_number": 58, "absolute_offset": 1748,
                "line_text": "\n", "line_bytes": 1, "submatches": [], "type": "context"
            }, {
                "path": "/x", "line_number": 1, "absolute_offset": 0, "line_text": "", "line_bytes": 0,
                "submatches": [], "type": "summary"
            }],
            "truncated": false
        }))
        .unwrap();
        assert_eq!(r.patterns, vec!["^PermitRootLogin"]);
        assert_eq!(r.matches[0].match_type, GrepMatchType::Match);
        assert_eq!(r.matches[0].submatches[0].end, 16);
        assert_eq!(r.matches[1].match_type, GrepMatchType::Context);
        assert_eq!(r.matches[2].match_type, GrepMatchType::Other("summary".into()));
        assert_eq!(serde_json::to_value(&r.matches[1]).unwrap()["type"], json!("context"));
        assert!(!r.truncated);
        assert!(r.matches[0].is_match() && !r.matches[0].is_context());
        assert!(r.matches[1].is_context() && !r.matches[1].is_match());
    }

    #[test]
    fn grep_case_round_trips_its_wire_spelling() {
        for case in [GrepCase::Sensitive, GrepCase::Insensitive, GrepCase::Smart] {
            assert_eq!(GrepCase::from_wire(case.as_str()), Some(case));
        }
        assert_eq!(GrepCase::default(), GrepCase::Sensitive);
        assert_eq!(GrepCase::from_wire("Smart"), None);
        assert_eq!(GrepCase::Smart.to_string(), "smart");
    }
}
