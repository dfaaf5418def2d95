"""The audit sources that K8sAuditSettings enable: the webhook, the log follower, both or none.
Nothing is bound or opened until the runtime starts them."""

from __future__ import annotations

from sensor.sources import Source
from sensor.sources.k8s_audit.file import FileSource
from sensor.sources.k8s_audit.settings import K8sAuditSettings


def build_sources(settings: K8sAuditSettings) -> list[Source]:
    sources: list[Source] = []
    hook = settings.webhook
    if hook is not None:
        # Imported only when the webhook is on, as bcc, kubernetes and elasticsearch are only when
        # their part is: its certificates pull in cryptography, which every `falconet run` and
        # `falconet replay` without a webhook would otherwise load at start-up.
        from sensor.sources.k8s_audit.webhook import WebhookSource

        sources.append(WebhookSource(
            hook.host, hook.port, path=hook.path, tls_cert=hook.tls_cert, tls_key=hook.tls_key,
            tls_hosts=list(hook.tls_hosts), token=hook.token, require_token=hook.require_token,
            limits=settings.limits, state_dir=settings.state_dir))
    if settings.files:
        sources.append(FileSource(list(settings.files), state_dir=settings.state_dir,
                                  max_event_size=settings.limits.max_event_size, start_at_end=settings.start_at_end))
    return sources
