//! Rewriting the clone's `/etc/fstab` and `/etc/crypttab` so that they name the new devices
//! instead of the ones the running system was cloned from.
//!
//! This module owns the mapping of one device field per line (fstab field 1, the filesystem;
//! crypttab field 2, the encrypted source device) from an old [`Identity`] to a new one. It
//! promises to change nothing else: comments, blank lines, the whitespace between fields,
//! options, line endings and a missing final newline come out byte for byte as they went in,
//! and a line whose device matches no old identity (network filesystems, `tmpfs`, other disks,
//! `none`) is not touched. A device keeps the way it was named (`UUID=`, `PARTUUID=`, `LABEL=`,
//! `PARTLABEL=`, quoted or not, or the matching `/dev/disk/by-*` link) whenever the new device
//! has that kind of name; otherwise, and always for kernel names such as `/dev/vda2` and for
//! `/dev/disk/by-id` or `by-path` links, which name the old disk itself, it is written as
//! `UUID=` (or `PARTUUID=` when the new device has no filesystem UUID) with a warning. A line
//! that matches old devices mapped to different new ones is left alone with a warning rather
//! than guessed at. UUIDs compare without regard to case, labels exactly. Both files are
//! decoded and encoded with the octal escapes of fstab (`\040` space, `\011` tab, `\012`
//! newline, `\134` backslash), which systemd and libmount also accept in crypttab; the names
//! of `/dev/disk/by-*` links use udev's `\xNN` escapes.

/// How one block device (filesystem or swap) is known, before or after cloning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// Filesystem UUID (e.g. "0b7d...", vfat "ABCD-1234"), compared case-insensitively.
    pub uuid: Option<String>,
    /// GPT partition GUID, compared case-insensitively.
    pub partuuid: Option<String>,
    /// Filesystem label.
    pub label: Option<String>,
    /// GPT partition name.
    pub partlabel: Option<String>,
    /// Device paths that name it: "/dev/vda2", "/dev/disk/by-id/virtio-xyz-part2", "/dev/disk/by-path/...".
    pub paths: Vec<String>,
}

/// The rewritten file, how many lines changed, and what the administrator should review.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rewrite {
    pub text: String,
    pub changed: usize,
    pub warnings: Vec<String>,
}

/// Rewrites field 1 of every fstab entry that names an old device; `map` pairs each old
/// identity with the new one.
pub fn rewrite_fstab(text: &str, map: &[(Identity, Identity)]) -> Rewrite {
    rewrite(text, map, Table { name: "fstab", field: 0 })
}

/// Rewrites field 2 (the source device) of every crypttab entry that names an old device.
pub fn rewrite_crypttab(text: &str, map: &[(Identity, Identity)]) -> Rewrite {
    rewrite(text, map, Table { name: "crypttab", field: 1 })
}

#[derive(Clone, Copy)]
struct Table {
    name: &'static str,
    /// Zero-based index of the device field.
    field: usize,
}

fn rewrite(text: &str, map: &[(Identity, Identity)], table: Table) -> Rewrite {
    let mut result = Rewrite { text: String::with_capacity(text.len() + 64), ..Rewrite::default() };
    for (index, line) in text.split_inclusive('\n').enumerate() {
        match rewrite_line(line, index + 1, map, table, &mut result.warnings) {
            Some(new_line) if new_line != line => {
                result.text.push_str(&new_line);
                result.changed += 1;
            }
            _ => result.text.push_str(line),
        }
    }
    result
}

