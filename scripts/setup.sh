#!/usr/bin/env bash
# Installs what strata needs to build, test and run its examples, if missing (Debian 12).
set -euo pipefail
pkgs=(groff-base bsdextrautils libarchive-dev zlib1g-dev liblzma-dev libzstd-dev libbz2-dev liblz4-dev libseccomp-dev gcc libc6-dev bzip2 lz4 libarchive-tools libsqlite3-dev pkg-config busybox-static skopeo umoci runc zstd xz-utils python3 attr docker-registry apache2-utils openssl curl uidmap fuse-overlayfs procps util-linux netavark aardvark-dns iptables slirp4netns)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Rootless strata (docs/rootless.md) mounts fuse-overlayfs as a user: /dev/fuse is 0666 on a
# Debian host (udev's rule); some machines without udev leave it 0600.
if [ -c /dev/fuse ] && [ "$(stat -c %a /dev/fuse)" != 666 ]; then chmod 0666 /dev/fuse; fi
# Rootless networking (slirp4netns) opens /dev/net/tun in the user's namespace: 0666 as udev
# makes it on Debian.
if [ -c /dev/net/tun ] && [ "$(stat -c %a /dev/net/tun)" != 666 ]; then chmod 0666 /dev/net/tun; fi
if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then
  echo "note: add /opt/swift/usr/bin to PATH" >&2
fi
