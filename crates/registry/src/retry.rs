//! Bounded retries with exponential backoff, jitter and `Retry-After`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How temporary failures (429, 500, 502, 503, 504, connection resets,
/// timeouts) are retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per operation, the first one included.
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubled for each further one.
    pub initial_backoff: Duration,
    /// Upper bound of one backoff (and of an honoured `Retry-After`).
    pub max_backoff: Duration,
    /// Upper bound of the time spent on one operation, waits included.
    pub max_total: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(20),
            max_total: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> RetryPolicy {
        RetryPolicy { max_attempts: 1, ..RetryPolicy::default() }
    }

    /// The default bounds with millisecond waits, for tests.
    pub fn fast() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(20),
            max_total: Duration::from_secs(10),
        }
    }

    /// The wait before attempt `attempt + 1` (after `attempt` failures,
    /// counting from 1), honouring a server's `Retry-After`. `None` when the
    /// bound is reached: no attempts left, or the wait would pass
    /// `max_total` given `elapsed`.
    pub fn next_wait(&self, attempt: u32, elapsed: Duration, retry_after: Option<Duration>) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let wait = match retry_after {
            Some(ra) => ra.min(self.max_backoff.max(self.initial_backoff)),
            None => {
                let exp = self.initial_backoff.saturating_mul(1u32 << (attempt - 1).min(16));
                let capped = exp.min(self.max_backoff);
                // Full jitter over the upper half: wait in [capped/2, capped].
                let half = capped / 2;
                half + mul_frac(capped - half, jitter())
            }
        };
        (elapsed + wait <= self.max_total).then_some(wait)
    }
}

fn mul_frac(d: Duration, frac: f64) -> Duration {
    Duration::from_secs_f64(d.as_secs_f64() * frac.clamp(0.0, 1.0))
}

/// A pseudo-random fraction in [0, 1) from the clock and a counter; good
/// enough to spread retries of parallel transfers.
fn jitter() -> f64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos() as u64).unwrap_or(0);
    let mut x = COUNTER.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed) ^ nanos;
    // splitmix64
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether an HTTP status is worth retrying.
pub fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// Parses `Retry-After`: delay seconds or an HTTP date (IMF-fixdate).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = parse_http_date(v)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Parses `Sun, 06 Nov 1994 08:49:37 GMT`.
fn parse_http_date(s: &str) -> Option<SystemTime> {
    let rest = s.split_once(", ")?.1;
    let parts: Vec<&str> = rest.split_whitespace().collect();
    if parts.len() != 5 || parts[4] != "GMT" {
        return None;
    }
    let day: u64 = parts[0].parse().ok()?;
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = MONTHS.iter().position(|m| *m == parts[1])? as u64 + 1;
    let year: u64 = parts[2].parse().ok()?;
    let hms: Vec<u64> = parts[3].split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    if hms.len() != 3 || !(1..=31).contains(&day) || year < 1970 || hms[0] > 23 || hms[1] > 59 || hms[2] > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(UNIX_EPOCH + Duration::from_secs(days * 86400 + hms[0] * 3600 + hms[1] * 60 + hms[2]))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_by_attempts_and_total() {
        let p = RetryPolicy::default();
        for a in 1..5 {
            let w = p.next_wait(a, Duration::ZERO, None).unwrap();
            assert!(w <= p.max_backoff, "{w:?}");
        }
        assert_eq!(p.next_wait(5, Duration::ZERO, None), None);
        assert_eq!(p.next_wait(1, Duration::from_secs(60), None), None);
        assert_eq!(p.next_wait(1, Duration::ZERO, Some(Duration::from_secs(3))), Some(Duration::from_secs(3)));
        assert_eq!(p.next_wait(1, Duration::ZERO, Some(Duration::from_secs(3600))), Some(p.max_backoff));
        assert_eq!(RetryPolicy::none().next_wait(1, Duration::ZERO, None), None);
    }

    #[test]
    fn backoff_grows() {
        let p = RetryPolicy {
            max_backoff: Duration::from_secs(100),
            max_total: Duration::from_secs(1000),
            ..Default::default()
        };
        let w1 = p.next_wait(1, Duration::ZERO, None).unwrap();
        let w4 = p.next_wait(4, Duration::ZERO, None).unwrap();
        assert!(w1 <= Duration::from_millis(500) && w4 >= Duration::from_secs(2), "{w1:?} {w4:?}");
    }

    #[test]
    fn retry_after_forms() {
        let now = UNIX_EPOCH + Duration::from_secs(784111777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now), Some(Duration::from_secs(10)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:27 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(UNIX_EPOCH));
        assert!(retryable_status(503) && retryable_status(429) && !retryable_status(404));
    }
}
