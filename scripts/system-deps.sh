#!/usr/bin/env bash
# Installs the Debian packages Parley needs, when run as root on Debian; otherwise says what is missing.
# Usage: system-deps.sh runtime|test. Quick when everything is already there.
set -euo pipefail
kind="${1:-runtime}"
runtime_pkgs=()
test_pkgs=(flite sox postgresql chromium sip-tester)
pkgs=("${runtime_pkgs[@]}")
[ "$kind" = test ] && pkgs+=("${test_pkgs[@]}")
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "system-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq -o DPkg::Lock::Timeout=600
  apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}" >/dev/null
else
  echo "system-deps: missing Debian packages: ${missing[*]} (install them with: sudo apt-get install ${missing[*]})" >&2
  [ "$kind" = test ] && exit 1
fi
