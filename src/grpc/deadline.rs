//! The `grpc-timeout` a caller sends (Envoy: the ext_authz `timeout`), so
//! a Check is answered by the door's fail mode before the caller gives up.

use std::time::Duration;

/// `grpc-timeout`: at most 8 ASCII digits and a unit (H M S m u n).
pub fn parse(v: &str) -> Option<Duration> {
    // The unit is one ASCII byte, so what precedes it is whole characters.
    let unit = *v.as_bytes().last()?;
    if !unit.is_ascii() {
        return None;
    }
    let digits = &v[..v.len() - 1];
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_unit_and_refuses_the_rest() {
        assert_eq!(parse("200m"), Some(Duration::from_millis(200)));
        assert_eq!(parse("1S"), Some(Duration::from_secs(1)));
        assert_eq!(parse("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("5000u"), Some(Duration::from_millis(5)));
        assert_eq!(parse("7n"), Some(Duration::from_nanos(7)));
        for bad in ["", "m", "200", "200x", "-1m", "123456789m", "1.5S", "é"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