fn is_separator(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Byte range of the zero-based `field` of `line`, or `None` for comments, blank lines and
/// lines too short to have it.
fn field_span(line: &str, field: usize) -> Option<(usize, usize)> {
    let mut rest_start = 0;
    for n in 0..=field {
        let rest = &line[rest_start..];
        let start = rest_start + rest.find(|c| !is_separator(c))?;
        if n == 0 && line[start..].starts_with('#') {
            return None;
        }
        let end = line[start..].find(is_separator).map_or(line.len(), |len| start + len);
        if n == field {
            return Some((start, end));
        }
        rest_start = end;
    }
    None
}

fn rewrite_line(
    line: &str,
    number: usize,
    map: &[(Identity, Identity)],
    table: Table,
    warnings: &mut Vec<String>,
) -> Option<String> {
    let (start, end) = field_span(line, table.field)?;
    let field = &line[start..end];
    let spec = Spec::parse(&fstab_decode(field));
    let mut matches = map.iter().filter(|(old, _)| spec.names(old)).map(|(_, new)| new);
    let new = matches.next()?;
    let at = format!("{} line {number}", table.name);
    if matches.any(|other| other != new) {
        warnings.push(format!("{at}: `{field}` matches more than one old device; left unchanged"));
        return None;
    }
    let (written, why) = match spec.rewritten(new) {
        Ok(rewritten) => rewritten,
        Err(why) => {
            warnings.push(format!("{at}: `{field}` {why}, and the new device has no UUID or PARTUUID; left unchanged"));
            return None;
        }
    };
    let encoded = fstab_encode(&written);
    if let Some(why) = why {
        warnings.push(format!("{at}: `{field}` {why}; written as {encoded}"));
    }
    Some(format!("{}{encoded}{}", &line[..start], &line[end..]))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Uuid,
    PartUuid,
    Label,
    PartLabel,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Uuid, Kind::PartUuid, Kind::Label, Kind::PartLabel];

    fn tag(self) -> &'static str {
        match self {
            Kind::Uuid => "UUID",
            Kind::PartUuid => "PARTUUID",
            Kind::Label => "LABEL",
            Kind::PartLabel => "PARTLABEL",
        }
    }

    fn link_dir(self) -> &'static str {
        match self {
            Kind::Uuid => "/dev/disk/by-uuid/",
            Kind::PartUuid => "/dev/disk/by-partuuid/",
            Kind::Label => "/dev/disk/by-label/",
            Kind::PartLabel => "/dev/disk/by-partlabel/",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Kind::Uuid => "filesystem UUID",
            Kind::PartUuid => "partition UUID",
            Kind::Label => "label",
            Kind::PartLabel => "partition label",
        }
    }

    fn value(self, id: &Identity) -> Option<&str> {
        match self {
            Kind::Uuid => id.uuid.as_deref(),
            Kind::PartUuid => id.partuuid.as_deref(),
            Kind::Label => id.label.as_deref(),
            Kind::PartLabel => id.partlabel.as_deref(),
        }
        .filter(|v| !v.is_empty())
    }

    fn matches(self, id: &Identity, wanted: &str) -> bool {
        match (self, self.value(id)) {
            (_, None) => false,
            // blkid prints UUIDs in lower case but fstabs written by hand or by other tools
            // use upper case too, and mount accepts both.
            (Kind::Uuid | Kind::PartUuid, Some(have)) => have.eq_ignore_ascii_case(wanted),
            (Kind::Label | Kind::PartLabel, Some(have)) => have == wanted,
        }
    }
}

/// A device field, decoded from fstab escapes.
enum Spec {
    /// `UUID=...` and friends; `quote` is the quote character around the value, if any.
    Tag { kind: Kind, quote: Option<char>, value: String },
    /// `/dev/disk/by-uuid/...` and friends, with the udev-decoded value.
    Link { kind: Kind, value: String, path: String },
    /// Any other path, or a word like `none`, `tmpfs` or `server:/export`.
    Other(String),
}

impl Spec {
    fn parse(decoded: &str) -> Spec {
        for kind in Kind::ALL {
            if let Some(value) = decoded.strip_prefix(kind.tag()).and_then(|rest| rest.strip_prefix('=')) {
                let quote =
                    value.chars().next().filter(|&q| (q == '"' || q == '\'') && value.len() >= 2 && value.ends_with(q));
                let value = match quote {
                    Some(_) => &value[1..value.len() - 1],
                    None => value,
                };
                return Spec::Tag { kind, quote, value: value.to_string() };
            }
            if let Some(name) = decoded.strip_prefix(kind.link_dir()) {
                return Spec::Link { kind, value: udev_decode(name), path: decoded.to_string() };
            }
        }
        Spec::Other(decoded.to_string())
    }

    /// Whether this field names the device `old`.
    fn names(&self, old: &Identity) -> bool {
        match self {
            Spec::Tag { value, .. } | Spec::Link { value, .. } if value.is_empty() => false,
            Spec::Tag { kind, value, .. } => kind.matches(old, value),
            Spec::Link { kind, value, path } => kind.matches(old, value) || old.paths.iter().any(|p| p == path),
            Spec::Other(path) => old.paths.iter().any(|p| p == path),
        }
    }

    /// The decoded field that names `new`, and why it is not in the original style if it is
    /// not; only the why when the new device has nothing to be named by.
    fn rewritten(&self, new: &Identity) -> std::result::Result<(String, Option<String>), String> {
        let (quote, why) = match self {
            Spec::Tag { kind, quote, .. } => match kind.value(new) {
                Some(v) => return Ok((tag(kind.tag(), *quote, v), None)),
                None => (*quote, format!("uses a {} the new device does not have", kind.noun())),
            },
            Spec::Link { kind, .. } => match kind.value(new) {
                Some(v) => return Ok((format!("{}{}", kind.link_dir(), udev_encode(v)), None)),
                None => (None, format!("uses a {} the new device does not have", kind.noun())),
            },
            Spec::Other(_) => (None, "names the old disk".to_string()),
        };
        [Kind::Uuid, Kind::PartUuid]
            .into_iter()
            .find_map(|kind| kind.value(new).map(|v| (tag(kind.tag(), quote, v), Some(why.clone()))))
            .ok_or(why)
    }
}

