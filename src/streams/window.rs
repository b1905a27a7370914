//! Window specifications for windowed aggregations and stream-stream joins, and the windowed
//! key type their results carry (Kafka's `TimeWindows`, `SlidingWindows`, `SessionWindows`,
//! `JoinWindows`, `Window`, `Windowed`, `TimeWindowedSerde`, `EmitStrategy`).
//!
//! All times are event time: record timestamps in milliseconds since the Unix epoch.
//!
//! | spec | windows of a record at `t` | window bounds | closed when |
//! |---|---|---|---|
//! | [`TimeWindows`] (tumbling: hop = size) | every `[s, s + size)` with `s` a multiple of the hop, `s >= 0`, `s <= t < s + size` | end exclusive | `end + grace <= stream time` |
//! | [`SlidingWindows`] | `[t - diff, t]` and `[t + 1, t + 1 + diff]` (when it holds a record) | both inclusive | `end + grace < stream time` |
//! | [`SessionWindows`] | the session of its key that it extends or merges, `[first, last]` | both inclusive | a record is late when its session would end before `stream time - grace`; a session is final when `end + gap + grace < stream time` |
//!
//! Stream time is the largest timestamp the aggregation has seen. A record that would only
//! land in closed windows is dropped and counted in
//! [`TaskMetrics::dropped_late`](crate::TaskMetrics) (once per closed window it misses, as
//! Kafka's `dropped-records` sensor counts).
//!
//! # Windowed keys on the wire
//!
//! [`WindowedCodec`] writes a [`Windowed`] key as Kafka's `TimeWindowedSerializer` does, and
//! [`SessionWindowedCodec`] as Kafka's `SessionWindowedSerializer`:
//!
//! ```text
//! time window:    | inner key bytes (n) | window start (i64 BE, 8) |
//! session window: | inner key bytes (n) | window end (i64 BE, 8) | window start (i64 BE, 8) |
//! ```
//!
//! A time window's end is not written: the decoder is told the window size (as Kafka's
//! `TimeWindowedDeserializer` is) and computes `end = start + size`.

use std::fmt;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::{CodecError, Deserializer, Serializer};
use crate::error::{Error, Result};

/// A duration as whole milliseconds, refusing what `i64` cannot hold.
pub(crate) fn millis(what: &str, duration: Duration) -> Result<i64> {
    i64::try_from(duration.as_millis()).map_err(|_| {
        Error::InvalidArgument(format!("{what} of {duration:?} is too large (max i64 ms)"))
    })
}

/// Tumbling or hopping time windows of a fixed size (Kafka's `TimeWindows`).
///
/// Windows are aligned to the epoch: `[k * hop, k * hop + size)`. A tumbling window has
/// `hop == size` (each record is in exactly one window); [`advance_by`](Self::advance_by) makes
/// hopping windows, which overlap (a record is in `size / hop` windows).
///
/// ```
/// use std::time::Duration;
/// use tidelog::TimeWindows;
///
/// let minutes = TimeWindows::of_size_with_grace(Duration::from_secs(60), Duration::from_secs(10))?;
/// assert_eq!(minutes.size_ms(), 60_000);
/// let hopping = minutes.advance_by(Duration::from_secs(20))?;
/// let starts: Vec<i64> = hopping.windows_for(65_000).iter().map(|w| w.start).collect();
/// assert_eq!(starts, [20_000, 40_000, 60_000]);
/// assert!(TimeWindows::of_size_no_grace(Duration::ZERO).is_err());
/// # Ok::<(), tidelog::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeWindows {
    size: i64,
    advance: i64,
    grace: i64,
}

impl TimeWindows {
    /// Tumbling windows of `size`, accepting records up to `grace` after a window ends.
    pub fn of_size_with_grace(size: Duration, grace: Duration) -> Result<Self> {
        let size_ms = millis("a window size", size)?;
        let grace_ms = millis("a grace period", grace)?;
        if size_ms < 1 {
            return Err(Error::InvalidArgument(
                "a time window's size must be at least 1 ms".into(),
            ));
        }
        Ok(TimeWindows {
            size: size_ms,
            advance: size_ms,
            grace: grace_ms,
        })
    }

