#!/bin/bash
# Write docs/reliability.md from the figures the fault tests left in target/tmp/reliability/
# (root_faults, vm_powercut, the bad-input table, the property tests). Run by tests/run.sh
# after the tests; a section whose test did not run this time keeps its last text.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
frag=$repo/target/tmp/reliability
doc=$repo/docs/reliability.md
[[ -d $frag ]] || exit 0
keep=$(mktemp -d)
trap 'rm -rf "$keep"' EXIT
# Sections of the previous document, by name, for tests that did not run this time.
if [[ -f $doc ]]; then
	awk -v dir="$keep" '/^<!-- section: / { name=$3; next } /^<!-- end -->/ { name=""; next } name { print > (dir "/" name ".md") }' "$doc"
fi
cp "$frag"/*.md "$keep"/ 2>/dev/null || true
{
	echo "# Reliability figures"
	echo
	echo "Written by \`tests/reliability-doc.sh\` from what the fault tests measured; last written"
	echo "$(date -u +%Y-%m-%d) (sections of tests that did not run then keep their earlier text)."
	echo "How each failure is handled: README.md, \"What can go wrong\"."
	echo
	for f in "$keep"/*.md; do
		name=$(basename "$f" .md)
		echo "<!-- section: $name -->"
		cat "$f"
		echo "<!-- end -->"
		echo
	done
} >"$doc.new"
mv "$doc.new" "$doc"
echo "reliability-doc: wrote $doc"
