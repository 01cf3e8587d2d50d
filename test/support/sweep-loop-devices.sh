#!/usr/bin/env bash
# Detaches the loop devices a killed test process left attached: tools/lab/virtual-lab.ts lists
# every loop device's backing file (one a line, one file per lab) under $INGOT_LOOP_REGISTRY, which
# defaults to `loop/` next to $INGOT_NETNS_REGISTRY (run-tests.sh's `$TMP_ROOT/loop`). Only devices
# backed by a listed file are detached, by name; the listed files are removed.
#
#   test/support/sweep-loop-devices.sh DIR
#
# run-tests.sh's cleanup() should call it before removing $TMP_ROOT, after remove_netns (a node's
# agent may still hold its disk open until its namespace's processes are gone):
#   "$REPO_ROOT/test/support/sweep-loop-devices.sh" "$TMP_ROOT/loop"
set -uo pipefail

dir=${1:?usage: sweep-loop-devices.sh DIR}
[[ -d $dir ]] || exit 0

declare -A listed=()
while read -r file; do
  [[ -n $file ]] && listed[$file]=1
done < <(cat "$dir"/* 2>/dev/null)
((${#listed[@]} > 0)) || exit 0

for backing in /sys/block/loop*/loop/backing_file; do
  [[ -r $backing ]] || continue
  file=$(cat "$backing" 2>/dev/null) || continue
  file=${file% (deleted)}
  if [[ -n ${listed[$file]:-} ]]; then
    dev=/dev/$(basename "$(dirname "$(dirname "$backing")")")
    printf 'sweep-loop-devices: detaching %s (%s) left by a test\n' "$dev" "$file" >&2
    losetup -d "$dev" 2>/dev/null
  fi
done
for file in "${!listed[@]}"; do rm -f -- "$file"; done
exit 0
