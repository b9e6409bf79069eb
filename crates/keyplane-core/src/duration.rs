//! Durations as people type them on a command line or in a query: a number and one unit, `90s`,
//! `15m`, `8h`, `30d`. One reading for every place that takes one (token TTLs, grants, the audit
//! log's retention), so they accept the same text.

/// `90s`, `15m`, `8h`, `30d` → seconds; `None` for anything else (no sign, no fraction, no
/// combined units, at most nine digits so the product cannot overflow).
pub fn parse_secs(text: &str) -> Option<i64> {
    let unit = text.chars().last()?;
    let number = &text[..text.len() - unit.len_utf8()];
    let unit_secs = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86400,
        _ => return None,
    };
    if number.is_empty() || number.len() > 9 || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(number.parse::<i64>().ok()? * unit_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_and_one_unit() {
        assert_eq!(parse_secs("90s"), Some(90));
        assert_eq!(parse_secs("15m"), Some(900));
        assert_eq!(parse_secs("8h"), Some(28_800));
        assert_eq!(parse_secs("30d"), Some(2_592_000));
        assert_eq!(parse_secs("999999999d"), Some(999_999_999 * 86_400));
        for bad in [
            "",
            "s",
            "1",
            "-1m",
            "+1m",
            "1.5h",
            "1h30m",
            "1w",
            "1 d",
            "1D",
            "1000000000s",
            "１s",
        ] {
            assert_eq!(parse_secs(bad), None, "{bad:?}");
        }
    }
}
