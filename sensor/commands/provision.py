"""`falconet provision`: install ILM, templates, pipelines, data streams, data view and dashboards.

Beats `setup` style: a fixed order, one line per finished step, idempotent (a second run changes
nothing), `--overwrite` to replace what differs, `--only` to pick parts, `--dry-run` to print every
call with its body instead of making it. Secrets come from the environment, a file or a prompt,
never from arguments, and go only to URLs the user named (sensor/credentials.py).
"""

from __future__ import annotations

import sys

import click

from sensor.credentials import read_secret_option
from sensor.provision import plan
from sensor.provision.bundle import Params, load
from sensor.provision.connection import Endpoint

ES_URL = "http://localhost:9200"
KIBANA_URL = "http://localhost:5601"


@click.command("provision")
@click.option("--es-url", envvar="FALCONET_ES_URL", default=ES_URL, show_default=True, metavar="URL",
              help="Elasticsearch URL [env FALCONET_ES_URL].")
@click.option("--kibana-url", envvar="FALCONET_KIBANA_URL", default=KIBANA_URL, show_default=True,
              metavar="URL", help="Kibana URL [env FALCONET_KIBANA_URL].")
@click.option("--username", envvar="FALCONET_USERNAME", metavar="USER",
              help="Basic-auth user for both [env FALCONET_USERNAME]; its password comes from "
                   "FALCONET_PASSWORD, --password-file, or a prompt.")
@click.option("--password-file", metavar="FILE|-",
              help="Read the password from FILE, or from standard input with - [env FALCONET_PASSWORD].")
@click.option("--api-key-file", metavar="FILE|-",
              help="Read an API key for both (encoded, or id:key) from FILE, or from standard input with - "
                   "[env FALCONET_ES_API_KEY].")
@click.option("--password", "password_argument", hidden=True)
@click.option("--api-key", "api_key_argument", hidden=True)
@click.option("--ca-cert", type=click.Path(dir_okay=False), metavar="FILE",
              help="CA certificate (PEM) that signed the servers' certificates.")
@click.option("--insecure", is_flag=True, help="Do not verify TLS certificates (not for production).")
@click.option("--only", "only", multiple=True, type=click.Choice(plan.GROUPS),
              help="Install only this part (repeatable): templates (with the data streams), ilm, "
                   "pipelines, dashboards (data view and saved objects).")
@click.option("--overwrite", is_flag=True, help="Replace existing objects (else they are left alone).")
@click.option("--dry-run", is_flag=True, help="Print every call with its body; contact nothing.")
@click.option("--space", metavar="SPACE", help="Kibana space to install the saved objects in.")
@click.option("--namespace", default="default", show_default=True, metavar="NAME",
              help="Data stream namespace: logs-falconet.alerts-NAMESPACE.")
@click.option("--retention", default="90d", show_default=True, metavar="AGE",
              help="Delete data this long after it rolled over (ILM delete phase).")
@click.option("--timeout", default=120.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds to wait for Elasticsearch and Kibana to be ready.")
@click.pass_context
def provision(ctx: click.Context, es_url: str, kibana_url: str, username: str | None, password_file: str | None,
              api_key_file: str | None, password_argument: str | None, api_key_argument: str | None,
              ca_cert: str | None, insecure: bool, only: tuple[str, ...], overwrite: bool, dry_run: bool,
              space: str | None, namespace: str, retention: str, timeout: float) -> int:
    """Install templates, ILM, pipelines and dashboards in Elasticsearch and Kibana.

    Credentials are never taken from the command line (every local user can read it in `ps`), and
    are sent only to URLs given with --es-url/--kibana-url or their environment variables."""
    for given, option, env, file_option in ((password_argument, "--password", "FALCONET_PASSWORD", "--password-file"),
                                            (api_key_argument, "--api-key", "FALCONET_ES_API_KEY", "--api-key-file")):
        if given is not None:
            raise click.UsageError(f"{option} on the command line is visible to every local user (ps); use {env}, "
                                   f"{file_option} FILE, or {file_option} - (a prompt)")
    bundle = load(Params(namespace=namespace, retention=retention))
    steps = plan.selected_steps(only)
    if dry_run:
        from sensor.provision.files import PrintBackend

        printer = PrintBackend(sys.stdout, space)
        plan.run(bundle, steps, printer, printer, overwrite, report=_to_stderr)
        return 0

    api_key = read_secret_option(api_key_file, "FALCONET_ES_API_KEY", "API key")
    password = read_secret_option(password_file, "FALCONET_PASSWORD", "Password")
    if username and password is None and not api_key:
        if not sys.stdin.isatty():
            raise click.UsageError(f"--username {username} needs a password: set FALCONET_PASSWORD, give "
                                   "--password-file FILE, or run on a terminal to be asked")
        password = click.prompt(f"Password for {username}", hide_input=True, err=True)
    needs_es, needs_kibana = plan.needs(steps, "elasticsearch"), plan.needs(steps, "kibana")
    credentials = bool(username or api_key)
    for needed, param, option, env in ((needs_es, "es_url", "--es-url", "FALCONET_ES_URL"),
                                       (needs_kibana, "kibana_url", "--kibana-url", "FALCONET_KIBANA_URL")):
        if needed and credentials and ctx.get_parameter_source(param) == click.core.ParameterSource.DEFAULT:
            # A default URL is a guess; whoever listens there would get the credentials.
            raise click.UsageError(f"credentials are sent only to URLs you name: give {option} (or {env}), "
                                   "or leave out that part with --only")
    es = kibana = None
    if insecure:
        click.echo("falconet: warning: --insecure: TLS certificates are not verified; anyone on the path "
                   "can read the credentials", err=True)
    if needs_es:
        from sensor.provision.es import ElasticsearchTarget

        es = ElasticsearchTarget(Endpoint("Elasticsearch", es_url, username, password, api_key, ca_cert,
                                          insecure), timeout=timeout)
        _warn_cleartext(es.endpoint)
    if needs_kibana:
        from sensor.provision.kibana import KibanaTarget

        kibana = KibanaTarget(Endpoint("Kibana", kibana_url, username, password, api_key, ca_cert,
                                       insecure), space=space, timeout=timeout)
        _warn_cleartext(kibana.endpoint)
    # Both must answer before anything is written, so a run never stops half way for a down Kibana.
    if es is not None:
        click.echo(f"Elasticsearch {es.connect()} at {es.endpoint.url}")
    if kibana is not None:
        click.echo(f"Kibana {kibana.connect()} at {kibana.endpoint.url}")
    plan.run(bundle, steps, es, kibana, overwrite, report=click.echo)
    return 0


def _warn_cleartext(endpoint: Endpoint) -> None:
    if endpoint.has_credentials and not endpoint.tls and not endpoint.loopback:
        click.echo(f"falconet: warning: the credentials go to {endpoint.url} over plain HTTP: anyone on the "
                   "path can read them; use https://", err=True)


def _to_stderr(line: str) -> None:
    click.echo(line, err=True)
