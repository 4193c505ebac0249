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
    /// btrfs: the subvolume the clone's root is ("/@"), for `rootflags=subvol=`.
    pub subvol: Option<String>,
}

/// Replace the `root=` of a kernel command line, and make `rootflags=` name the clone's
/// root subvolume (a `subvolid=`, which differs in the clone, is dropped).
pub fn rewrite_cmdline(line: &str, ids: &RootIds) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut had_root = false;
    let mut had_flags = false;
    for w in line.split_whitespace() {
        if w.starts_with("root=") {
            had_root = true;
            out.push(format!("root={}", ids.new));
        } else if let Some(flags) = w.strip_prefix("rootflags=") {
            had_flags = true;
            let mut v: Vec<String> = flags
                .split(',')
                .filter(|o| !o.is_empty() && !o.starts_with("subvol=") && !o.starts_with("subvolid="))
                .map(String::from)
                .collect();
            if let Some(sv) = ids.subvol.as_deref().filter(|s| *s != "/") {
                v.push(format!("subvol={sv}"));
            }
            if !v.is_empty() {
                out.push(format!("rootflags={}", v.join(",")));
            }
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
    if let Some(sv) = ids.subvol.as_deref().filter(|s| !had_flags && *s != "/") {
        let at = out.iter().position(|w| w.starts_with("root=")).map_or(0, |i| i + 1);
        out.insert(at, format!("rootflags=subvol={sv}"));
    }
    out.join(" ")
}

/// The initramfs-tools hook and the dracut setting that put the clone's disk drivers in its
/// initramfs (paths inside the clone).
pub const DRIVER_HOOK: &str = "/etc/initramfs-tools/hooks/altdisk-disk-drivers";
pub const DRIVER_DRACUT_CONF: &str = "/etc/dracut.conf.d/90-altdisk-disk-drivers.conf";

/// The kernel modules that drive `disk`: the driver of each device on its way up the sysfs
/// tree (virtio_blk and virtio_pci; nvme; ahci), those built into the kernel left out.
/// Nothing for a device with no hardware below it (a loop device: an image file).
pub fn disk_driver_modules(disk: &Path) -> Vec<String> {
    let name = std::fs::canonicalize(disk)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let mut out = Vec::new();
    let Ok(mut dir) = std::fs::canonicalize(Path::new("/sys/class/block").join(&name)) else {
        return out;
    };
    while dir.starts_with("/sys/devices") && dir != Path::new("/sys/devices") {
        if let Ok(m) = std::fs::read_link(dir.join("driver/module")) {
            if let Some(n) = m.file_name().map(|n| n.to_string_lossy().into_owned()) {
                if !out.contains(&n) {
                    out.push(n);
                }
            }
        }
        if !dir.pop() {
            break;
        }
    }
    out
}

/// Make the clone's initramfs hold the drivers of the disk it lives on. A source whose
/// initramfs takes only the modules its own root needs (initramfs-tools `MODULES=dep`,
/// dracut's host-only mode) would otherwise give a clone on another kind of disk (virtio to
/// NVMe) an initramfs that cannot find its root. Written for every clone, so the file is
/// the same whatever the source's setting: an initramfs-tools hook, or a dracut setting.
fn disk_drivers(root: &Path, initramfs: Initramfs, modules: &[String], job: &Job) -> Result<()> {
    if modules.is_empty() {
        return Ok(());
    }
    let list = modules.join(" ");
    let (path, text, mode) = match initramfs {
        Initramfs::UpdateInitramfs => (
            DRIVER_HOOK,
            format!(
                "#!/bin/sh\n# Written by altdisk: the drivers of the disk this system was cloned onto, so that\n\
                 # its initramfs finds its root also when it takes only the modules it needs (MODULES=dep).\n\
                 PREREQ=\"\"\nprereqs() {{ echo \"$PREREQ\"; }}\n\
                 case $1 in prereqs) prereqs; exit 0 ;; esac\n\
                 . /usr/share/initramfs-tools/hook-functions\n\
                 for m in {list}; do manual_add_modules \"$m\"; done\n"
            ),
            0o755,
        ),
        Initramfs::Dracut => (
            DRIVER_DRACUT_CONF,
            format!("# Written by altdisk: the drivers of the disk this system was cloned onto.\nadd_drivers+=\" {list} \"\n"),
            0o644,
        ),
        Initramfs::Mkinitcpio => return Ok(()),
    };
    let p = root.join(path.trim_start_matches('/'));
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir).ctx("making a directory in the clone", dir)?;
    }
    std::fs::write(&p, text).ctx("writing the clone's initramfs driver list", &p)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).ctx("setting the mode of", &p)?;
    job.info(format!("the clone's initramfs takes its disk's drivers: {list}"));
    Ok(())
}

fn run_in(root: &Path, job: &Job, what: &str, tool: &str, args: &[&str]) -> Result<()> {
    job.info(what.to_string());
    Cmd::in_root(what, root, tool)?.args(args).run().map(|_| ())
}

