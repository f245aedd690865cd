//! Byte sizes on the command line: `16G`, `15.5GiB`, `12000M`, `800MB`, `1073741824`.
//! Units are binary (K = KiB = 1024) whether or not the `i` is written, as GPU memory is
//! quoted that way ("a 16 GB card" has 16 GiB).

/// Why a size argument was rejected.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SizeArgError {
    #[error("empty size: expected e.g. 16G, 15.5GiB or 12000M")]
    Empty,
    #[error("{0:?}: expected a number with an optional unit (B, K, M, G, T; KiB/KB etc. accepted), e.g. 16G, 15.5GiB or 12000M")]
    Malformed(String),
    #[error("{0:?}: unknown unit {1:?} (use B, K, M, G or T, optionally followed by iB or B)")]
    UnknownUnit(String, String),
    #[error("{0:?}: a size must be positive")]
    NotPositive(String),
    #[error("{0:?}: too large")]
    TooLarge(String),
}

/// Parses a size in bytes (binary units; see the module docs).
pub fn parse_size(s: &str) -> Result<u64, SizeArgError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(SizeArgError::Empty);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim();
    if num.is_empty() || num.matches('.').count() > 1 || num == "." {
        return Err(SizeArgError::Malformed(s.to_owned()));
    }
    let value: f64 = num
        .parse()
        .map_err(|_| SizeArgError::Malformed(s.to_owned()))?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(SizeArgError::UnknownUnit(s.to_owned(), unit.to_owned())),
    };
    let bytes = value * (1u64 << shift) as f64;
    if bytes < 1.0 {
        return Err(SizeArgError::NotPositive(s.to_owned()));
    }
    if bytes >= u64::MAX as f64 {
        return Err(SizeArgError::TooLarge(s.to_owned()));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_with_binary_units_parse_to_bytes() {
        assert_eq!(parse_size("16G"), Ok(16 << 30));
        assert_eq!(parse_size("15.5GiB"), Ok(31 << 29));
        assert_eq!(parse_size("12000M"), Ok(12000 << 20));
        assert_eq!(parse_size("800mb"), Ok(800 << 20));
        assert_eq!(parse_size(" 4096 "), Ok(4096));
        assert_eq!(parse_size("1 TiB"), Ok(1 << 40));
        assert_eq!(parse_size("2k"), Ok(2048));
    }

    #[test]
    fn nonsense_sizes_are_rejected_with_the_reason() {
        assert_eq!(parse_size(""), Err(SizeArgError::Empty));
        assert!(matches!(parse_size("G"), Err(SizeArgError::Malformed(_))));
        assert!(matches!(
            parse_size("1.2.3G"),
            Err(SizeArgError::Malformed(_))
        ));
        assert!(matches!(parse_size("-1G"), Err(SizeArgError::Malformed(_))));
        assert!(matches!(
            parse_size("16 parsecs"),
            Err(SizeArgError::UnknownUnit(_, _))
        ));
        assert!(matches!(
            parse_size("0G"),
            Err(SizeArgError::NotPositive(_))
        ));
        assert!(matches!(
            parse_size("99999999999T"),
            Err(SizeArgError::TooLarge(_))
        ));
        let msg = parse_size("16 parsecs").unwrap_err().to_string();
        assert!(msg.contains("unknown unit"), "{msg}");
    }
}
