#!/usr/bin/env bash
# Prepare this machine for Falconet: system packages (bcc, kernel headers, tracefs), then a virtual
# environment of the machine's own python3 with Falconet installed in it (editable).
# Idempotent and quick the second time: it installs nothing that is there, and reinstalls the
# package only when pyproject.toml or the extras changed. Run as root (apt, /lib/modules, tracefs).
# FALCONET_EXTRAS=test adds what the tests and benchmarks need (pytest..., redis for bench/).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${FALCONET_VENV:-.venv}
EXTRAS=${FALCONET_EXTRAS:-}

need_apt=()
dpkg -s python3-bpfcc >/dev/null 2>&1 || need_apt+=(python3-bpfcc)
dpkg -s python3-venv >/dev/null 2>&1 || need_apt+=(python3-venv)
case ",$EXTRAS," in
  *,test,*) dpkg -s redis-server >/dev/null 2>&1 || need_apt+=(redis-server redis-tools) ;;   # bench/ and its tests
esac
hdr_pkg=""
if [ ! -e "/lib/modules/$(uname -r)/build/include" ]; then
  # The running kernel's own headers when Debian has them, else the generic ones linked in
  # (bcc needs some headers; our BPF program reads no kernel struct by header offset).
  if apt-cache show "linux-headers-$(uname -r)" >/dev/null 2>&1; then
    hdr_pkg="linux-headers-$(uname -r)"
  else
    hdr_pkg="linux-headers-amd64"
  fi
  need_apt+=("$hdr_pkg")
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: need root to install ${need_apt[*]}" >&2; exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

kdir="/lib/modules/$(uname -r)"
if [ ! -e "$kdir/build/include" ]; then
  hdr=$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n 1)
  common=$(ls -d /usr/src/linux-headers-*-common 2>/dev/null | sort -V | tail -n 1)
  if [ -n "$hdr" ] && [ -n "$common" ]; then
    mkdir -p "$kdir"
    ln -sfn "$hdr" "$kdir/build"
    ln -sfn "$common" "$kdir/source"
  fi
fi
if [ ! -e /sys/kernel/tracing/events ] && [ "$(id -u)" -eq 0 ]; then
  mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || true
fi

py=$(command -v python3)
fresh=0
if [ ! -x "$VENV/bin/python" ]; then
  "$py" -m venv "$VENV"
  fresh=1
fi
# bcc's Python module is pure Python over libbcc.so; give the venv that one package, not
# Debian's whole dist-packages (whose other modules are built for another interpreter).
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ -d /usr/lib/python3/dist-packages/bcc ]; then
  ln -sfn /usr/lib/python3/dist-packages/bcc "$site/bcc"
fi
# What the venv was installed from: the project's metadata and the extras. Code changes need no
# reinstall (editable); a new dependency or extra does.
stamp="$VENV/.falconet-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1) extras=$EXTRAS"
if [ "$fresh" -eq 1 ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  [ "$fresh" -eq 1 ] && "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
  if [ -n "$EXTRAS" ]; then
    "$VENV/bin/python" -m pip install -q -e ".[$EXTRAS]"
  else
    "$VENV/bin/python" -m pip install -q -e .
  fi
  printf '%s\n' "$want" > "$stamp"
fi
