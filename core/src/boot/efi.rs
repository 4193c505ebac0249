//! UEFI boot entries and the boot order, written by altdisk's own code through efivarfs
//! (never by a chrooted tool). Encodes and decodes EFI_LOAD_OPTION with the short-form
//! device path efibootmgr writes: `HD(part, GPT, PARTUUID, start, size)/File(\EFI\..)`.
//! Variables sit behind the [`Vars`] trait so the logic is tested on a plain directory;
//! [`Efivarfs`] is the real thing, clearing the immutable flag the kernel sets on variables
//! before rewriting or deleting them, and reading each write back to verify it.

use std::path::{Path, PathBuf};

use serde::Serialize;
use uuid::Uuid;

use crate::error::{Error, IoContext, Result};

pub const GLOBAL_GUID: &str = "8be4df61-93ca-11d2-aa0d-00e098032b8c";
/// NON_VOLATILE | BOOTSERVICE_ACCESS | RUNTIME_ACCESS
pub const ATTR_NV_BS_RT: u32 = 0x7;
pub const LOAD_OPTION_ACTIVE: u32 = 0x1;
pub const EFIVARFS: &str = "/sys/firmware/efi/efivars";

/// Where a boot entry points: a file on a GPT partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HardDrive {
    pub partition: u32,
    pub start_lba: u64,
    pub size_lba: u64,
    pub partuuid: Uuid,
}

