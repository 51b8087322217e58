//! What a model, stack or input needs in host memory, checked before anything is allocated:
//! a request for 160 GB of weights is refused with the sizes, not aborted by the allocator.

use super::block::Act;
use super::config::BlockConfig;
use crate::error::{Error, Result};

/// Bytes of memory the host has free for new allocations: Linux's `MemAvailable`; `None`
/// where it cannot be read (then nothing is refused).
pub fn available_host_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `n` bytes in words: `2.1 TB`, `1.5 GB`, `320.0 MB`, `12 KB`.
pub fn human_bytes(n: u64) -> String {
    let n = n as f64;
    if n >= 1e12 {
        format!("{:.1} TB", n / 1e12)
    } else if n >= 1e9 {
        format!("{:.1} GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1} MB", n / 1e6)
    } else {
        format!("{:.0} KB", (n / 1e3).ceil())
    }
}

/// f32 values of the weights of `layers` blocks of embed `e` and feed-forward `f`.
pub fn stack_values(layers: usize, e: usize, f: usize) -> u128 {
    let (e, f) = (e as u128, f as u128);
    // in_proj (3E, E) + 3E, out_proj (E, E) + E, ffn.0 (F, E) + F, ffn.2 (E, F) + E, two norms 4E
    layers as u128 * (3 * e * e + 3 * e + e * e + e + f * e + f + e * f + e + 4 * e)
}

/// f32 values one forward of `tokens` rows holds: every activation buffer of the block.
pub fn activation_values(cfg: &BlockConfig, tokens: usize) -> u128 {
    tokens as u128 * Act::ALL.iter().map(|a| a.cols(cfg) as u128).sum::<u128>()
}

/// Refuses `what` when `bytes` is more than 90% of the host's available memory, with the
/// sizes and `hint` (which size to change). `what` describes the request.
pub fn check_host(what: impl FnOnce() -> String, bytes: u128, hint: &str) -> Result<()> {
    let Some(available) = available_host_bytes() else { return Ok(()) };
    if bytes <= available as u128 / 10 * 9 {
        return Ok(());
    }
    Err(Error::TooLarge {
        what: what(),
        needed: format!("{} of host memory", human_bytes(bytes.min(u64::MAX as u128) as u64)),
        available: format!("{} is available", human_bytes(available)),
        hint: hint.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_count_every_tensor_and_an_absurd_request_is_refused_with_its_size() {
        // one block of E 4, F 8: 48 + 12 + 16 + 4 + 32 + 8 + 32 + 4 + 16
        assert_eq!(stack_values(1, 4, 8), 172);
        assert_eq!(human_bytes(1_500_000_000), "1.5 GB");
        assert_eq!(human_bytes(320_000_000), "320.0 MB");
        assert!(check_host(|| "tiny".into(), 1024, "").is_ok());
        if available_host_bytes().is_some() {
            let e = check_host(|| "a stack".into(), 4 * stack_values(1, 100_000, 1024), "--embed").unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.contains("a stack needs 160") && msg.contains("GB of host memory") && msg.contains("--embed"),
                "{msg}"
            );
        }
    }
}
