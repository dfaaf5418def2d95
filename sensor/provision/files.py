"""The files back end (`falconet export DIR`) and the printout back end (`provision --dry-run`).

Both take the same calls the cluster back end makes. `FilesBackend` writes each body where the
repository keeps it (DIR/elasticsearch/ilm/falconet.json, DIR/kibana/lens/ID.json), plus
DIR/kibana/falconet.ndjson (what the import API takes) and DIR/requests.txt (every call in order,
with the file that holds its body), so the assets can be applied with other tools.
`PrintBackend` prints every call with its body and contacts nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO

from sensor.errors import FalconetError
from sensor.provision.bundle import EsAsset, SavedObject, ndjson
from sensor.provision.plan import PRINTED, WRITTEN, Change, Step


def _pretty(body: Any) -> str:
    return json.dumps(body, indent=2, ensure_ascii=False) + "\n"


def import_path(space: str | None, overwrite: bool) -> str:
    prefix = f"/s/{space}" if space and space != "default" else ""
    return f"{prefix}/api/saved_objects/_import?overwrite={'true' if overwrite else 'false'}"


class FilesBackend:
    """Writes every asset under one directory."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.requests: list[str] = []
        self.objects: list[SavedObject] = []

    def _write(self, rel: str, text: str) -> str:
        path = self.dir / rel
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as e:
            raise FalconetError(f"{path}: cannot write: {e.strerror}") from e
        return rel

    def put_asset(self, step: Step, asset: EsAsset, overwrite: bool) -> Change:
        rel = self._write(f"elasticsearch/{asset.kind}/{asset.name}.json", _pretty(asset.body))
        self.requests.append(f"PUT {asset.endpoint} {rel}")
        return Change(rel, WRITTEN)

    def create_data_stream(self, step: Step, name: str) -> Change:
        self.requests.append(f"PUT /_data_stream/{name}")
        return Change(f"PUT /_data_stream/{name} (requests.txt)", WRITTEN)

    def import_objects(self, step: Step, objects: list[SavedObject], overwrite: bool) -> list[Change]:
        changes = []
        for o in objects:
            rel = self._write(f"kibana/{o.type}/{o.id}.json", _pretty(o.body))
            changes.append(Change(rel, WRITTEN))
        self.objects.extend(objects)
        return changes

    def finish(self) -> list[str]:
        """Write the joined NDJSON and the list of calls; return what was written."""
        written = []
        if self.objects:
            rel = self._write("kibana/falconet.ndjson", ndjson(self.objects))
            self.requests.append(f"POST {import_path(None, True)} {rel} (multipart form field 'file')")
            written.append(rel)
        written.append(self._write("requests.txt", "".join(r + "\n" for r in self.requests)))
        return written


class PrintBackend:
    """Prints each call the cluster back end would make, with its body; writes nothing anywhere."""

    def __init__(self, out: TextIO, space: str | None = None) -> None:
        self.out = out
        self.space = space

    def put_asset(self, step: Step, asset: EsAsset, overwrite: bool) -> Change:
        self.out.write(f"PUT {asset.endpoint}\n{_pretty(asset.body)}\n")
        return Change(asset.name, PRINTED)

    def create_data_stream(self, step: Step, name: str) -> Change:
        self.out.write(f"PUT /_data_stream/{name}\n\n")
        return Change(name, PRINTED)

    def import_objects(self, step: Step, objects: list[SavedObject], overwrite: bool) -> list[Change]:
        self.out.write(f"POST {import_path(self.space, overwrite)}\n"
                       "Content-Type: multipart/form-data (field 'file': falconet.ndjson)\n"
                       f"{ndjson(objects)}\n")
        return [Change(f"{o.type}/{o.id}", PRINTED) for o in objects]
