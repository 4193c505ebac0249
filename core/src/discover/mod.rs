//! Discovery: what exists before anything is planned or written. The disks and their
//! partitions ([`blockdev`]), what is mounted ([`mounts`]), the system to clone
//! ([`source`]) and its btrfs subvolumes ([`btrfs`]), how a system boots ([`boot`]), the record altdisk keeps on each disk of a
//! system it made ([`record`]), what each disk is to altdisk ([`roles`], `lspv`), and
//! which names reach the same device ([`identity`]). Nothing here writes to a disk, except [`record`] when a later stage asks it to.

pub mod blockdev;
pub mod boot;
pub mod btrfs;
pub mod changes;
pub mod contents;
pub mod disk;
pub mod gpt;
pub mod identity;
pub mod mounts;
pub mod record;
pub mod roles;
pub mod source;
pub mod udevdb;
