//! Byte sizes as people write them ("512M", "20G", "1.5T", "4096") and as altdisk prints
//! them. Units are binary (K = 1024), as in lsblk and sfdisk.

use crate::error::{Error, Result};

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;
pub const GIB: u64 = 1024 * MIB;
pub const TIB: u64 = 1024 * GIB;

/// Parse "4096", "512K", "512M", "20G", "1.5T", "20GiB" (case-insensitive, optional "iB"/"B").
pub fn parse(s: &str) -> Result<u64> {
    let t = s.trim();
    let bad = || {
        Error::usage(
            format!("size `{s}`"),
            "it is not a size",
            "write a number with an optional unit: 4096, 512M, 20G, 1.5T",
        )
    };
    let lower = t.to_ascii_lowercase();
    let lower = lower.strip_suffix("ib").or_else(|| lower.strip_suffix('b')).unwrap_or(&lower);
    let (num, mult) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], KIB),
        Some('m') => (&lower[..lower.len() - 1], MIB),
        Some('g') => (&lower[..lower.len() - 1], GIB),
        Some('t') => (&lower[..lower.len() - 1], TIB),
        Some(c) if c.is_ascii_digit() => (lower, 1),
        _ => return Err(bad()),
    };
    let num = num.trim();
    if num.is_empty() {
        return Err(bad());
    }
    if let Ok(n) = num.parse::<u64>() {
        return n.checked_mul(mult).ok_or_else(bad);
    }
    let f: f64 = num.parse().map_err(|_| bad())?;
    if !f.is_finite() || f < 0.0 {
        return Err(bad());
    }
    Ok((f * mult as f64) as u64)
}

/// "1.5G", "300M", "4.0K", "512B".
pub fn human(bytes: u64) -> String {
    let units = [(TIB, "T"), (GIB, "G"), (MIB, "M"), (KIB, "K")];
    for (u, name) in units {
        if bytes >= u {
            let v = bytes as f64 / u as f64;
            return if v >= 100.0 { format!("{v:.0}{name}") } else { format!("{v:.1}{name}") };
        }
    }
    format!("{bytes}B")
}

pub fn round_up(v: u64, align: u64) -> u64 {
    v.div_ceil(align) * align
}

pub fn round_down(v: u64, align: u64) -> u64 {
    v / align * align
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse("4096").unwrap(), 4096);
        assert_eq!(parse("512K").unwrap(), 512 * KIB);
        assert_eq!(parse("512m").unwrap(), 512 * MIB);
        assert_eq!(parse("20G").unwrap(), 20 * GIB);
        assert_eq!(parse("20GiB").unwrap(), 20 * GIB);
        assert_eq!(parse("1.5T").unwrap(), TIB + TIB / 2);
        assert_eq!(parse(" 2g ").unwrap(), 2 * GIB);
    }

    #[test]
    fn rejects_nonsense() {
        for s in ["", "G", "-1G", "ten", "1.2.3M", "5X"] {
            assert!(parse(s).is_err(), "{s}");
        }
    }

    #[test]
    fn prints_human() {
        assert_eq!(human(512), "512B");
        assert_eq!(human(1536 * MIB), "1.5G");
        assert_eq!(human(300 * MIB), "300M");
    }
}