    /// Tumbling windows of `size` without grace: a record is late as soon as stream time has
    /// passed the end of its window.
    pub fn of_size_no_grace(size: Duration) -> Result<Self> {
        Self::of_size_with_grace(size, Duration::ZERO)
    }

    /// Hopping windows: a new window starts every `hop` (`1 ms <= hop <= size`).
    pub fn advance_by(self, hop: Duration) -> Result<Self> {
        let advance_ms = millis("a window advance", hop)?;
        if advance_ms < 1 || advance_ms > self.size {
            return Err(Error::InvalidArgument(format!(
                "a window's advance must be between 1 ms and its size ({} ms), not {advance_ms} ms",
                self.size
            )));
        }
        Ok(TimeWindows {
            advance: advance_ms,
            ..self
        })
    }

    /// Window size in milliseconds.
    pub fn size_ms(&self) -> i64 {
        self.size
    }

    /// Advance (hop) in milliseconds; equal to the size for tumbling windows.
    pub fn advance_ms(&self) -> i64 {
        self.advance
    }

    /// Grace period in milliseconds.
    pub fn grace_ms(&self) -> i64 {
        self.grace
    }

    /// The windows a record at `timestamp` belongs to, oldest first (none for a negative
    /// timestamp: windows start at 0, as in Kafka).
    pub fn windows_for(&self, timestamp: i64) -> Vec<Window> {
        let mut windows = Vec::new();
        if timestamp < 0 {
            return windows;
        }
        let first = timestamp
            .saturating_sub(self.size)
            .saturating_add(self.advance)
            .max(0);
        let mut start = first - first % self.advance;
        while start <= timestamp {
            windows.push(Window::new(start, start.saturating_add(self.size)));
            // Near i64::MAX the next start does not exist: stop rather than loop at the limit.
            match start.checked_add(self.advance) {
                Some(next) => start = next,
                None => break,
            }
        }
        windows
    }
}

/// Sliding windows (Kafka's `SlidingWindows`): windows of a fixed time difference whose bounds
/// are set by the records themselves, both ends inclusive. For each record at `t` there is a
/// window `[t - diff, t]` (records before it) and, when a later record is within `diff` of it,
/// `[t + 1, t + 1 + diff]` (records after it); each distinct set of records within `diff` of
/// each other gets one window. Records earlier than `diff` share the window `[0, diff]`.
///
/// ```
/// use std::time::Duration;
/// use tidelog::SlidingWindows;
/// let w = SlidingWindows::of_time_difference_with_grace(Duration::from_secs(5), Duration::ZERO)?;
/// assert_eq!(w.time_difference_ms(), 5_000);
/// # Ok::<(), tidelog::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SlidingWindows {
    diff_ms: i64,
    grace_ms: i64,
}

impl SlidingWindows {
    /// Windows of `time_difference`, accepting records up to `grace` after a window ends.
    pub fn of_time_difference_with_grace(
        time_difference: Duration,
        grace: Duration,
    ) -> Result<Self> {
        let diff_ms = millis("a time difference", time_difference)?;
        let grace_ms = millis("a grace period", grace)?;
        if diff_ms < 1 {
            return Err(Error::InvalidArgument(
                "a sliding window's time difference must be at least 1 ms".into(),
            ));
        }
        Ok(SlidingWindows { diff_ms, grace_ms })
    }

    /// Windows of `time_difference` without grace.
    pub fn of_time_difference_without_grace(time_difference: Duration) -> Result<Self> {
        Self::of_time_difference_with_grace(time_difference, Duration::ZERO)
    }

    /// The time difference in milliseconds (a window is `[start, start + diff]`).
    pub fn time_difference_ms(&self) -> i64 {
        self.diff_ms
    }

    /// Grace period in milliseconds.
    pub fn grace_ms(&self) -> i64 {
        self.grace_ms
    }
}

