//! TTL jitter: every TTL a cache writes spread by up to a percentage
//! either way, so that entries written together (a warm-up, a batch, the
//! first requests after a deploy) do not all expire, and reload, together.

use std::time::Duration;

use rand::Rng;

/// The most a TTL may be spread either way, in percent: beyond half, an
/// entry could live for almost nothing.
pub(crate) const MAX_TTL_JITTER: u32 = 50;

/// `ttl` moved by a uniform draw of up to `percent` of it either way
/// (`percent` at most [`MAX_TTL_JITTER`]); zero stays zero (no expiry).
pub(super) fn jitter(ttl: Duration, percent: u32) -> Duration {
    if percent == 0 || ttl.is_zero() {
        return ttl;
    }
    let seconds = ttl.as_secs_f64();
    let spread = seconds * f64::from(percent.min(MAX_TTL_JITTER)) / 100.0;
    let drawn = rand::rng().random_range(-spread..=spread);
    // At most half of the TTL off: always positive and finite.
    Duration::try_from_secs_f64(seconds + drawn).unwrap_or(ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_stay_within_the_spread_and_use_all_of_it() {
        let ttl = Duration::from_secs(1000);
        let draws: Vec<Duration> = (0..2000).map(|_| jitter(ttl, 20)).collect();
        let (low, high) = (Duration::from_secs(800), Duration::from_secs(1200));
        assert!(draws.iter().all(|d| (low..=high).contains(d)), "{draws:?}");
        assert!(
            draws.iter().any(|d| *d < Duration::from_secs(850)),
            "low end unused"
        );
        assert!(
            draws.iter().any(|d| *d > Duration::from_secs(1150)),
            "high end unused"
        );
        let above = draws.iter().filter(|d| **d > ttl).count();
        assert!(
            (800..1200).contains(&above),
            "{above} of 2000 above: not centred"
        );
    }

    #[test]
    fn no_jitter_and_no_expiry_stay_as_they_are() {
        assert_eq!(jitter(Duration::from_secs(60), 0), Duration::from_secs(60));
        assert_eq!(jitter(Duration::ZERO, 50), Duration::ZERO);
        let capped = jitter(Duration::from_secs(100), 90);
        assert!(capped >= Duration::from_secs(50) && capped <= Duration::from_secs(150));
    }
}
