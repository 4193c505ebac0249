//! How numbers, times and names read in the window: sizes in binary units (as lsblk shows
//! them), rates, time left, dates without seconds, and a disk's one-line name. Pure
//! functions, unit-tested.

use altdisk_api::DiskDetail;

/// "465.8 GiB", "512 MiB", "0 B".
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else if v >= 100.0 || (v - v.round()).abs() < 0.05 {
        format!("{:.0} {}", v, UNITS[u])
    } else {
        format!("{:.1} {}", v, UNITS[u])
    }
}

/// "412 MiB/s".
pub fn rate(bytes_per_second: u64) -> String {
    format!("{}/s", bytes(bytes_per_second))
}

/// "45 s", "3 min 05 s", "2 h 10 min".
pub fn duration(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs} s"),
        60..=3599 => format!("{} min {:02} s", secs / 60, secs % 60),
        _ => format!("{} h {:02} min", secs / 3600, (secs % 3600) / 60),
    }
}

/// Time left at the current rate, when it can be told.
pub fn time_left(done: u64, total: u64, rate: u64) -> Option<String> {
    if rate == 0 || total == 0 || done >= total {
        return None;
    }
    Some(duration((total - done).div_ceil(rate)))
}

/// An RFC 3339 time as "2025-11-20 22:05 UTC" (or as given, when it does not parse).
pub fn date(rfc3339: &str) -> String {
    let s = rfc3339.trim();
    if s.len() >= 16 && s.as_bytes().get(10) == Some(&b'T') {
        let zone = if s.ends_with('Z') || s.ends_with("+00:00") { " UTC" } else { "" };
        format!("{} {}{}", &s[..10], &s[11..16], zone)
    } else {
        s.to_string()
    }
}

/// "45 %".
pub fn percent(done: u64, total: u64) -> String {
    if total == 0 {
        return "0 %".into();
    }
    format!("{} %", (done as f64 / total as f64 * 100.0).floor() as u64)
}

/// What a user calls a disk: its model and size, then its kernel name ("WDC WDS500G2B0A,
/// 465.8 GiB (sdb)"); a disk without a model is named by its path.
pub fn disk_name(d: &DiskDetail) -> String {
    let model = d.model.trim();
    if model.is_empty() {
        format!("{} ({})", d.path, bytes(d.size))
    } else {
        format!("{model}, {} ({})", bytes(d.size), d.name)
    }
}

/// A disk in a few words, for buttons: "SanDisk Extreme (sdd)", or its path without a model.
pub fn disk_short(d: &DiskDetail) -> String {
    let model = d.model.trim();
    if model.is_empty() {
        d.path.clone()
    } else {
        format!("{model} ({})", d.name)
    }
}

/// The disk's identity for a confirmation: model, serial and name, so the right one is
/// picked even when two are alike.
pub fn disk_identity(d: &DiskDetail) -> String {
    let mut s = if d.model.trim().is_empty() { d.path.clone() } else { d.model.trim().to_string() };
    if !d.serial.is_empty() {
        s.push_str(&format!(", serial {}", d.serial));
    }
    s.push_str(&format!(", {} ({}", bytes(d.size), d.name));
    if !d.alias.is_empty() {
        s.push_str(&format!(", {}", d.alias));
    }
    s.push(')');
    s
}

/// A bus for a card: "NVMe", "SATA", "USB", or what the kernel says.
pub fn bus(d: &DiskDetail) -> String {
    match d.bus.as_str() {
        "nvme" => "NVMe".into(),
        "sata" | "ata" => "SATA".into(),
        "usb" => "USB".into(),
        "scsi" | "sas" => "SAS/SCSI".into(),
        "virtio" => "virtio".into(),
        "" if d.loop_device => "loop device".into(),
        "" => "virtual".into(),
        other => other.to_string(),
    }
}

/// A size as typed: "20G", "512M", "1.5T", "40 GiB", or bytes. Binary units.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let shift = match unit.trim().to_ascii_uppercase().trim_end_matches("IB").trim_end_matches('B') {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return None,
    };
    let v = n * (1u64 << shift) as f64;
    (v.is_finite() && v >= 1.0 && v < u64::MAX as f64).then_some(v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_lsblk() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(512 << 20), "512 MiB");
        assert_eq!(bytes(500_107_862_016), "466 GiB");
        assert_eq!(bytes(3 << 29), "1.5 GiB");
        assert_eq!(bytes(2_000_398_934_016), "1.8 TiB");
        assert_eq!(rate(400 << 20), "400 MiB/s");
    }

    #[test]
    fn typed_sizes() {
        assert_eq!(parse_size("20G"), Some(20 << 30));
        assert_eq!(parse_size("1.5 TiB"), Some(3 << 39));
        assert_eq!(parse_size("512m"), Some(512 << 20));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("twenty"), None);
        assert_eq!(parse_size("5X"), None);
        assert_eq!(parse_size(""), None);
    }

    #[test]
    fn times_and_dates() {
        assert_eq!(duration(5), "5 s");
        assert_eq!(duration(185), "3 min 05 s");
        assert_eq!(duration(7800), "2 h 10 min");
        assert_eq!(time_left(0, 6 << 30, 3 << 30), Some("2 s".into()));
        assert_eq!(time_left(10, 10, 1), None);
        assert_eq!(time_left(1, 10, 0), None);
        assert_eq!(date("2025-11-20T22:05:41Z"), "2025-11-20 22:05 UTC");
        assert_eq!(date("2025-11-20T22:05:41+01:00"), "2025-11-20 22:05");
        assert_eq!(date("yesterday"), "yesterday");
        assert_eq!(percent(1, 3), "33 %");
    }

    #[test]
    fn disks_are_named_by_model_serial_and_name() {
        let d = DiskDetail {
            name: "sdb".into(),
            alias: "hdisk2".into(),
            path: "/dev/sdb".into(),
            model: "WDC WDS500G2B0A".into(),
            serial: "19106A801234".into(),
            size: 500_107_862_016,
            ..Default::default()
        };
        assert_eq!(disk_name(&d), "WDC WDS500G2B0A, 466 GiB (sdb)");
        assert_eq!(disk_short(&d), "WDC WDS500G2B0A (sdb)");
        assert_eq!(disk_identity(&d), "WDC WDS500G2B0A, serial 19106A801234, 466 GiB (sdb, hdisk2)");
        let loopdev = DiskDetail { path: "/dev/loop3".into(), loop_device: true, size: 1 << 30, ..Default::default() };
        assert_eq!(disk_name(&loopdev), "/dev/loop3 (1 GiB)");
        assert_eq!(disk_short(&loopdev), "/dev/loop3");
        assert_eq!(bus(&loopdev), "loop device");
    }
}
