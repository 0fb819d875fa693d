#!/bin/bash
# socat for the walls' proxy relays (container/walls.ts), with TCP_NODELAY on
# every TCP address. The runtime's relays leave Nagle's algorithm on, so a
# request or a streamed reply written in pieces waits for the peer's delayed
# ACK (40 ms on Linux loopback) once per model turn.
args=()
for address in "$@"; do
  case "$address" in
    TCP:* | TCP4:* | TCP6:* | TCP-LISTEN:* | TCP4-LISTEN:* | TCP6-LISTEN:*) address="$address,nodelay" ;;
  esac
  args+=("$address")
done
exec socat "${args[@]}"
