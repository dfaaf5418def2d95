# The Falconet sensor image: Debian's bcc (python3-bpfcc) and Falconet in a virtual environment of
# the distribution's python3, linked to bcc exactly as scripts/setup.sh does on a host.
# Build context: the repository root (compose builds it from ..).
#
# Kernel headers, BTF, tracefs and the container runtime socket come from the host at run time
# (compose/docker-compose.yml and deploy/kubernetes/sensor-daemonset.yaml mount them read-only).
FROM debian:12.11-slim

ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-bpfcc ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# The wheel force-includes rules/, elasticsearch/, kibana/, fluent/ and deploy/systemd/
# (pyproject.toml), so `falconet provision` and `falconet run` find their assets without the checkout.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY sensor/ sensor/
COPY rules/ rules/
COPY elasticsearch/ elasticsearch/
COPY kibana/ kibana/
COPY fluent/ fluent/
COPY deploy/systemd/ deploy/systemd/

# bcc's Python module is pure Python over libbcc.so: give the venv that one package, not Debian's
# whole dist-packages (whose compiled modules belong to the system interpreter's packages).
RUN python3 -m venv /opt/falconet \
 && site="$(/opt/falconet/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
 && ln -sfn /usr/lib/python3/dist-packages/bcc "$site/bcc" \
 && /opt/falconet/bin/python -m pip install --no-cache-dir /src \
 && /opt/falconet/bin/python -c 'import bcc, sensor.cli' \
 && /opt/falconet/bin/falconet --version \
 && rm -rf /src

WORKDIR /var/lib/falconet
ENV PATH=/opt/falconet/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# 9765: the Kubernetes audit webhook, when k8s_audit.webhook.enabled is set.
EXPOSE 9765
ENTRYPOINT ["falconet"]
CMD ["run"]
