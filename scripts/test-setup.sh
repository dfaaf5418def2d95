#!/usr/bin/env bash
# What the test suite needs beyond what running Falconet needs (scripts/setup.sh): Debian's
# container runtimes for the end-to-end container tests (tests/e2e/test_containers_*.py) and the
# tools that build their images locally, since nothing can be pulled from a registry:
#   podman, runc      real containers (runc: crun refuses hybrid cgroup v1+v2 hosts)
#   catatonit         the infra process of a podman pod
#   containerd        containers under `ctr run`
#   busybox-static    the root filesystem of the test image (podman import)
#   debootstrap       the Debian base of the sensor's own image (podman build)
# Idempotent: a second run only checks. Run as root.
set -euo pipefail
need_apt=()
for pkg in podman runc catatonit containerd busybox-static debootstrap; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "test-setup: need root to install ${need_apt[*]}" >&2; exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
