//! Making a clone bootable (AIX bosboot): inside the clone, chrooted, regenerate the
//! initramfs with the clone's own tool and install the bootloader the source uses, with
//! configuration that finds the clone's root by its new identity. On UEFI the removable
//! fallback path `\EFI\BOOT\BOOTX64.EFI` is installed too, so the disk boots on its own in
//! another machine. No chrooted tool writes firmware variables (`--no-nvram`,
//! `--no-variables`): the boot list is altdisk's (see [`crate::boot::efi`]).
//!
//! [`detect`] runs before anything is written and is the bootability check: a clone that
//! could not boot is an error up front.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cmd::Cmd;
use crate::error::{Error, IoContext, Result};
use crate::job::Job;

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

fn exists(root: &Path, p: &str) -> bool {
    std::fs::symlink_metadata(root.join(p.trim_start_matches('/'))).is_ok()
}

fn any_tool(root: &Path, tool: &str) -> bool {
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

/// Old root identities and the new one, to rewrite kernel command lines.
#[derive(Debug, Clone)]
pub struct RootIds {
    pub old: Vec<String>,
    pub new: String,
}

/// Replace the `root=` of a kernel command line.
pub fn rewrite_cmdline(line: &str, ids: &RootIds) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut had_root = false;
    for w in line.split_whitespace() {
        if let Some(v) = w.strip_prefix("root=") {
            had_root = true;
            let _ = v;
            out.push(format!("root={}", ids.new));
        } else if w.starts_with("BOOT_IMAGE=") || w.starts_with("initrd=") {
            // Set by the boot loader at boot, not part of the configured line.
            continue;
        } else {
            out.push(ids.old.iter().fold(w.to_string(), |acc, o| acc.replace(o.as_str(), &ids.new)));
        }
    }
    if !had_root {
        out.insert(0, format!("root={}", ids.new));
    }
    out.join(" ")
}

fn run_in(root: &Path, job: &Job, what: &str, tool: &str, args: &[&str]) -> Result<()> {
    job.info(what.to_string());
    Cmd::in_root(what, root, tool)?.args(args).run().map(|_| ())
}

/// Install the boot pieces into the clone mounted at `root`. `disk` is the clone's first
/// disk (for GRUB on BIOS); `cmdline_source` is a kernel command line to start from for
/// systemd-boot when the clone has no /etc/kernel/cmdline.
pub fn install(
    root: &Path,
    setup: &BootSetup,
    disk: &Path,
    ids: &RootIds,
    cmdline_source: &str,
    job: &Job,
) -> Result<()> {
    // systemd-boot's kernel-install hooks read /etc/kernel/cmdline, else /proc/cmdline,
    // which in a chroot is the running system's: give the clone its own first.
    if setup.loader == Loader::SystemdBoot {
        let p = root.join("etc/kernel/cmdline");
        let base = std::fs::read_to_string(&p).unwrap_or_else(|_| cmdline_source.to_string());
        std::fs::create_dir_all(root.join("etc/kernel"))
            .ctx("writing the clone's kernel command line", root.join("etc/kernel"))?;
        std::fs::write(&p, format!("{}\n", rewrite_cmdline(base.trim(), ids)))
            .ctx("writing the clone's kernel command line", &p)?;
    }
    match setup.initramfs {
        Initramfs::UpdateInitramfs => {
            run_in(root, job, "regenerating the clone's initramfs", "update-initramfs", &["-u", "-k", "all"])?
        }
        Initramfs::Dracut => {
            run_in(root, job, "regenerating the clone's initramfs", "dracut", &["--regenerate-all", "--force"])?
        }
        Initramfs::Mkinitcpio => run_in(root, job, "regenerating the clone's initramfs", "mkinitcpio", &["-P"])?,
    }
    let esp = setup.esp.as_deref().unwrap_or("/boot/efi");
    let efi_dir = format!("--efi-directory={esp}");
    match &setup.loader {
        Loader::GrubEfi { id, shim } => {
            let idarg = format!("--bootloader-id={id}");
            let mut a = vec!["--target=x86_64-efi", efi_dir.as_str(), idarg.as_str(), "--no-nvram"];
            if *shim {
                a.push("--uefi-secure-boot");
            }
            run_in(root, job, "installing GRUB on the clone's ESP", "grub-install", &a)?;
            a.push("--removable");
            run_in(root, job, "installing the removable fallback \\EFI\\BOOT\\BOOTX64.EFI", "grub-install", &a)?;
            grub_config(root, job)?;
        }
        Loader::SystemdBoot => {
            let esp_path = format!("--esp-path={esp}");
            run_in(
                root,
                job,
                "installing systemd-boot on the clone's ESP",
                "bootctl",
                &["install", esp_path.as_str(), "--no-variables", "--graceful"],
            )?;
            for k in &setup.kernels {
                let image = format!("/boot/vmlinuz-{k}");
                let initrd = format!("/boot/initrd.img-{k}");
                let mut a = vec!["add", k.as_str(), image.as_str()];
                if exists(root, &initrd) {
                    a.push(initrd.as_str());
                }
                run_in(root, job, &format!("adding boot entry for kernel {k}"), "kernel-install", &a)?;
            }
            rewrite_loader_entries(&root.join(esp.trim_start_matches('/')), ids)?;
        }
        Loader::GrubBios => {
            let d = disk.display().to_string();
            run_in(
                root,
                job,
                "installing GRUB for BIOS on the clone's disk",
                "grub-install",
                &["--target=i386-pc", d.as_str()],
            )?;
            grub_config(root, job)?;
        }
    }
    Ok(())
}

