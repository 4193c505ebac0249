#!/bin/bash
# Build altdisk's Debian packages from this checkout:
#   target/debian/altdisk_<version>_<arch>.deb       the commands, altdiskd, udev rules, units
#   target/debian/altdisk-gui_<version>_<arch>.deb   the GUI, when the gui crate is in the workspace
# A staging tree per package (target/debian/<package>/) is filled with an explicit file list
# and packed by dpkg-deb; the maintainer scripts and lintian overrides are the files in
# image-build/debian/. The version is the workspace's (Cargo.toml [workspace.package]).
# Then lintian checks them when it is installed: no error and no warning may remain
# (the warnings kept are overridden, each with its reason, in debian/*.lintian-overrides).
#
# Usage: image-build/build-debs.sh [--no-build] [--no-lintian]
#   --no-build     use the release binaries already in target/release
#   --no-lintian   skip the lintian check
# Needs: cargo (Rust, see Cargo.toml rust-version), dpkg-dev (dpkg-shlibdeps), binutils
# (strip). Does not need root: files are owned by root in the package (--root-owner-group).
# Prints the paths of the packages, one a line, as the last lines of stdout.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
here=$repo/image-build
cd "$repo"

say() { echo "build-debs: $*" >&2; }
die() {
	echo "build-debs: error: $*" >&2
	exit 1
}
# Any other failing command stops the build, and says which.
trap 'die "line $LINENO failed: $BASH_COMMAND"' ERR

build=1 run_lintian=1
for a in "$@"; do
	case $a in
	--no-build) build=0 ;;
	--no-lintian) run_lintian=0 ;;
	*) die "unknown option $a; usage: $0 [--no-build] [--no-lintian]" ;;
	esac
done

for tool in dpkg-deb dpkg-shlibdeps strip gzip; do
	command -v "$tool" >/dev/null || die "$tool is missing; install dpkg-dev, binutils and gzip (apt-get install dpkg-dev)"
done

