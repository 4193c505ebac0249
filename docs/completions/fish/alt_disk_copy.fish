complete -c alt_disk_copy -s d -d 'Target disks: sdb, /dev/sdb, "sdb sdc", /dev/disk/by-id/..., hdiskN, or an image file path. The value is split at blanks (AIX -d "sdb sdc") unless it names an existing path' -r
complete -c alt_disk_copy -l target -d 'One target taken whole, never split at blanks: for a path holding a space' -r
complete -c alt_disk_copy -s i -d 'Layout file (TOML; see `altdisk layout`), the counterpart of AIX image.data. Full path' -r -F
complete -c alt_disk_copy -s e -d 'Exclude list: grep patterns matched against ./relative/paths. Full path' -r -F
complete -c alt_disk_copy -s P -d 'Phases to run: 1 (copy), 2 (customize), 3 (make bootable), 12, 23 or all (the default; with --refresh, those the clone had)' -r
complete -c alt_disk_copy -s z -d 'SMIT internal values: accepted and ignored, with a warning' -r
complete -c alt_disk_copy -l source -d 'Clone the system mounted at DIR (offline clone) instead of the running one' -r -F
complete -c alt_disk_copy -l source-disk -d 'Clone the system on DISK, which is not running (mounted read-only for the run): the offline disk swap' -r
complete -c alt_disk_copy -l size -d 'Size of a new image file target (e.g. 20G); default: what the plan needs' -r
complete -c alt_disk_copy -l mount-at -d 'Where the clone is mounted while it is built' -r -F
complete -c alt_disk_copy -s l -d 'Directory of .deb packages (or a local apt repository) to install from, offline' -r -F
complete -c alt_disk_copy -s w -d 'Packages to install into the clone (needs -l)' -r
complete -c alt_disk_copy -s b -d 'File listing packages to install into the clone, or update_all (needs -l)' -r
complete -c alt_disk_copy -s f -d 'File listing more packages to install (needs -l)' -r -F
complete -c alt_disk_copy -s F -d 'More packages to install (needs -l; Debian has no APARs)' -r
complete -c alt_disk_copy -s I -d 'Extra apt-get options for the installs, e.g. "--no-install-recommends" (needs -l; installp letters are refused)' -r
complete -c alt_disk_copy -s s -d 'Script run on this system after the installs, before the clone is unmounted, with ALT_ROOT and ALT_DISKS set (full path, executable)' -r -F
complete -c alt_disk_copy -s x -d 'Script to run once at the clone\'s first boot (full path)' -r -F
complete -c alt_disk_copy -s R -d 'resolv.conf to put in the clone (full path)' -r -F
complete -c alt_disk_copy -s c -d 'Kernel console for the clone, e.g. ttyS0,115200 (only with -O)' -r
complete -c alt_disk_copy -l version -d 'Print the version and exit'
complete -c alt_disk_copy -s n -d 'Remain NIM client: no Linux meaning, accepted with a warning'
complete -c alt_disk_copy -s D -d 'Debug: print every command run'
complete -c alt_disk_copy -s B -d 'Do not change the boot list (the clone\'s UEFI entry is made, BootOrder is left alone)'
complete -c alt_disk_copy -s V -d 'Verbose: list every file copied'
complete -c alt_disk_copy -s g -d 'Skip the bootability checks (a clone that cannot be made bootable is then left so)'
complete -c alt_disk_copy -s r -d 'Reboot into the clone when done (needs phase 3; not with -B)'
complete -c alt_disk_copy -s T -d 'Convert ext2/ext3 filesystems to ext4 (AIX: JFS to JFS2)'
complete -c alt_disk_copy -s S -d 'Skip the space check on the targets'
complete -c alt_disk_copy -s u -d 'Copy WPAR filesystems: no Linux meaning, accepted with a warning'
complete -c alt_disk_copy -l force -d 'Write targets that hold a partition table or filesystem signature'
complete -c alt_disk_copy -l dry-run -d 'Print the plan and write nothing'
complete -c alt_disk_copy -l json -d 'Print the plan (with --dry-run) or the result as JSON'
complete -c alt_disk_copy -l trial -d 'Boot the clone once (UEFI BootNext); it makes itself permanent when it comes up healthy'
complete -c alt_disk_copy -l refresh -d 'Bring the clone on -d back in line with its source (new, changed and deleted files), keeping its identities and boot entry; phase 3 again when it was bootable'
complete -c alt_disk_copy -l checksum -d 'With --refresh: decide whether a file changed by its bytes, not its size and mtime'
complete -c alt_disk_copy -s O -d 'Device reset for a disk that will run another machine: empty machine-id, SSH host keys made again at first boot, no MAC-bound network configuration, generic initramfs'
complete -c alt_disk_copy -s h -l help -d 'Print help (see more with \'--help\')'