impl HardDrive {
    /// Partition `number` of `disk`, as its GPT says (in 512-byte units, whatever the disk's
    /// sector size: UEFI device paths count in the disk's logical blocks, which the firmware
    /// reads from the disk, and Linux efivars tools write 512-byte units likewise).
    pub fn of_partition(disk: &std::path::Path, number: u32) -> Result<HardDrive> {
        let g = crate::discover::gpt::read_gpt(disk)
            .ok_or_else(|| Error::corrupt(format!("partition table of {}", disk.display()), "it cannot be read"))?;
        let p = g.iter().find(|(n, p)| *n == number && p.is_used()).map(|(_, p)| p.clone()).ok_or_else(|| {
            Error::corrupt(format!("partition {number} of {}", disk.display()), "the partition table does not have it")
        })?;
        Ok(HardDrive {
            partition: number,
            start_lba: p.starting_lba * g.sector_size / 512,
            size_lba: (p.ending_lba + 1 - p.starting_lba) * g.sector_size / 512,
            partuuid: Uuid::from_bytes_le(p.unique_partition_guid),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoadOption {
    pub attributes: u32,
    pub description: String,
    pub hd: Option<HardDrive>,
    pub file: Option<String>,
    /// The whole device path list, kept to rewrite an entry unchanged.
    #[serde(skip)]
    pub raw_path: Vec<u8>,
    #[serde(skip)]
    pub optional: Vec<u8>,
}

fn ucs2(s: &str) -> Vec<u8> {
    let mut v: Vec<u8> = s.encode_utf16().flat_map(|c| c.to_le_bytes()).collect();
    v.extend_from_slice(&[0, 0]);
    v
}

impl LoadOption {
    /// An active entry booting `file` (a path like `\EFI\debian\grubx64.efi`) from a partition.
    pub fn new(description: &str, hd: HardDrive, file: &str) -> LoadOption {
        let mut path = Vec::new();
        path.extend_from_slice(&[0x04, 0x01, 42, 0]);
        path.extend_from_slice(&hd.partition.to_le_bytes());
        path.extend_from_slice(&hd.start_lba.to_le_bytes());
        path.extend_from_slice(&hd.size_lba.to_le_bytes());
        path.extend_from_slice(&hd.partuuid.to_bytes_le());
        path.extend_from_slice(&[0x02, 0x02]);
        let f = ucs2(file);
        let len = (4 + f.len()) as u16;
        path.extend_from_slice(&[0x04, 0x04]);
        path.extend_from_slice(&len.to_le_bytes());
        path.extend_from_slice(&f);
        path.extend_from_slice(&[0x7f, 0xff, 0x04, 0x00]);
        LoadOption {
            attributes: LOAD_OPTION_ACTIVE,
            description: description.into(),
            hd: Some(hd),
            file: Some(file.into()),
            raw_path: path,
            optional: Vec::new(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&self.attributes.to_le_bytes());
        v.extend_from_slice(&(self.raw_path.len() as u16).to_le_bytes());
        v.extend_from_slice(&ucs2(&self.description));
        v.extend_from_slice(&self.raw_path);
        v.extend_from_slice(&self.optional);
        v
    }

    pub fn decode(b: &[u8]) -> Result<LoadOption> {
        let bad = |why: &str| Error::corrupt("UEFI boot entry", why.to_string());
        if b.len() < 6 {
            return Err(bad("too short"));
        }
        let attributes = u32::from_le_bytes(b[0..4].try_into().unwrap_or_default());
        let plen = u16::from_le_bytes([b[4], b[5]]) as usize;
        let mut i = 6;
        let mut units = Vec::new();
        loop {
            if i + 2 > b.len() {
                return Err(bad("unterminated description"));
            }
            let c = u16::from_le_bytes([b[i], b[i + 1]]);
            i += 2;
            if c == 0 {
                break;
            }
            units.push(c);
        }
        let description = String::from_utf16_lossy(&units);
        if i + plen > b.len() {
            return Err(bad("device path runs past the end"));
        }
        let raw_path = b[i..i + plen].to_vec();
        let optional = b[i + plen..].to_vec();
        let (hd, file) = parse_path(&raw_path);
        Ok(LoadOption { attributes, description, hd, file, raw_path, optional })
    }

    pub fn active(&self) -> bool {
        self.attributes & LOAD_OPTION_ACTIVE != 0
    }
}

/// The first HD() node and File() node of a device path list, if any.
fn parse_path(p: &[u8]) -> (Option<HardDrive>, Option<String>) {
    let mut hd = None;
    let mut file = None;
    let mut i = 0;
    while i + 4 <= p.len() {
        let (t, st) = (p[i], p[i + 1]);
        let len = u16::from_le_bytes([p[i + 2], p[i + 3]]) as usize;
        if len < 4 || i + len > p.len() {
            break;
        }
        let body = &p[i + 4..i + len];
        match (t, st) {
            (0x7f, 0xff) => break,
            (0x04, 0x01) if body.len() >= 38 && hd.is_none() => {
                let mut g = [0u8; 16];
                g.copy_from_slice(&body[20..36]);
                hd = Some(HardDrive {
                    partition: u32::from_le_bytes(body[0..4].try_into().unwrap_or_default()),
                    start_lba: u64::from_le_bytes(body[4..12].try_into().unwrap_or_default()),
                    size_lba: u64::from_le_bytes(body[12..20].try_into().unwrap_or_default()),
                    partuuid: Uuid::from_bytes_le(g),
                });
            }
            (0x04, 0x04) if file.is_none() => {
                let units: Vec<u16> =
                    body.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).take_while(|&c| c != 0).collect();
                file = Some(String::from_utf16_lossy(&units));
            }
            _ => {}
        }
        i += len;
    }
    (hd, file)
}

/// Storage of UEFI variables of the global vendor GUID.
pub trait Vars {
    fn read(&self, name: &str) -> Result<Option<(u32, Vec<u8>)>>;
    fn write(&self, name: &str, attributes: u32, data: &[u8]) -> Result<()>;
    fn delete(&self, name: &str) -> Result<()>;
    fn names(&self) -> Result<Vec<String>>;
}

/// Variables in an efivarfs directory (or any directory laid out the same way).
pub struct Efivarfs {
    pub dir: PathBuf,
}

impl Efivarfs {
    /// The machine's variables; an error naming the cause when it does not boot through UEFI.
    pub fn system() -> Result<Efivarfs> {
        let dir = PathBuf::from(EFIVARFS);
        if !Path::new("/sys/firmware/efi").exists() {
            return Err(Error::unsupported(
                "the UEFI boot list",
                ": this machine did not boot through UEFI (no /sys/firmware/efi)",
                "on a BIOS machine the boot order belongs to the firmware setup; see `bootlist -m normal -o` for the disks that carry a bootloader",
            ));
        }
        if std::fs::read_dir(&dir).map(|mut d| d.next().is_none()).unwrap_or(true) {
            return Err(Error::not_found(
                "UEFI variables",
                format!("{EFIVARFS} is empty or missing"),
                format!("mount it: mount -t efivarfs efivarfs {EFIVARFS}"),
            ));
        }
        Ok(Efivarfs { dir })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}-{GLOBAL_GUID}"))
    }
}

/// efivarfs marks variables immutable; clear that before changing one.
fn make_mutable(p: &Path) {
    if let Ok(f) = std::fs::File::open(p) {
        if let Ok(flags) = rustix::fs::ioctl_getflags(&f) {
            if flags.contains(rustix::fs::IFlags::IMMUTABLE) {
                let _ = rustix::fs::ioctl_setflags(&f, flags - rustix::fs::IFlags::IMMUTABLE);
            }
        }
    }
}

impl Vars for Efivarfs {
    fn read(&self, name: &str) -> Result<Option<(u32, Vec<u8>)>> {
        let p = self.path(name);
        match std::fs::read(&p) {
            Ok(b) if b.len() >= 4 => {
                Ok(Some((u32::from_le_bytes(b[0..4].try_into().unwrap_or_default()), b[4..].to_vec())))
            }
            Ok(_) => Err(Error::corrupt(format!("UEFI variable {name}"), "shorter than its attributes")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("reading UEFI variable {name}"), p, e)),
        }
    }

    fn write(&self, name: &str, attributes: u32, data: &[u8]) -> Result<()> {
        let p = self.path(name);
        make_mutable(&p);
        let mut buf = attributes.to_le_bytes().to_vec();
        buf.extend_from_slice(data);
        // One write() of the whole variable: efivarfs takes each write as a SetVariable call.
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&p)
            .ctx(&format!("writing UEFI variable {name}"), &p)?;
        f.write_all(&buf).ctx(&format!("writing UEFI variable {name}"), &p)?;
        drop(f);
        match self.read(name)? {
            Some((a, d)) if a == attributes && d == data => Ok(()),
            _ => Err(Error::corrupt(
                format!("UEFI variable {name}"),
                "it reads back different from what was written; the firmware may have refused it",
            )),
        }
    }

    fn delete(&self, name: &str) -> Result<()> {
        let p = self.path(name);
        make_mutable(&p);
        match std::fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("deleting UEFI variable {name}"), p, e)),
        }
    }

    fn names(&self) -> Result<Vec<String>> {
        let suffix = format!("-{GLOBAL_GUID}");
        let mut v: Vec<String> = std::fs::read_dir(&self.dir)
            .ctx("listing UEFI variables", &self.dir)?
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(&suffix)).map(String::from))
            .collect();
        v.sort();
        Ok(v)
    }
}

