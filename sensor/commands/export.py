"""`falconet export DIR`: write every Elasticsearch and Kibana asset, parameters filled in.

The same loader as `provision` with the files back end: DIR/elasticsearch/KIND/NAME.json (request
bodies), DIR/kibana/TYPE/ID.json and DIR/kibana/falconet.ndjson (for the saved-objects import API),
and DIR/requests.txt (every call, in order, with the file holding its body).
"""

from __future__ import annotations

from pathlib import Path

import click

from sensor.provision import plan
from sensor.provision.bundle import Params, load
from sensor.provision.files import FilesBackend


@click.command("export")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--only", "only", multiple=True, type=click.Choice(plan.GROUPS),
              help="Export only this part (repeatable): templates, ilm, pipelines, dashboards.")
@click.option("--namespace", default="default", show_default=True, metavar="NAME",
              help="Data stream namespace: logs-falconet.alerts-NAMESPACE.")
@click.option("--retention", default="90d", show_default=True, metavar="AGE",
              help="Delete data this long after it rolled over (ILM delete phase).")
def export(directory: Path, only: tuple[str, ...], namespace: str, retention: str) -> int:
    """Write every Elasticsearch and Kibana asset to a directory."""
    bundle = load(Params(namespace=namespace, retention=retention))
    files = FilesBackend(directory)
    plan.run(bundle, plan.selected_steps(only), files, files, overwrite=True, report=click.echo)
    for rel in files.finish():
        click.echo(f"Wrote {directory / rel}")
    return 0
