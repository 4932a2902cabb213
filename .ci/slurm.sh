#!/usr/bin/env bash
# CI only: a one-node Slurm (Debian's slurm-wlm and munge) on this machine, for tests/test_sweep.py's
# `--cluster slurm` sweep. Needs root. Never fails CI: without apt, root or a working daemon the test skips and
# says why (it asks `sinfo` for an idle node).
set -uo pipefail

say() { echo "slurm.sh: $*" >&2; }

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    say "not root or no apt-get: no Slurm (the Slurm test will skip)"; exit 0
fi
if ! command -v slurmctld >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    (apt-get update -qq && apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null) \
        || { say "apt-get could not install slurm-wlm and munge: no Slurm"; exit 0; }
fi

# munge: a generated key, the daemon run as the munge user
mkdir -p /etc/munge /run/munge /var/log/munge /var/lib/munge
[ -s /etc/munge/munge.key ] || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge
chmod 0400 /etc/munge/munge.key
pgrep -x munged >/dev/null || su -s /bin/sh munge -c /usr/sbin/munged || { say "munged did not start"; exit 0; }

# slurm.conf: one node, this machine, its cores, memory below what is free
host=$(hostname -s)
cpus=$(nproc)
memory=$(( $(awk '/MemAvailable/ {print int($2 / 1024)}' /proc/meminfo) * 8 / 10 ))
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
cat > /etc/slurm/slurm.conf <<EOF
ClusterName=ci
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ReturnToService=2
NodeName=$host CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=ci Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
pgrep -x slurmctld >/dev/null || slurmctld || { say "slurmctld did not start (/var/log/slurm/slurmctld.log)"; exit 0; }
pgrep -x slurmd >/dev/null || slurmd || { say "slurmd did not start (/var/log/slurm/slurmd.log)"; exit 0; }

for _ in $(seq 30); do
    if [ -n "$(sinfo --noheader --states=idle --format=%n 2>/dev/null)" ]; then
        say "node $host idle ($cpus CPUs, ${memory} MB)"; exit 0
    fi
    sleep 1
done
say "no idle node after 30 s (sinfo: $(sinfo 2>&1 | tail -1)); the Slurm test will skip"
exit 0
