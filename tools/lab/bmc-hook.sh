#!/bin/sh
# ipmi_sim's chassis_control hook for one simulated BMC: `bmc-hook.sh BMC_DIR get|set ITEM [VALUE] ...`.
# ipmi_sim runs it synchronously through popen, so it must return at once: the virtual node it powers
# on runs in its own session with its output redirected, and is tracked by BMC_DIR/node.pid.
#
#   get power     -> power:0|1        set power 1|0   start the node | hard off (SIGKILL its group)
#   get boot      -> boot:DEV         set boot DEV    pxe, default (disk), none, cdrom, bios
#   set reset 1   hard reset: kill the node and start it again (new PID)
#   set shutdown 1  ACPI soft off: SIGTERM to the node, whose OS decides (BMC_DIR/soft-off=ignore: never)
dir=$1
shift
echo "$*" >>"$dir/hook.log"

node_pid() {
  pid=$(cat "$dir/node.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
  # A process reparented to PID 1 lingers as a zombie for a moment: that machine is already off.
  state=$(sed 's/^.*) //' "/proc/$pid/stat" | cut -c1) || return 1
  case $state in Z | X | '') return 1 ;; esac
  echo "$pid"
}

power_on() {
  node_pid >/dev/null && return 0
  setsid "$dir/node.sh" "$dir" </dev/null >>"$dir/node.log" 2>&1 &
  echo $! >"$dir/node.pid"
}

power_off() {
  # The node's whole process group; dash's builtin kill cannot signal a group, procps' kill can.
  if pid=$(node_pid); then env kill -s KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null; fi
  rm -f "$dir/node.pid"
}

op=$1
shift
case $op in
get)
  for item in "$@"; do
    case $item in
    power) if node_pid >/dev/null; then echo 'power:1'; else echo 'power:0'; fi ;;
    boot) echo "boot:$(cat "$dir/boot" 2>/dev/null || echo none)" ;;
    esac
  done
  ;;
set)
  while [ $# -ge 2 ]; do
    case $1 in
    power) if [ "$2" = 1 ]; then power_on; else power_off; fi ;;
    boot) echo "$2" >"$dir/boot" ;;
    reset) if node_pid >/dev/null; then power_off; power_on; fi ;;
    shutdown)
      if [ "$(cat "$dir/soft-off" 2>/dev/null)" != ignore ] && pid=$(node_pid); then kill -TERM "$pid"; fi
      ;;
    esac
    shift 2
  done
  ;;
esac
exit 0