/// Session windows (Kafka's `SessionWindows`): a key's records closer than the inactivity gap
/// to each other form one session `[first timestamp, last timestamp]`; a record between two
/// sessions within the gap of both merges them.
///
/// ```
/// use std::time::Duration;
/// use tidelog::SessionWindows;
/// let s = SessionWindows::of_inactivity_gap_with_grace(Duration::from_secs(30), Duration::from_secs(5))?;
/// assert_eq!((s.inactivity_gap_ms(), s.grace_ms()), (30_000, 5_000));
/// # Ok::<(), tidelog::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionWindows {
    gap_ms: i64,
    grace_ms: i64,
}

impl SessionWindows {
    /// Sessions separated by more than `gap` of inactivity, accepting records up to `grace`
    /// after a session ends.
    pub fn of_inactivity_gap_with_grace(gap: Duration, grace: Duration) -> Result<Self> {
        let gap_ms = millis("an inactivity gap", gap)?;
        let grace_ms = millis("a grace period", grace)?;
        if gap_ms < 1 {
            return Err(Error::InvalidArgument(
                "a session's inactivity gap must be at least 1 ms".into(),
            ));
        }
        Ok(SessionWindows { gap_ms, grace_ms })
    }

    /// Sessions without grace.
    pub fn of_inactivity_gap_with_no_grace(gap: Duration) -> Result<Self> {
        Self::of_inactivity_gap_with_grace(gap, Duration::ZERO)
    }

    /// The inactivity gap in milliseconds.
    pub fn inactivity_gap_ms(&self) -> i64 {
        self.gap_ms
    }

    /// Grace period in milliseconds.
    pub fn grace_ms(&self) -> i64 {
        self.grace_ms
    }
}

/// The window of a stream-stream join (Kafka's `JoinWindows`): a record at `t` of the left
/// stream joins the right stream's records with timestamps in `[t - before, t + after]`
/// (symmetric, `before == after == difference`, unless set apart with
/// [`before`](Self::before) and [`after`](Self::after)).
///
/// ```
/// use std::time::Duration;
/// use tidelog::JoinWindows;
/// let w = JoinWindows::of_time_difference_with_grace(Duration::from_secs(10), Duration::from_secs(2))?
///     .after(Duration::from_secs(30))?;
/// assert_eq!((w.before_ms(), w.after_ms(), w.grace_ms()), (10_000, 30_000, 2_000));
/// # Ok::<(), tidelog::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JoinWindows {
    before: i64,
    after: i64,
    grace: i64,
}

impl JoinWindows {
    /// Records join when their timestamps differ by at most `difference`; a record is accepted
    /// up to `grace` after its window with the other stream has passed.
    pub fn of_time_difference_with_grace(difference: Duration, grace: Duration) -> Result<Self> {
        let diff = millis("a join time difference", difference)?;
        let grace_ms = millis("a grace period", grace)?;
        Ok(JoinWindows {
            before: diff,
            after: diff,
            grace: grace_ms,
        })
    }

    /// As [`of_time_difference_with_grace`](Self::of_time_difference_with_grace) without grace.
    pub fn of_time_difference_without_grace(difference: Duration) -> Result<Self> {
        Self::of_time_difference_with_grace(difference, Duration::ZERO)
    }

    /// How far before a left record a right record may be.
    pub fn before(self, before: Duration) -> Result<Self> {
        Ok(JoinWindows {
            before: millis("a join window's before", before)?,
            ..self
        })
    }

    /// How far after a left record a right record may be.
    pub fn after(self, after: Duration) -> Result<Self> {
        Ok(JoinWindows {
            after: millis("a join window's after", after)?,
            ..self
        })
    }

    /// Milliseconds a right record may precede a left record.
    pub fn before_ms(&self) -> i64 {
        self.before
    }

    /// Milliseconds a right record may follow a left record.
    pub fn after_ms(&self) -> i64 {
        self.after
    }

    /// Grace period in milliseconds.
    pub fn grace_ms(&self) -> i64 {
        self.grace
    }
}

/// When a windowed aggregation forwards its results (Kafka 3.3's `EmitStrategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum EmitStrategy {
    /// Every update of a window is forwarded as it happens (the default).
    #[default]
    OnWindowUpdate,
    /// Each window's final result is forwarded once, when stream time passes the window's end
    /// plus grace (Kafka's `onWindowClose`); nothing is forwarded before.
    OnWindowClose,
}

