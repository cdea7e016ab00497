#!/usr/bin/env bash
# Rebuilds the real-world corpus from git clones (or bare mirrors) of the projects in
# SOURCES.md, writing OUT_DIR/<project>/<path> from each listed blob, checking SHA-256.
#   assemble.sh OUT_DIR CLONES_DIR            clones named by project: CLONES_DIR/istio, ...
#   assemble.sh OUT_DIR PROJECT=GIT_DIR...    one git dir (clone or bare) per project
# Each clone needs the blob in its history (a full `git clone` of the URL in SOURCES.md).
set -euo pipefail
die() { echo "assemble.sh: $*" >&2; exit 1; }
(($# >= 2)) || die "usage: $0 OUT_DIR (CLONES_DIR | PROJECT=GIT_DIR...)"
sources="$(dirname "$0")/SOURCES.md"
out=$1; shift; clones=
[[ ! -e $out || -z $(ls -A "$out") ]] || die "$out is not empty (the test wants exactly the listed files)"
declare -A gitdir=()
if (($# == 1)) && [[ $1 != *=* ]]; then clones=$1; [[ -d $clones ]] || die "no directory $clones"; else
    for a in "$@"; do [[ $a == ?*=?* ]] || die "not PROJECT=GIT_DIR: $a"; gitdir[${a%%=*}]=${a#*=}; done
fi
if command -v sha256sum >/dev/null; then sha() { sha256sum "$1" | cut -d' ' -f1; }
else sha() { shasum -a 256 "$1" | cut -d' ' -f1; }; fi
failed=0 written=0 project=
while IFS= read -r line; do
    if [[ $line == "## "* ]]; then project=${line#\#\# }; continue; fi
    IFS='|' read -r _ path blob want _ <<<"$line"
    read -r path blob want <<<"$path $blob $want"
    [[ ${#want} == 64 && -n $project ]] || continue
    git=${gitdir[$project]:-${clones:+$clones/$project}}
    [[ -n $git ]] || die "no git dir given for project $project"
    file=$out/$project/$path
    mkdir -p "$(dirname "$file")"
    if ! git -C "$git" cat-file blob "$blob" >"$file" 2>/dev/null; then
        echo "MISSING $project/$path: blob $blob not in $git" >&2; rm -f "$file"; failed=$((failed + 1))
    elif got=$(sha "$file"); [[ $got != "$want" ]]; then
        echo "BAD SHA $project/$path: sha256 $got, SOURCES.md says $want" >&2; rm -f "$file"; failed=$((failed + 1))
    else written=$((written + 1)); fi
done <"$sources"
echo "assemble.sh: $written file(s) written to $out, $failed failed" >&2
((failed == 0 && written > 0)) || die "corpus incomplete"
