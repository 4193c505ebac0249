//! Systems that exist on disks (AIX `alt_rootvg_op`): find them by their records, wake
//! (mount) and sleep them, rename and remove them.

pub mod awake;
pub mod find;
pub mod mount;
pub mod ops;
pub mod restore;
pub mod trial;
pub mod verify;