/// A Boot#### variable with its number.
#[derive(Debug, Clone, Serialize)]
pub struct BootEntry {
    pub number: u16,
    pub option: LoadOption,
}

pub fn boot_name(n: u16) -> String {
    format!("Boot{n:04X}")
}

fn parse_u16s(b: &[u8]) -> Vec<u16> {
    b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect()
}

fn u16s(v: &[u16]) -> Vec<u8> {
    v.iter().flat_map(|n| n.to_le_bytes()).collect()
}

/// The boot manager's state, read and changed through a [`Vars`] store.
pub struct BootManager<V: Vars> {
    pub vars: V,
}

impl<V: Vars> BootManager<V> {
    pub fn entries(&self) -> Result<Vec<BootEntry>> {
        let mut out = Vec::new();
        for name in self.vars.names()? {
            let Some(hex) = name.strip_prefix("Boot") else { continue };
            if hex.len() != 4 {
                continue;
            }
            let Ok(number) = u16::from_str_radix(hex, 16) else { continue };
            if let Some((_, data)) = self.vars.read(&name)? {
                if let Ok(option) = LoadOption::decode(&data) {
                    out.push(BootEntry { number, option });
                }
            }
        }
        Ok(out)
    }

    pub fn order(&self) -> Result<Vec<u16>> {
        Ok(self.vars.read("BootOrder")?.map(|(_, d)| parse_u16s(&d)).unwrap_or_default())
    }

    pub fn set_order(&self, order: &[u16]) -> Result<()> {
        self.vars.write("BootOrder", ATTR_NV_BS_RT, &u16s(order))
    }

    pub fn next(&self) -> Result<Option<u16>> {
        Ok(self.vars.read("BootNext")?.and_then(|(_, d)| parse_u16s(&d).first().copied()))
    }

    pub fn set_next(&self, n: Option<u16>) -> Result<()> {
        match n {
            Some(n) => self.vars.write("BootNext", ATTR_NV_BS_RT, &u16s(&[n])),
            None => self.vars.delete("BootNext"),
        }
    }

    pub fn current(&self) -> Result<Option<u16>> {
        Ok(self.vars.read("BootCurrent")?.and_then(|(_, d)| parse_u16s(&d).first().copied()))
    }

