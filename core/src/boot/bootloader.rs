//! Making a clone bootable (AIX bosboot): inside the clone, chrooted, regenerate the
//! initramfs with the clone's own tool and install the bootloader the source uses, with
//! configuration that finds the clone's root by its new identity. On UEFI the removable
//! fallback path `\EFI\BOOT\BOOTX64.EFI` is installed too, so the disk boots on its own in
//! another machine. No chrooted tool writes firmware variables (`--no-nvram`,
//! `--no-variables`): the boot list is altdisk's (see [`crate::boot::efi`]).
//!
//! How the source boots was found before anything was written ([`crate::discover::boot`]).

use std::path::{Path, PathBuf};

use crate::cmd::Cmd;
use crate::discover::boot::{any_tool, exists, BootSetup, Initramfs, Loader};
use crate::error::{IoContext, Result};
use crate::job::Job;

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
    crate::job::test_pause_at("installing the boot loader");
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
}
