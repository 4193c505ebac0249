//! Hostile input: every parser of what others wrote (mountinfo, /proc/swaps, fstab and
//! crypttab, udev escapes and blkid output, lvs output, GPT, EFI load options, the exclude list,
//! the layout file, sizes and phases, the altdisk record) gets random and mutated input and
//! must answer with a value or an error, never a panic. Property tests (proptest): each
//! property runs 256 cases by default (`PROPTEST_CASES` for more).

use std::io::Write;

use altdisk::boot::efi::LoadOption;
use altdisk::discover::{blockdev, mounts, record, source};
use altdisk::plan::{Layout, Phases};
use altdisk::write::exclude::ExcludeList;
use altdisk::write::fixup::{self, Identity, LayoutChanges};
use proptest::prelude::*;

const MOUNTINFO: &str = include_str!("fixtures/mountinfo.txt");

/// Bytes of `base` with some positions overwritten, some cut out and some added.
fn mutate(base: &[u8], edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut v = base.to_vec();
    for &(pos, byte, kind) in edits {
        if v.is_empty() {
            v.push(byte);
            continue;
        }
        let p = pos % v.len();
        match kind % 3 {
            0 => v[p] = byte,
            1 => {
                v.remove(p);
            }
            _ => v.insert(p, byte),
        }
    }
    v
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Text made of the characters these formats are built from, so cases reach past the
/// first check more often than random bytes would.
fn formatted() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just(" ".to_string()),
            Just("\t".to_string()),
            Just("\n".to_string()),
            Just("#".to_string()),
            Just("=".to_string()),
            Just("/".to_string()),
            Just(":".to_string()),
            Just(",".to_string()),
            Just("\\040".to_string()),
            Just("UUID=".to_string()),
            Just("PARTUUID=".to_string()),
            Just("LABEL=".to_string()),
            Just(" - ".to_string()),
            Just("[[filesystem]]".to_string()),
            Just("\"".to_string()),
            Just("*".to_string()),
            Just("[".to_string()),
            Just("]".to_string()),
            Just("\\".to_string()),
            Just("^".to_string()),
            "[a-z0-9./-]{0,12}",
            any::<String>(),
        ],
        0..60,
    )
    .prop_map(|v| v.concat())
}

fn identity(s: &str) -> Identity {
    Identity {
        uuid: Some(s.into()),
        partuuid: Some(format!("{s}-p")),
        label: Some("root".into()),
        partlabel: Some("root".into()),
        paths: vec![format!("/dev/{s}")],
    }
}

proptest! {
    #[test]
    fn mountinfo_and_swaps(s in formatted(), edits in proptest::collection::vec(any::<(usize, u8, u8)>(), 0..20)) {
        let _ = mounts::parse_mountinfo(&s);
        let _ = mounts::parse_mountinfo(&text(&mutate(MOUNTINFO.as_bytes(), &edits)));
        let _ = mounts::parse_swaps(&s);
        let _ = mounts::unescape(&s);
    }

    #[test]
    fn fstab_and_crypttab(s in formatted(), a in "[a-f0-9-]{0,36}", b in "[A-Za-z0-9-]{0,36}") {
        let map = vec![(identity(&a), identity(&b))];
        let r = fixup::rewrite_fstab(&s, &map);
        prop_assert!(r.changed <= s.lines().count() + 1);
        let _ = fixup::rewrite_crypttab(&s, &map);
        let changes = LayoutChanges {
            retype: vec![("/".into(), "ext3".into(), "ext4".into())],
            merged: vec!["/home".into()],
            split: vec![(b.clone(), "/var".into(), "xfs".into())],
        };
        let _ = fixup::adjust_layout(&s, &changes);
    }

    #[test]
    fn udev_blkid_lvs(s in formatted(), edits in proptest::collection::vec(any::<(usize, u8, u8)>(), 0..12)) {
        let _ = altdisk::discover::udevdb::decode(&s);
        let _ = edits;
        let _ = blockdev::Probe::parse_export(&s);
        let _ = source::parse_lvs(&s);
    }

    #[test]
    fn exclude_layout_size_phases(s in formatted()) {
        let _ = ExcludeList::parse(&s, "fuzz");
        let _ = Layout::parse(&s, "fuzz");
        let _ = altdisk::size::parse(&s);
        let _ = Phases::parse(&s);
    }

    #[test]
    fn records(bytes in proptest::collection::vec(any::<u8>(), 0..2048), len in any::<u32>()) {
        let _ = record::decode(&bytes);
        // With the magic and a length in front, the JSON parser gets the rest.
        let mut v = b"ALTDISK1".to_vec();
        v.extend_from_slice(&len.to_le_bytes());
        v.extend_from_slice(&bytes);
        let _ = record::decode(&v);
        let mut v = b"ALTDISK1".to_vec();
        v.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        v.extend_from_slice(&bytes);
        let _ = record::decode(&v);
    }

    #[test]
    fn efi_load_options(bytes in proptest::collection::vec(any::<u8>(), 0..512), edits in proptest::collection::vec(any::<(usize, u8, u8)>(), 0..8)) {
        let _ = LoadOption::decode(&bytes);
        let good = LoadOption::new(
            "altinst_rootvg on vdb",
            altdisk::boot::efi::HardDrive { partition: 2, start_lba: 2048, size_lba: 4096, partuuid: uuid::Uuid::nil() },
            "\\EFI\\debian\\grubx64.efi",
        )
        .encode();
        let _ = LoadOption::decode(&mutate(&good, &edits));
    }

    #[test]
    fn gpt(edits in proptest::collection::vec(any::<(usize, u8, u8)>(), 1..16)) {
        // A valid GPT (made by altdisk) with bytes of its headers and entries changed.
        let dir = std::env::temp_dir().join(format!("altdisk-fuzz-gpt-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let img = dir.join("disk.img");
        std::fs::File::create(&img).unwrap().set_len(8 << 20).unwrap();
        let part = altdisk::write::partition::PartSpec {
            number: 1,
            start: 1 << 20,
            size: 6 << 20,
            type_guid: altdisk::discover::gpt::LINUX_FS_TYPE.into(),
            guid: uuid::Uuid::new_v4(),
            name: "root".into(),
        };
        altdisk::write::partition::write_gpt(&img, 8 << 20, uuid::Uuid::new_v4(), &[part]).unwrap();
        let head = std::fs::read(&img).unwrap()[..34 * 512].to_vec();
        // Edits land in the protective MBR, the header and the entries.
        let edits: Vec<(usize, u8, u8)> = edits.into_iter().map(|(p, b, _)| (p % head.len(), b, 0)).collect();
        let bad = mutate(&head, &edits);
        let mut f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
        f.write_all(&bad).unwrap();
        drop(f);
        let _ = altdisk::discover::gpt::read_gpt(&img);
        let _ = record::read(&img);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
