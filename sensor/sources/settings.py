"""What the event sources can be told: SourceSettings, the settings of every source.

The syscall source's switch (`syscall.enabled`) is a top-level key (sensor/settings.py); the
audit sources' keys and K8sAuditSettings are in sensor/sources/k8s_audit/settings.py.

Light on purpose: sensor/config.py reads the keys through these modules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sensor.sources.k8s_audit.settings import K8sAuditSettings

if TYPE_CHECKING:
    from sensor.config import Config


@dataclass(frozen=True, slots=True)
class SyscallSettings:
    """`syscall.*`. The syscall source still reads its Config (`config`); `values` is what a
    reload compares to decide whether the capture must start again."""

    enabled: bool
    values: Mapping[str, Any] = field(default_factory=dict)
    config: Config | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_config(cls, cfg: Config) -> SyscallSettings:
        return cls(enabled=bool(cfg.get("syscall.enabled")), values=dict(cfg.get("syscall") or {}), config=cfg)


@dataclass(frozen=True, slots=True)
class SourceSettings:
    """Every source's settings; a reload starts the sources again exactly when these differ (or
    when the rules need other syscalls)."""

    syscall: SyscallSettings
    k8s_audit: K8sAuditSettings

    @classmethod
    def from_config(cls, cfg: Config) -> SourceSettings:
        """Raises ConfigError naming the key of a value a source cannot use."""
        return cls(syscall=SyscallSettings.from_config(cfg), k8s_audit=K8sAuditSettings.from_config(cfg))

    def enabled(self) -> list[str]:
        """The event sources these settings turn on."""
        return [name for name, on in (("syscall", self.syscall.enabled), ("k8s_audit", self.k8s_audit.enabled))
                if on]

    def planned(self) -> list[str]:
        """What `falconet run --dry-run` says it would start, one line per source."""
        out = ["syscall (eBPF)"] if self.syscall.enabled else []
        hook = self.k8s_audit.webhook
        if hook is not None:
            out.append(f"k8s_audit webhook on {hook.listen}")
        out += [f"k8s_audit file {f}" for f in self.k8s_audit.files]
        return out