    /// Add an entry (reusing one that already points at the same partition and file), and
    /// return its number. BootOrder is not changed.
    pub fn add(&self, option: &LoadOption) -> Result<u16> {
        let entries = self.entries()?;
        if let Some(e) = entries.iter().find(|e| e.option.hd == option.hd && e.option.file == option.file) {
            if e.option.encode() != option.encode() {
                self.vars.write(&boot_name(e.number), ATTR_NV_BS_RT, &option.encode())?;
            }
            return Ok(e.number);
        }
        let used: Vec<u16> = entries.iter().map(|e| e.number).collect();
        let n = (0..=0xffffu16)
            .find(|n| !used.contains(n))
            .ok_or_else(|| Error::corrupt("UEFI boot entries", "all 65536 numbers are taken"))?;
        self.vars.write(&boot_name(n), ATTR_NV_BS_RT, &option.encode())?;
        Ok(n)
    }

    /// Delete entries named `description` that nothing boots (not in BootOrder, not BootNext)
    /// and that point elsewhere than `keep`: what a run cut off between writing its entry and
    /// the boot order left behind. Returns their numbers.
    pub fn remove_strays(&self, description: &str, keep: &HardDrive) -> Result<Vec<u16>> {
        let order = self.order()?;
        let next = self.next()?;
        let mut gone = Vec::new();
        for e in self.entries()? {
            if e.option.description == description
                && !order.contains(&e.number)
                && next != Some(e.number)
                && e.option.hd.as_ref() != Some(keep)
            {
                self.vars.delete(&boot_name(e.number))?;
                gone.push(e.number);
            }
        }
        Ok(gone)
    }

    pub fn remove(&self, n: u16) -> Result<()> {
        self.vars.delete(&boot_name(n))?;
        let order: Vec<u16> = self.order()?.into_iter().filter(|&x| x != n).collect();
        self.set_order(&order)?;
        if self.next()? == Some(n) {
            self.set_next(None)?;
        }
        Ok(())
    }

