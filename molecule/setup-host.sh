#!/usr/bin/env bash
# Host prerequisites for the molecule targets (real Debian 12 in podman containers).
# Idempotent: installs podman, runc and debootstrap only when missing, and writes the
# containers.conf that lets systemd run as PID 1 on these machines:
#  - runc, because crun refuses this kernel's hybrid cgroup layout;
#  - cgroupfs manager, because there is no systemd user session to delegate to;
#  - no default ulimits, because the default nofile limit cannot be set in this sandbox.
set -euo pipefail

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  SUDO="sudo"
fi

missing=()
for tool in podman runc debootstrap; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
  echo "setup-host: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    podman runc debootstrap uidmap fuse-overlayfs slirp4netns >/dev/null
fi

conf=/etc/containers/containers.conf
wanted=$(cat <<'CONF'
# Written by lab-llm molecule/setup-host.sh: systemd-in-podman on hybrid-cgroup kernels.
[containers]
default_ulimits = []

[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
CONF
)
if [[ ! -f $conf ]] || [[ "$(cat "$conf")" != "$wanted" ]]; then
  if [[ -f $conf ]] && ! grep -q 'lab-llm molecule/setup-host.sh' "$conf"; then
    $SUDO cp "$conf" "$conf.before-lab-llm"
    echo "setup-host: kept the previous $conf as $conf.before-lab-llm"
  fi
  $SUDO mkdir -p /etc/containers
  printf '%s\n' "$wanted" | $SUDO tee "$conf" >/dev/null
  echo "setup-host: wrote $conf"
fi
echo "setup-host: podman $(podman --version | awk '{print $3}'), runc, debootstrap ready"