/// A window's bounds in milliseconds (Kafka's `Window`). For time windows `end` is exclusive;
/// for sliding and session windows it is inclusive, as in Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Window {
    /// First millisecond of the window.
    pub start: i64,
    /// Its end (exclusive for time windows, inclusive for sliding and session windows).
    pub end: i64,
}

impl Window {
    /// A window `start..end`.
    pub fn new(start: i64, end: i64) -> Self {
        Window { start, end }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {}]", self.start, self.end)
    }
}

/// A key with the window its value belongs to: the key of a windowed aggregation's table
/// (Kafka's `Windowed<K>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Windowed<K> {
    /// The record key.
    pub key: K,
    /// The window.
    pub window: Window,
}

impl<K> Windowed<K> {
    /// `key` in `window`.
    pub fn new(key: K, window: Window) -> Self {
        Windowed { key, window }
    }
}

impl<K: fmt::Display> fmt::Display for Windowed<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.key, self.window)
    }
}

fn split_suffix<'a>(
    bytes: &'a Bytes,
    suffix: usize,
    codec: &'static str,
) -> std::result::Result<(Bytes, &'a [u8]), CodecError> {
    if bytes.len() < suffix {
        return Err(CodecError::decode(
            codec,
            format!(
                "{} bytes cannot hold a windowed key ({suffix} bytes of window at least)",
                bytes.len()
            ),
        ));
    }
    let at = bytes.len() - suffix;
    Ok((bytes.slice(..at), &bytes[at..]))
}

fn be_i64(bytes: &[u8]) -> i64 {
    let mut buf = [0u8; 8];
    buf.copy_from_slice(&bytes[..8]);
    i64::from_be_bytes(buf)
}

/// Encodes a time-windowed key as Kafka's `TimeWindowedSerializer` does: inner key bytes, then
/// the window start as 8 bytes big-endian. Decoding needs the window size (the end is not
/// written); [`WindowedCodec::new`] takes it.
///
/// ```
/// use std::time::Duration;
/// use tidelog::{Deserializer, Serializer, StringCodec, Window, Windowed, WindowedCodec};
///
/// let codec = WindowedCodec::new(StringCodec, Duration::from_secs(60));
/// let key = Windowed::new("alice".to_string(), Window::new(60_000, 120_000));
/// let bytes = codec.encode(&key)?;
/// assert_eq!(&bytes[..5], b"alice");
/// assert_eq!(&bytes[5..], &60_000i64.to_be_bytes());
/// assert_eq!(codec.decode(&bytes)?, key);
/// # Ok::<(), tidelog::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct WindowedCodec<C> {
    inner: C,
    size_ms: i64,
}

impl<C> WindowedCodec<C> {
    /// Keys encoded with `inner`, windows of `size` (sizes beyond `i64::MAX` ms are taken as
    /// unbounded, Kafka's default for a deserializer without a size).
    pub fn new(inner: C, size: Duration) -> Self {
        WindowedCodec {
            inner,
            size_ms: i64::try_from(size.as_millis()).unwrap_or(i64::MAX),
        }
    }

    pub(crate) fn with_size_ms(inner: C, size_ms: i64) -> Self {
        WindowedCodec { inner, size_ms }
    }
}

impl<K, C: Serializer<K>> Serializer<Windowed<K>> for WindowedCodec<C> {
    fn encode(&self, value: &Windowed<K>) -> std::result::Result<Bytes, CodecError> {
        let key = self.inner.encode(&value.key)?;
        let mut buf = BytesMut::with_capacity(key.len() + 8);
        buf.put_slice(&key);
        buf.put_i64(value.window.start);
        Ok(buf.freeze())
    }
}

impl<K, C: Deserializer<K>> Deserializer<Windowed<K>> for WindowedCodec<C> {
    fn decode(&self, bytes: &Bytes) -> std::result::Result<Windowed<K>, CodecError> {
        let (key, window) = split_suffix(bytes, 8, "windowed")?;
        let start = be_i64(window);
        Ok(Windowed::new(
            self.inner.decode(&key)?,
            Window::new(start, start.saturating_add(self.size_ms)),
        ))
    }
}

