//! The partition bar: a disk drawn to scale, one coloured segment per partition (and per gap
//! of free space), with a legend. Tiny partitions (the 1 MiB altdisk record on a 500 GB
//! disk) get a sliver so they are seen; everything else keeps its true proportion.

use altdisk_api::PartInfo;
use iced::widget::{column, container, row, text, Space};
use iced::{Background, Border, Color, Element, Length, Theme};

use super::{colors, Colors, BAR_HEIGHT, SPACE_S, SPACE_XS, TEXT_S};
use crate::format;

/// The parts of the bar a disk of `size` bytes shows: partitions in order of their start,
/// and the gaps between them (free space) as `None`. Each with its share in thousandths,
/// at least [`MIN_SHARE`] so it can be seen.
pub fn segments(size: u64, parts: &[PartInfo]) -> Vec<(Option<&PartInfo>, u16)> {
    let mut sorted: Vec<&PartInfo> = parts.iter().collect();
    sorted.sort_by_key(|p| p.start);
    // Planned partitions may carry no start: lay them end to end.
    let laid_out = sorted.iter().all(|p| p.start == 0) && sorted.len() > 1;
    let size = size.max(1);
    let share = |bytes: u64| -> u16 {
        let s = (bytes as f64 / size as f64 * 1000.0).round() as u64;
        s.clamp(MIN_SHARE as u64, 1000) as u16
    };
    let mut out = Vec::new();
    let mut at = 0;
    for p in sorted {
        let start = if laid_out { at } else { p.start };
        if start > at && (start - at) * 200 > size {
            out.push((None, share(start - at)));
        }
        out.push((Some(p), share(p.size)));
        at = start + p.size;
    }
    if size > at && (size - at) * 200 > size {
        out.push((None, share(size - at)));
    }
    if out.is_empty() {
        out.push((None, 1000));
    }
    out
}

/// The smallest share a segment gets, in thousandths of the bar.
pub const MIN_SHARE: u16 = 6;

/// The colour of a partition by what it holds.
pub fn part_color(c: &Colors, p: &PartInfo) -> Color {
    let rgb = |hex: u32| Color::from_rgb8((hex >> 16) as u8, (hex >> 8) as u8, hex as u8);
    let meta = p.role == "meta" || p.name == "altdisk-meta";
    let hex = if meta {
        0x6b7a90
    } else if p.role == "bios-boot" || p.name.eq_ignore_ascii_case("BIOS boot partition") {
        0x8a8f98
    } else {
        match p.fstype.as_str() {
            "vfat" | "fat32" | "fat16" => 0xd99a2b,
            "swap" => 0xc4677a,
            "LVM2_member" => 0x4f9d69,
            "xfs" => 0x2b9aa3,
            "btrfs" => 0x8a63c9,
            "ext4" | "ext3" | "ext2" => 0x3b7ddd,
            _ if p.role == "lvm-pv" => 0x4f9d69,
            _ if p.role == "swap" => 0xc4677a,
            _ => 0x9aa1ab,
        }
    };
    let col = rgb(hex);
    if c.dark {
        Color::from_rgb(col.r * 0.9 + 0.08, col.g * 0.9 + 0.08, col.b * 0.9 + 0.08)
    } else {
        col
    }
}

/// A short name for a segment: its mount point, label or filesystem.
pub fn short(p: &PartInfo) -> String {
    if p.role == "meta" || p.name == "altdisk-meta" {
        return "record".into();
    }
    if !p.mountpoint.is_empty() && p.mountpoint != "[SWAP]" {
        return p.mountpoint.clone();
    }
    if p.fstype == "vfat" || p.name == "EFI System Partition" {
        return "ESP".into();
    }
    if !p.label.is_empty() {
        return p.label.clone();
    }
    if !p.fstype.is_empty() {
        return p.fstype.clone();
    }
    p.role.clone()
}

