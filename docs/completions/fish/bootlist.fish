complete -c bootlist -s m -d 'normal (the boot order), prevboot (what booted last); service and both have no UEFI meaning' -r
complete -c bootlist -l next -d 'Boot this disk once, at the next boot only (UEFI BootNext)' -r
complete -c bootlist -l version -d 'Print the version and exit'
complete -c bootlist -s o -d 'Show the list'
complete -c bootlist -l json -d 'Print the list as JSON'
complete -c bootlist -s h -l help -d 'Print help (see more with \'--help\')'
