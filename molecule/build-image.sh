#!/usr/bin/env bash
# Build (or reuse) the Debian 12 image the molecule scenarios run in, without any registry:
# debootstrap a minimal bookworm from the mirror this machine's apt already uses, then
# `podman import` it. The image tag carries a hash of this recipe, so a changed recipe
# rebuilds and an unchanged one is reused (cached per machine by podman itself).
# Prints the image reference on stdout; progress goes to stderr.
set -euo pipefail

image_name=localhost/lab-llm-molecule-debian12
packages=python3,python3-packaging,python3-apt,g++,systemd,systemd-sysv,kmod,initramfs-tools,sudo,ca-certificates,iproute2,procps,libnuma1
recipe_hash=$( (cat "$0"; echo "$packages") | sha256sum | cut -c1-12)
image="$image_name:$recipe_hash"

if podman image exists "$image"; then
  echo "build-image: reusing $image" >&2
  echo "$image"
  exit 0
fi

# The Debian mirror apt uses here (deb822 *.sources or one-line sources.list), never a hard-coded host.
debian_mirror() {
  local files=() file
  for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
    [[ -f $file ]] && files+=("$file")
  done
  ((${#files[@]})) || return 0
  awk '
    /^Types:/ {types=$0} /^URIs:/ {uris=$2}
    /^Suites:/ && types ~ /deb([ \t]|$)/ && $0 ~ /[ \t]bookworm([ \t]|$)/ && uris != "" {print uris; exit}
    /^[ \t]*$/ {types=""; uris=""}
    /^deb[ \t]/ {sub(/\[[^]]*\][ \t]*/, ""); if ($3 == "bookworm") {print $2; exit}}
  ' "${files[@]}"
}
mirror=${LAB_LLM_DEBIAN_MIRROR:-$(debian_mirror)}
if [[ -z $mirror ]]; then
  echo "build-image: no Debian bookworm mirror found in /etc/apt/sources.list*; set LAB_LLM_DEBIAN_MIRROR" >&2
  exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/lab-llm-rootfs.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "build-image: debootstrap bookworm from $mirror (about a minute)" >&2
debootstrap --variant=minbase --include="$packages" bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -n 30 "$work/debootstrap.log" >&2
  exit 1
}
# Keep the image small and make systemd happy as PID 1 in a container.
rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
: >"$work/rootfs/etc/machine-id"
for unit in systemd-udevd.service systemd-udev-trigger.service systemd-modules-load.service \
  getty@tty1.service console-getty.service systemd-remount-fs.service; do
  ln -sf /dev/null "$work/rootfs/etc/systemd/system/$unit"
done
echo "build-image: importing $image" >&2
tar -C "$work/rootfs" -c . | podman import --change 'CMD ["/sbin/init"]' - "$image" >/dev/null
# Drop older builds of this recipe family so the machine keeps one.
podman images --format '{{.Repository}}:{{.Tag}}' | grep "^$image_name:" | grep -v ":$recipe_hash\$" |
  xargs -r podman rmi -f >/dev/null 2>&1 || true
echo "$image"
