//! VM tier driver: cached "production" images (an installed Debian 12 with GRUB or
//! systemd-boot, built by `tests/vm/build-image.sh`) and QEMU machines booted from them.
//!
//! A [`Machine`] owns a directory under `/var/tmp/altdisk-tests/vm-<name>-<uuid>/` holding
//! its disks (disk 0 is a qcow2 overlay on the cached image, so the cache stays pristine),
//! its private copy of the OVMF NVRAM, its console log and QEMU's own log. QEMU always runs
//! with TCG, q35, OVMF, `-nic none` and `-no-reboot` (a guest `reboot` powers the VM off:
//! OVMF often stalls after a warm reset, so a reboot is a new QEMU on the same disks and
//! NVRAM). The serial console is a UNIX socket the driver talks to; QEMU also logs every
//! byte of it to [`Machine::serial_log`].
//!
//! A live machine ([`Machine::live`]) boots a rescue ISO instead, as a CD or a USB stick,
//! under OVMF or SeaBIOS ([`Firmware`], [`Medium`]); console steps typed before the login
//! ([`Machine::set_boot_steps`]) pick a GRUB entry or leave a menu for the shell. Every
//! QEMU has a QMP socket ([`Machine::qmp`]): screenshots of the VGA screen, unplugging.
//!
//! Commands run in a plain `bash --noediting` with echo off and an empty prompt: each
//! command is sent base64-encoded through a here-document, runs as its own `bash` script
//! (stdin from /dev/null, stderr into stdout) and is framed by markers that carry a nonce
//! unique to the boot and the command, so neither an echo, an old shell, nor an earlier
//! command's output can be mistaken for its result. Everything is bounded by timeouts.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, LazyLock, Mutex};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

/// OVMF firmware code (read-only) and the pristine NVRAM template.
pub fn ovmf_code() -> PathBuf {
    env_path("ALTDISK_OVMF_CODE", "/usr/share/OVMF/OVMF_CODE_4M.fd")
}
pub fn ovmf_vars() -> PathBuf {
    env_path("ALTDISK_OVMF_VARS", "/usr/share/OVMF/OVMF_VARS_4M.fd")
}

fn env_path(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(default))
}

fn env_secs(var: &str, default: u64) -> Duration {
    Duration::from_secs(std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default))
}

/// How long [`Machine::boot`] waits for the root shell (env `ALTDISK_VM_BOOT_TIMEOUT`, s).
fn boot_timeout() -> Duration {
    env_secs("ALTDISK_VM_BOOT_TIMEOUT", 300)
}

/// vCPUs of each guest: ALTDISK_VM_SMP, else 2 when one VM runs at a time and 1 when
/// several share the machine (ALTDISK_VM_PARALLEL), so that the guests never ask for more
/// host threads than there are cores.
fn vcpus() -> usize {
    if let Some(n) = std::env::var("ALTDISK_VM_SMP").ok().and_then(|v| v.parse().ok()).filter(|&n: &usize| n > 0) {
        return n;
    }
    let parallel = std::env::var("ALTDISK_VM_PARALLEL").ok().and_then(|v| v.parse().ok()).unwrap_or(1usize);
    if parallel > 1 {
        1
    } else {
        2
    }
}

/// VM slots: TCG is CPU-bound, and two 2-vCPU guests on a 2-core machine each boot four to
/// five times slower than one alone, so by default one QEMU runs at a time on this machine,
/// across test processes too (an flock on /var/tmp/altdisk-tests/.vm-slot-N.lock; env
/// ALTDISK_VM_PARALLEL raises the number of slots). A thread that already holds a slot (a
/// test with a second machine running) gets another without waiting, so it cannot deadlock
/// itself. Image builds (which boot QEMU too) take a slot as well.
/// Per thread: how many slots it holds, and the locked slot file (None past the timeout).
type Held = HashMap<ThreadId, (usize, Option<fs::File>)>;
static SLOTS: LazyLock<Mutex<Held>> = LazyLock::new(Mutex::default);

struct SlotGuard {
    owner: ThreadId,
}

fn take_slot(what: &str) -> SlotGuard {
    let me = std::thread::current().id();
    if let Some(held) = SLOTS.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&me) {
        held.0 += 1;
        return SlotGuard { owner: me };
    }
    let max = std::env::var("ALTDISK_VM_PARALLEL").ok().and_then(|v| v.parse().ok()).unwrap_or(1usize).max(1);
    let limit = env_secs("ALTDISK_VM_SLOT_TIMEOUT", 3600);
    let dir = Path::new("/var/tmp/altdisk-tests");
    let _ = fs::create_dir_all(dir);
    let start = Instant::now();
    let mut said = false;
    let file = 'wait: loop {
        for i in 0..max {
            let Ok(f) = fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(dir.join(format!(".vm-slot-{i}.lock")))
            else {
                continue;
            };
            if rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok() {
                break 'wait Some(f);
            }
        }
        if start.elapsed() >= limit {
            eprintln!("vm: {what}: no VM slot free after {limit:?}: starting anyway");
            break None;
        }
        if !said {
            eprintln!("vm: {what} waits for another VM to stop (ALTDISK_VM_PARALLEL={max})");
            said = true;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    SLOTS.lock().unwrap_or_else(|e| e.into_inner()).insert(me, (1, file));
    SlotGuard { owner: me }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let mut slots = SLOTS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = slots.get_mut(&self.owner) {
            held.0 -= 1;
            if held.0 == 0 {
                slots.remove(&self.owner); // closing the file releases the flock
            }
        }
    }
}

/// The kind of a production image: tests/vm/kinds/<name>.conf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Debian 12, GRUB for UEFI, initramfs-tools.
    Grub,
    /// Debian 12, systemd-boot.
    SystemdBoot,
    /// Debian 12, GRUB for BIOS in the MBR of an msdos disk.
    BiosMbr,
    /// Debian 12, GRUB for BIOS on a GPT disk with a BIOS boot partition.
    BiosGpt,
    /// Debian 12 with dracut, GRUB for UEFI.
    Dracut,
    /// Debian 13, GRUB for UEFI.
    Trixie,
    /// The Grub kind with cryptsetup (the base of the LUKS machine).
    GrubCrypt,
}

