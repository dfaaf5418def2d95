"""Where the assets that live outside sensor/ are: in the checkout, or inside the installed wheel."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def asset_dir(name: str) -> Path:
    """Return the directory of a bundled asset tree: rules, elasticsearch, kibana or fluent.

    A wheel carries them as sensor/_assets/NAME; an editable install or a checkout has them beside
    the package. The wheel copy wins so an installed sensor never reads a stray checkout.
    """
    packed = _PACKAGE / "_assets" / name
    if packed.is_dir():
        return packed
    return _PACKAGE.parent / name