/// Encodes a session-windowed key as Kafka's `SessionWindowedSerializer` does: inner key bytes,
/// the session's end, then its start, each 8 bytes big-endian.
///
/// ```
/// use tidelog::{Deserializer, Serializer, SessionWindowedCodec, StringCodec, Window, Windowed};
/// let codec = SessionWindowedCodec::new(StringCodec);
/// let key = Windowed::new("bob".to_string(), Window::new(10, 25));
/// let bytes = codec.encode(&key)?;
/// assert_eq!(bytes.len(), 3 + 16);
/// assert_eq!(codec.decode(&bytes)?, key);
/// # Ok::<(), tidelog::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct SessionWindowedCodec<C> {
    inner: C,
}

impl<C> SessionWindowedCodec<C> {
    /// Keys encoded with `inner`.
    pub fn new(inner: C) -> Self {
        SessionWindowedCodec { inner }
    }
}

impl<K, C: Serializer<K>> Serializer<Windowed<K>> for SessionWindowedCodec<C> {
    fn encode(&self, value: &Windowed<K>) -> std::result::Result<Bytes, CodecError> {
        let key = self.inner.encode(&value.key)?;
        let mut buf = BytesMut::with_capacity(key.len() + 16);
        buf.put_slice(&key);
        buf.put_i64(value.window.end);
        buf.put_i64(value.window.start);
        Ok(buf.freeze())
    }
}

impl<K, C: Deserializer<K>> Deserializer<Windowed<K>> for SessionWindowedCodec<C> {
    fn decode(&self, bytes: &Bytes) -> std::result::Result<Windowed<K>, CodecError> {
        let (key, window) = split_suffix(bytes, 16, "session-windowed")?;
        let (end, start) = (be_i64(&window[..8]), be_i64(&window[8..]));
        Ok(Windowed::new(
            self.inner.decode(&key)?,
            Window::new(start, end),
        ))
    }
}

/// A shared codec as a plain codec value (for wrapping in [`WindowedCodec`]).
pub(crate) struct SharedCodec<T>(pub(crate) crate::streams::codec::CodecRef<T>);

impl<T> Serializer<T> for SharedCodec<T> {
    fn encode(&self, value: &T) -> std::result::Result<Bytes, CodecError> {
        self.0.encode(value)
    }
}

impl<T> Deserializer<T> for SharedCodec<T> {
    fn decode(&self, bytes: &Bytes) -> std::result::Result<T, CodecError> {
        self.0.decode(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::StringCodec;

    #[test]
    fn tumbling_and_hopping_windows() {
        let t = TimeWindows::of_size_no_grace(Duration::from_millis(10)).unwrap();
        assert_eq!(t.windows_for(0), vec![Window::new(0, 10)]);
        assert_eq!(t.windows_for(19), vec![Window::new(10, 20)]);
        assert!(t.windows_for(-1).is_empty());
        let h = t.advance_by(Duration::from_millis(3)).unwrap();
        assert_eq!(
            h.windows_for(10)
                .iter()
                .map(|w| w.start)
                .collect::<Vec<_>>(),
            [3, 6, 9]
        );
        assert_eq!(
            h.windows_for(1).iter().map(|w| w.start).collect::<Vec<_>>(),
            [0]
        );
        assert!(t.advance_by(Duration::from_millis(11)).is_err());
        assert!(t.advance_by(Duration::ZERO).is_err());
        assert!(TimeWindows::of_size_no_grace(Duration::MAX).is_err());
    }

    #[test]
    fn codecs_refuse_short_input() {
        let c = WindowedCodec::new(StringCodec, Duration::from_millis(5));
        assert!(Deserializer::<Windowed<String>>::decode(&c, &Bytes::from_static(b"abc")).is_err());
        let s = SessionWindowedCodec::new(StringCodec);
        assert!(
            Deserializer::<Windowed<String>>::decode(&s, &Bytes::from_static(&[0; 15])).is_err()
        );
        let w: Windowed<String> = c.decode(&Bytes::from_static(&[0; 8])).unwrap();
        assert_eq!(w, Windowed::new(String::new(), Window::new(0, 5)));
    }
}
