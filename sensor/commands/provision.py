"""`falconet provision`: install ILM, templates, pipelines, data streams, data view and dashboards.

Beats `setup` style: a fixed order, one line per finished step, idempotent (a second run changes
nothing), `--overwrite` to replace what differs, `--only` to pick parts, `--dry-run` to print every
call with its body instead of making it.
"""

from __future__ import annotations

import sys

import click

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
              help="Basic-auth user for both [env FALCONET_USERNAME].")
@click.option("--password", envvar="FALCONET_PASSWORD", metavar="PASSWORD",
              help="Its password [env FALCONET_PASSWORD].")
@click.option("--api-key", envvar="FALCONET_ES_API_KEY", metavar="KEY",
              help="API key for both, encoded or id:key [env FALCONET_ES_API_KEY].")
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
def provision(es_url: str, kibana_url: str, username: str | None, password: str | None,
              api_key: str | None, ca_cert: str | None, insecure: bool, only: tuple[str, ...],
              overwrite: bool, dry_run: bool, space: str | None, namespace: str, retention: str,
              timeout: float) -> int:
    """Install templates, ILM, pipelines and dashboards in Elasticsearch and Kibana."""
    bundle = load(Params(namespace=namespace, retention=retention))
    steps = plan.selected_steps(only)
    if dry_run:
        from sensor.provision.files import PrintBackend

        printer = PrintBackend(sys.stdout, space)
        plan.run(bundle, steps, printer, printer, overwrite, report=_to_stderr)
        return 0

    es = kibana = None
    if insecure:
        click.echo("falconet: warning: --insecure: TLS certificates are not verified; anyone on the path "
                   "can read the credentials", err=True)
    if plan.needs(steps, "elasticsearch"):
        from sensor.provision.es import ElasticsearchTarget

        es = ElasticsearchTarget(Endpoint("Elasticsearch", es_url, username, password, api_key, ca_cert,
                                          insecure), timeout=timeout)
    if plan.needs(steps, "kibana"):
        from sensor.provision.kibana import KibanaTarget

        kibana = KibanaTarget(Endpoint("Kibana", kibana_url, username, password, api_key, ca_cert,
                                       insecure), space=space, timeout=timeout)
    # Both must answer before anything is written, so a run never stops half way for a down Kibana.
    if es is not None:
        click.echo(f"Elasticsearch {es.connect()} at {es_url}")
    if kibana is not None:
        click.echo(f"Kibana {kibana.connect()} at {kibana_url}")
    plan.run(bundle, steps, es, kibana, overwrite, report=click.echo)
    return 0


def _to_stderr(line: str) -> None:
    click.echo(line, err=True)
