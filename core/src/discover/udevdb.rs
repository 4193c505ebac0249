//! Block devices as udev knows them: the disks and partitions of this machine enumerated from
//! sysfs through libudev (it works without udevd too), their properties from the udev
//! database (filesystem type, UUID, label, partition entry) where udevd has probed them,
//! and hot-plug events from udev's monitor. Where udev has nothing (no udevd, a device not
//! probed yet, an image file), the callers fall back to `blkid -p`.

use std::ffi::OsStr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::discover::disk::{Disk, Partition, Probe};
use crate::error::{Error, Result};

fn udev_err(e: std::io::Error) -> Error {
    Error::io("reading the udev database", "/sys/class/block", e)
}

fn os(v: Option<&OsStr>) -> Option<String> {
    v.map(|s| s.to_string_lossy().trim().to_string()).filter(|s| !s.is_empty())
}

fn attr_u64(d: &udev::Device, name: &str) -> u64 {
    os(d.attribute_value(name)).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Undo udev's `\xNN` escapes (ID_FS_LABEL_ENC, ID_PART_ENTRY_NAME).
pub fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1] == b'x' {
            if let (Some(h), Some(l)) = (hex(b[i + 2]), hex(b[i + 3])) {
                out.push(h * 16 + l);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Disks that are no place to clone onto or from: memory, optical drives, stacked devices.
fn skipped(name: &str) -> bool {
    ["ram", "zram", "dm-", "md", "sr", "fd", "nbd"].iter().any(|p| name.starts_with(p))
}

/// Every whole disk (and attached loop device) with its partitions, from udev.
pub fn disks() -> Result<Vec<Disk>> {
    let mut e = udev::Enumerator::new().map_err(udev_err)?;
    e.match_subsystem("block").map_err(udev_err)?;
    let devices: Vec<udev::Device> = e.scan_devices().map_err(udev_err)?.collect();
    let mut disks = Vec::new();
    for d in devices.iter().filter(|d| d.devtype() == Some(OsStr::new("disk"))) {
        let name = d.sysname().to_string_lossy().into_owned();
        let size = attr_u64(d, "size") * 512;
        if skipped(&name) || size == 0 {
            continue;
        }
        let Some(num) = d.devnum() else { continue };
        let is_loop = name.starts_with("loop");
        let model = os(d.property_value("ID_MODEL_ENC"))
            .map(|m| decode(&m).trim().to_string())
            .or_else(|| os(d.attribute_value("device/model")))
            .or_else(|| os(d.property_value("ID_MODEL")));
        let serial = os(d.property_value("ID_SERIAL_SHORT")).or_else(|| os(d.attribute_value("device/serial")));
        let transport = os(d.property_value("ID_BUS")).or_else(|| {
            if name.starts_with("vd") {
                Some("virtio".into())
            } else if name.starts_with("nvme") {
                Some("nvme".into())
            } else {
                None
            }
        });
        let mut partitions: Vec<(u64, Partition)> = devices
            .iter()
            .filter(|p| p.devtype() == Some(OsStr::new("partition")))
            .filter(|p| p.parent().is_some_and(|parent| parent.syspath() == d.syspath()))
            .filter_map(|p| {
                let num = p.devnum()?;
                let pname = p.sysname().to_string_lossy().into_owned();
                let path = p.devnode().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(format!("/dev/{pname}")));
                Some((
                    attr_u64(p, "partition"),
                    Partition {
                        path,
                        name: pname,
                        major: nix::sys::stat::major(num) as u32,
                        minor: nix::sys::stat::minor(num) as u32,
                        size: attr_u64(p, "size") * 512,
                        holders: Vec::new(),
                    },
                ))
            })
            .collect();
        partitions.sort_by_key(|(n, _)| *n);
        let partitions: Vec<Partition> = partitions.into_iter().map(|(_, p)| p).collect();
        disks.push(Disk {
            path: d.devnode().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(format!("/dev/{name}"))),
            alias: String::new(),
            is_loop,
            major: nix::sys::stat::major(num) as u32,
            minor: nix::sys::stat::minor(num) as u32,
            size,
            model,
            serial,
            transport,
            removable: attr_u64(d, "removable") == 1,
            read_only: attr_u64(d, "ro") == 1,
            partitions,
            holders: Vec::new(),
            name,
        });
    }
    Ok(disks)
}

