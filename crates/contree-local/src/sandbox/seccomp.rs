//! TEMPORARY placeholder, replaced by the real filter on merge.
use super::SandboxError;

/// Raw `struct sock_filter[]` programs, in install order.
pub(crate) fn filters() -> Result<&'static [Vec<u8>], SandboxError> {
    static F: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    Ok(F.get_or_init(|| {
        let mut v = Vec::new();
        v.extend_from_slice(&0x06u16.to_ne_bytes());
        v.push(0);
        v.push(0);
        v.extend_from_slice(&0x7fff_0000u32.to_ne_bytes());
        vec![v]
    }))
}
