//! Token introspection (`GET /whoami`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::serde_util;

/// Answer of `GET /whoami`: the token, its permissions and limits. Spec `WhoAmIResponse`.
///
/// ```
/// use contree_core::models::WhoAmIResponse;
/// let me: WhoAmIResponse = serde_json::from_str(r#"{
///     "token_uuid": "a1b2c3d4-e5f6-7890-abcd-ef1234567890", "token_expiration": null,
///     "permissions": {"spawn": true, "list": true, "cancel": false},
///     "limits": {"instance_max_timeout": 3600}, "operations_stat": {}
/// }"#).unwrap();
/// assert!(me.has_permission("spawn"));
/// assert!(!me.has_permission("cancel"));
/// assert!(!me.has_permission("import"));
/// assert_eq!(me.limit("instance_max_timeout"), Some(3600));
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct WhoAmIResponse {
    /// UUID of the authentication token (an identifier, not the secret).
    #[serde(default)]
    pub token_uuid: String,
    /// Token expiration as a Unix timestamp, or `null` if it does not expire.
    #[serde(default, deserialize_with = "serde_util::opt_i64")]
    pub token_expiration: Option<i64>,
    /// Every known permission (e.g. `import`, `spawn`, `spawn_disposable`, `list`, `cancel`,
    /// `set_image_tag`) and whether the token has it.
    #[serde(default, deserialize_with = "serde_util::null_default")]
    pub permissions: BTreeMap<String, bool>,
    /// Resource limits of the token (e.g. `instance_max_timeout`, `instance_max_concurrency`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "serde_util::null_default")]
    pub limits: BTreeMap<String, i64>,
    /// Operation statistics; reserved by the spec, so kept as raw JSON values.
    #[serde(default, deserialize_with = "serde_util::null_default")]
    pub operations_stat: BTreeMap<String, Value>,
}

impl WhoAmIResponse {
    /// Whether the token has `permission` (unknown permissions are not granted).
    pub fn has_permission(&self, permission: &str) -> bool {
        self.permissions.get(permission).copied().unwrap_or(false)
    }

    /// The value of limit `name`, if the server reports it.
    pub fn limit(&self, name: &str) -> Option<i64> {
        self.limits.get(name).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_spec_example() {
        let me: WhoAmIResponse = serde_json::from_value(json!({
            "token_uuid": "a1b2c3d4-e5f6-7890-abcd-ef1234567890",
            "token_expiration": 1735689600,
            "permissions": {"import": true, "spawn": true, "spawn_disposable": false, "list": true,
                            "cancel": false, "set_image_tag": false},
            "limits": {"instance_max_timeout": 3600, "instance_max_concurrency": 10,
                       "images_import_max_concurrency": 5, "images_import_max_timeout": 3600},
            "operations_stat": {},
            "something_new": [1]
        }))
        .unwrap();
        assert_eq!(me.token_expiration, Some(1735689600));
        assert!(me.has_permission("import"));
        assert!(!me.has_permission("spawn_disposable"));
        assert_eq!(me.limit("images_import_max_concurrency"), Some(5));
        assert_eq!(me.limit("nope"), None);
    }

    #[test]
    fn tolerates_missing_and_null_fields() {
        let me: WhoAmIResponse =
            serde_json::from_value(json!({"token_uuid": "t", "token_expiration": 1.7e9, "limits": null})).unwrap();
        assert_eq!(me.token_expiration, Some(1_700_000_000));
        assert!(me.permissions.is_empty());
        assert!(me.limits.is_empty());
        assert!(!me.has_permission("list"));
        let me: WhoAmIResponse =
            serde_json::from_value(json!({"token_uuid": "t", "operations_stat": {"running": 2, "x": "y"}})).unwrap();
        assert_eq!(me.operations_stat["running"], json!(2));
    }
}