fn grub_config(root: &Path, job: &Job) -> Result<()> {
    if any_tool(root, "update-grub") {
        run_in(root, job, "writing the clone's GRUB configuration", "update-grub", &[])
    } else if any_tool(root, "grub2-mkconfig") {
        run_in(root, job, "writing the clone's GRUB configuration", "grub2-mkconfig", &["-o", "/boot/grub2/grub.cfg"])
    } else {
        run_in(root, job, "writing the clone's GRUB configuration", "grub-mkconfig", &["-o", "/boot/grub/grub.cfg"])
    }
}

/// Entries copied from the source's ESP still name the old root: point them at the new one.
fn rewrite_loader_entries(esp: &Path, ids: &RootIds) -> Result<()> {
    let dir = esp.join("loader/entries");
    let Ok(rd) = std::fs::read_dir(&dir) else { return Ok(()) };
    for e in rd.flatten() {
        let p: PathBuf = e.path();
        let Ok(text) = std::fs::read_to_string(&p) else { continue };
        let new: String = text
            .lines()
            .map(|l| match l.strip_prefix("options") {
                Some(rest) if rest.starts_with([' ', '\t']) => format!("options {}", rewrite_cmdline(rest.trim(), ids)),
                _ => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n";
        if new != text {
            std::fs::write(&p, new).ctx("rewriting a boot loader entry", &p)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_root_on_the_command_line() {
        let ids = RootIds { old: vec!["UUID=aaa".into(), "aaa".into()], new: "UUID=bbb".into() };
        assert_eq!(rewrite_cmdline("BOOT_IMAGE=/vmlinuz root=UUID=aaa ro quiet", &ids), "root=UUID=bbb ro quiet");
        assert_eq!(rewrite_cmdline("root=/dev/vda2 console=ttyS0", &ids), "root=UUID=bbb console=ttyS0");
        assert_eq!(rewrite_cmdline("quiet", &ids), "root=UUID=bbb quiet");
        assert_eq!(rewrite_cmdline("root=PARTUUID=x resume=UUID=aaa", &ids), "root=UUID=bbb resume=UUID=bbb");
    }

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