impl Kind {
    /// The name build-image.sh takes.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Grub => "grub",
            Kind::SystemdBoot => "systemd-boot",
            Kind::BiosMbr => "bios-mbr",
            Kind::BiosGpt => "bios-gpt",
            Kind::Dracut => "dracut",
            Kind::Trixie => "trixie",
            Kind::GrubCrypt => "grub-crypt",
        }
    }

    /// Its machines boot through SeaBIOS (no OVMF): see [`Machine::set_bios`].
    pub fn bios(self) -> bool {
        matches!(self, Kind::BiosMbr | Kind::BiosGpt)
    }
}

/// How a disk is attached to the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DiskModel {
    /// virtio-blk, 512-byte sectors (vda, vdb...).
    #[default]
    Virtio,
    /// virtio-blk with 4096-byte logical and physical sectors (a 4Kn disk).
    Virtio4k,
    /// An NVMe controller with one namespace of 512-byte sectors (nvme0n1...).
    Nvme,
    /// NVMe with 4096-byte sectors.
    Nvme4k,
}

impl DiskModel {
    /// QEMU's -device value for the drive `id`, with the serial `serial`.
    fn device(self, id: &str, serial: &str) -> String {
        let k4 = ",logical_block_size=4096,physical_block_size=4096";
        match self {
            DiskModel::Virtio => format!("virtio-blk-pci,drive={id},serial={serial}"),
            DiskModel::Virtio4k => format!("virtio-blk-pci,drive={id},serial={serial}{k4}"),
            DiskModel::Nvme => format!("nvme,drive={id},serial={serial}"),
            DiskModel::Nvme4k => format!("nvme,drive={id},serial={serial}{k4}"),
        }
    }
}

/// The machine's firmware. OVMF (UEFI) has an NVRAM file per machine; SeaBIOS (BIOS) none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    Ovmf,
    SeaBios,
}

/// A read-only boot medium holding an ISO: a CD drive (AHCI), or a USB stick (usb-storage
/// on an xHCI controller, QEMU device id `stick`, so [`Machine::unplug`] can pull it). It
/// comes first in the firmware's boot order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Medium {
    Cdrom(PathBuf),
    UsbStick(PathBuf),
}

/// A console step of a boot, before the login: once every `wait_for` text has shown on the
/// console (after the previous step's match), `send` is typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootStep {
    pub wait_for: Vec<String>,
    pub send: String,
}

impl BootStep {
    pub fn new(wait_for: &[&str], send: &str) -> BootStep {
        BootStep { wait_for: wait_for.iter().map(|s| s.to_string()).collect(), send: send.to_string() }
    }
}

/// A cached production image: the installed disk and the NVRAM holding its boot entry.
/// Both files are read-only: machines use overlays and copies.
#[derive(Debug, Clone)]
pub struct Image {
    pub disk: PathBuf,
    pub vars: PathBuf,
}

/// tests/vm/ of this source tree.
pub fn vm_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("vm")
}

/// Build (via tests/vm/build-image.sh) or reuse the cached production image. The script
/// reuses a complete image at once; a cold build takes a few minutes (its progress goes to
/// stderr). Builds are serialized (in this process by a mutex, across processes by the
/// script's flock). Cache root: env `ALTDISK_VM_CACHE` (default /var/cache/altdisk-tests).
pub fn production_image(kind: Kind) -> Result<Image> {
    static LOCK: Mutex<()> = Mutex::new(());
    // A complete image is reused without QEMU; only a build needs a VM slot (taken before
    // the lock: whoever holds the lock never waits for a slot).
    let script = vm_dir().join("build-image.sh");
    let _slot = match Command::new("bash").arg(&script).args(["--print-outdir", kind.name()]).output() {
        Ok(o)
            if o.status.success() && Path::new(String::from_utf8_lossy(&o.stdout).trim()).join("COMPLETE").exists() =>
        {
            None
        }
        _ => Some(take_slot(&format!("building the {} image", kind.name()))),
    };
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut cmd = Command::new("bash");
    cmd.arg(&script).arg(kind.name()).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    cmd.process_group(0);
    let mut child = cmd.spawn().with_context(|| format!("cannot run {}", script.display()))?;
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let limit = env_secs("ALTDISK_VM_BUILD_TIMEOUT", 3600);
    let status = match wait_child(&mut child, limit)? {
        Some(status) => status,
        None => {
            // The whole process group: mmdebstrap, QEMU and their helpers.
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::SIGTERM);
            std::thread::sleep(Duration::from_secs(5));
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::SIGKILL);
            let _ = child.wait();
            bail!("{} {} did not finish within {:?}", script.display(), kind.name(), limit);
        }
    };
    let out = reader.join().unwrap_or_default();
    if !status.success() {
        bail!("{} {} failed ({status}); its output is above", script.display(), kind.name());
    }
    let dir = PathBuf::from(out.lines().last().unwrap_or("").trim());
    if !dir.join("COMPLETE").exists() {
        bail!("{} {} printed {:?}, which holds no complete image", script.display(), kind.name(), dir);
    }
    let image = Image { disk: dir.join("disk.raw"), vars: dir.join("vars.fd") };
    for f in [&image.disk, &image.vars] {
        if !f.exists() {
            bail!("the cached image lacks {}", f.display());
        }
    }
    Ok(image)
}

/// Waits for a child up to `limit`: Some(status), or None when it is still running.
fn wait_child(child: &mut Child, limit: Duration) -> Result<Option<std::process::ExitStatus>> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What the console has printed since QEMU started, shared with the reader thread.
#[derive(Default)]
struct ConsoleBuf {
    data: Vec<u8>,
    eof: bool,
}

type Shared = Arc<(Mutex<ConsoleBuf>, Condvar)>;

/// A running QEMU and its console connection.
struct Running {
    child: Child,
    stream: UnixStream,
    shared: Shared,
    reader: Option<JoinHandle<()>>,
    /// Unique to this boot: every marker carries it.
    nonce: String,
    /// Console bytes before this offset are consumed.
    cursor: usize,
    seq: u64,
    _slot: SlotGuard,
}

