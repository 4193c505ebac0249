//! LUKS2 containers for an encrypted clone: each is made with a new UUID and a new volume
//! key (cryptsetup makes one per container), unlocked by the passphrase the user gave, and
//! opened under the name the clone's crypttab gives it, so the clone's initramfs finds it.
//!
//! The passphrase is held only in memory ([`Passphrase`], wiped when dropped, never shown
//! by `Debug`) and reaches cryptsetup on its standard input (`--key-file -`): it is never
//! on a command line, in a log, in the run's journal or in the clone.

use std::path::{Path, PathBuf};

use crate::cmd::Cmd;
use crate::error::{Error, IoContext, Result};

/// A passphrase, wiped from memory when dropped.
#[derive(Clone)]
pub struct Passphrase(Vec<u8>);

impl Passphrase {
    pub fn new(bytes: Vec<u8>) -> Result<Passphrase> {
        if bytes.is_empty() {
            return Err(Error::usage(
                "the LUKS passphrase",
                "it is empty",
                "give the passphrase that unlocks the clone (the source's, as typed at boot)",
            ));
        }
        Ok(Passphrase(bytes))
    }

    /// A key file: its bytes, whole.
    pub fn from_key_file(path: &Path) -> Result<Passphrase> {
        Passphrase::new(read_secret(path)?)
    }

    /// The first line of `path` (`-`: of standard input), as typed at a prompt: without its
    /// line ending.
    pub fn from_file(path: &Path) -> Result<Passphrase> {
        let mut bytes = read_secret(path)?;
        let end = bytes.iter().position(|&b| b == b'\n').unwrap_or(bytes.len());
        let end = if end > 0 && bytes[end - 1] == b'\r' { end - 1 } else { end };
        let line = bytes[..end].to_vec();
        bytes.iter_mut().for_each(|b| *b = 0);
        Passphrase::new(line)
    }

    fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// The bytes of a file holding a secret (`-`: standard input).
fn read_secret(path: &Path) -> Result<Vec<u8>> {
    Ok(if path == Path::new("-") {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut b)
            .ctx("reading the LUKS passphrase", "standard input")?;
        b
    } else {
        std::fs::read(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::not_found(
                format!("passphrase or key file {}", path.display()),
                "no such file",
                "give the file that holds the clone's LUKS passphrase or key",
            ),
            _ => Error::io("reading the LUKS passphrase", path, e),
        })?
    })
}

impl Drop for Passphrase {
    fn drop(&mut self) {
        for b in self.0.iter_mut() {
            // SAFETY: a plain byte write through a valid reference; volatile so the wipe is
            // not optimised away.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(hidden)")
    }
}

/// The device an open container is reached through.
pub fn mapper_path(name: &str) -> PathBuf {
    Path::new("/dev/mapper").join(name)
}

/// Whether a mapping of this name is open.
pub fn is_open(name: &str) -> bool {
    mapper_path(name).exists()
}

/// Make a LUKS2 container on `dev` with the UUID `uuid`, unlocked by `pass`.
pub fn format(dev: &Path, uuid: &uuid::Uuid, pass: &Passphrase) -> Result<()> {
    Cmd::new(format!("making the LUKS2 container on {}", dev.display()), "cryptsetup")?
        .args(["luksFormat", "--batch-mode", "--type", "luks2", "--uuid"])
        .arg(uuid.to_string())
        .args(["--key-file", "-"])
        .arg(dev)
        .stdin(pass.bytes().to_vec())
        .run()
        .map(|_| ())
}

/// Open the container on `dev` as `name`.
pub fn open(dev: &Path, name: &str, pass: &Passphrase) -> Result<()> {
    Cmd::new(format!("opening the LUKS2 container on {} as {name}", dev.display()), "cryptsetup")?
        .args(["open", "--type", "luks", "--key-file", "-"])
        .arg(dev)
        .arg(name)
        .stdin(pass.bytes().to_vec())
        .run()
        .map(|_| ())
}

/// Close the mapping `name` (nothing when it is not open).
pub fn close(name: &str) -> Result<()> {
    if !is_open(name) {
        return Ok(());
    }
    crate::cmd::settle();
    Cmd::new(format!("closing the encrypted device {name}"), "cryptsetup")?.args(["close", name]).run().map(|_| ())
}

/// An open container, closed when dropped unless kept.
#[derive(Debug)]
pub struct Opened {
    pub name: String,
    active: bool,
}

impl Opened {
    /// Make the container on `dev` and open it as `name`.
    pub fn make(dev: &Path, name: &str, uuid: &uuid::Uuid, pass: &Passphrase) -> Result<Opened> {
        format(dev, uuid, pass)?;
        open(dev, name, pass)?;
        Ok(Opened { name: name.to_string(), active: true })
    }

    pub fn close(mut self) -> Result<()> {
        self.active = false;
        close(&self.name)
    }

    /// Leave it open (the clone stays awake after -P1); returns its name.
    pub fn keep(mut self) -> String {
        self.active = false;
        std::mem::take(&mut self.name)
    }
}

impl Drop for Opened {
    fn drop(&mut self) {
        if self.active {
            if let Err(e) = close(&self.name) {
                tracing::error!("{e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passphrase_file_is_its_first_line_and_never_shown() {
        let p = std::env::temp_dir().join(format!("altdisk-pass-{}", uuid::Uuid::new_v4()));
        std::fs::write(&p, b"correct horse\r\nsecond line\n").unwrap();
        let pass = Passphrase::from_file(&p).unwrap();
        assert_eq!(pass.bytes(), b"correct horse");
        assert_eq!(format!("{pass:?}"), "Passphrase(hidden)");
        std::fs::write(&p, b"\n").unwrap();
        assert!(matches!(Passphrase::from_file(&p), Err(Error::Usage { .. })));
        std::fs::remove_file(&p).unwrap();
        assert!(matches!(Passphrase::from_file(&p), Err(Error::NotFound { .. })));
    }
}
