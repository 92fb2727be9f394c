#!/usr/bin/env bash
# The system packages the tests need, in one place: `make test` and `.ci/run` both call this.
#   chromium, fonts-dejavu-core   the browser tests (Playwright drives Debian's Chromium)
#   qemu-utils ... python3-vmdkstream   the disk tools that build the test image corpus
#   xfsprogs btrfs-progs cryptsetup-bin  the guest volumes of the deep pre-flight's tests
#   ntfs-3g libwin-hivex-perl           its Windows guests (mkntfs, ntfscp, libntfs-3g; hivexregedit)
#   lvm2                            LVM physical volumes and logical volumes for those tests (pvcreate on a loop device)
# Installs what is missing with apt-get when run as root; otherwise prints the one command
# to run and exits 1, before any test runs.
set -euo pipefail
PACKAGES=(chromium fonts-dejavu-core curl jq qemu-utils gdisk fdisk dosfstools e2fsprogs mtools python3-vmdkstream xfsprogs btrfs-progs cryptsetup-bin ntfs-3g libwin-hivex-perl lvm2)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "[system-packages] installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  exit 0
fi
echo "The tests need these system packages: ${missing[*]}. Run:" >&2
echo "  sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
exit 1
