"""Falconet: a Falco-compatible runtime-security sensor on eBPF."""

__version__ = "0.1.0"

# The Falco rules-engine version we implement. Official rule files declare the version they need with
# `required_engine_version` (semver since Falco 0.36, an integer before); ours must be at least as new.
ENGINE_VERSION = "0.62.0"   # Falco 0.44.1
# The legacy integer engine version Falco 0.36+ still answers for old files (`required_engine_version: 15`).
ENGINE_VERSION_LEGACY = 62