    /// Put `first` at the head of BootOrder, keeping every other entry after it in order.
    pub fn put_first(&self, first: &[u16]) -> Result<()> {
        let mut order: Vec<u16> = first.to_vec();
        order.extend(self.order()?.into_iter().filter(|n| !first.contains(n)));
        self.set_order(&order)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes of `efibootmgr -c -d /dev/vdb -p 1 -L "altinst_rootvg on vdb" -l '\EFI\debian\grubx64.efi'`
    /// for a partition at LBA 2048 of 524288 sectors with PARTUUID
    /// 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0, as laid out in the UEFI spec (EFI_LOAD_OPTION,
    /// Hard Drive Media Device Path, File Path Media Device Path) and written by efibootmgr.
    fn expected() -> Vec<u8> {
        let mut v = vec![0x01, 0, 0, 0]; // LOAD_OPTION_ACTIVE
        let file: Vec<u8> = "\\EFI\\debian\\grubx64.efi\0".encode_utf16().flat_map(|c| c.to_le_bytes()).collect();
        let plen = 42 + 4 + file.len() + 4;
        v.extend_from_slice(&(plen as u16).to_le_bytes());
        v.extend("altinst_rootvg on vdb\0".encode_utf16().flat_map(|c| c.to_le_bytes()));
        v.extend_from_slice(&[4, 1, 42, 0, 1, 0, 0, 0]);
        v.extend_from_slice(&[0x00, 0x08, 0, 0, 0, 0, 0, 0]); // start 2048
        v.extend_from_slice(&[0x00, 0x00, 0x08, 0, 0, 0, 0, 0]); // size 524288
                                                                 // GUID 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0, mixed-endian
        v.extend_from_slice(&[
            0x3c, 0x2d, 0x1e, 0x0f, 0x5a, 0x4b, 0x78, 0x69, 0x87, 0x96, 0xa5, 0xb4, 0xc3, 0xd2, 0xe1, 0xf0,
        ]);
        v.extend_from_slice(&[2, 2]);
        v.extend_from_slice(&[4, 4]);
        v.extend_from_slice(&((4 + file.len()) as u16).to_le_bytes());
        v.extend_from_slice(&file);
        v.extend_from_slice(&[0x7f, 0xff, 4, 0]);
        v
    }

    fn hd() -> HardDrive {
        HardDrive {
            partition: 1,
            start_lba: 2048,
            size_lba: 524288,
            partuuid: Uuid::parse_str("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0").unwrap(),
        }
    }

    #[test]
    fn encodes_like_efibootmgr() {
        let o = LoadOption::new("altinst_rootvg on vdb", hd(), "\\EFI\\debian\\grubx64.efi");
        assert_eq!(o.encode(), expected());
        let back = LoadOption::decode(&expected()).unwrap();
        assert_eq!(back.description, "altinst_rootvg on vdb");
        assert_eq!(back.hd, Some(hd()));
        assert_eq!(back.file.as_deref(), Some("\\EFI\\debian\\grubx64.efi"));
        assert!(back.active());
        assert_eq!(back.encode(), expected());
    }

    #[test]
    fn decodes_firmware_entries_without_hd() {
        // OVMF's "UEFI Shell" style: a firmware volume path and optional data.
        let mut v = vec![0x01, 0, 0, 0];
        let path =
            [0x04u8, 0x07, 0x14, 0x00, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 0x7f, 0xff, 0x04, 0x00];
        v.extend_from_slice(&(path.len() as u16).to_le_bytes());
        v.extend("EFI Internal Shell\0".encode_utf16().flat_map(|c| c.to_le_bytes()));
        v.extend_from_slice(&path);
        v.extend_from_slice(&[0xaa, 0xbb]);
        let o = LoadOption::decode(&v).unwrap();
        assert_eq!(o.hd, None);
        assert_eq!(o.optional, vec![0xaa, 0xbb]);
        assert_eq!(o.encode(), v);
        assert!(LoadOption::decode(&v[..10]).is_err());
    }

    fn store() -> (Efivarfs, PathBuf) {
        let dir = std::env::temp_dir().join(format!("altdisk-efivars-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        (Efivarfs { dir: dir.clone() }, dir)
    }

    #[test]
    fn adds_entries_and_orders_them() {
        let (vars, dir) = store();
        let m = BootManager { vars };
        m.set_order(&[0x0001, 0x0000]).unwrap();
        m.vars
            .write(
                "Boot0000",
                7,
                &LoadOption::new(
                    "UEFI disk",
                    HardDrive { partuuid: Uuid::new_v4(), ..hd() },
                    "\\EFI\\BOOT\\BOOTX64.EFI",
                )
                .encode(),
            )
            .unwrap();
        m.vars
            .write(
                "Boot0001",
                7,
                &LoadOption::new(
                    "debian",
                    HardDrive { partuuid: Uuid::new_v4(), ..hd() },
                    "\\EFI\\debian\\grubx64.efi",
                )
                .encode(),
            )
            .unwrap();
        let clone = LoadOption::new("altinst_rootvg on vdb", hd(), "\\EFI\\debian\\grubx64.efi");
        let n = m.add(&clone).unwrap();
        assert_eq!(n, 2);
        assert_eq!(m.add(&clone).unwrap(), 2, "adding the same entry again reuses it");
        m.put_first(&[n]).unwrap();
        assert_eq!(m.order().unwrap(), vec![2, 1, 0]);
        m.set_next(Some(1)).unwrap();
        assert_eq!(m.next().unwrap(), Some(1));
        m.remove(1).unwrap();
        assert_eq!(m.order().unwrap(), vec![2, 0]);
        assert_eq!(m.next().unwrap(), None);
        let names: Vec<u16> = m.entries().unwrap().iter().map(|e| e.number).collect();
        assert_eq!(names, vec![0, 2]);
        // The raw file holds the attributes first, as efivarfs does.
        let raw = std::fs::read(dir.join(format!("BootOrder-{GLOBAL_GUID}"))).unwrap();
        assert_eq!(raw, vec![7, 0, 0, 0, 2, 0, 0, 0]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn strays_of_an_interrupted_run_go_and_nothing_else() {
        let (vars, dir) = store();
        let m = BootManager { vars };
        let mk = |desc: &str| LoadOption::new(desc, HardDrive { partuuid: Uuid::new_v4(), ..hd() }, "\\EFI\\x.efi");
        let ordered = m.add(&mk("altinst_rootvg on vdb")).unwrap();
        m.set_order(&[ordered]).unwrap();
        let stray = m.add(&mk("altinst_rootvg on vdb")).unwrap();
        let other = m.add(&mk("debian")).unwrap();
        let now = mk("altinst_rootvg on vdb");
        let ours = m.add(&now).unwrap();
        let hd_now = now.hd.clone().unwrap();
        assert_eq!(m.remove_strays("altinst_rootvg on vdb", &hd_now).unwrap(), vec![stray]);
        let left: Vec<u16> = m.entries().unwrap().iter().map(|e| e.number).collect();
        assert_eq!(left, vec![ordered, other, ours], "ordered, foreign and current entries stay");
        assert_eq!(m.order().unwrap(), vec![ordered], "the order is not touched");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
