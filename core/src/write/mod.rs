//! Writing a clone: partition tables ([`partition`]), volume groups ([`lvm`]), filesystems
//! and mounts ([`fs`]), the file copy ([`copy`], filtered by [`exclude`]), the clone's own
//! identities in fstab and crypttab ([`fixup`]), and phase 2's changes inside the clone
//! ([`customize`]). Each module carries out what the plan decided; none of them plans.

pub mod copy;
pub mod customize;
pub mod exclude;
pub mod fixup;
pub mod fs;
pub mod journal;
pub mod lvm;
pub mod partition;
pub(crate) mod workers;
