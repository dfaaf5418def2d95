"""`falconet certs`: the audit webhook's TLS certificate, its CA, a bearer token, and the kubeconfig
that tells kube-apiserver how to reach the webhook (--audit-webhook-config-file)."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

import click

from sensor import securefile
from sensor.credentials import read_secret_option
from sensor.sources.k8s_audit import certs as tlsgen
from sensor.status import Exit

# The Service and Secret of deploy/kubernetes/audit-webhook.yaml.
SERVICE = "falconet-audit-webhook"
NAMESPACE = "falconet"
DEFAULT_URL = f"https://{SERVICE}.{NAMESPACE}.svc:9765/k8s-audit"


@click.command("certs")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Write ca.crt, tls.crt, tls.key, token and webhook-kubeconfig.yaml here.")
@click.option("--secret", "as_secret", is_flag=True,
              help="Print a Kubernetes Secret with the certificate, key, CA and token instead of writing "
                   "them; the kubeconfig still goes to --dir.")
@click.option("--name", default=f"{SERVICE}-tls", show_default=True, help="Name of the Secret.")
@click.option("--namespace", "-n", default=NAMESPACE, show_default=True,
              help="Namespace of the Secret and of the webhook's Service.")
@click.option("--host", "hosts", multiple=True, metavar="NAME|IP",
              help="DNS name or IP address the certificate is valid for (repeatable). Default: the "
                   "Service's names, localhost, 127.0.0.1 and the host of --url.")
@click.option("--url", default=DEFAULT_URL, show_default=True,
              help="Where kube-apiserver sends events. kube-apiserver usually cannot resolve cluster "
                   "DNS: give the Service's ClusterIP, e.g. https://10.96.120.7:9765/k8s-audit.")
@click.option("--token-file", default=None, metavar="FILE|-",
              help="Read the bearer token kube-apiserver sends (k8s_audit.webhook.token) from FILE, or "
                   "from standard input with - (a prompt on a terminal) [env FALCONET_AUDIT_WEBHOOK_TOKEN]. "
                   "Default: a random one.")
@click.option("--token", "token_argument", default=None, hidden=True)
@click.option("--no-token", is_flag=True,
              help="Do not use a bearer token (TLS only); the webhook then needs k8s_audit.webhook.auth=none.")
@click.option("--days", default=tlsgen.DEFAULT_DAYS, show_default=True, type=click.IntRange(1, 3650),
              help="Validity of the certificate and its CA.")
@click.option("--force", is_flag=True, help="Replace files that already exist.")
@click.pass_context
def certs(ctx: click.Context, directory: Path, as_secret: bool, name: str, namespace: str,
          hosts: tuple[str, ...], url: str, token_file: str | None, token_argument: str | None, no_token: bool,
          days: int, force: bool) -> None:
    """Generate the audit webhook's TLS certificate (signed by a new CA whose key is thrown away),
    a bearer token, and the kubeconfig for kube-apiserver's --audit-webhook-config-file, which is
    printed on stdout (with --secret the Secret manifest is, to pipe into `kubectl apply -f -`).
    Files are written only into a directory that is yours (or root's) and writable by nobody else."""
    if token_argument is not None:
        raise click.UsageError("a token on the command line is visible to every local user (ps); give it with "
                               "--token-file FILE, --token-file - (prompt), or FALCONET_AUDIT_WEBHOOK_TOKEN")
    if token_file is not None and no_token:
        raise click.UsageError("--token-file and --no-token contradict each other")
    token = None if no_token else read_secret_option(token_file, "FALCONET_AUDIT_WEBHOOK_TOKEN", "Bearer token")
    url_host = urlsplit(url).hostname or ""
    if urlsplit(url).scheme != "https" or not url_host:
        raise click.BadParameter(f"{url!r} is not an https:// URL", param_hint="--url")
    names = list(hosts) or [url_host, f"{SERVICE}.{namespace}.svc", f"{SERVICE}.{namespace}.svc.cluster.local",
                            f"{SERVICE}.{namespace}", "localhost", "127.0.0.1"]
    names = [n for i, n in enumerate(names) if n not in names[:i]]
    if url_host not in names:
        raise click.BadParameter(f"the certificate would not be valid for {url_host} "
                                 f"(hosts: {', '.join(names)}); add --host {url_host}", param_hint="--url")
    bearer = None if no_token else (token or tlsgen.new_token())

    os.close(securefile.open_dir(directory))     # ours, or refused, before anything is looked at in it
    kubeconfig_path = directory / "webhook-kubeconfig.yaml"
    planned = [kubeconfig_path]
    if not as_secret:
        planned += [directory / n for n in ("ca.crt", "tls.crt", "tls.key")]
        if bearer:
            planned.append(directory / "token")
    existing = [str(p) for p in planned if p.exists()]
    if existing and not force:
        click.echo(f"falconet: error: {', '.join(existing)} already exist(s); a new CA would not match "
                   "what kube-apiserver trusts now (use --force to replace)", err=True)
        ctx.exit(Exit.FAILED)

    bundle = tlsgen.generate(names, days=days)
    kubeconfig = tlsgen.kubeconfig(url, bundle.ca_pem, bearer)
    dfd = securefile.open_dir(directory)
    try:
        securefile.write_file(kubeconfig_path, kubeconfig.encode(), 0o600, dir_fd=dfd)
        if not as_secret and bearer:
            securefile.write_file(directory / "token", bearer.encode() + b"\n", 0o600, dir_fd=dfd)
        elif not as_secret:
            # A token from an earlier run no longer applies.
            with contextlib.suppress(FileNotFoundError):
                os.unlink("token", dir_fd=dfd)
    finally:
        os.close(dfd)
    if as_secret:
        sys.stdout.write(tlsgen.secret_manifest(bundle, name, namespace, bearer))
        click.echo(f"Secret {namespace}/{name} printed; kube-apiserver's kubeconfig written to "
                   f"{kubeconfig_path} (copy it to the control-plane nodes).", err=True)
        return
    written = tlsgen.write_files(bundle, directory)
    sys.stdout.write(kubeconfig)
    click.echo(f"Wrote {', '.join(str(p) for p in written.values())}"
               f"{', ' + str(directory / 'token') if bearer else ''} and {kubeconfig_path}; "
               f"the certificate is valid for {', '.join(names)} for {days} days.", err=True)