/// Install the boot pieces into the clone mounted at `root`. `disks` are the clone's disks,
/// its first one first (GRUB on BIOS goes there; the initramfs takes the drivers of all);
/// `cmdline_source` is a kernel command line to start from for systemd-boot when the clone
/// has no /etc/kernel/cmdline.
pub fn install(
    root: &Path,
    setup: &BootSetup,
    disks: &[&Path],
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
    let disk = *disks.first().ok_or_else(|| crate::error::Error::corrupt("the clone's plan", "it names no disk"))?;
    let mut modules: Vec<String> = Vec::new();
    for m in disks.iter().flat_map(|d| disk_driver_modules(d)) {
        if !modules.contains(&m) {
            modules.push(m);
        }
    }
    disk_drivers(root, setup.initramfs, &modules, job)?;
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
            grub_pc_install_device(root, disk, job)?;
        }
    }
    Ok(())
}

/// Debian's grub-pc reinstalls GRUB on upgrades into the disks debconf names
/// (`grub-pc/install_devices`), which in a copy still name the source's disk: the clone
/// names its own, by its stable /dev/disk/by-id link when it has one.
fn grub_pc_install_device(root: &Path, disk: &Path, job: &Job) -> Result<()> {
    if !any_tool(root, "debconf-set-selections") || !exists(root, "var/lib/dpkg/info/grub-pc.list") {
        return Ok(());
    }
    let real = std::fs::canonicalize(disk).unwrap_or_else(|_| disk.to_path_buf());
    let mut ids: Vec<PathBuf> = std::fs::read_dir("/dev/disk/by-id")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| std::fs::canonicalize(p).is_ok_and(|t| t == real))
        .collect();
    ids.sort();
    let name = ids.first().unwrap_or(&real).display().to_string();
    job.info(format!("the clone's grub-pc reinstalls GRUB on {name} when it is upgraded"));
    Cmd::in_root("naming the clone's disk for grub-pc upgrades", root, "debconf-set-selections")?
        .stdin(format!("grub-pc grub-pc/install_devices multiselect {name}\n"))
        .run()
        .map(|_| ())
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
    fn the_driver_hook_is_valid_shell_and_lists_the_modules() {
        let root = std::env::temp_dir().join(format!("altdisk-hook-{}", uuid::Uuid::new_v4()));
        disk_drivers(&root, Initramfs::UpdateInitramfs, &["nvme".into(), "virtio_blk".into()], &Job::new()).unwrap();
        let hook = root.join(DRIVER_HOOK.trim_start_matches('/'));
        let text = std::fs::read_to_string(&hook).unwrap();
        assert!(
            text.starts_with("#!/bin/sh\n")
                && text.contains("for m in nvme virtio_blk; do manual_add_modules \"$m\"; done"),
            "{text}"
        );
        let ok = std::process::Command::new("sh").arg("-n").arg(&hook).status().unwrap().success();
        assert!(ok, "{text}");
        // prereqs answers and exits without sourcing the hook functions.
        let out = std::process::Command::new("sh").arg(&hook).arg("prereqs").output().unwrap();
        assert!(out.status.success());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&hook).unwrap().permissions().mode() & 0o777, 0o755);
        std::fs::remove_dir_all(&root).unwrap();
        // A loop device (an image file) has no driver below it.
        assert!(disk_driver_modules(Path::new("/dev/loop0")).is_empty());
    }

    #[test]
    fn rewrites_root_on_the_command_line() {
        let ids = RootIds { old: vec!["UUID=aaa".into(), "aaa".into()], new: "UUID=bbb".into(), subvol: None };
        assert_eq!(rewrite_cmdline("BOOT_IMAGE=/vmlinuz root=UUID=aaa ro quiet", &ids), "root=UUID=bbb ro quiet");
        assert_eq!(rewrite_cmdline("root=/dev/vda2 console=ttyS0", &ids), "root=UUID=bbb console=ttyS0");
        assert_eq!(rewrite_cmdline("quiet", &ids), "root=UUID=bbb quiet");
        assert_eq!(rewrite_cmdline("root=PARTUUID=x resume=UUID=aaa", &ids), "root=UUID=bbb resume=UUID=bbb");
    }

    #[test]
    fn rootflags_follow_the_root_subvolume() {
        let ids = RootIds { old: vec!["UUID=aaa".into()], new: "UUID=bbb".into(), subvol: Some("/@".into()) };
        assert_eq!(
            rewrite_cmdline("root=UUID=aaa ro rootflags=subvol=@ quiet", &ids),
            "root=UUID=bbb ro rootflags=subvol=/@ quiet"
        );
        assert_eq!(
            rewrite_cmdline("root=UUID=aaa rootflags=compress=zstd,subvolid=256 ro", &ids),
            "root=UUID=bbb rootflags=compress=zstd,subvol=/@ ro"
        );
        assert_eq!(rewrite_cmdline("root=UUID=aaa ro", &ids), "root=UUID=bbb rootflags=subvol=/@ ro");
        let top = RootIds { subvol: None, ..ids };
        assert_eq!(rewrite_cmdline("root=UUID=aaa rootflags=subvol=@ ro", &top), "root=UUID=bbb ro");
    }
}
