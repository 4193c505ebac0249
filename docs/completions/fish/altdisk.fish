# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_altdisk_global_optspecs
    string join \n version h/help
end

function __fish_altdisk_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_altdisk_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_altdisk_using_subcommand
    set -l cmd (__fish_altdisk_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c altdisk -n "__fish_altdisk_needs_command" -l version -d 'Print the version and exit'
complete -c altdisk -n "__fish_altdisk_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c altdisk -n "__fish_altdisk_needs_command" -f -a "copy" -d 'Clone the system onto free disks (AIX alt_disk_copy; same flags)'
complete -c altdisk -n "__fish_altdisk_needs_command" -f -a "plan" -d 'Print the plan for a clone without writing anything (same flags as copy)'
complete -c altdisk -n "__fish_altdisk_needs_command" -f -a "layout" -d 'Print the default layout (TOML) to edit and pass with -i'
complete -c altdisk -n "__fish_altdisk_needs_command" -f -a "lspv" -d 'List disks with their role: rootvg, altinst_rootvg, free, in use'
complete -c altdisk -n "__fish_altdisk_needs_command" -f -a "op" -d 'Operate on alternate systems (AIX alt_rootvg_op)'
complete -c altdisk -n "__fish_altdisk_needs_command" -f -a "sleep" -d 'Unmount a clone left mounted by -P1 (alt_rootvg_op -S)'
complete -c altdisk -n "__fish_altdisk_needs_command" -f -a "bootlist" -d 'Show or set the firmware boot order (AIX bootlist)'
complete -c altdisk -n "__fish_altdisk_needs_command" -f -a "verify" -d 'Compare a clone with its source, file by file: exit 0 when equal, 7 when it differs'
complete -c altdisk -n "__fish_altdisk_needs_command" -f -a "find" -d 'Every system on the disks: running, made by altdisk, or another Linux root'
complete -c altdisk -n "__fish_altdisk_needs_command" -f -a "restore" -d 'Make the system on DISK the one that boots (UEFI), from now on or --once'
complete -c altdisk -n "__fish_altdisk_needs_command" -f -a "boot-now" -d 'Boot the system on DISK now (UEFI BootNext and a reboot, or kexec)'
complete -c altdisk -n "__fish_altdisk_needs_command" -f -a "repair" -d 'Re-run phase 3 (initramfs, boot loader, boot entry) on the system on DISK'
complete -c altdisk -n "__fish_altdisk_needs_command" -f -a "boot-hook" -d 'Run at boot by altdisk\'s systemd units'
complete -c altdisk -n "__fish_altdisk_needs_command" -f -a "install-units" -d 'Install and enable altdisk\'s boot units (rootvg/old_rootvg names, trial commit)'
complete -c altdisk -n "__fish_altdisk_needs_command" -f -a "track" -d 'Track what changes in the system\'s filesystems (ext4, xfs), so that a refresh compares only what changed; runs until stopped (altdisk-changes.service)'
complete -c altdisk -n "__fish_altdisk_needs_command" -f -a "udev-probe" -d 'For udev rules: KEY=VALUE lines describing a device of an altdisk system'
complete -c altdisk -n "__fish_altdisk_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c altdisk -n "__fish_altdisk_using_subcommand copy" -s d -d 'Target disks: sdb, /dev/sdb, "sdb sdc", /dev/disk/by-id/..., hdiskN, or an image file path. The value is split at blanks (AIX -d "sdb sdc") unless it names an existing path' -r
complete -c altdisk -n "__fish_altdisk_using_subcommand copy" -l target -d 'One target taken whole, never split at blanks: for a path holding a space' -r
complete -c altdisk -n "__fish_altdisk_using_subcommand copy" -s i -d 'Layout file (TOML; see `altdisk layout`), the counterpart of AIX image.data. Full path' -r -F
complete -c altdisk -n "__fish_altdisk_using_subcommand copy" -s e -d 'Exclude list: grep patterns matched against ./relative/paths. Full path' -r -F
complete -c altdisk -n "__fish_altdisk_using_subcommand copy" -s P -d 'Phases to run: 1 (copy), 2 (customize), 3 (make bootable), 12, 23 or all (the default; with --refresh, those the clone had)' -r
complete -c altdisk -n "__fish_altdisk_using_subcommand copy" -s z -d 'SMIT internal values: accepted and ignored, with a warning' -r
complete -c altdisk -n "__fish_altdisk_using_subcommand copy" -l source -d 'Clone the system mounted at DIR (offline clone) instead of the running one' -r -F
complete -c altdisk -n "__fish_altdisk_using_subcommand copy" -l source-disk -d 'Clone the system on DISK, which is not running (mounted read-only for the run): the offline disk swap' -r
complete -c altdisk -n "__fish_altdisk_using_subcommand copy" -l luks-passphrase-file -d 'An encrypted (LUKS) source: the passphrase of the clone\'s own LUKS2 containers, the first line of FILE (- reads standard input); it is never stored or logged' -r -F
complete -c altdisk -n "__fish_altdisk_using_subcommand copy" -l luks-key-file -d 'An encrypted (LUKS) source: a key file that unlocks the clone\'s LUKS2 containers (the whole file is the key)' -r -F
complete -c altdisk -n "__fish_altdisk_using_subcommand copy" -l size -d 'Size of a new image file target (e.g. 20G); default: what the plan needs' -r
complete -c altdisk -n "__fish_altdisk_using_subcommand copy" -l mount-at -d 'Where the clone is mounted while it is built' -r -F
complete -c altdisk -n "__fish_altdisk_using_subcommand copy" -s l -d 'Directory of .deb packages (or a local apt repository) to install from, offline' -r -F
complete -c altdisk -n "__fish_altdisk_using_subcommand copy" -s w -d 'Packages to install into the clone (needs -l)' -r
complete -c altdisk -n "__fish_altdisk_using_subcommand copy" -s b -d 'File listing packages to install into the clone, or update_all (needs -l)' -r
complete -c altdisk -n "__fish_altdisk_using_subcommand copy" -s f -d 'File listing more packages to install (needs -l)' -r -F
complete -c altdisk -n "__fish_altdisk_using_subcommand copy" -s F -d 'More packages to install (needs -l; Debian has no APARs)' -r
complete -c altdisk -n "__fish_altdisk_using_subcommand copy" -s I -d 'Extra apt-get options for the installs, e.g. "--no-install-recommends" (needs -l; installp letters are refused)' -r
complete -c altdisk -n "__fish_altdisk_using_subcommand copy" -s s -d 'Script run on this system after the installs, before the clone is unmounted, with ALT_ROOT and ALT_DISKS set (full path, executable)' -r -F
complete -c altdisk -n "__fish_altdisk_using_subcommand copy" -s x -d 'Script to run once at the clone\'s first boot (full path)' -r -F
complete -c altdisk -n "__fish_altdisk_using_subcommand copy" -s R -d 'resolv.conf to put in the clone (full path)' -r -F
complete -c altdisk -n "__fish_altdisk_using_subcommand copy" -s c -d 'Kernel console for the clone, e.g. ttyS0,115200 (only with -O)' -r
complete -c altdisk -n "__fish_altdisk_using_subcommand copy" -s n -d 'Remain NIM client: no Linux meaning, accepted with a warning'
complete -c altdisk -n "__fish_altdisk_using_subcommand copy" -s D -d 'Debug: print every command run'
complete -c altdisk -n "__fish_altdisk_using_subcommand copy" -s B -d 'Do not change the boot list (the clone\'s UEFI entry is made, BootOrder is left alone)'
complete -c altdisk -n "__fish_altdisk_using_subcommand copy" -s V -d 'Verbose: list every file copied'
complete -c altdisk -n "__fish_altdisk_using_subcommand copy" -s g -d 'Skip the bootability checks (a clone that cannot be made bootable is then left so)'
complete -c altdisk -n "__fish_altdisk_using_subcommand copy" -s r -d 'Reboot into the clone when done (needs phase 3; not with -B)'
complete -c altdisk -n "__fish_altdisk_using_subcommand copy" -s T -d 'Convert ext2/ext3 filesystems to ext4 (AIX: JFS to JFS2)'
complete -c altdisk -n "__fish_altdisk_using_subcommand copy" -s S -d 'Skip the space check on the targets'
complete -c altdisk -n "__fish_altdisk_using_subcommand copy" -s u -d 'Copy WPAR filesystems: no Linux meaning, accepted with a warning'
complete -c altdisk -n "__fish_altdisk_using_subcommand copy" -l force -d 'Write targets that hold a partition table or filesystem signature'
complete -c altdisk -n "__fish_altdisk_using_subcommand copy" -l dry-run -d 'Print the plan and write nothing'
complete -c altdisk -n "__fish_altdisk_using_subcommand copy" -l json -d 'Print the plan (with --dry-run) or the result as JSON'
complete -c altdisk -n "__fish_altdisk_using_subcommand copy" -l trial -d 'Boot the clone once (UEFI BootNext); it makes itself permanent when it comes up healthy'
complete -c altdisk -n "__fish_altdisk_using_subcommand copy" -l refresh -d 'Bring the clone on -d back in line with its source (new, changed and deleted files), keeping its identities and boot entry; phase 3 again when it was bootable'
complete -c altdisk -n "__fish_altdisk_using_subcommand copy" -l checksum -d 'With --refresh: decide whether a file changed by its bytes, not its size and mtime'
complete -c altdisk -n "__fish_altdisk_using_subcommand copy" -s O -d 'Device reset for a disk that will run another machine: empty machine-id, SSH host keys made again at first boot, no MAC-bound network configuration, generic initramfs'
complete -c altdisk -n "__fish_altdisk_using_subcommand copy" -s h -l help -d 'Print help'
complete -c altdisk -n "__fish_altdisk_using_subcommand plan" -s d -d 'Target disks: sdb, /dev/sdb, "sdb sdc", /dev/disk/by-id/..., hdiskN, or an image file path. The value is split at blanks (AIX -d "sdb sdc") unless it names an existing path' -r
complete -c altdisk -n "__fish_altdisk_using_subcommand plan" -l target -d 'One target taken whole, never split at blanks: for a path holding a space' -r
complete -c altdisk -n "__fish_altdisk_using_subcommand plan" -s i -d 'Layout file (TOML; see `altdisk layout`), the counterpart of AIX image.data. Full path' -r -F
complete -c altdisk -n "__fish_altdisk_using_subcommand plan" -s e -d 'Exclude list: grep patterns matched against ./relative/paths. Full path' -r -F
complete -c altdisk -n "__fish_altdisk_using_subcommand plan" -s P -d 'Phases to run: 1 (copy), 2 (customize), 3 (make bootable), 12, 23 or all (the default; with --refresh, those the clone had)' -r
complete -c altdisk -n "__fish_altdisk_using_subcommand plan" -s z -d 'SMIT internal values: accepted and ignored, with a warning' -r
complete -c altdisk -n "__fish_altdisk_using_subcommand plan" -l source -d 'Clone the system mounted at DIR (offline clone) instead of the running one' -r -F
complete -c altdisk -n "__fish_altdisk_using_subcommand plan" -l source-disk -d 'Clone the system on DISK, which is not running (mounted read-only for the run): the offline disk swap' -r
complete -c altdisk -n "__fish_altdisk_using_subcommand plan" -l luks-passphrase-file -d 'An encrypted (LUKS) source: the passphrase of the clone\'s own LUKS2 containers, the first line of FILE (- reads standard input); it is never stored or logged' -r -F
complete -c altdisk -n "__fish_altdisk_using_subcommand plan" -l luks-key-file -d 'An encrypted (LUKS) source: a key file that unlocks the clone\'s LUKS2 containers (the whole file is the key)' -r -F
complete -c altdisk -n "__fish_altdisk_using_subcommand plan" -l size -d 'Size of a new image file target (e.g. 20G); default: what the plan needs' -r
complete -c altdisk -n "__fish_altdisk_using_subcommand plan" -l mount-at -d 'Where the clone is mounted while it is built' -r -F
complete -c altdisk -n "__fish_altdisk_using_subcommand plan" -s l -d 'Directory of .deb packages (or a local apt repository) to install from, offline' -r -F
complete -c altdisk -n "__fish_altdisk_using_subcommand plan" -s w -d 'Packages to install into the clone (needs -l)' -r
complete -c altdisk -n "__fish_altdisk_using_subcommand plan" -s b -d 'File listing packages to install into the clone, or update_all (needs -l)' -r
complete -c altdisk -n "__fish_altdisk_using_subcommand plan" -s f -d 'File listing more packages to install (needs -l)' -r -F
complete -c altdisk -n "__fish_altdisk_using_subcommand plan" -s F -d 'More packages to install (needs -l; Debian has no APARs)' -r
complete -c altdisk -n "__fish_altdisk_using_subcommand plan" -s I -d 'Extra apt-get options for the installs, e.g. "--no-install-recommends" (needs -l; installp letters are refused)' -r
complete -c altdisk -n "__fish_altdisk_using_subcommand plan" -s s -d 'Script run on this system after the installs, before the clone is unmounted, with ALT_ROOT and ALT_DISKS set (full path, executable)' -r -F
complete -c altdisk -n "__fish_altdisk_using_subcommand plan" -s x -d 'Script to run once at the clone\'s first boot (full path)' -r -F
complete -c altdisk -n "__fish_altdisk_using_subcommand plan" -s R -d 'resolv.conf to put in the clone (full path)' -r -F
complete -c altdisk -n "__fish_altdisk_using_subcommand plan" -s c -d 'Kernel console for the clone, e.g. ttyS0,115200 (only with -O)' -r
complete -c altdisk -n "__fish_altdisk_using_subcommand plan" -s n -d 'Remain NIM client: no Linux meaning, accepted with a warning'
complete -c altdisk -n "__fish_altdisk_using_subcommand plan" -s D -d 'Debug: print every command run'
complete -c altdisk -n "__fish_altdisk_using_subcommand plan" -s B -d 'Do not change the boot list (the clone\'s UEFI entry is made, BootOrder is left alone)'
complete -c altdisk -n "__fish_altdisk_using_subcommand plan" -s V -d 'Verbose: list every file copied'
complete -c altdisk -n "__fish_altdisk_using_subcommand plan" -s g -d 'Skip the bootability checks (a clone that cannot be made bootable is then left so)'
complete -c altdisk -n "__fish_altdisk_using_subcommand plan" -s r -d 'Reboot into the clone when done (needs phase 3; not with -B)'
complete -c altdisk -n "__fish_altdisk_using_subcommand plan" -s T -d 'Convert ext2/ext3 filesystems to ext4 (AIX: JFS to JFS2)'
complete -c altdisk -n "__fish_altdisk_using_subcommand plan" -s S -d 'Skip the space check on the targets'
complete -c altdisk -n "__fish_altdisk_using_subcommand plan" -s u -d 'Copy WPAR filesystems: no Linux meaning, accepted with a warning'
complete -c altdisk -n "__fish_altdisk_using_subcommand plan" -l force -d 'Write targets that hold a partition table or filesystem signature'
complete -c altdisk -n "__fish_altdisk_using_subcommand plan" -l dry-run -d 'Print the plan and write nothing'
complete -c altdisk -n "__fish_altdisk_using_subcommand plan" -l json -d 'Print the plan (with --dry-run) or the result as JSON'
complete -c altdisk -n "__fish_altdisk_using_subcommand plan" -l trial -d 'Boot the clone once (UEFI BootNext); it makes itself permanent when it comes up healthy'
complete -c altdisk -n "__fish_altdisk_using_subcommand plan" -l refresh -d 'Bring the clone on -d back in line with its source (new, changed and deleted files), keeping its identities and boot entry; phase 3 again when it was bootable'
complete -c altdisk -n "__fish_altdisk_using_subcommand plan" -l checksum -d 'With --refresh: decide whether a file changed by its bytes, not its size and mtime'
complete -c altdisk -n "__fish_altdisk_using_subcommand plan" -s O -d 'Device reset for a disk that will run another machine: empty machine-id, SSH host keys made again at first boot, no MAC-bound network configuration, generic initramfs'
complete -c altdisk -n "__fish_altdisk_using_subcommand plan" -s h -l help -d 'Print help'
complete -c altdisk -n "__fish_altdisk_using_subcommand layout" -l source -d 'Describe the system mounted at DIR instead of the running one' -r -F
complete -c altdisk -n "__fish_altdisk_using_subcommand layout" -s T -d 'Convert ext2/ext3 to ext4 in the default'
complete -c altdisk -n "__fish_altdisk_using_subcommand layout" -s h -l help -d 'Print help'
complete -c altdisk -n "__fish_altdisk_using_subcommand lspv" -l json -d 'Print the disks as JSON'
complete -c altdisk -n "__fish_altdisk_using_subcommand lspv" -s h -l help -d 'Print help'
complete -c altdisk -n "__fish_altdisk_using_subcommand op" -s X -d 'Remove an alternate system (default altinst_rootvg): its disks become free' -r
complete -c altdisk -n "__fish_altdisk_using_subcommand op" -s v -d 'Rename the alternate system on -d' -r
complete -c altdisk -n "__fish_altdisk_using_subcommand op" -s d -d 'The disk of the system to query, wake, rename or remove (sdb, /dev/sdb, hdiskN, an image file)' -r
complete -c altdisk -n "__fish_altdisk_using_subcommand op" -l mount-at -d 'Where the alternate system is (or is to be) awake' -r -F
complete -c altdisk -n "__fish_altdisk_using_subcommand op" -s l -d 'Directory of .deb packages (or a local apt repository) to install from, offline' -r -F
complete -c altdisk -n "__fish_altdisk_using_subcommand op" -s w -d 'Packages to install into the clone (needs -l)' -r
complete -c altdisk -n "__fish_altdisk_using_subcommand op" -s b -d 'File listing packages to install into the clone, or update_all (needs -l)' -r
complete -c altdisk -n "__fish_altdisk_using_subcommand op" -s f -d 'File listing more packages to install (needs -l)' -r -F
complete -c altdisk -n "__fish_altdisk_using_subcommand op" -s F -d 'More packages to install (needs -l; Debian has no APARs)' -r
complete -c altdisk -n "__fish_altdisk_using_subcommand op" -s I -d 'Extra apt-get options for the installs, e.g. "--no-install-recommends" (needs -l; installp letters are refused)' -r
complete -c altdisk -n "__fish_altdisk_using_subcommand op" -s s -d 'Script run on this system after the installs, before the clone is unmounted, with ALT_ROOT and ALT_DISKS set (full path, executable)' -r -F
complete -c altdisk -n "__fish_altdisk_using_subcommand op" -s x -d 'Script to run once at the clone\'s first boot (full path)' -r -F
complete -c altdisk -n "__fish_altdisk_using_subcommand op" -s R -d 'resolv.conf to put in the clone (full path)' -r -F
complete -c altdisk -n "__fish_altdisk_using_subcommand op" -s c -d 'Kernel console for the clone, e.g. ttyS0,115200 (only with -O)' -r
complete -c altdisk -n "__fish_altdisk_using_subcommand op" -s S -d 'Sleep: unmount the alternate system awake at /alt_inst'
complete -c altdisk -n "__fish_altdisk_using_subcommand op" -s q -d 'Query: which system lives on the disk given with -d'
complete -c altdisk -n "__fish_altdisk_using_subcommand op" -s W -d 'Wake: mount the alternate system on -d at /alt_inst'
complete -c altdisk -n "__fish_altdisk_using_subcommand op" -s C -d 'Customize the awake alternate system with the phase 2 flags (-l, -w, -b, -s, -x, -R, -O, -c)'
complete -c altdisk -n "__fish_altdisk_using_subcommand op" -s t -d 'With -S: rebuild the boot image (initramfs and boot loader configuration) first'
complete -c altdisk -n "__fish_altdisk_using_subcommand op" -s D -d 'Debug: print every command run'
complete -c altdisk -n "__fish_altdisk_using_subcommand op" -s y -l yes -d 'Do not ask before removing'
complete -c altdisk -n "__fish_altdisk_using_subcommand op" -s O -d 'Device reset for a disk that will run another machine: empty machine-id, SSH host keys made again at first boot, no MAC-bound network configuration, generic initramfs'
complete -c altdisk -n "__fish_altdisk_using_subcommand op" -s h -l help -d 'Print help'
complete -c altdisk -n "__fish_altdisk_using_subcommand sleep" -l mount-at -d 'Where the awake clone is mounted' -r -F
complete -c altdisk -n "__fish_altdisk_using_subcommand sleep" -s h -l help -d 'Print help'
complete -c altdisk -n "__fish_altdisk_using_subcommand bootlist" -s m -d 'normal (the boot order), prevboot (what booted last); service and both have no UEFI meaning' -r
complete -c altdisk -n "__fish_altdisk_using_subcommand bootlist" -l next -d 'Boot this disk once, at the next boot only (UEFI BootNext)' -r
complete -c altdisk -n "__fish_altdisk_using_subcommand bootlist" -s o -d 'Show the list'
complete -c altdisk -n "__fish_altdisk_using_subcommand bootlist" -l json -d 'Print the list as JSON'
complete -c altdisk -n "__fish_altdisk_using_subcommand bootlist" -s h -l help -d 'Print help'
complete -c altdisk -n "__fish_altdisk_using_subcommand verify" -l source -d 'Compare with the system mounted at DIR instead of the running one' -r -F
complete -c altdisk -n "__fish_altdisk_using_subcommand verify" -l against -d 'Compare with another system on disks (a disk of it, or its name)' -r
complete -c altdisk -n "__fish_altdisk_using_subcommand verify" -s e -d 'Exclude list the clone was made with (full path): matching paths are not compared' -r -F
complete -c altdisk -n "__fish_altdisk_using_subcommand verify" -l json -d 'Print the report as JSON'
complete -c altdisk -n "__fish_altdisk_using_subcommand verify" -s h -l help -d 'Print help'
complete -c altdisk -n "__fish_altdisk_using_subcommand find" -l json -d 'Print JSON'
complete -c altdisk -n "__fish_altdisk_using_subcommand find" -s h -l help -d 'Print help'
complete -c altdisk -n "__fish_altdisk_using_subcommand restore" -l once -d 'Boot it at the next boot only (UEFI BootNext); the boot order stays'
complete -c altdisk -n "__fish_altdisk_using_subcommand restore" -l reboot -d 'Reboot into it when done'
complete -c altdisk -n "__fish_altdisk_using_subcommand restore" -s h -l help -d 'Print help'
complete -c altdisk -n "__fish_altdisk_using_subcommand boot-now" -l kexec -d 'Boot it with kexec instead of the firmware (the boot loader is not used)'
complete -c altdisk -n "__fish_altdisk_using_subcommand boot-now" -s h -l help -d 'Print help'
complete -c altdisk -n "__fish_altdisk_using_subcommand repair" -l mount-at -d 'Where the system is mounted while it is repaired' -r -F
complete -c altdisk -n "__fish_altdisk_using_subcommand repair" -s B -d 'Make its boot entry but leave the boot order alone'
complete -c altdisk -n "__fish_altdisk_using_subcommand repair" -s h -l help -d 'Print help'
complete -c altdisk -n "__fish_altdisk_using_subcommand boot-hook" -s h -l help -d 'Print help'
complete -c altdisk -n "__fish_altdisk_using_subcommand install-units" -l root -d 'Root of the system to install into' -r -F
complete -c altdisk -n "__fish_altdisk_using_subcommand install-units" -l exe -d 'The altdisk binary the units run, as seen from inside that system (default: this one)' -r -F
complete -c altdisk -n "__fish_altdisk_using_subcommand install-units" -s h -l help -d 'Print help'
complete -c altdisk -n "__fish_altdisk_using_subcommand track" -l source -d 'Track the system mounted at DIR instead of the running one' -r -F
complete -c altdisk -n "__fish_altdisk_using_subcommand track" -s h -l help -d 'Print help'
complete -c altdisk -n "__fish_altdisk_using_subcommand udev-probe" -s h -l help -d 'Print help'
complete -c altdisk -n "__fish_altdisk_using_subcommand help; and not __fish_seen_subcommand_from copy plan layout lspv op sleep bootlist verify find restore boot-now repair boot-hook install-units track udev-probe help" -f -a "copy" -d 'Clone the system onto free disks (AIX alt_disk_copy; same flags)'
complete -c altdisk -n "__fish_altdisk_using_subcommand help; and not __fish_seen_subcommand_from copy plan layout lspv op sleep bootlist verify find restore boot-now repair boot-hook install-units track udev-probe help" -f -a "plan" -d 'Print the plan for a clone without writing anything (same flags as copy)'
complete -c altdisk -n "__fish_altdisk_using_subcommand help; and not __fish_seen_subcommand_from copy plan layout lspv op sleep bootlist verify find restore boot-now repair boot-hook install-units track udev-probe help" -f -a "layout" -d 'Print the default layout (TOML) to edit and pass with -i'
complete -c altdisk -n "__fish_altdisk_using_subcommand help; and not __fish_seen_subcommand_from copy plan layout lspv op sleep bootlist verify find restore boot-now repair boot-hook install-units track udev-probe help" -f -a "lspv" -d 'List disks with their role: rootvg, altinst_rootvg, free, in use'
complete -c altdisk -n "__fish_altdisk_using_subcommand help; and not __fish_seen_subcommand_from copy plan layout lspv op sleep bootlist verify find restore boot-now repair boot-hook install-units track udev-probe help" -f -a "op" -d 'Operate on alternate systems (AIX alt_rootvg_op)'
complete -c altdisk -n "__fish_altdisk_using_subcommand help; and not __fish_seen_subcommand_from copy plan layout lspv op sleep bootlist verify find restore boot-now repair boot-hook install-units track udev-probe help" -f -a "sleep" -d 'Unmount a clone left mounted by -P1 (alt_rootvg_op -S)'
complete -c altdisk -n "__fish_altdisk_using_subcommand help; and not __fish_seen_subcommand_from copy plan layout lspv op sleep bootlist verify find restore boot-now repair boot-hook install-units track udev-probe help" -f -a "bootlist" -d 'Show or set the firmware boot order (AIX bootlist)'
complete -c altdisk -n "__fish_altdisk_using_subcommand help; and not __fish_seen_subcommand_from copy plan layout lspv op sleep bootlist verify find restore boot-now repair boot-hook install-units track udev-probe help" -f -a "verify" -d 'Compare a clone with its source, file by file: exit 0 when equal, 7 when it differs'
complete -c altdisk -n "__fish_altdisk_using_subcommand help; and not __fish_seen_subcommand_from copy plan layout lspv op sleep bootlist verify find restore boot-now repair boot-hook install-units track udev-probe help" -f -a "find" -d 'Every system on the disks: running, made by altdisk, or another Linux root'
complete -c altdisk -n "__fish_altdisk_using_subcommand help; and not __fish_seen_subcommand_from copy plan layout lspv op sleep bootlist verify find restore boot-now repair boot-hook install-units track udev-probe help" -f -a "restore" -d 'Make the system on DISK the one that boots (UEFI), from now on or --once'
complete -c altdisk -n "__fish_altdisk_using_subcommand help; and not __fish_seen_subcommand_from copy plan layout lspv op sleep bootlist verify find restore boot-now repair boot-hook install-units track udev-probe help" -f -a "boot-now" -d 'Boot the system on DISK now (UEFI BootNext and a reboot, or kexec)'
complete -c altdisk -n "__fish_altdisk_using_subcommand help; and not __fish_seen_subcommand_from copy plan layout lspv op sleep bootlist verify find restore boot-now repair boot-hook install-units track udev-probe help" -f -a "repair" -d 'Re-run phase 3 (initramfs, boot loader, boot entry) on the system on DISK'
complete -c altdisk -n "__fish_altdisk_using_subcommand help; and not __fish_seen_subcommand_from copy plan layout lspv op sleep bootlist verify find restore boot-now repair boot-hook install-units track udev-probe help" -f -a "boot-hook" -d 'Run at boot by altdisk\'s systemd units'
complete -c altdisk -n "__fish_altdisk_using_subcommand help; and not __fish_seen_subcommand_from copy plan layout lspv op sleep bootlist verify find restore boot-now repair boot-hook install-units track udev-probe help" -f -a "install-units" -d 'Install and enable altdisk\'s boot units (rootvg/old_rootvg names, trial commit)'
complete -c altdisk -n "__fish_altdisk_using_subcommand help; and not __fish_seen_subcommand_from copy plan layout lspv op sleep bootlist verify find restore boot-now repair boot-hook install-units track udev-probe help" -f -a "track" -d 'Track what changes in the system\'s filesystems (ext4, xfs), so that a refresh compares only what changed; runs until stopped (altdisk-changes.service)'
complete -c altdisk -n "__fish_altdisk_using_subcommand help; and not __fish_seen_subcommand_from copy plan layout lspv op sleep bootlist verify find restore boot-now repair boot-hook install-units track udev-probe help" -f -a "udev-probe" -d 'For udev rules: KEY=VALUE lines describing a device of an altdisk system'
complete -c altdisk -n "__fish_altdisk_using_subcommand help; and not __fish_seen_subcommand_from copy plan layout lspv op sleep bootlist verify find restore boot-now repair boot-hook install-units track udev-probe help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