# The one place the version is written.
version=$(sed -n '/^\[workspace\.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
[[ $version =~ ^[0-9][0-9A-Za-z.+~]*$ ]] || die "no usable version in Cargo.toml [workspace.package] (found '$version')"
arch=$(dpkg --print-architecture)
maintainer="altdisk developers <altdisk@lists.altdisk.example>"
out=$repo/target/debian
target=${CARGO_TARGET_DIR:-$repo/target}
# Reproducible: file times and the changelog date are those of the last commit.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)}
commit=$(git -C "$repo" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)

# The GUI package exists once the gui crate is a member of the workspace.
gui=0
if [[ -f gui/Cargo.toml ]] && sed -n '/^members/,/]/p' Cargo.toml | grep -q '"gui"'; then
	gui=1
	gui_crate=$(sed -n '/^\[package\]/,/^\[/s/^name *= *"\(.*\)"/\1/p' gui/Cargo.toml)
fi

if ((build)); then
	say "cargo build --release (altdisk $version)"
	cargo build --release --locked -q -p altdisk --bin altdisk --bin altdiskd
	if ((gui)); then
		cargo build --release --locked -q -p "$gui_crate" --bin altdisk-gui
	fi
fi
rel=$target/release
for b in altdisk altdiskd; do
	[[ -x $rel/$b ]] || die "$rel/$b is not built; run without --no-build"
done
got=$("$rel/altdisk" --version)
[[ $got == "altdisk $version" ]] || die "$rel/altdisk --version says '$got', the workspace is $version: rebuild (run without --no-build)"

mkdir -p "$out"

# --- helpers ------------------------------------------------------------------------------
# put MODE SRC DEST: install one file into the staging tree
put() { install -D -m "$1" "$2" "$stage/$3"; }
# put_bin SRC DEST: a stripped executable (the debug line tables stay in target/release)
put_bin() {
	install -D -m 0755 "$1" "$stage/$2"
	strip --strip-unneeded --remove-section=.comment --remove-section=.note "$stage/$2"
}
# put_man SRC: a gzipped man page, section from its name
put_man() {
	local name sec
	name=$(basename "$1")
	sec=${name##*.}
	mkdir -p "$stage/usr/share/man/man$sec"
	gzip -9n <"$1" >"$stage/usr/share/man/man$sec/$name.gz"
}
# changelog: the Debian changelog of a package built from this checkout (native: changelog.gz)
changelog() {
	local pkg=$1
	mkdir -p "$stage/usr/share/doc/$pkg"
	{
		echo "$pkg ($version) unstable; urgency=medium"
		echo
		echo "  * Built from the altdisk repository at commit $commit."
		echo "    Changes are in the repository's history (git log)."
		echo
		echo " -- $maintainer  $(date -u -R -d "@$SOURCE_DATE_EPOCH")"
	} | gzip -9n >"$stage/usr/share/doc/$pkg/changelog.gz"
}
# copyright PKG CRATE: DEP-5 copyright, naming the crates statically linked into the binaries
copyright() {
	local pkg=$1 crate=$2 f crates source years
	f=$stage/usr/share/doc/$pkg/copyright
	mkdir -p "$(dirname "$f")"
	crates=$(cargo tree --locked -q -e normal -p "$crate" --prefix none --format '{p}: {l}' |
		{ grep -v -e '(proc-macro)' -e '(\*)' -e "^$crate v" -e '^altdisk v' || true; } | sort -u |
		sed 's/^/  /; s/ (\/[^)]*)//')
	source=$(sed -n '/^\[workspace\.package\]/,/^\[/s/^repository *= *"\(.*\)"/\1/p' Cargo.toml)
	# The years of the repository's history (the year of the build outside git).
	years=$({ git -C "$repo" log --reverse --format=%ad --date=format:%Y 2>/dev/null || true; } | sed -n '1p;$p' | uniq | paste -sd-)
	awk -v crates="$crates" -v source="$source" -v maint="$maintainer" -v years="${years:-$(date -u +%Y)}" '
		$0 == "@CRATES@" { print crates; next }
		{ gsub("@SOURCE@", source); gsub("@MAINTAINER@", maint); gsub("@YEARS@", years); print }' \
		"$here/debian/copyright.in" >"$f"
	chmod 0644 "$f"
}
# control PKG: DEBIAN/control from image-build/debian/PKG.control, with the computed fields
control() {
	local pkg=$1 shlibs=$2 size
	size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
	mkdir -p "$stage/DEBIAN"
	{
		echo "Package: $pkg"
		echo "Version: $version"
		echo "Architecture: $arch"
		echo "Maintainer: $maintainer"
		echo "Installed-Size: $size"
		sed -e "s/@SHLIBS@/$shlibs/" -e "s/@VERSION@/$version/" "$here/debian/$pkg.control"
	} >"$stage/DEBIAN/control"
}
# shlibs BINARY...: the Depends for the shared libraries the binaries link
shlibs() {
	local tmp
	tmp=$(mktemp -d)
	mkdir -p "$tmp/debian"
	# dpkg-shlibdeps reads debian/control for the package names; a stub is enough.
	printf 'Source: altdisk\n\nPackage: altdisk\nArchitecture: any\n' >"$tmp/debian/control"
	(cd "$tmp" && dpkg-shlibdeps -O "$@" 2>/dev/null) | sed -n 's/^shlibs:Depends=//p'
	rm -rf "$tmp"
}
# finish PKG: maintainer scripts (@BOOT_UNITS@ = the boot units shipped), md5sums, file
# times; dpkg-deb
finish() {
	local pkg=$1 s deb
	for s in postinst prerm postrm; do
		[[ -f $here/debian/$pkg.$s ]] || continue
		sed "s/@BOOT_UNITS@/${boot_units[*]}/g" "$here/debian/$pkg.$s" >"$stage/DEBIAN/$s"
		chmod 0755 "$stage/DEBIAN/$s"
	done
	(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z |
		xargs -0r md5sum >DEBIAN/md5sums)
	chmod 0644 "$stage/DEBIAN/md5sums" "$stage/DEBIAN/control"
	find "$stage" -type d -exec chmod 0755 {} +
	find "$stage" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
	deb=$out/${pkg}_${version}_$arch.deb
	dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
	say "built $deb ($(du -h "$deb" | cut -f1))"
	debs+=("$deb")
}

debs=()
boot_units=()

# --- altdisk ------------------------------------------------------------------------------
stage=$out/altdisk
rm -rf "$stage"
mkdir -p "$stage"
put_bin "$rel/altdisk" usr/sbin/altdisk
put_bin "$rel/altdiskd" usr/sbin/altdiskd
for n in alt_disk_copy alt_rootvg_op bootlist; do
	ln -s altdisk "$stage/usr/sbin/$n"
done
dist=$repo/core/dist
put 0644 "$dist/altdiskd.service" usr/lib/systemd/system/altdiskd.service
put 0644 "$dist/org.altdisk.AltDisk1.service" usr/share/dbus-1/system-services/org.altdisk.AltDisk1.service
put 0644 "$dist/org.altdisk.AltDisk1.conf" usr/share/dbus-1/system.d/org.altdisk.AltDisk1.conf
put 0644 "$dist/org.altdisk.policy" usr/share/polkit-1/actions/org.altdisk.policy
sed 's|@ALTDISK@|/usr/sbin/altdisk|' "$repo/udev-rules/70-altdisk.rules" >"$out/70-altdisk.rules"
put 0644 "$out/70-altdisk.rules" usr/lib/udev/rules.d/70-altdisk.rules
# The boot units, written by altdisk itself for the installed path; enabled by postinst.
units=$(mktemp -d)
"$rel/altdisk" install-units --root "$units" --exe /usr/sbin/altdisk >/dev/null
boot_units=()
for u in "$units"/etc/systemd/system/*.service; do
	grep -q '^ExecStart=/usr/sbin/altdisk ' "$u" || die "$u does not run /usr/sbin/altdisk"
	put 0644 "$u" "usr/lib/systemd/system/$(basename "$u")"
	boot_units+=("$(basename "$u")")
done
rm -rf "$units"
((${#boot_units[@]})) || die "altdisk install-units wrote no units"
# The change tracker: enabled and started by postinst like the boot units.
put 0644 "$dist/altdisk-changes.service" usr/lib/systemd/system/altdisk-changes.service
boot_units+=(altdisk-changes.service)
grep -rq -e /usr/local -e "$repo" "$stage/usr/lib" "$stage/usr/share" && die "a file names /usr/local or the build tree"
for m in docs/man/*.8; do
	[[ $(basename "$m") == altdisk-gui* ]] || put_man "$m"
done
for n in altdisk alt_disk_copy alt_rootvg_op bootlist; do
	put 0644 "docs/completions/bash/$n" "usr/share/bash-completion/completions/$n"
	put 0644 "docs/completions/zsh/_$n" "usr/share/zsh/vendor-completions/_$n"
	put 0644 "docs/completions/fish/$n.fish" "usr/share/fish/vendor_completions.d/$n.fish"
done
put 0644 README.md usr/share/doc/altdisk/README.md
put 0644 docs/dbus.md usr/share/doc/altdisk/dbus.md
# Overrides are shipped when there are any (the file lists each with its reason).
grep -qv -e '^#' -e '^$' "$here/debian/altdisk.lintian-overrides" &&
	put 0644 "$here/debian/altdisk.lintian-overrides" usr/share/lintian/overrides/altdisk
changelog altdisk
copyright altdisk altdisk
control altdisk "$(shlibs "$stage/usr/sbin/altdisk" "$stage/usr/sbin/altdiskd")"
finish altdisk

# --- altdisk-gui --------------------------------------------------------------------------
if ((gui)); then
	stage=$out/altdisk-gui
	rm -rf "$stage"
	mkdir -p "$stage"
	[[ -x $rel/altdisk-gui ]] || die "$rel/altdisk-gui is not built (crate $gui_crate)"
	put_bin "$rel/altdisk-gui" usr/bin/altdisk-gui
	# gui/data: the desktop entry, AppStream metainfo and the scalable icon, as the GUI ships them.
	found=0
	for f in gui/data/*.desktop; do
		[[ -e $f ]] && put 0644 "$f" "usr/share/applications/$(basename "$f")" && found=1
	done
	((found)) || die "gui/data/ holds no .desktop file for the GUI package"
	for f in gui/data/*.metainfo.xml; do
		[[ -e $f ]] && put 0644 "$f" "usr/share/metainfo/$(basename "$f")"
	done
	for f in gui/data/*.svg; do
		[[ -e $f ]] && put 0644 "$f" "usr/share/icons/hicolor/scalable/apps/$(basename "$f")"
	done
	# Its man page: generated with the GUI (docs/man) when it has one, else the short one here.
	if [[ -e docs/man/altdisk-gui.1 ]]; then
		put_man docs/man/altdisk-gui.1
	else
		put_man "$here/debian/altdisk-gui.1"
	fi
	[[ -f $here/debian/altdisk-gui.lintian-overrides ]] && grep -qv -e '^#' -e '^$' "$here/debian/altdisk-gui.lintian-overrides" &&
		put 0644 "$here/debian/altdisk-gui.lintian-overrides" usr/share/lintian/overrides/altdisk-gui
	changelog altdisk-gui
	copyright altdisk-gui "$gui_crate"
	control altdisk-gui "$(shlibs "$stage/usr/bin/altdisk-gui")"
	finish altdisk-gui
else
	say "no altdisk-gui package: the gui crate is not in the workspace yet (Cargo.toml members)"
fi

# --- lintian ------------------------------------------------------------------------------
if ((run_lintian)); then
	if command -v lintian >/dev/null; then
		say "lintian ${debs[*]##*/}"
		lintian --fail-on error,warning "${debs[@]}" >&2 ||
			die "lintian found errors or warnings (above); fix them, or override a warning with its reason in image-build/debian/*.lintian-overrides"
	else
		say "lintian is not installed (apt-get install lintian): packages not checked"
	fi
fi
printf '%s\n' "${debs[@]}"
