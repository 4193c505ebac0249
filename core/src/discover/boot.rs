//! How a system boots, read from its files before anything is written: the firmware of this
//! machine, the boot loader the system uses (GRUB for UEFI, with or without shim;
//! systemd-boot; GRUB for BIOS), its initramfs tool and its kernels. [`detect`] is the
//! bootability check: a clone that could not boot is an error up front (AIX `-g` skips it).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    Uefi,
    Bios,
}

impl Firmware {
    /// How this machine booted.
    pub fn current() -> Firmware {
        if Path::new("/sys/firmware/efi").exists() {
            Firmware::Uefi
        } else {
            Firmware::Bios
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Loader {
    /// GRUB for UEFI; `id` is the directory under \EFI (e.g. "debian").
    GrubEfi {
        id: String,
        shim: bool,
    },
    SystemdBoot,
    GrubBios,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Initramfs {
    UpdateInitramfs,
    Dracut,
    Mkinitcpio,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BootSetup {
    pub firmware: Firmware,
    pub loader: Loader,
    pub initramfs: Initramfs,
    /// Where the ESP is mounted in the system ("/boot/efi"), on UEFI.
    pub esp: Option<String>,
    pub kernels: Vec<String>,
}

impl BootSetup {
    /// The file a firmware boot entry starts, on the ESP.
    pub fn efi_file(&self) -> Option<String> {
        match &self.loader {
            Loader::GrubEfi { id, shim: true } => Some(format!("\\EFI\\{id}\\shimx64.efi")),
            Loader::GrubEfi { id, shim: false } => Some(format!("\\EFI\\{id}\\grubx64.efi")),
            Loader::SystemdBoot => Some("\\EFI\\systemd\\systemd-bootx64.efi".into()),
            Loader::GrubBios => None,
        }
    }
}

pub(crate) fn exists(root: &Path, p: &str) -> bool {
    std::fs::symlink_metadata(root.join(p.trim_start_matches('/'))).is_ok()
}

pub(crate) fn any_tool(root: &Path, tool: &str) -> bool {
    ["usr/sbin", "usr/bin", "sbin", "bin"].iter().any(|d| exists(root, &format!("{d}/{tool}")))
}

/// Kernel versions installed in the system at `root` (those with modules and an image).
fn kernels(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root.join("lib/modules"))
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.retain(|k| exists(root, &format!("boot/vmlinuz-{k}")) || exists(root, &format!("lib/modules/{k}/vmlinuz")));
    v.sort();
    v
}

/// The \EFI\<id> directory GRUB lives in on the source's ESP.
fn grub_id(esp: &Path) -> Option<(String, bool)> {
    let rd = std::fs::read_dir(esp.join("EFI")).ok()?;
    let mut found = None;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.eq_ignore_ascii_case("BOOT") {
            continue;
        }
        let has = |f: &str| {
            std::fs::read_dir(e.path())
                .map(|d| d.flatten().any(|x| x.file_name().to_string_lossy().eq_ignore_ascii_case(f)))
                .unwrap_or(false)
        };
        if has("grubx64.efi") {
            found = Some((name, has("shimx64.efi")));
            break;
        }
    }
    found
}

/// Work out how the system at `root` boots; fails when a clone of it could not boot.
/// `esp` is the mount point of its ESP, when it has one mounted.
pub fn detect(root: &Path, firmware: Firmware, esp: Option<&str>) -> Result<BootSetup> {
    let kernels = kernels(root);
    if kernels.is_empty() {
        return Err(Error::refused(
            "the source system",
            "it has no kernel under /boot with modules in /lib/modules, so a clone of it cannot boot",
            "install a kernel package, or skip the bootability checks with -g and make it boot yourself",
        ));
    }
    let initramfs = if any_tool(root, "update-initramfs") {
        Initramfs::UpdateInitramfs
    } else if any_tool(root, "dracut") {
        Initramfs::Dracut
    } else if any_tool(root, "mkinitcpio") {
        Initramfs::Mkinitcpio
    } else {
        return Err(Error::refused(
            "the source system",
            "it has no initramfs tool (update-initramfs, dracut or mkinitcpio)",
            "install initramfs-tools or dracut in it",
        ));
    };
    let loader = match firmware {
        Firmware::Uefi => {
            let Some(esp) = esp else {
                return Err(Error::refused(
                    "the source system",
                    "this machine boots through UEFI but the system has no EFI system partition mounted (/boot/efi or /efi)",
                    "mount its ESP (see its fstab) and try again",
                ));
            };
            let esp_dir = root.join(esp.trim_start_matches('/'));
            if exists(&esp_dir, "EFI/systemd/systemd-bootx64.efi") && any_tool(root, "bootctl") {
                Loader::SystemdBoot
            } else if exists(root, "usr/lib/grub/x86_64-efi") && any_tool(root, "grub-install") {
                let (id, shim) = grub_id(&esp_dir).unwrap_or_else(|| ("debian".into(), false));
                let shim = shim && exists(root, "usr/lib/shim/shimx64.efi.signed");
                Loader::GrubEfi { id, shim }
            } else {
                return Err(Error::refused(
                    "the source system",
                    "it has no UEFI bootloader altdisk can install (GRUB for x86_64-efi or systemd-boot)",
                    "install grub-efi-amd64 (or systemd-boot) in it",
                ));
            }
        }
        Firmware::Bios => {
            if exists(root, "usr/lib/grub/i386-pc") && any_tool(root, "grub-install") {
                Loader::GrubBios
            } else {
                return Err(Error::refused(
                    "the source system",
                    "this machine boots through BIOS and the system has no GRUB for BIOS (i386-pc)",
                    "install grub-pc in it",
                ));
            }
        }
    };
    Ok(BootSetup { firmware, loader, initramfs, esp: esp.map(String::from), kernels })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn tree(files: &[&str]) -> PathBuf {
        let root = std::env::temp_dir().join(format!("altdisk-bl-{}", uuid::Uuid::new_v4()));
        for f in files {
            let p = root.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            if f.ends_with('/') {
                std::fs::create_dir_all(&p).unwrap();
            } else {
                std::fs::write(&p, b"").unwrap();
            }
        }
        root
    }

    #[test]
    fn detects_grub_efi_and_shim() {
        let r = tree(&[
            "boot/vmlinuz-6.1.0-1-amd64",
            "lib/modules/6.1.0-1-amd64/",
            "usr/sbin/update-initramfs",
            "usr/sbin/grub-install",
            "usr/lib/grub/x86_64-efi/",
            "usr/lib/shim/shimx64.efi.signed",
            "boot/efi/EFI/debian/grubx64.efi",
            "boot/efi/EFI/debian/shimx64.efi",
            "boot/efi/EFI/BOOT/BOOTX64.EFI",
        ]);
        let s = detect(&r, Firmware::Uefi, Some("/boot/efi")).unwrap();
        assert_eq!(s.loader, Loader::GrubEfi { id: "debian".into(), shim: true });
        assert_eq!(s.efi_file().as_deref(), Some("\\EFI\\debian\\shimx64.efi"));
        assert_eq!(s.kernels, vec!["6.1.0-1-amd64"]);
        assert_eq!(s.initramfs, Initramfs::UpdateInitramfs);
        let e = detect(&r, Firmware::Uefi, None).unwrap_err();
        assert!(e.to_string().contains("ESP"), "{e}");
        let e = detect(&r, Firmware::Bios, None).unwrap_err();
        assert!(e.to_string().contains("grub-pc"), "{e}");
        std::fs::remove_dir_all(r).unwrap();
    }

    #[test]
    fn detects_systemd_boot_and_refuses_kernelless() {
        let r = tree(&[
            "boot/vmlinuz-6.1",
            "lib/modules/6.1/",
            "usr/bin/dracut",
            "usr/bin/bootctl",
            "efi/EFI/systemd/systemd-bootx64.efi",
        ]);
        let s = detect(&r, Firmware::Uefi, Some("/efi")).unwrap();
        assert_eq!(s.loader, Loader::SystemdBoot);
        assert_eq!(s.initramfs, Initramfs::Dracut);
        std::fs::remove_dir_all(&r).unwrap();
        let r = tree(&["usr/bin/dracut"]);
        assert!(detect(&r, Firmware::Uefi, Some("/efi")).unwrap_err().to_string().contains("no kernel"));
        std::fs::remove_dir_all(r).unwrap();
    }
}
