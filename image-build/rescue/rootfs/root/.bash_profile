# altdisk rescue: the menu on every console root is logged in on. Leaving it ("s") gives this
# shell; `altdisk-rescue` brings the menu back.
[ -f ~/.bashrc ] && . ~/.bashrc
case $(tty) in
/dev/tty[0-9]* | /dev/ttyS[0-9]*)
	[ -z "${ALTDISK_RESCUE_NO_MENU:-}" ] && /usr/local/sbin/altdisk-rescue
	;;
esac
