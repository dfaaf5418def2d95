# The Falconet sensor image: Debian's bcc (python3-bpfcc) and Falconet in a virtual environment of
# the distribution's python3, linked to bcc exactly as scripts/setup.sh does on a host.
# Build context: the repository root (compose builds it from ..).
#
# The base is a build argument so the image builds where no registry is reachable: any Debian 12
# (bookworm) root filesystem with apt sources will do, e.g. one made by
# `debootstrap --variant=minbase bookworm` and `podman import`ed (tests/e2e does exactly that).
#
# From the host the sensor needs only what the kernel exposes: BTF, tracefs, the cgroup
# hierarchy, the host's processes (host PID namespace) and, for container names, the runtime's
# socket (compose/docker-compose.yml and deploy/kubernetes/sensor-daemonset.yaml mount them).
# Kernel headers are not among them: the image carries Debian's generic ones, since the sensor
# reads every kernel struct at offsets taken from the running kernel's BTF and bcc only needs
# some headers to compile against.
ARG BASE_IMAGE=debian:12.11-slim
FROM ${BASE_IMAGE}

ARG DEBIAN_FRONTEND=noninteractive
# The headers: Debian's generic package for this architecture, unpacked rather than installed
# (installing it pulls a compiler in), merged into one tree as bcc's BCC_KERNEL_SOURCE takes it,
# and cut to the include trees bcc reads (include/, and arch/ of this architecture only).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-bpfcc ca-certificates \
 && arch="$(dpkg --print-architecture)" \
 && case "$arch" in amd64) karch=x86 ;; arm64) karch=arm64 ;; *) echo "no kernel arch for $arch" >&2; exit 1 ;; esac \
 && headers="$(apt-cache depends "linux-headers-$arch" | awk '/Depends: linux-headers-/ {print $2; exit}')" \
 && common="$(apt-cache depends "$headers" | awk '/Depends: linux-headers-.*-common/ {print $2; exit}')" \
 && mkdir -p /tmp/kh /opt/falconet/kernel-headers && cd /tmp/kh \
 && apt-get download "$common" "$headers" \
 && for deb in ./*.deb; do dpkg-deb -x "$deb" /tmp/kh/root; done \
 && cp -a "/tmp/kh/root/usr/src/$common/." /opt/falconet/kernel-headers/ \
 && cp -a "/tmp/kh/root/usr/src/$headers/." /opt/falconet/kernel-headers/ \
 && cd /opt/falconet/kernel-headers \
 && find arch -mindepth 1 -maxdepth 1 ! -name "$karch" -exec rm -rf {} + \
 && rm -rf scripts tools Module.symvers /tmp/kh \
 && test -f include/linux/kconfig.h && test -d "arch/$karch/include/generated" \
 && rm -rf /var/lib/apt/lists/*

# bcc's Python module is pure Python over libbcc.so: give the venv that one package, not Debian's
# whole dist-packages (whose compiled modules belong to the system interpreter's packages).
# Falconet's dependencies go in first, from pyproject.toml alone, so a change to the sources
# rebuilds only the layer below.
WORKDIR /src
COPY pyproject.toml README.md ./
RUN python3 -m venv /opt/falconet \
 && site="$(/opt/falconet/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
 && ln -sfn /usr/lib/python3/dist-packages/bcc "$site/bcc" \
 && python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' > /tmp/requirements.txt \
 && /opt/falconet/bin/python -m pip install --no-cache-dir -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# The wheel force-includes rules/, elasticsearch/, kibana/, fluent/ and deploy/systemd/
# (pyproject.toml), so `falconet provision` and `falconet run` find their assets without the checkout.
COPY sensor/ sensor/
COPY rules/ rules/
COPY elasticsearch/ elasticsearch/
COPY kibana/ kibana/
COPY fluent/ fluent/
COPY deploy/systemd/ deploy/systemd/
RUN /opt/falconet/bin/python -m pip install --no-cache-dir /src \
 && /opt/falconet/bin/python -c 'import bcc, sensor.cli' \
 && /opt/falconet/bin/falconet --version \
 && rm -rf /src

WORKDIR /var/lib/falconet
ENV PATH=/opt/falconet/bin:$PATH \
    BCC_KERNEL_SOURCE=/opt/falconet/kernel-headers \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# 9765: the Kubernetes audit webhook, when k8s_audit.webhook.enabled is set.
EXPOSE 9765
ENTRYPOINT ["falconet"]
CMD ["run"]
