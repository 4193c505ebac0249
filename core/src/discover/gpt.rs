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

/// Read a disk's GPT, if it has one.
pub fn read_gpt(dev: &Path) -> Option<GPT> {
    let mut f = std::fs::File::open(dev).ok()?;
    GPT::find_from(&mut f).ok()
}
