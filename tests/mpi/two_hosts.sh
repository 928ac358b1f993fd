#!/usr/bin/env bash
# Two hosts simulated on one machine (issue 15): two network namespaces joined by a veth pair,
# each with its own address and hostname; mpirun starts in the first with a hostfile of both
# addresses, reaches the second through plm_rsh_agent (a script that enters that namespace instead
# of ssh), and the ranks talk over TCP only. Runs `mpirun ... -np 2 COMMAND...` and exits with its
# status; exits 77 (CTest's skip) with a message when network namespaces are refused (not root).
# Usage: tests/mpi/two_hosts.sh COMMAND [ARGS...]
set -euo pipefail
tag=$$
a=dsv3a$tag b=dsv3b$tag
net=10.231.$((tag % 200 + 20))
if ! ip netns add "$a" 2> /dev/null; then
  echo "two_hosts: skipped: 'ip netns add' was refused (network namespaces need root)"
  exit 77
fi
work=$(mktemp -d)
cleanup() {
  ip netns del "$a" 2> /dev/null || true
  ip netns del "$b" 2> /dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$b"
ip link add "va$tag" type veth peer name "vb$tag"
ip link set "va$tag" netns "$a"
ip link set "vb$tag" netns "$b"
ip -n "$a" addr add "$net.1/24" dev "va$tag"
ip -n "$b" addr add "$net.2/24" dev "vb$tag"
for ns in "$a" "$b"; do ip -n "$ns" link set lo up; done
ip -n "$a" link set "va$tag" up
ip -n "$b" link set "vb$tag" up

# plm_rsh_agent is called as: AGENT HOST COMMAND... (as ssh would be).
cat > "$work/agent" << AGENT
#!/bin/sh
host=\$1; shift
[ "\$host" = "$net.2" ] || { echo "two_hosts agent: unknown host \$host" >&2; exit 1; }
exec ip netns exec $b unshare --uts sh -c "hostname dsv3-host-b; \$*"
AGENT
chmod +x "$work/agent"
printf '%s slots=1\n%s slots=1\n' "$net.1" "$net.2" > "$work/hosts"

ip netns exec "$a" unshare --uts sh -c 'hostname dsv3-host-a; exec "$@"' sh \
  mpirun --allow-run-as-root --hostfile "$work/hosts" --mca plm_rsh_agent "$work/agent" \
  --mca btl tcp,self --mca btl_tcp_if_include "$net.0/24" --mca oob_tcp_if_include "$net.0/24" \
  -x PATH -np 2 "$@"
