#!/bin/sh
# The default "virtual node" a simulated BMC powers on: a process that says what it booted from and
# runs until it is powered off. SIGTERM is the ACPI power button: the "OS" shuts down and exits.
dir=$1
echo "$(date -u +%FT%T.%NZ) power on, booting from $(cat "$dir/boot" 2>/dev/null || echo none) (pid $$)"
child=''
trap 'echo "$(date -u +%FT%T.%NZ) ACPI shutdown"; [ -n "$child" ] && kill "$child" 2>/dev/null; exit 0' TERM
while :; do
  sleep 3600 &
  child=$!
  wait "$child"
done