/// What udev's probe found on a block device, when udevd has probed it and found something.
/// None sends the caller to `blkid -p`: no udevd, a device not initialised yet, or nothing
/// recorded (which may be stale: only a signature udev saw is trusted without probing).
pub fn probe(dev: &Path) -> Option<Probe> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    if !udevd_running() {
        // Without udevd its database is left from earlier (or from `udevadm test`): stale.
        return None;
    }
    let md = std::fs::metadata(dev).ok()?;
    if !md.file_type().is_block_device() {
        return None;
    }
    let d = udev::Device::from_devnum(udev::DeviceType::Block, md.rdev()).ok()?;
    if !d.is_initialized() {
        return None;
    }
    let get = |k: &str| os(d.property_value(k));
    let p = Probe {
        fstype: get("ID_FS_TYPE"),
        uuid: get("ID_FS_UUID"),
        label: get("ID_FS_LABEL_ENC").map(|s| decode(&s)).or_else(|| get("ID_FS_LABEL")),
        pttype: get("ID_PART_TABLE_TYPE").filter(|_| d.devtype() == Some(OsStr::new("disk"))),
        ptuuid: get("ID_PART_TABLE_UUID").filter(|_| d.devtype() == Some(OsStr::new("disk"))),
        partuuid: get("ID_PART_ENTRY_UUID"),
        partlabel: get("ID_PART_ENTRY_NAME").map(|s| decode(&s)),
        parttype: get("ID_PART_ENTRY_TYPE"),
    };
    (p.fstype.is_some() || p.pttype.is_some()).then_some(p)
}

/// Whether udevd answers on its control socket (its database is kept current only then).
pub fn udevd_running() -> bool {
    std::os::unix::net::UnixStream::connect("/run/udev/control").is_ok()
}

/// Block devices coming and going, from udev's monitor (udevd's events when it runs, the
/// kernel's otherwise).
pub struct Watcher {
    socket: udev::MonitorSocket,
}

impl Watcher {
    pub fn new() -> Result<Watcher> {
        let builder = if udevd_running() { udev::MonitorBuilder::new() } else { udev::MonitorBuilder::new_kernel() }
            .map_err(udev_err)?;
        let socket = builder.match_subsystem("block").map_err(udev_err)?.listen().map_err(udev_err)?;
        Ok(Watcher { socket })
    }

    /// Wait up to `timeout` for a block device event; true when one (or more) came. Events
    /// that arrive together are taken as one.
    pub fn wait(&mut self, timeout: Duration) -> bool {
        let fd = self.socket.as_raw_fd();
        let ready = |ms: i32| {
            let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd for the duration of the call.
            unsafe { libc::poll(&mut p, 1, ms) > 0 }
        };
        if !ready(timeout.as_millis().min(i32::MAX as u128) as i32) {
            return false;
        }
        // Drain this burst: a disk and its partitions arrive as several events.
        loop {
            while self.socket.iter().next().is_some() {}
            if !ready(150) {
                return true;
            }
        }
    }
}

/// Watch in a thread of its own (udev's handles stay on one thread): `on_change` runs after
/// each burst of events, until it returns false. Fails when the monitor cannot be opened.
pub fn spawn_watch(on_change: impl Fn() -> bool + Send + 'static) -> Result<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("udev-watch".into())
        .spawn(move || {
            let mut w = match Watcher::new() {
                Ok(w) => {
                    let _ = tx.send(Ok(()));
                    w
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            while !w.wait(Duration::from_secs(3600)) || on_change() {}
        })
        .map_err(|e| Error::io("starting the udev watch", "/proc/self", e))?;
    rx.recv().unwrap_or_else(|_| Err(Error::corrupt("udev watch", "the thread ended at once")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_udev_escapes() {
        assert_eq!(decode("EFI\\x20System\\x20Partition"), "EFI System Partition");
        assert_eq!(decode("plain"), "plain");
        assert_eq!(decode("bad\\xZZ"), "bad\\xZZ");
        assert_eq!(decode("end\\x2"), "end\\x2");
        // A multi-byte character after the escape is kept, not cut in half.
        assert_eq!(decode("\\xé9"), "\\xé9");
    }
}
