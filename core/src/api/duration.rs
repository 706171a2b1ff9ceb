//! Go's `time.ParseDuration` grammar, strictly: Flagger's YAML is written in it (`30s`, `1m30s`,
//! `1.5h`), and a value Go would reject must be rejected here too rather than silently defaulted.

use jiff::SignedDuration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {value:?}: {reason}")]
pub struct DurationError {
    pub value: String,
    pub reason: &'static str,
}

/// Parses `[-+]?([0-9]*(\.[0-9]*)?(ns|us|µs|μs|ms|s|m|h))+` or a bare `0`.
pub fn parse_go_duration(input: &str) -> Result<SignedDuration, DurationError> {
    let err = |reason| DurationError {
        value: input.to_string(),
        reason,
    };
    let (negative, mut rest) = match input.as_bytes().first() {
        Some(b'-') => (true, &input[1..]),
        Some(b'+') => (false, &input[1..]),
        _ => (false, input),
    };
    if rest == "0" {
        return Ok(SignedDuration::ZERO);
    }
    if rest.is_empty() {
        return Err(err("empty"));
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after_int) = rest.split_at(int_len);
        let (frac_part, after_num) = match after_int.strip_prefix('.') {
            Some(f) => {
                let n = f.bytes().take_while(u8::is_ascii_digit).count();
                f.split_at(n)
            }
            None => ("", after_int),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(err("expected a number"));
        }
        let unit_len = after_num
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(after_num.len(), |(i, _)| i);
        let (unit, next) = after_num.split_at(unit_len);
        let nanos_per_unit: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(err("missing unit")),
            _ => return Err(err("unknown unit")),
        };
        let int_value: i128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| err("number too large"))?
        };
        let mut nanos = int_value
            .checked_mul(nanos_per_unit)
            .ok_or_else(|| err("overflow"))?;
        // Fractions are scaled digit by digit so that `1.5h` is exact, as in Go.
        let mut scale = nanos_per_unit;
        for digit in frac_part.bytes().take(18) {
            scale /= 10;
            nanos += i128::from(digit - b'0') * scale;
        }
        total = total.checked_add(nanos).ok_or_else(|| err("overflow"))?;
        if total > i128::from(i64::MAX) {
            return Err(err("overflow"));
        }
        rest = next;
    }
    let total = if negative { -total } else { total };
    let secs = (total / 1_000_000_000) as i64;
    let sub = (total % 1_000_000_000) as i32;
    Ok(SignedDuration::new(secs, sub))
}

/// Formats like Go's `Duration.String()` for whole seconds and above (`1m30s`, `2h0m0s`),
/// so event texts and the replay timeline read the way Flagger prints durations.
pub fn format_go_duration(d: SignedDuration) -> String {
    let negative = d.is_negative();
    let d = d.abs();
    let total_ms = d.as_millis();
    if total_ms == 0 {
        return "0s".to_string();
    }
    let sign = if negative { "-" } else { "" };
    if total_ms < 1000 {
        return format!("{sign}{total_ms}ms");
    }
    let secs = d.as_secs();
    let millis = d.subsec_millis();
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let s_text = if millis == 0 {
        format!("{s}s")
    } else {
        let frac = format!("{millis:03}");
        format!("{s}.{}s", frac.trim_end_matches('0'))
    };
    if h > 0 {
        format!("{sign}{h}h{m}m{s_text}")
    } else if m > 0 {
        format!("{sign}{m}m{s_text}")
    } else {
        format!("{sign}{s_text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: i64) -> SignedDuration {
        SignedDuration::from_secs(s)
    }

    #[test]
    fn accepts_what_go_accepts() {
        assert_eq!(parse_go_duration("30s"), Ok(secs(30)));
        assert_eq!(parse_go_duration("1m"), Ok(secs(60)));
        assert_eq!(parse_go_duration("1m30s"), Ok(secs(90)));
        assert_eq!(parse_go_duration("1.5h"), Ok(secs(5400)));
        assert_eq!(parse_go_duration("2h45m"), Ok(secs(9900)));
        assert_eq!(
            parse_go_duration("300ms"),
            Ok(SignedDuration::from_millis(300))
        );
        assert_eq!(parse_go_duration("1µs"), Ok(SignedDuration::from_micros(1)));
        assert_eq!(parse_go_duration("-1.5h"), Ok(secs(-5400)));
        assert_eq!(parse_go_duration("0"), Ok(SignedDuration::ZERO));
        assert_eq!(
            parse_go_duration(".5s"),
            Ok(SignedDuration::from_millis(500))
        );
    }

    #[test]
    fn rejects_what_go_rejects() {
        for bad in [
            "", "1", "1d", "1M", "10 hours", "1h 30m", "s", ".s", "1.5", "-", "1x", "3000000h",
        ] {
            assert!(
                parse_go_duration(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format_go_duration(secs(90)), "1m30s");
        assert_eq!(format_go_duration(secs(60)), "1m0s");
        assert_eq!(format_go_duration(secs(7200)), "2h0m0s");
        assert_eq!(format_go_duration(secs(5)), "5s");
        assert_eq!(
            format_go_duration(SignedDuration::from_millis(1500)),
            "1.5s"
        );
        assert_eq!(
            format_go_duration(SignedDuration::from_millis(250)),
            "250ms"
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,12}") {
            let _ = parse_go_duration(&s);
        }

        #[test]
        fn roundtrips_whole_seconds(n in 0i64..1_000_000) {
            prop_assert_eq!(parse_go_duration(&format_go_duration(secs(n))), Ok(secs(n)));
        }
    }
    use proptest::prop_assert_eq;
}