impl Running {
    fn send(&mut self, text: &str) -> Result<()> {
        self.stream.write_all(text.as_bytes()).context("writing to the VM console")?;
        self.stream.flush()?;
        Ok(())
    }

    /// Waits until `find` matches the console bytes from the cursor on; returns what it
    /// returned. Errors at the deadline or when QEMU closes the console. (Bytes, not text:
    /// offsets must stay exact whatever the guest prints.)
    fn wait_for<T>(&self, deadline: Instant, mut find: impl FnMut(&[u8]) -> Option<T>) -> Result<T> {
        let (lock, cvar) = &*self.shared;
        let mut buf = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(v) = find(&buf.data[self.cursor.min(buf.data.len())..]) {
                return Ok(v);
            }
            if buf.eof {
                bail!("the VM console closed (QEMU exited)");
            }
            let now = Instant::now();
            if now >= deadline {
                bail!("timed out");
            }
            buf = cvar.wait_timeout(buf, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// QEMU closed the console: it has exited (or is exiting).
    fn console_closed(&self) -> bool {
        self.shared.0.lock().unwrap_or_else(|e| e.into_inner()).eof
    }

    fn len(&self) -> usize {
        self.shared.0.lock().unwrap_or_else(|e| e.into_inner()).data.len()
    }

    /// Console text from `from` (a byte offset) to now.
    fn text_since(&self, from: usize) -> String {
        let buf = self.shared.0.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&buf.data[from.min(buf.data.len())..]).into_owned()
    }

    /// Kills QEMU (if still running) and reaps it and the reader thread.
    fn kill(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// One test VM. See the module documentation.
pub struct Machine {
    name: String,
    dir: PathBuf,
    disks: Vec<PathBuf>,
    vars: PathBuf,
    share: PathBuf,
    vm: Option<Running>,
    boots: u32,
    last_boot: Option<Duration>,
    boot_timeout: Duration,
    /// Disks attached other than as virtio-blk with 512-byte sectors, by path.
    models: HashMap<PathBuf, DiskModel>,
    /// A console prompt answered at every boot (the initramfs asking for a passphrase).
    answer: Option<(String, String)>,
    firmware: Firmware,
    medium: Option<Medium>,
    boot_steps: Vec<BootStep>,
    /// When each boot step of the last boot matched, from QEMU's start.
    step_times: Vec<Duration>,
}

const MAX_COMMAND: usize = 24 * 1024;

impl Machine {
    /// Disk 0 = a qcow2 overlay backed by image.disk (the cache stays pristine), then one
    /// blank (sparse) raw disk per entry of `blank_disks` (sizes in bytes); a private copy
    /// of image.vars.
    pub fn new(name: &str, image: &Image, blank_disks: &[u64]) -> Result<Machine> {
        let mut m = Machine::empty(name)?;
        let disk = fs::canonicalize(&image.disk).with_context(|| format!("image disk {}", image.disk.display()))?;
        let overlay = m.dir.join("disk0.qcow2");
        let out = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(&disk)
            .arg(&overlay)
            .output()
            .context("running qemu-img (apt-get install qemu-utils)")?;
        if !out.status.success() {
            bail!("qemu-img create failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        m.disks.push(overlay);
        m.add_blank_disks(blank_disks)?;
        fs::copy(&image.vars, &m.vars).with_context(|| format!("copying {}", image.vars.display()))?;
        set_writable(&m.vars)?;
        Ok(m)
    }

    /// A machine that boots a live ISO from `medium` under `firmware`, with blank (sparse)
    /// raw disks of the given sizes (vda, vdb, ...) and, under OVMF, a pristine NVRAM.
    pub fn live(name: &str, firmware: Firmware, medium: Medium, blank_disks: &[u64]) -> Result<Machine> {
        let mut m = Machine::empty(name)?;
        let iso = match &medium {
            Medium::Cdrom(p) | Medium::UsbStick(p) => p,
        };
        if !iso.is_file() {
            bail!("the boot medium {} does not exist", iso.display());
        }
        m.firmware = firmware;
        m.medium = Some(medium);
        m.add_blank_disks(blank_disks)?;
        fs::copy(ovmf_vars(), &m.vars).with_context(|| format!("copying {}", ovmf_vars().display()))?;
        set_writable(&m.vars)?;
        Ok(m)
    }

    /// The machine's directory and nothing else (no disks).
    fn empty(name: &str) -> Result<Machine> {
        let safe: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
            .take(24)
            .collect();
        let dir = PathBuf::from(format!("/var/tmp/altdisk-tests/vm-{safe}-{}", uuid::Uuid::new_v4().simple()));
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        // From here on, Drop removes the directory if anything fails.
        let m = Machine {
            name: safe,
            dir: dir.clone(),
            disks: Vec::new(),
            vars: dir.join("vars.fd"),
            share: dir.join("share"),
            vm: None,
            boots: 0,
            last_boot: None,
            boot_timeout: boot_timeout(),
            models: HashMap::new(),
            answer: None,
            firmware: Firmware::Ovmf,
            medium: None,
            boot_steps: Vec::new(),
            step_times: Vec::new(),
        };
        fs::create_dir_all(&m.share)?;
        Ok(m)
    }

    /// Blank (sparse) raw disks after the existing ones: disk1.raw, disk2.raw, ...
    fn add_blank_disks(&mut self, sizes: &[u64]) -> Result<()> {
        for (i, size) in sizes.iter().enumerate() {
            let p = self.dir.join(format!("disk{}.raw", i + 1));
            fs::File::create(&p)?.set_len(*size)?;
            self.disks.push(p);
        }
        Ok(())
    }

    /// Console steps typed before the login at every boot (see [`BootStep`]). With steps,
    /// the driver does not wait for a login prompt: after the last step it waits for the
    /// shell's prompt, as after an autologin.
    pub fn set_boot_steps(&mut self, steps: Vec<BootStep>) {
        self.boot_steps = steps;
    }

    /// Put a boot medium in (first in the firmware's boot order), or take it out (`None`),
    /// from the next boot on: a rescue ISO brought to an installed machine.
    pub fn set_medium(&mut self, medium: Option<Medium>) {
        self.reap();
        assert!(self.vm.is_none(), "Machine::set_medium: the VM is running");
        self.medium = medium;
    }

    /// When each boot step of the last boot matched, counted from QEMU's start.
    pub fn boot_step_times(&self) -> &[Duration] {
        &self.step_times
    }

    /// The whole console log of this machine (every boot), without CRs and escape sequences.
    pub fn console_text(&self) -> String {
        clean(&String::from_utf8_lossy(&fs::read(self.serial_log()).unwrap_or_default()))
    }

    /// One QMP command (`{"execute": cmd, "arguments": args}`) on the running QEMU; its
    /// "return" value, or an error carrying QMP's error.
    pub fn qmp(&mut self, cmd: &str, args: serde_json::Value) -> Result<serde_json::Value> {
        if !self.is_running() {
            bail!("Machine::qmp({cmd}): VM {} is not running", self.name);
        }
        let sock = self.dir.join("qmp.sock");
        let stream = UnixStream::connect(&sock).with_context(|| format!("connecting to {}", sock.display()))?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        let mut w = stream.try_clone()?;
        let mut lines = std::io::BufReader::new(stream);
        // Reads until a reply (skipping the greeting's and the events' lines).
        let reply = |lines: &mut std::io::BufReader<UnixStream>| -> Result<serde_json::Value> {
            loop {
                let mut line = String::new();
                if std::io::BufRead::read_line(lines, &mut line)? == 0 {
                    bail!("QMP closed the connection");
                }
                let v: serde_json::Value =
                    serde_json::from_str(line.trim()).with_context(|| format!("QMP sent {line:?}"))?;
                if let Some(r) = v.get("return") {
                    return Ok(r.clone());
                }
                if let Some(e) = v.get("error") {
                    bail!("QMP {cmd}: {e}");
                }
            }
        };
        w.write_all(b"{\"execute\": \"qmp_capabilities\"}\n")?;
        reply(&mut lines).context("QMP handshake")?;
        let mut req = serde_json::json!({ "execute": cmd });
        if !args.is_null() {
            req["arguments"] = args;
        }
        w.write_all(format!("{req}\n").as_bytes())?;
        reply(&mut lines)
    }

    /// A picture of the VGA screen, through QMP's screendump: PNG when the file name ends
    /// in .png, else a binary PPM.
    pub fn screendump(&mut self, file: &Path) -> Result<()> {
        let path = qemu_path(file)?;
        let format = if path.ends_with(".png") { "png" } else { "ppm" };
        self.qmp("screendump", serde_json::json!({ "filename": path, "format": format }))?;
        if !file.is_file() {
            bail!("screendump wrote no {}", file.display());
        }
        Ok(())
    }

    /// Pulls a device out of the running machine (QMP device_del), e.g. the USB `stick`.
    pub fn unplug(&mut self, device_id: &str) -> Result<()> {
        self.qmp("device_del", serde_json::json!({ "id": device_id })).map(|_| ())
    }

    /// The machine's own directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The full console log (every boot, appended).
    pub fn serial_log(&self) -> PathBuf {
        self.dir.join("serial.log")
    }

    /// Host paths of the disks, in guest order (vda, vdb, ...).
    pub fn disks(&self) -> &[PathBuf] {
        &self.disks
    }

    /// Replace the disks (e.g. boot the clone disk alone). Only while stopped.
    pub fn set_disks(&mut self, disks: Vec<PathBuf>) {
        self.reap();
        assert!(self.vm.is_none(), "Machine::set_disks: the VM is running");
        self.disks = disks;
    }

    /// Attach the disk `disk` (one of [`Machine::disks`]) as `model` from the next boot on;
    /// the model stays with the disk when [`Machine::set_disks`] reorders them.
    pub fn set_disk_model(&mut self, disk: &Path, model: DiskModel) {
        self.models.insert(disk.to_path_buf(), model);
    }

    /// Boot through SeaBIOS (QEMU's default BIOS) instead of OVMF from the next boot on:
    /// the disks' own boot code starts, and there is no NVRAM.
    pub fn set_bios(&mut self, bios: bool) {
        self.firmware = if bios { Firmware::SeaBios } else { Firmware::Ovmf };
    }

    /// Type `text` and Enter at the console each time `prompt` shows while the machine boots
    /// (before the login): what an admin types at the initramfs's passphrase prompt.
    pub fn set_console_answer(&mut self, prompt: &str, text: &str) {
        self.answer = Some((prompt.to_string(), text.to_string()));
    }

    /// The NVRAM file of this machine.
    pub fn vars(&self) -> &Path {
        &self.vars
    }

    /// Replace the NVRAM with a pristine OVMF_VARS (no boot entries). Only while stopped.
    pub fn fresh_vars(&mut self) -> Result<()> {
        self.reap();
        if self.vm.is_some() {
            bail!("Machine::fresh_vars: the VM is running");
        }
        fs::copy(ovmf_vars(), &self.vars).with_context(|| format!("copying {}", ovmf_vars().display()))?;
        set_writable(&self.vars)
    }

    /// How long [`Machine::boot`] waits for the shell (default: env
    /// ALTDISK_VM_BOOT_TIMEOUT or 300 s); shorter for a boot that is expected to fail.
    pub fn set_boot_timeout(&mut self, timeout: Duration) {
        self.boot_timeout = timeout;
    }

    /// Forgets a QEMU that has exited by itself (the guest powered off).
    fn reap(&mut self) {
        if let Some(vm) = self.vm.as_mut() {
            if vm.child.try_wait().ok().flatten().is_some() {
                let mut vm = self.vm.take().unwrap();
                vm.kill();
            }
        }
    }

    /// QEMU is running (false once the guest powered off, even before it is reaped).
    pub fn is_running(&self) -> bool {
        self.vm.as_ref().is_some_and(|vm| !vm.console_closed())
    }

    /// How long the last successful boot took from QEMU's start to the root shell.
    pub fn last_boot_time(&self) -> Option<Duration> {
        self.last_boot
    }

    /// Start QEMU and wait for the root shell (timeout: env ALTDISK_VM_BOOT_TIMEOUT,
    /// default 300 s; the error carries the end of the console log).
    pub fn boot(&mut self) -> Result<()> {
        self.reap();
        if self.vm.is_some() {
            bail!("Machine::boot: the VM is already running");
        }
        let slot = take_slot(&format!("VM {}", self.name));
        let started = Instant::now();
        self.boots += 1;
        let sock = self.dir.join("console.sock");
        let _ = fs::remove_file(&sock);
        let qemu_log = self.dir.join("qemu.log");
        let log = fs::OpenOptions::new().create(true).append(true).open(&qemu_log)?;
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-name", &format!("altdisk-{}", self.name)]);
        cmd.args(["-accel", "tcg", "-machine", "q35", "-cpu", "max", "-m", "2048", "-smp", &vcpus().to_string()]);
        cmd.args(["-nic", "none", "-display", "none", "-monitor", "none", "-no-reboot"]);
        let qmp = self.dir.join("qmp.sock");
        let _ = fs::remove_file(&qmp);
        cmd.arg("-qmp").arg(format!("unix:{},server=on,wait=off", qemu_path(&qmp)?));
        if self.firmware == Firmware::Ovmf {
            cmd.arg("-drive").arg(format!("if=pflash,format=raw,unit=0,readonly=on,file={}", qemu_path(&ovmf_code())?));
            cmd.arg("-drive").arg(format!("if=pflash,format=raw,unit=1,file={}", qemu_path(&self.vars)?));
        } // else QEMU's default firmware: SeaBIOS
        match &self.medium {
            Some(Medium::Cdrom(iso)) => {
                cmd.arg("-drive")
                    .arg(format!("file={},format=raw,media=cdrom,if=none,id=cd,readonly=on", qemu_path(iso)?));
                cmd.args(["-device", "ide-cd,drive=cd,id=cdrom,bootindex=0"]);
            }
            Some(Medium::UsbStick(iso)) => {
                cmd.args(["-device", "qemu-xhci,id=xhci"]);
                cmd.arg("-drive").arg(format!("file={},format=raw,if=none,id=stickdrive,readonly=on", qemu_path(iso)?));
                cmd.args(["-device", "usb-storage,bus=xhci.0,drive=stickdrive,id=stick,removable=on,bootindex=0"]);
            }
            None => {}
        }
        for (i, disk) in self.disks.iter().enumerate() {
            let format = disk_format(disk)?;
            cmd.arg("-drive").arg(format!("file={},format={format},if=none,id=d{i},discard=unmap", qemu_path(disk)?));
            let model = self.models.get(disk).copied().unwrap_or_default();
            cmd.arg("-device").arg(model.device(&format!("d{i}"), &disk_serial(disk, i)));
        }
        cmd.arg("-virtfs").arg(format!(
            "local,path={},mount_tag=host,security_model=none,readonly=on,id=host",
            qemu_path(&self.share)?
        ));
        cmd.arg("-chardev").arg(format!(
            "socket,id=ser0,path={},server=on,wait=on,logfile={},logappend=on",
            qemu_path(&sock)?,
            qemu_path(&self.serial_log())?
        ));
        cmd.args(["-serial", "chardev:ser0"]);
        cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        // QEMU dies with the thread that started it, should the test process be killed.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().context("starting qemu-system-x86_64 (apt-get install qemu-system-x86)")?;

        // QEMU waits (wait=on) until the console is connected: no output is lost.
        let stream = loop {
            if let Some(status) = child.try_wait()? {
                bail!("QEMU exited at once ({status}): {}", tail(&qemu_log, 20));
            }
            if let Ok(s) = UnixStream::connect(&sock) {
                break s;
            }
            if started.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                let _ = child.wait();
                bail!("QEMU did not open its console socket: {}", tail(&qemu_log, 20));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        stream.set_write_timeout(Some(Duration::from_secs(60)))?;
        let shared: Shared = Arc::default();
        let reader = {
            let shared = shared.clone();
            let mut rs = stream.try_clone()?;
            std::thread::spawn(move || {
                let mut chunk = [0u8; 8192];
                loop {
                    let n = rs.read(&mut chunk).unwrap_or(0);
                    let (lock, cvar) = &*shared;
                    let mut buf = lock.lock().unwrap_or_else(|e| e.into_inner());
                    if n == 0 {
                        buf.eof = true;
                        cvar.notify_all();
                        return;
                    }
                    buf.data.extend_from_slice(&chunk[..n]);
                    cvar.notify_all();
                }
            })
        };
        let nonce = format!("{}b{}", &uuid::Uuid::new_v4().simple().to_string()[..12], self.boots);
        self.vm = Some(Running { child, stream, shared, reader: Some(reader), nonce, cursor: 0, seq: 0, _slot: slot });
        match self.wait_shell(started + self.boot_timeout, started) {
            Ok(()) => {
                self.last_boot = Some(started.elapsed());
                Ok(())
            }
            Err(e) => {
                if let Some(mut vm) = self.vm.take() {
                    vm.kill();
                }
                let qemu: String = fs::read_to_string(self.dir.join("qemu.log"))
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| !l.contains("QEMU waiting for connection"))
                    .map(|l| format!("{l}\n"))
                    .collect();
                Err(anyhow!(
                    "VM {} did not reach a root shell (boot {}, after {:.0?}): {e:#}\n\
                     --- end of the console log {} ---\n{}\n--- QEMU's messages: {}",
                    self.name,
                    self.boots,
                    started.elapsed(),
                    self.serial_log().display(),
                    tail(&self.serial_log(), 60),
                    if qemu.is_empty() { "none\n" } else { tail_str(&qemu, 2000) }
                ))
            }
        }
    }

    /// Waits for the autologin (or runs the boot steps), then turns the login shell into a
    /// quiet command shell.
    fn wait_shell(&mut self, deadline: Instant, started: Instant) -> Result<()> {
        let vm = self.vm.as_mut().unwrap();
        self.step_times.clear();
        if !self.boot_steps.is_empty() {
            // 1'. The boot steps, each matched after the previous one's match.
            let mut from = 0usize;
            for (i, step) in self.boot_steps.iter().enumerate() {
                let end = vm
                    .wait_for(deadline, |t| {
                        let rest = t.get(from..)?;
                        let mut end = 0;
                        for w in &step.wait_for {
                            end = end.max(find(rest, w)? + w.len());
                        }
                        Some(from + end)
                    })
                    .with_context(|| format!("boot step {}: waiting for {:?}", i + 1, step.wait_for))?;
                self.step_times.push(started.elapsed());
                from = end;
                if !step.send.is_empty() {
                    vm.send(&step.send)?;
                }
            }
        } else {
            Self::wait_login(vm, self.answer.as_ref(), deadline)?;
        }
        Self::quiet_shell(vm, deadline)
    }

    /// 1. A login: agetty's autologin (or a plain login prompt, where we type root).
    ///    Nothing is typed before: a key would stop GRUB's or systemd-boot's countdown;
    ///    only the console answer is typed, each time its prompt shows (a passphrase).
    fn wait_login(vm: &mut Running, answer: Option<&(String, String)>, deadline: Instant) -> Result<()> {
        let mut answered = 0usize;
        let auto = loop {
            let seen = vm
                .wait_for(deadline, |t| {
                    if contains(t, "(automatic login)") {
                        Some(Err(true))
                    } else if contains(t, " login: ") {
                        Some(Err(false))
                    } else {
                        let (prompt, _) = answer?;
                        let from = answered.min(t.len());
                        find(&t[from..], prompt).map(|i| Ok(from + i + prompt.len()))
                    }
                })
                .context("waiting for the login on ttyS0")?;
            match seen {
                Ok(end) => {
                    answered = end;
                    let (_, text) = answer.expect("an answer was looked for");
                    vm.send(&format!("{text}\n"))?;
                }
                Err(auto) => break auto,
            }
        };
        if !auto {
            // Give a slow "(automatic login)" a moment before typing the name ourselves.
            let short = (Instant::now() + Duration::from_secs(3)).min(deadline);
            if vm.wait_for(short, |t| contains(t, "(automatic login)").then_some(())).is_err() {
                vm.send("root\n")?;
            }
        }
        Ok(())
    }

    /// 2.-4.: from the login shell to the quiet command shell.
    fn quiet_shell(vm: &mut Running, deadline: Instant) -> Result<()> {
        // 2. The login shell's prompt, if it shows within a while (bash's "# ").
        let mark = vm.len();
        let short = (Instant::now() + Duration::from_secs(30)).min(deadline);
        let _ = vm.wait_for(short, |t| contains(t, "# ").then_some(()));
        // 3. Replace it by a quiet shell: no echo, no prompt, no readline, no kernel noise.
        //    Repeat until it answers (input sent while login was still running may be lost).
        let mut k = 0;
        loop {
            k += 1;
            let ready = format!("__READY_{}_{k}__", vm.nonce);
            vm.send(&format!(
                "stty -echo; export PS1= PS2= PROMPT_COMMAND= TERM=dumb; exec bash --norc --noprofile --noediting\n\
                 set +H; stty -echo; dmesg -n 1; echo __READY_\"{}\"_{k}__\n",
                vm.nonce
            ))?;
            let short = (Instant::now() + Duration::from_secs(10)).min(deadline);
            match vm.wait_for(short, |t| contains(t, &ready).then_some(())) {
                Ok(()) => break,
                Err(_) if Instant::now() < deadline => continue,
                Err(e) => {
                    return Err(
                        e.context(format!("no answer from the shell: {:?}", tail_str(&vm.text_since(mark), 800)))
                    )
                }
            }
        }
        // 4. Let earlier probes finish, then start reading after a sync marker.
        let sync = format!("__SYNC_{}__", vm.nonce);
        vm.send(&format!("echo __SYNC_\"{}\"__\n", vm.nonce))?;
        let end = vm.wait_for(deadline, |t| find(t, &sync).map(|i| i + sync.len()))?;
        vm.cursor += end;
        Ok(())
    }

    /// Run a shell command (bash script text, may span lines) in the guest as root; its
    /// exit code and combined stdout+stderr. stdin is /dev/null. On timeout the command is
    /// interrupted (^C) and an error returned.
    pub fn run(&mut self, cmd: &str, timeout: Duration) -> Result<(i32, String)> {
        let name = self.name.clone();
        let vm = self.vm.as_mut().ok_or_else(|| anyhow!("Machine::run: VM {name} is not running"))?;
        if cmd.len() > MAX_COMMAND {
            bail!("Machine::run: command of {} bytes (at most {MAX_COMMAND}): put big data in a file", cmd.len());
        }
        vm.seq += 1;
        let id = format!("{}c{}", vm.nonce, vm.seq);
        let mut text = format!("base64 -d >/run/altdisk-cmd <<'__B64_{id}__'\n");
        for line in base64(cmd.as_bytes()).as_bytes().chunks(76) {
            text.push_str(std::str::from_utf8(line).unwrap());
            text.push('\n');
        }
        text.push_str(&format!(
            "__B64_{id}__\necho __BEGIN_\"{id}\"__; bash /run/altdisk-cmd </dev/null 2>&1; echo __END_\"{id}\"_$?__\n"
        ));
        vm.send(&text)?;
        let begin = format!("__BEGIN_{id}__");
        let end = format!("__END_{id}_");
        let deadline = Instant::now() + timeout;
        let found = vm.wait_for(deadline, |t| {
            let b = find(t, &begin)?;
            let after = b + begin.len();
            let body_start = after + t[after..].iter().position(|&c| c == b'\n').map(|i| i + 1).unwrap_or(0);
            let e = body_start + find(&t[body_start..], &end)?;
            let rest = &t[e + end.len()..];
            let n = rest.iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 || !rest[n..].starts_with(b"__") {
                return None;
            }
            let rc = std::str::from_utf8(&rest[..n]).ok()?.parse::<i32>().unwrap_or(-1);
            Some((rc, clean(&String::from_utf8_lossy(&t[body_start..e])), e + end.len() + n + 2))
        });
        match found {
            Ok((rc, out, consumed)) => {
                vm.cursor += consumed;
                Ok((rc, out))
            }
            Err(_) => {
                let partial = clean(&vm.text_since(vm.cursor));
                let partial = tail_str(&partial, 4000);
                if vm.console_closed() {
                    // QEMU exited (the guest powered off or rebooted): the VM is stopped.
                    let mut vm = self.vm.take().unwrap();
                    vm.kill();
                    bail!("VM {name}: QEMU exited while running: {cmd}\nconsole output since:\n{partial}");
                }
                let _ = vm.send("\x03");
                bail!(
                    "VM {name}: command did not finish within {timeout:?} (sent ^C): {cmd}\noutput so far:\n{partial}"
                )
            }
        }
    }

    /// Start `cmd` in the guest and return its output once a line with `marker` appears in it, leaving it
    /// running (the console is busy until it ends). For cutting the power at a chosen moment:
    /// see [`Machine::power_cut`].
    pub fn start_until(&mut self, cmd: &str, marker: &str, timeout: Duration) -> Result<String> {
        let name = self.name.clone();
        let vm = self.vm.as_mut().ok_or_else(|| anyhow!("Machine::start_until: VM {name} is not running"))?;
        vm.seq += 1;
        let id = format!("{}s{}", vm.nonce, vm.seq);
        let mut text = format!("base64 -d >/run/altdisk-start <<'__B64_{id}__'\n");
        for line in base64(cmd.as_bytes()).as_bytes().chunks(76) {
            text.push_str(std::str::from_utf8(line).unwrap());
            text.push('\n');
        }
        text.push_str(&format!("__B64_{id}__\necho __BEGIN_\"{id}\"__; bash /run/altdisk-start </dev/null 2>&1\n"));
        vm.send(&text)?;
        let begin = format!("__BEGIN_{id}__");
        let deadline = Instant::now() + timeout;
        let found = vm.wait_for(deadline, |t| {
            let b = find(t, &begin)?;
            let m = b + find(&t[b..], marker)?;
            // The whole line that holds the marker.
            let end = m + t[m..].iter().position(|&c| c == b'\n')?;
            Some(clean(&String::from_utf8_lossy(&t[b + begin.len()..end])))
        });
        match found {
            Ok(out) => Ok(out),
            Err(_) => {
                let all = clean(&vm.text_since(vm.cursor));
                let partial = tail_str(&all, 4000);
                bail!("VM {name}: `{marker}` did not appear within {timeout:?}: {cmd}\noutput so far:\n{partial}")
            }
        }
    }

    /// Pull the plug: QEMU is killed at once. What the guest had not written out is lost (its
    /// page cache); what it wrote to its disks and firmware variables stays, as after a power
    /// cut of a machine whose disks honour flushes.
    pub fn power_cut(&mut self) {
        if let Some(mut vm) = self.vm.take() {
            vm.kill();
        }
    }

    /// Run with a generous timeout (10 min); an error (with the output) unless it exits 0.
    pub fn sh(&mut self, cmd: &str) -> Result<String> {
        let (rc, out) = self.run(cmd, Duration::from_secs(600))?;
        if rc != 0 {
            bail!("VM {}: command failed (exit {rc}): {cmd}\n{out}", self.name);
        }
        Ok(out)
    }

    /// sync; poweroff; wait for QEMU to exit (killed after a timeout, env
    /// ALTDISK_VM_SHUTDOWN_TIMEOUT, default 180 s). Does nothing when the VM is stopped.
    pub fn shutdown(&mut self) -> Result<()> {
        if self.vm.is_none() {
            return Ok(());
        }
        let stopped = self.vm.as_mut().unwrap().child.try_wait()?.is_some();
        if !stopped {
            if let Err(e) = self.run("sync", Duration::from_secs(120)) {
                eprintln!("vm {}: sync before poweroff failed: {e:#}", self.name);
            }
            let vm = self.vm.as_mut().unwrap();
            let _ = vm.send("systemctl poweroff\n");
        }
        self.wait_stopped(env_secs("ALTDISK_VM_SHUTDOWN_TIMEOUT", 180)).or_else(|e| {
            eprintln!("vm {}: {e:#}: killing QEMU", self.name);
            let mut vm = self.vm.take().unwrap();
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(vm.child.id() as i32), nix::sys::signal::SIGTERM);
            if !matches!(wait_child(&mut vm.child, Duration::from_secs(15)), Ok(Some(_))) {
                let _ = vm.child.kill();
            }
            vm.kill();
            Ok(())
        })
    }

    /// Waits until QEMU exits by itself (the guest powered off or rebooted: `-no-reboot`
    /// turns a reboot into an exit), e.g. after a command that reboots.
    pub fn wait_stopped(&mut self, timeout: Duration) -> Result<()> {
        let Some(vm) = self.vm.as_mut() else { return Ok(()) };
        match wait_child(&mut vm.child, timeout)? {
            Some(_) => {
                let mut vm = self.vm.take().unwrap();
                vm.kill();
                Ok(())
            }
            None => bail!("VM {} still running after {timeout:?}", self.name),
        }
    }

    /// shutdown + boot: a new QEMU on the same disks and NVRAM.
    pub fn reboot(&mut self) -> Result<()> {
        self.shutdown()?;
        self.boot()
    }

    /// Put a host binary into the guest as /usr/local/sbin/altdisk, with the links
    /// alt_disk_copy, alt_rootvg_op and bootlist, through the read-only 9p share `host`
    /// (mounted for the copy only). The VM must be running.
    pub fn install_altdisk(&mut self, bin: &Path) -> Result<()> {
        if self.vm.is_none() {
            bail!("Machine::install_altdisk: the VM is not running");
        }
        let dst = self.share.join("altdisk");
        fs::copy(bin, &dst).with_context(|| format!("copying {}", bin.display()))?;
        self.run(
            "set -e
             modprobe -q 9pnet_virtio; modprobe -q 9p
             mkdir -p /run/altdisk-host
             mountpoint -q /run/altdisk-host || mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 host /run/altdisk-host
             install -m 0755 /run/altdisk-host/altdisk /usr/local/sbin/altdisk.new
             mv -f /usr/local/sbin/altdisk.new /usr/local/sbin/altdisk
             umount /run/altdisk-host; rmdir /run/altdisk-host
             for n in alt_disk_copy alt_rootvg_op bootlist; do ln -sfn altdisk /usr/local/sbin/$n; done
             sync",
            Duration::from_secs(600),
        )
        .and_then(|(rc, out)| if rc == 0 { Ok(()) } else { Err(anyhow!("exit {rc}: {out}")) })
        .context("installing altdisk into the guest")?;
        let _ = fs::remove_file(&dst);
        Ok(())
    }
}

impl Machine {
    /// Copy host files into the guest directory `guest_dir` (made if missing; mode 0644),
    /// through the read-only 9p share `host`, mounted for the copy only. The VM must be
    /// running.
    pub fn put_files(&mut self, files: &[PathBuf], guest_dir: &str) -> Result<()> {
        if self.vm.is_none() {
            bail!("Machine::put_files: the VM is not running");
        }
        let mut names = Vec::new();
        for f in files {
            let name =
                f.file_name().and_then(|n| n.to_str()).ok_or_else(|| anyhow!("bad file name {}", f.display()))?;
            if name.contains('\'') {
                bail!("Machine::put_files: a quote in {name}");
            }
            fs::copy(f, self.share.join(name)).with_context(|| format!("copying {}", f.display()))?;
            names.push(format!("'{name}'"));
        }
        let r = self.run(
            &format!(
                "set -e
                 modprobe -q 9pnet_virtio; modprobe -q 9p
                 mkdir -p /run/altdisk-host '{guest_dir}'
                 mountpoint -q /run/altdisk-host || mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 host /run/altdisk-host
                 cd /run/altdisk-host; install -m 0644 -t '{guest_dir}' {}
                 cd /; umount /run/altdisk-host; rmdir /run/altdisk-host; sync",
                names.join(" ")
            ),
            Duration::from_secs(600),
        );
        for f in files {
            let _ = fs::remove_file(self.share.join(f.file_name().unwrap()));
        }
        r.and_then(|(rc, out)| if rc == 0 { Ok(()) } else { Err(anyhow!("exit {rc}: {out}")) })
            .with_context(|| format!("copying files into the guest's {guest_dir}"))
    }
}

impl Drop for Machine {
    /// Kills QEMU and removes the directory (kept, and named, when ALTDISK_KEEP_VM=1).
    /// When a test panics, the end of the console log is printed first.
    fn drop(&mut self) {
        if let Some(mut vm) = self.vm.take() {
            vm.kill();
        }
        if std::thread::panicking() {
            eprintln!(
                "vm {}: end of the console log {}:\n{}",
                self.name,
                self.serial_log().display(),
                tail(&self.serial_log(), 40)
            );
        }
        if std::env::var("ALTDISK_KEEP_VM").as_deref() == Ok("1") {
            eprintln!("vm {}: kept {} (ALTDISK_KEEP_VM=1)", self.name, self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

fn set_writable(p: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(0o644))?;
    Ok(())
}

/// A path for a QEMU option value: absolute, and without the ',' QEMU would split on.
fn qemu_path(p: &Path) -> Result<String> {
    let abs = if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir()?.join(p) };
    let s = abs.to_str().ok_or_else(|| anyhow!("non-UTF-8 path {}", abs.display()))?;
    if s.contains(',') {
        bail!("QEMU cannot take a path with a comma: {s}");
    }
    Ok(s.to_string())
}

/// qcow2 when the file starts with its magic, else raw.
fn disk_format(p: &Path) -> Result<&'static str> {
    let mut magic = [0u8; 4];
    let mut f = fs::File::open(p).with_context(|| format!("disk {}", p.display()))?;
    let n = f.read(&mut magic)?;
    Ok(if n == 4 && magic == *b"QFI\xfb" { "qcow2" } else { "raw" })
}

/// The virtio serial of a disk (/dev/disk/by-id/virtio-<serial>): its file stem, so it
/// stays with the disk when the order changes.
fn disk_serial(p: &Path, i: usize) -> String {
    let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    let s: String = stem.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').take(20).collect();
    if s.is_empty() {
        format!("disk{i}")
    } else {
        s
    }
}

/// Console text made readable: no CRs, no ANSI escape sequences.
fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {}
            '\x1b' => {
                // CSI: ESC [ params final(0x40..0x7e); other ESC x: drop two chars.
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for d in chars.by_ref() {
                        if ('\x40'..='\x7e').contains(&d) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            _ => out.push(c),
        }
    }
    out
}

fn find(hay: &[u8], needle: &str) -> Option<usize> {
    let n = needle.as_bytes();
    if n.is_empty() || hay.len() < n.len() {
        return None;
    }
    hay.windows(n.len()).position(|w| w == n)
}

fn contains(hay: &[u8], needle: &str) -> bool {
    find(hay, needle).is_some()
}

/// The last `max` bytes of `s`, cut at a character boundary.
pub(crate) fn tail_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// The last `lines` lines of a (log) file, cleaned.
fn tail(p: &Path, lines: usize) -> String {
    let raw = fs::read(p).unwrap_or_default();
    let text = clean(&String::from_utf8_lossy(&raw));
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 { T[(n >> 6) as usize & 63] as char } else { '=' });
        out.push(if c.len() > 2 { T[n as usize & 63] as char } else { '=' });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar\n"), "Zm9vYmFyCg==");
    }

    #[test]
    fn clean_drops_cr_and_escapes() {
        assert_eq!(clean("\x1b[?2004ha\r\nb\x1b[0;1;31mc\x1b[0m"), "a\nbc");
    }
}
