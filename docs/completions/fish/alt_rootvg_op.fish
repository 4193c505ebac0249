complete -c alt_rootvg_op -s X -d 'Remove an alternate system (default altinst_rootvg): its disks become free' -r
complete -c alt_rootvg_op -s v -d 'Rename the alternate system on -d' -r
complete -c alt_rootvg_op -s d -d 'The disk of the system to query, wake, rename or remove (sdb, /dev/sdb, hdiskN, an image file)' -r
complete -c alt_rootvg_op -l mount-at -d 'Where the alternate system is (or is to be) awake' -r -F
complete -c alt_rootvg_op -s l -d 'Directory of .deb packages (or a local apt repository) to install from, offline' -r -F
complete -c alt_rootvg_op -s w -d 'Packages to install into the clone (needs -l)' -r
complete -c alt_rootvg_op -s b -d 'File listing packages to install into the clone, or update_all (needs -l)' -r
complete -c alt_rootvg_op -s f -d 'File listing more packages to install (needs -l)' -r -F
complete -c alt_rootvg_op -s F -d 'More packages to install (needs -l; Debian has no APARs)' -r
complete -c alt_rootvg_op -s I -d 'Extra apt-get options for the installs, e.g. "--no-install-recommends" (needs -l; installp letters are refused)' -r
complete -c alt_rootvg_op -s s -d 'Script run on this system after the installs, before the clone is unmounted, with ALT_ROOT and ALT_DISKS set (full path, executable)' -r -F
complete -c alt_rootvg_op -s x -d 'Script to run once at the clone\'s first boot (full path)' -r -F
complete -c alt_rootvg_op -s R -d 'resolv.conf to put in the clone (full path)' -r -F
complete -c alt_rootvg_op -s c -d 'Kernel console for the clone, e.g. ttyS0,115200 (only with -O)' -r
complete -c alt_rootvg_op -l version -d 'Print the version and exit'
complete -c alt_rootvg_op -s S -d 'Sleep: unmount the alternate system awake at /alt_inst'
complete -c alt_rootvg_op -s q -d 'Query: which system lives on the disk given with -d'
complete -c alt_rootvg_op -s W -d 'Wake: mount the alternate system on -d at /alt_inst'
complete -c alt_rootvg_op -s C -d 'Customize the awake alternate system with the phase 2 flags (-l, -w, -b, -s, -x, -R, -O, -c)'
complete -c alt_rootvg_op -s t -d 'With -S: rebuild the boot image (initramfs and boot loader configuration) first'
complete -c alt_rootvg_op -s D -d 'Debug: print every command run'
complete -c alt_rootvg_op -s y -l yes -d 'Do not ask before removing'
complete -c alt_rootvg_op -s O -d 'Device reset for a disk that will run another machine: empty machine-id, SSH host keys made again at first boot, no MAC-bound network configuration, generic initramfs'
complete -c alt_rootvg_op -s h -l help -d 'Print help (see more with \'--help\')'