fn tag(name: &str, quote: Option<char>, value: &str) -> String {
    match quote {
        Some(q) => format!("{name}={q}{value}{q}"),
        None => format!("{name}={value}"),
    }
}

/// Undoes fstab's octal escapes (`\040` and the like), as libmount does.
fn fstab_decode(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal =
            bytes.get(i + 1..i + 4).filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            // Three octal digits can exceed a byte (`\777`); libmount wraps, and so do we.
            Some(d) => {
                out.push(d.iter().fold(0u8, |n, b| n.wrapping_mul(8).wrapping_add(b - b'0')));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Escapes what would otherwise end or change a field. A backslash is escaped only where a
/// reader would take it for the start of an escape (before three octal digits, or before
/// another backslash, which glibc reads as one), so that udev names such as
/// `/dev/disk/by-label/my\x20disk` are written as administrators write them.
fn fstab_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.char_indices() {
        let rest = &value.as_bytes()[i + 1..];
        let escape = match c {
            ' ' | '\t' | '\n' => true,
            '\\' => {
                rest.first() == Some(&b'\\')
                    || rest.get(..3).is_some_and(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)))
            }
            _ => false,
        };
        if escape {
            out.push_str(&format!("\\{:03o}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Undoes udev's `\xNN` escapes in the name of a `/dev/disk/by-*` link.
fn udev_decode(name: &str) -> String {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'\\' && bytes.get(i + 1) == Some(&b'x'))
            .then(|| bytes.get(i + 2..i + 4))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Names a value the way udev names its `/dev/disk/by-*` links: ASCII letters, digits and
/// `#+-.:=@_` and any non-ASCII character stay, every other byte becomes `\xNN`.
fn udev_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if c.is_ascii_alphanumeric() || "#+-.:=@_".contains(c) || !c.is_ascii() {
            out.push(c);
        } else {
            out.push_str(&format!("\\x{:02x}", c as u32));
        }
    }
    out
}

/// Layout changes between the source and the clone that fstab must follow.
#[derive(Debug, Clone, Default)]
pub struct LayoutChanges {
    /// (mount point, old type, new type) for converted filesystems.
    pub retype: Vec<(String, String, String)>,
    /// Mount points whose filesystem was merged into its parent.
    pub merged: Vec<String>,
    /// (UUID, mount point, type) of filesystems split out of their parent.
    pub split: Vec<(String, String, String)>,
}

/// Mount options every filesystem understands (VFS and mount(8) options).
fn generic_option(o: &str) -> bool {
    const GENERIC: &[&str] = &[
        "defaults",
        "ro",
        "rw",
        "suid",
        "nosuid",
        "dev",
        "nodev",
        "exec",
        "noexec",
        "auto",
        "noauto",
        "user",
        "nouser",
        "users",
        "owner",
        "group",
        "nofail",
        "sync",
        "async",
        "dirsync",
        "atime",
        "noatime",
        "diratime",
        "nodiratime",
        "relatime",
        "norelatime",
        "strictatime",
        "nostrictatime",
        "lazytime",
        "nolazytime",
        "iversion",
        "noiversion",
        "silent",
        "loud",
        "_netdev",
        "discard",
        "nodiscard",
    ];
    GENERIC.contains(&o)
        || o.starts_with("x-")
        || o.starts_with("comment=")
        || ["context=", "fscontext=", "defcontext=", "rootcontext="].iter().any(|p| o.starts_with(p))
}

fn ext_family(t: &str) -> bool {
    matches!(t, "ext2" | "ext3" | "ext4")
}

/// Follow the clone's layout in fstab: new filesystem types (with options the new type does
/// not know dropped), lines of merged filesystems commented out, lines added for split ones.
pub fn adjust_layout(text: &str, changes: &LayoutChanges) -> Rewrite {
    let mut out = Rewrite { text: String::with_capacity(text.len() + 256), ..Rewrite::default() };
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let number = index + 1;
        let mp = field_span(line, 1).map(|(a, b)| fstab_decode(&line[a..b]));
        let Some(mp) = mp else {
            out.text.push_str(line);
            continue;
        };
        if changes.merged.contains(&mp) {
            out.text.push_str("# altdisk: merged into its parent filesystem in this clone: ");
            out.text.push_str(line);
            out.changed += 1;
            out.warnings
                .push(format!("fstab line {number}: {mp} is merged into its parent; its line is commented out"));
            continue;
        }
        let retype = changes.retype.iter().find(|(m, _, _)| *m == mp);
        let (Some((_, from, to)), Some((ta, tb))) = (retype, field_span(line, 2)) else {
            out.text.push_str(line);
            continue;
        };
        let old_type = &line[ta..tb];
        if old_type != from && old_type != "auto" {
            out.text.push_str(line);
            continue;
        }
        let mut new_line = String::with_capacity(line.len());
        new_line.push_str(&line[..ta]);
        new_line.push_str(to);
        match field_span(line, 3) {
            Some((oa, ob)) => {
                new_line.push_str(&line[tb..oa]);
                let opts = &line[oa..ob];
                if ext_family(from) && ext_family(to) {
                    new_line.push_str(opts);
                } else {
                    let (keep, drop): (Vec<&str>, Vec<&str>) = opts.split(',').partition(|o| generic_option(o));
                    if !drop.is_empty() {
                        out.warnings.push(format!(
                            "fstab line {number}: {to} does not take the {from} option(s) {}; dropped",
                            drop.join(",")
                        ));
                    }
                    new_line.push_str(&if keep.is_empty() { "defaults".to_string() } else { keep.join(",") });
                }
                new_line.push_str(&line[ob..]);
            }
            None => new_line.push_str(&line[tb..]),
        }
        out.text.push_str(&new_line);
        out.changed += 1;
    }
    for (uuid, mp, fstype) in &changes.split {
        if !out.text.is_empty() && !out.text.ends_with('\n') {
            out.text.push('\n');
        }
        let pass = if ext_family(fstype) { 2 } else { 0 };
        out.text.push_str(&format!(
            "# altdisk: split out of its parent filesystem\nUUID={uuid} {} {fstype} defaults 0 {pass}\n",
            fstab_encode(mp)
        ));
        out.changed += 1;
    }
    out
}

#[cfg(test)]
mod layout_tests {
    use super::*;

    const FSTAB: &str = "# static\nUUID=a\t/\text4\terrors=remount-ro,noatime\t0 1\nUUID=b /boot ext3 defaults 0 2\nUUID=c /home ext4 defaults,user_xattr 0 2\ntmpfs /tmp tmpfs defaults 0 0";

    #[test]
    fn retypes_with_options() {
        let c = LayoutChanges {
            retype: vec![("/".into(), "ext4".into(), "xfs".into()), ("/boot".into(), "ext3".into(), "ext4".into())],
            ..Default::default()
        };
        let r = adjust_layout(FSTAB, &c);
        assert!(r.text.contains("UUID=a\t/\txfs\tnoatime\t0 1\n"), "{}", r.text);
        assert!(r.text.contains("UUID=b /boot ext4 defaults 0 2\n"), "{}", r.text);
        assert!(r.text.ends_with("tmpfs /tmp tmpfs defaults 0 0"), "no newline added: {}", r.text);
        assert_eq!(r.changed, 2);
        assert!(r.warnings[0].contains("errors=remount-ro"), "{:?}", r.warnings);
    }

    #[test]
    fn merges_and_splits() {
        let c = LayoutChanges {
            merged: vec!["/home".into()],
            split: vec![("u-1".into(), "/var/my data".into(), "xfs".into())],
            ..Default::default()
        };
        let r = adjust_layout(FSTAB, &c);
        assert!(
            r.text.contains("# altdisk: merged into its parent filesystem in this clone: UUID=c /home"),
            "{}",
            r.text
        );
        assert!(r.text.contains("tmpfs /tmp tmpfs defaults 0 0\n# altdisk: split"), "{}", r.text);
        assert!(r.text.ends_with("UUID=u-1 /var/my\\040data xfs defaults 0 0\n"), "{}", r.text);
        assert!(r.text.starts_with("# static\nUUID=a\t/\text4\terrors=remount-ro,noatime\t0 1\n"));
    }

    #[test]
    fn all_options_dropped_become_defaults() {
        let c = LayoutChanges { retype: vec![("/home".into(), "ext4".into(), "btrfs".into())], ..Default::default() };
        let r = adjust_layout("UUID=c /home ext4 user_xattr,data=ordered 0 2\n", &c);
        assert_eq!(r.text, "UUID=c /home btrfs defaults 0 2\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(uuid: &str, partuuid: &str, label: &str, partlabel: &str, paths: &[&str]) -> Identity {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Identity {
            uuid: opt(uuid),
            partuuid: opt(partuuid),
            label: opt(label),
            partlabel: opt(partlabel),
            paths: paths.iter().map(|p| p.to_string()).collect(),
        }
    }

    /// Old vda (running system) to new vdb (clone): EFI, root, swap, /srv and an encrypted /home.
    fn debian_map() -> Vec<(Identity, Identity)> {
        vec![
            (
                id("ABCD-1234", "11111111-aaaa-4000-8000-000000000001", "", "EFI system", &["/dev/vda1"]),
                id("EF01-5678", "22222222-bbbb-4000-8000-000000000001", "", "EFI system", &["/dev/vdb1"]),
            ),
            (
                id(
                    "0b7d6c1e-1111-4a2b-9c3d-000000000002",
                    "11111111-aaaa-4000-8000-000000000002",
                    "root",
                    "",
                    &["/dev/vda2", "/dev/disk/by-id/virtio-olddisk-part2", "/dev/disk/by-path/pci-0000:00:04.0-part2"],
                ),
                id(
                    "9f8e7d6c-2222-4a2b-9c3d-000000000002",
                    "22222222-bbbb-4000-8000-000000000002",
                    "root",
                    "",
                    &["/dev/vdb2", "/dev/disk/by-id/virtio-newdisk-part2"],
                ),
            ),
            (
                id("5e5e5e5e-3333-4a2b-9c3d-000000000003", "", "swap space", "", &["/dev/vda3"]),
                id("6f6f6f6f-4444-4a2b-9c3d-000000000003", "", "swap space", "", &["/dev/vdb3"]),
            ),
            (
                id(
                    "a1a1a1a1-5555-4a2b-9c3d-000000000004",
                    "11111111-aaaa-4000-8000-000000000004",
                    "srv",
                    "",
                    &["/dev/vda4", "/dev/disk/by-id/virtio-olddisk-part4"],
                ),
                id(
                    "b2b2b2b2-6666-4a2b-9c3d-000000000004",
                    "22222222-bbbb-4000-8000-000000000004",
                    "",
                    "",
                    &["/dev/vdb4"],
                ),
            ),
            (
                id(
                    "c3c3c3c3-7777-4a2b-9c3d-000000000005",
                    "11111111-aaaa-4000-8000-000000000005",
                    "",
                    "home",
                    &["/dev/vda5"],
                ),
                id(
                    "d4d4d4d4-8888-4a2b-9c3d-000000000005",
                    "22222222-bbbb-4000-8000-000000000005",
                    "",
                    "home",
                    &["/dev/vdb5"],
                ),
            ),
        ]
    }

    const DEBIAN_FSTAB: &str = "\
# /etc/fstab: static file system information.
#
# Use 'blkid' to print the universally unique identifier for a
# device; this may be used with UUID= as a more robust way to name devices
# that works even if disks are added and removed. See fstab(5).
#
# <file system> <mount point>   <type>  <options>       <dump>  <pass>
# / was on /dev/vda2 during installation
UUID=0b7d6c1e-1111-4a2b-9c3d-000000000002 /               ext4    errors=remount-ro 0       1
# /boot/efi was on /dev/vda1 during installation
PARTUUID=11111111-aaaa-4000-8000-000000000001  /boot/efi       vfat    umask=0077      0       1
LABEL=swap\\040space\tnone\tswap\tsw\t0\t0

/dev/disk/by-id/virtio-olddisk-part4 /srv ext4 defaults 0 2
/dev/vda3 none swap sw,noauto 0 0
tmpfs\t/tmp\ttmpfs\tnosuid,nodev,size=2g\t0\t0
nas.example.com:/export/home  /mnt/home  nfs4  rw,_netdev  0  0
/dev/mapper/home_crypt /home ext4 defaults 0 2
/dev/sdz1 /mnt/usb auto noauto,user 0 0";

    #[test]
    fn debian_fstab() {
        let r = rewrite_fstab(DEBIAN_FSTAB, &debian_map());
        let expected = "\
# /etc/fstab: static file system information.
#
# Use 'blkid' to print the universally unique identifier for a
# device; this may be used with UUID= as a more robust way to name devices
# that works even if disks are added and removed. See fstab(5).
#
# <file system> <mount point>   <type>  <options>       <dump>  <pass>
# / was on /dev/vda2 during installation
UUID=9f8e7d6c-2222-4a2b-9c3d-000000000002 /               ext4    errors=remount-ro 0       1
# /boot/efi was on /dev/vda1 during installation
PARTUUID=22222222-bbbb-4000-8000-000000000001  /boot/efi       vfat    umask=0077      0       1
LABEL=swap\\040space\tnone\tswap\tsw\t0\t0

UUID=b2b2b2b2-6666-4a2b-9c3d-000000000004 /srv ext4 defaults 0 2
UUID=6f6f6f6f-4444-4a2b-9c3d-000000000003 none swap sw,noauto 0 0
tmpfs\t/tmp\ttmpfs\tnosuid,nodev,size=2g\t0\t0
nas.example.com:/export/home  /mnt/home  nfs4  rw,_netdev  0  0
/dev/mapper/home_crypt /home ext4 defaults 0 2
/dev/sdz1 /mnt/usb auto noauto,user 0 0";
        assert_eq!(r.text, expected);
        // The swap label line matched but the label is the same on the clone.
        assert_eq!(r.changed, 4);
        assert_eq!(
            r.warnings,
            [
                "fstab line 14: `/dev/disk/by-id/virtio-olddisk-part4` names the old disk; \
             written as UUID=b2b2b2b2-6666-4a2b-9c3d-000000000004",
                "fstab line 15: `/dev/vda3` names the old disk; written as UUID=6f6f6f6f-4444-4a2b-9c3d-000000000003",
            ]
        );
    }

    #[test]
    fn label_with_escaped_space_matched_and_rewritten() {
        let map = [(id("", "", "old swap", "", &[]), id("1-2", "", "new swap", "", &[]))];
        let r = rewrite_fstab("LABEL=old\\040swap\tnone swap sw 0 0\n", &map);
        assert_eq!(r.text, "LABEL=new\\040swap\tnone swap sw 0 0\n");
        assert_eq!(r.changed, 1);
        assert!(r.warnings.is_empty());
        // Exact match only: a label differing in case is another filesystem.
        let r = rewrite_fstab("LABEL=Old\\040swap none swap sw 0 0\n", &map);
        assert_eq!(r.changed, 0);
    }

    #[test]
    fn label_missing_on_new_device_falls_back_to_uuid() {
        let map = debian_map();
        let r = rewrite_fstab("LABEL=srv /srv ext4 defaults 0 2\n", &map);
        assert_eq!(r.text, "UUID=b2b2b2b2-6666-4a2b-9c3d-000000000004 /srv ext4 defaults 0 2\n");
        assert_eq!(r.changed, 1);
        assert_eq!(
            r.warnings,
            ["fstab line 1: `LABEL=srv` uses a label the new device does not have; \
             written as UUID=b2b2b2b2-6666-4a2b-9c3d-000000000004"]
        );
    }

    #[test]
    fn fallback_to_partuuid_without_uuid_and_unchanged_without_either() {
        let map = [
            (id("", "", "", "", &["/dev/vda7"]), id("", "AAAA-PART", "", "", &[])),
            (id("", "", "", "", &["/dev/vda8"]), id("", "", "", "", &["/dev/vdb8"])),
        ];
        let r = rewrite_fstab("/dev/vda7 /a ext4 defaults 0 2\n/dev/vda8 /b ext4 defaults 0 2\n", &map);
        assert_eq!(r.text, "PARTUUID=AAAA-PART /a ext4 defaults 0 2\n/dev/vda8 /b ext4 defaults 0 2\n");
        assert_eq!(r.changed, 1);
        assert_eq!(r.warnings, [
            "fstab line 1: `/dev/vda7` names the old disk; written as PARTUUID=AAAA-PART",
            "fstab line 2: `/dev/vda8` names the old disk, and the new device has no UUID or PARTUUID; left unchanged",
        ]);
    }

    #[test]
    fn quoted_values_keep_their_quotes() {
        let map = debian_map();
        let r = rewrite_fstab("UUID=\"0b7d6c1e-1111-4a2b-9c3d-000000000002\" / ext4 defaults 0 1\n", &map);
        assert_eq!(r.text, "UUID=\"9f8e7d6c-2222-4a2b-9c3d-000000000002\" / ext4 defaults 0 1\n");
        let r = rewrite_fstab("PARTLABEL='home' /home ext4 defaults 0 2\n", &map);
        assert_eq!(r.changed, 0, "same partition label on the clone");
        let r = rewrite_fstab("LABEL=\"srv\" /srv ext4 defaults 0 2\n", &map);
        assert_eq!(r.text, "UUID=\"b2b2b2b2-6666-4a2b-9c3d-000000000004\" /srv ext4 defaults 0 2\n");
        assert_eq!(r.warnings.len(), 1);
    }

    #[test]
    fn uuid_match_ignores_case() {
        let map = debian_map();
        let r = rewrite_fstab("UUID=0B7D6C1E-1111-4A2B-9C3D-000000000002 / ext4 defaults 0 1\n", &map);
        assert_eq!(r.text, "UUID=9f8e7d6c-2222-4a2b-9c3d-000000000002 / ext4 defaults 0 1\n");
        let r = rewrite_fstab("UUID=abcd-1234 /boot/efi vfat defaults 0 1\n", &map);
        assert_eq!(r.text, "UUID=EF01-5678 /boot/efi vfat defaults 0 1\n");
        let r = rewrite_fstab("PARTUUID=11111111-AAAA-4000-8000-000000000002 / ext4 defaults 0 1\n", &map);
        assert_eq!(r.text, "PARTUUID=22222222-bbbb-4000-8000-000000000002 / ext4 defaults 0 1\n");
    }

    #[test]
    fn disk_links_keep_their_style() {
        let map = debian_map();
        let text = "/dev/disk/by-uuid/0b7d6c1e-1111-4a2b-9c3d-000000000002 / ext4 defaults 0 1
/dev/disk/by-partuuid/11111111-AAAA-4000-8000-000000000001 /boot/efi vfat defaults 0 1
/dev/disk/by-label/swap\\x20space none swap sw 0 0
/dev/disk/by-partlabel/EFI\\x20system /efi2 vfat defaults 0 1
/dev/disk/by-label/srv /srv ext4 defaults 0 2
/dev/disk/by-path/pci-0000:00:04.0-part2 /again ext4 defaults 0 2
";
        let r = rewrite_fstab(text, &map);
        assert_eq!(
            r.text,
            "/dev/disk/by-uuid/9f8e7d6c-2222-4a2b-9c3d-000000000002 / ext4 defaults 0 1
/dev/disk/by-partuuid/22222222-bbbb-4000-8000-000000000001 /boot/efi vfat defaults 0 1
/dev/disk/by-label/swap\\x20space none swap sw 0 0
/dev/disk/by-partlabel/EFI\\x20system /efi2 vfat defaults 0 1
UUID=b2b2b2b2-6666-4a2b-9c3d-000000000004 /srv ext4 defaults 0 2
UUID=9f8e7d6c-2222-4a2b-9c3d-000000000002 /again ext4 defaults 0 2
"
        );
        assert_eq!(r.changed, 4);
        assert_eq!(
            r.warnings,
            [
                "fstab line 5: `/dev/disk/by-label/srv` uses a label the new device does not have; \
             written as UUID=b2b2b2b2-6666-4a2b-9c3d-000000000004",
                "fstab line 6: `/dev/disk/by-path/pci-0000:00:04.0-part2` names the old disk; \
             written as UUID=9f8e7d6c-2222-4a2b-9c3d-000000000002",
            ]
        );
    }

    #[test]
    fn new_label_with_space_and_slash_is_escaped() {
        let map = [(id("", "", "data", "", &[]), id("", "", "my data/1", "", &[]))];
        let r = rewrite_fstab("LABEL=data /d ext4 defaults 0 2\n/dev/disk/by-label/data /e ext4 defaults 0 2\n", &map);
        assert_eq!(
            r.text,
            "LABEL=my\\040data/1 /d ext4 defaults 0 2\n/dev/disk/by-label/my\\x20data\\x2f1 /e ext4 defaults 0 2\n"
        );
        assert_eq!(r.changed, 2);
    }

    #[test]
    fn crypttab() {
        let map = debian_map();
        let text = "# <target name>\t<source device>\t<key file>\t<options>\n\
                    home_crypt\tUUID=c3c3c3c3-7777-4a2b-9c3d-000000000005\tnone\tluks,discard\n\
                    swap_crypt /dev/vda3 /dev/urandom swap,cipher=aes-xts-plain64\n\
                    other_crypt UUID=ffffffff-0000-0000-0000-000000000000 none luks\n\
                    short_crypt PARTUUID=11111111-aaaa-4000-8000-000000000005\n\
                    lonely_name\n";
        let r = rewrite_crypttab(text, &map);
        assert_eq!(
            r.text,
            "# <target name>\t<source device>\t<key file>\t<options>\n\
             home_crypt\tUUID=d4d4d4d4-8888-4a2b-9c3d-000000000005\tnone\tluks,discard\n\
             swap_crypt UUID=6f6f6f6f-4444-4a2b-9c3d-000000000003 /dev/urandom swap,cipher=aes-xts-plain64\n\
             other_crypt UUID=ffffffff-0000-0000-0000-000000000000 none luks\n\
             short_crypt PARTUUID=22222222-bbbb-4000-8000-000000000005\n\
             lonely_name\n"
        );
        assert_eq!(r.changed, 3);
        assert_eq!(
            r.warnings,
            ["crypttab line 3: `/dev/vda3` names the old disk; written as UUID=6f6f6f6f-4444-4a2b-9c3d-000000000003"]
        );
    }

    #[test]
    fn crypttab_does_not_touch_the_name_field() {
        // The target name happens to look like an old device; only field 2 is a device.
        let map = debian_map();
        let r = rewrite_crypttab("/dev/vda3 /dev/vda5 none luks\n", &map);
        assert_eq!(r.text, "/dev/vda3 UUID=d4d4d4d4-8888-4a2b-9c3d-000000000005 none luks\n");
    }

    #[test]
    fn unmatched_lines_are_byte_identical() {
        let map = debian_map();
        let text = "  # indented comment /dev/vda2\n\
                    \t\n\
                    none /proc proc defaults 0 0\n\
                    UUID=deadbeef-0000 /x ext4 defaults 0 2\n\
                    LABEL=ROOT / ext4 defaults 0 1\n\
                    UUID= /y ext4 defaults 0 2\n\
                    //server/share /mnt/smb cifs credentials=/etc/c 0 0\n\
                    /dev/vda22 /z ext4 defaults 0 2\r\n";
        let r = rewrite_fstab(text, &map);
        assert_eq!(r.text, text);
        assert_eq!(r.changed, 0);
        assert!(r.warnings.is_empty());
    }

    #[test]
    fn line_endings_and_leading_whitespace_preserved() {
        let map = debian_map();
        let r = rewrite_fstab("  /dev/vda2\t/ ext4 defaults 0 1\r\n/dev/vda1 /boot/efi vfat umask=0077 0 1", &map);
        assert_eq!(
            r.text,
            "  UUID=9f8e7d6c-2222-4a2b-9c3d-000000000002\t/ ext4 defaults 0 1\r\n\
             UUID=EF01-5678 /boot/efi vfat umask=0077 0 1"
        );
        assert_eq!(r.changed, 2);
        assert_eq!(rewrite_fstab("", &map), Rewrite::default());
        let r = rewrite_fstab("/dev/vda2", &map);
        assert_eq!(r.text, "UUID=9f8e7d6c-2222-4a2b-9c3d-000000000002");
    }

    #[test]
    fn ambiguous_match_is_left_alone() {
        // Two old filesystems sharing a label but going to different new ones.
        let map = [
            (id("1", "", "data", "", &[]), id("3", "", "data1", "", &[])),
            (id("2", "", "data", "", &[]), id("4", "", "data2", "", &[])),
        ];
        let r = rewrite_fstab("LABEL=data /d ext4 defaults 0 2\n", &map);
        assert_eq!(r.text, "LABEL=data /d ext4 defaults 0 2\n");
        assert_eq!(r.changed, 0);
        assert_eq!(r.warnings, ["fstab line 1: `LABEL=data` matches more than one old device; left unchanged"]);
        // The same device listed twice is not ambiguous.
        let twice = [map[0].clone(), map[0].clone()];
        assert_eq!(rewrite_fstab("LABEL=data /d ext4 defaults 0 2\n", &twice).changed, 1);
    }

    #[test]
    fn escapes_round_trip() {
        assert_eq!(fstab_decode("a\\040b\\011c\\134d\\012e"), "a b\tc\\d\ne");
        assert_eq!(fstab_decode("a\\04b\\x"), "a\\04b\\x");
        assert_eq!(fstab_encode("a b\tc\\d\ne"), "a\\040b\\011c\\d\\012e");
        assert_eq!(fstab_encode("x\\040 \\\\y\\"), "x\\134040\\040\\134\\y\\");
        for value in ["a b\tc\\d\ne", "x\\040 \\\\y\\", "my\\x20disk"] {
            assert_eq!(fstab_decode(&fstab_encode(value)), value);
        }
        assert_eq!(udev_decode("my\\x20disk\\x2f1\\xzz"), "my disk/1\\xzz");
        assert_eq!(udev_encode("my disk/1 é#+-.:=@_"), "my\\x20disk\\x2f1\\x20é#+-.:=@_");
    }

    #[test]
    fn backslash_in_label() {
        let map = [(id("", "", "a\\b", "", &[]), id("", "", "c\\d", "", &[]))];
        let r = rewrite_fstab("LABEL=a\\134b /m ext4 defaults 0 2\n", &map);
        assert_eq!(r.text, "LABEL=c\\d /m ext4 defaults 0 2\n");
    }
}