/// The bar alone.
pub fn bar<'a, M: 'a>(size: u64, parts: &'a [PartInfo]) -> Element<'a, M> {
    let mut r = row![].spacing(2).height(Length::Fixed(BAR_HEIGHT));
    for (p, share) in segments(size, parts) {
        let label = match p {
            Some(p) if share >= 110 => short(p),
            None if share >= 110 => "free".into(),
            _ => String::new(),
        };
        let seg =
            container(text(label).size(TEXT_S).color_maybe(p.map(|_| Color::WHITE)).wrapping(text::Wrapping::None))
                .padding([0, 6])
                .center_y(Length::Fill)
                .clip(true)
                .width(Length::FillPortion(share))
                .style(move |t: &Theme| {
                    let c = colors(t);
                    match p {
                        Some(p) => container::Style {
                            background: Some(Background::Color(part_color(&c, p))),
                            border: Border { radius: 4.0.into(), ..Border::default() },
                            ..container::Style::default()
                        },
                        None => container::Style {
                            background: Some(Background::Color(c.surface_alt)),
                            border: Border { color: c.border, width: 1.0, radius: 4.0.into() },
                            text_color: Some(c.muted),
                            ..container::Style::default()
                        },
                    }
                });
        r = r.push(seg);
    }
    r.into()
}

/// One legend line for a partition: what it is, its size, where it is mounted, what is on it.
pub fn describe(p: &PartInfo) -> String {
    let mut bits: Vec<String> = Vec::new();
    if !p.device.is_empty() {
        bits.push(p.device.trim_start_matches("/dev/").to_string());
    } else if p.number > 0 {
        bits.push(format!("#{}", p.number));
    }
    bits.push(format::bytes(p.size));
    let what = match (p.fstype.as_str(), p.role.as_str()) {
        ("", "meta") => "altdisk record".to_string(),
        ("", "bios-boot") => "BIOS boot".to_string(),
        ("", "lvm-pv") => "LVM physical volume".to_string(),
        ("", "") if p.name == "altdisk-meta" => "altdisk record".to_string(),
        ("", "") => "no filesystem".to_string(),
        (fs, _) => fs.to_string(),
    };
    bits.push(what);
    if !p.label.is_empty() {
        bits.push(format!("“{}”", p.label));
    }
    if !p.mountpoint.is_empty() {
        bits.push(if p.mountpoint == "[SWAP]" { "swap in use".into() } else { format!("on {}", p.mountpoint) });
    }
    if !p.os.is_empty() {
        bits.push(p.os.clone());
    }
    if p.used > 0 {
        bits.push(format!("{} copied in", format::bytes(p.used)));
    }
    if !p.source.is_empty() {
        bits.push(format!("from {}", p.source));
    }
    bits.join(" · ")
}

/// The bar with its legend below.
pub fn bar_with_legend<'a, M: 'a>(size: u64, parts: &'a [PartInfo]) -> Element<'a, M> {
    let mut legend = column![].spacing(SPACE_XS);
    let mut sorted: Vec<&PartInfo> = parts.iter().collect();
    sorted.sort_by_key(|p| (p.start, p.number));
    for p in sorted {
        legend = legend.push(
            row![
                container(super::swatch(Color::TRANSPARENT)).style(move |t: &Theme| container::Style {
                    background: Some(Background::Color(part_color(&colors(t), p))),
                    border: Border { radius: 3.0.into(), ..Border::default() },
                    ..container::Style::default()
                }),
                super::muted(describe(p)),
            ]
            .spacing(SPACE_S)
            .align_y(iced::Alignment::Center),
        );
    }
    if parts.is_empty() {
        legend = legend.push(super::muted("empty: no partition table"));
    }
    column![bar(size, parts), legend, Space::new().height(2)].spacing(SPACE_S).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(start: u64, size: u64) -> PartInfo {
        PartInfo { start, size, fstype: "ext4".into(), ..Default::default() }
    }

    #[test]
    fn segments_keep_proportions_and_show_free_space() {
        const G: u64 = 1 << 30;
        let parts = [part(1 << 20, 10 * G), part(50 * G, 40 * G)];
        let s = segments(100 * G, &parts);
        let shares: Vec<(bool, u16)> = s.iter().map(|(p, n)| (p.is_some(), *n)).collect();
        assert_eq!(shares, vec![(true, 100), (false, 400), (true, 400), (false, 100)]);
    }

    #[test]
    fn a_tiny_partition_is_still_seen_and_an_empty_disk_is_all_free() {
        let parts = [part(1 << 20, 1 << 20), part(2 << 20, 500 << 30)];
        let s = segments(500 << 30, &parts);
        assert_eq!(s[0].1, MIN_SHARE);
        assert_eq!(segments(1 << 30, &[]), vec![(None, 1000)]);
    }

    #[test]
    fn planned_partitions_without_starts_are_laid_end_to_end() {
        let parts = [part(0, 1 << 20), part(0, 10 << 30), part(0, 10 << 30)];
        let s = segments(40 << 30, &parts);
        assert_eq!(s.len(), 4, "{s:?}");
        assert!(s[3].0.is_none());
    }
}
