//! A cheap wall clock for stamping records.
//!
//! It lives in the storage layer because it needs one `unsafe` call (DESIGN.md keeps `unsafe` in
//! this layer).

use crate::record::now_ms;

/// Milliseconds since the Unix epoch from the kernel's coarse real-time clock: a few nanoseconds
/// instead of a few tens, at the price of lagging the precise time by up to one clock tick (a few
/// milliseconds), never running ahead. The producer stamps every record it sends with it; reading
/// the precise clock cost about an eighth of a producer thread's time. Elsewhere than Linux, or if
/// the call fails, it is the precise clock.
pub(crate) fn coarse_now_ms() -> i64 {
    #[cfg(target_os = "linux")]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; clock_gettime writes only to it.
        if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &raw mut ts) } == 0 {
            #[allow(clippy::useless_conversion)] // time_t is i32 on some targets
            let (secs, nanos) = (i64::from(ts.tv_sec), i64::from(ts.tv_nsec));
            if secs >= 0 {
                return secs.saturating_mul(1000) + nanos / 1_000_000;
            }
        }
    }
    now_ms()
}

#[cfg(test)]
mod tests {
    #[test]
    fn coarse_clock_is_close_to_the_precise_one() {
        let precise = crate::record::now_ms();
        let coarse = super::coarse_now_ms();
        assert!((precise - coarse).abs() < 1_000, "{precise} vs {coarse}");
    }
}
