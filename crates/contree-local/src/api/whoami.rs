//! `GET /whoami`: the token's id, its permissions (all granted) and the server's limits.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use contree_core::models::WhoAmIResponse;

use super::AppState;

/// Every permission the API knows; a local server grants them all.
const PERMISSIONS: [&str; 6] = ["import", "spawn", "spawn_disposable", "list", "cancel", "set_image_tag"];

pub(crate) async fn whoami(State(state): State<AppState>) -> Json<WhoAmIResponse> {
    let limits = state.ops.limits;
    let max_timeout = i64::try_from(limits.max_timeout.as_secs()).unwrap_or(i64::MAX);
    let mut lim = BTreeMap::new();
    lim.insert("instance_max_timeout".to_owned(), max_timeout);
    lim.insert("instance_max_concurrency".to_owned(), limits.max_concurrent_runs as i64);
    lim.insert("images_import_max_concurrency".to_owned(), limits.max_concurrent_runs as i64);
    lim.insert("images_import_max_timeout".to_owned(), max_timeout);
    // Only the limits the kernel enforces: a missing key means no limit (the start-up log
    // warns when a default limit could not be enforced).
    if let Some(l) = state.ops.cgroups.as_ref().map(|c| c.limits()) {
        if let Some(m) = l.memory_bytes {
            lim.insert("instance_max_memory_bytes".to_owned(), i64::try_from(m).unwrap_or(i64::MAX));
        }
        if let Some(n) = l.pids {
            lim.insert("instance_max_pids".to_owned(), i64::try_from(n).unwrap_or(i64::MAX));
        }
        if let Some(c) = l.cpus {
            lim.insert("instance_max_millicpus".to_owned(), (c * 1000.0).round() as i64);
        }
    }
    Json(WhoAmIResponse {
        token_uuid: state.token_uuid.to_string(),
        token_expiration: None,
        permissions: PERMISSIONS.iter().map(|p| ((*p).to_owned(), true)).collect(),
        limits: lim,
        operations_stat: BTreeMap::new(),
    })
}
