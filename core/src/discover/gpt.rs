//! GPT facts shared by every stage: reading a disk's partition table, and the partition
//! type GUIDs and names altdisk writes (its own `altdisk-meta` partition holds a system's
//! record, see [`crate::discover::record`]).

use std::path::Path;

use gptman::GPT;

/// altdisk's own partition type: the 1 MiB partition holding a system's record.
pub const META_TYPE: &str = "8d4a6f2e-31c7-4b55-a1d6-7c0e5b9f2a41";
/// The name of that partition.
pub const META_NAME: &str = "altdisk-meta";
pub const LINUX_FS_TYPE: &str = "0fc63daf-8483-4772-8e79-3d69d8477de4";
pub const SWAP_TYPE: &str = "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f";
pub const LVM_TYPE: &str = "e6d6d379-f507-44c2-a23c-238f2a3df928";

/// The GPT partition type for a source partition's type as udev or blkid report it: a GUID
/// (a GPT source) as it is; an MBR type byte ("0x83") as its GPT counterpart, so a clone of
/// a BIOS machine's msdos disk gets a GPT it can hold. None for what has no counterpart
/// here (the caller then picks the type by the partition's role).
pub fn gpt_type_of(parttype: &str) -> Option<String> {
    let t = parttype.trim().to_ascii_lowercase();
    if uuid::Uuid::parse_str(&t).is_ok() {
        return Some(t);
    }
    let byte = u8::from_str_radix(t.trim_start_matches("0x"), 16).ok()?;
    Some(
        match byte {
            0x83 => LINUX_FS_TYPE,
            0x82 => SWAP_TYPE,
            0x8e => LVM_TYPE,
            0xef => "c12a7328-f81f-11d2-ba4b-00a0c93ec93b",
            0xfd => "a19d880f-05fc-4d3b-a006-743f0f84911e",
            _ => return None,
        }
        .to_string(),
    )
}

/// Read a disk's GPT, if it has one.
pub fn read_gpt(dev: &Path) -> Option<GPT> {
    let mut f = std::fs::File::open(dev).ok()?;
    GPT::find_from(&mut f).ok()
}

#[cfg(test)]
mod type_tests {
    use super::*;

    #[test]
    fn mbr_types_map_to_gpt_types() {
        assert_eq!(gpt_type_of("0x83").as_deref(), Some(LINUX_FS_TYPE));
        assert_eq!(gpt_type_of("0x82").as_deref(), Some(SWAP_TYPE));
        assert_eq!(gpt_type_of("0x8E").as_deref(), Some(LVM_TYPE));
        assert_eq!(gpt_type_of("0x7"), None);
        assert_eq!(gpt_type_of("0FC63DAF-8483-4772-8E79-3D69D8477DE4").as_deref(), Some(LINUX_FS_TYPE));
        assert_eq!(gpt_type_of("nonsense"), None);
    }
}
