//! Making a system boot: the initramfs and boot loader inside the clone ([`bootloader`]),
//! UEFI boot entries and the boot order ([`efi`], [`bootlist`]), and the units that run when
//! a system altdisk made boots ([`units`]).

pub mod bootlist;
pub mod bootloader;
pub mod efi;
pub mod entry;
pub mod units;
