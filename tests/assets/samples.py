"""The alerts behind the pipeline pairs in elasticsearch/_dev/test/pipeline/.

Each test-*.json input there is one of these alerts as a sender writes it: Falconet's ECS document
(`to_ecs`), Falco's JSON alert (`alert_dict` without the uuid), or Falcosidekick's payload (with it).
Falco prints the text time of `output` in local time; the pairs were written with TZ=UTC.
"""

from __future__ import annotations

from typing import Any

from sensor.alert import Alert, alert_dict

T0 = 1_715_606_609_089_890_892          # 2024-05-13T13:23:29.089890892Z


def sensitive_file() -> Alert:
    return Alert(
        rule="Read sensitive file untrusted", priority="Warning", source="syscall", time_ns=T0,
        output="Sensitive file opened for reading by non-trusted program (file=/etc/shadow process=cat "
               "user=root container_id=0123456789ab image=nginx)",
        output_fields={"evt.type": "openat", "fd.name": "/etc/shadow", "fd.directory": "/etc",
                       "fd.filename": "shadow", "proc.name": "cat", "proc.exepath": "/usr/bin/cat",
                       "proc.cmdline": "cat /etc/shadow", "proc.pid": 31337, "proc.pname": "bash",
                       "proc.ppid": 31000, "proc.aname[2]": "runc", "user.name": "root", "user.uid": 0,
                       "user.loginuid": -1, "group.gid": 0, "container.id": "0123456789ab",
                       "container.name": "web", "container.image.repository": "nginx",
                       "container.image.tag": "1.25", "k8s.ns.name": "shop", "k8s.pod.name": "web-7d4b9c-x2x9z"},
        tags=["container", "filesystem", "host", "maturity_stable", "mitre_credential_access", "T1555"],
        hostname="node-7", uuid="0b3f4f6e-2a52-4b7e-9a43-5f1f2c9d1a01")


def response_record() -> Alert:
    from sensor.response.records import done, record

    rec = record("kill-readers", "kill_process", done("sent SIGKILL to pid 31337", "pid 31337"),
                 sensitive_file(), dry_run=False)
    rec.time_ns = T0 + 2_000_000
    rec.uuid = "6a0f2cf5-8d0c-4d5e-8b3e-0f9e7c1d2b02"
    return rec


def shell_in_container() -> Alert:
    return Alert(
        rule="Terminal shell in container", priority="Notice", source="syscall", time_ns=T0 + 1_000,
        output="A shell was spawned in a container with an attached terminal (user=root shell=bash "
               "parent=runc cmdline=bash -i terminal=34816 container_id=0123456789ab image=nginx)",
        output_fields={"evt.type": "execve", "evt.time": T0 + 1_000, "proc.name": "bash", "proc.tty": 34816,
                       "proc.exepath": "/usr/bin/bash", "proc.cmdline": "bash -i", "proc.pid": 4242,
                       "proc.vpid": 17, "proc.pname": "runc", "proc.ppid": 4100, "proc.args": "-i",
                       "user.name": "root", "user.uid": 0, "container.id": "0123456789ab",
                       "container.name": "web", "container.image.repository": "nginx",
                       "container.image.tag": "1.25", "container.image": "nginx:1.25",
                       "container.privileged": False, "k8s.ns.name": "shop",
                       "k8s.pod.name": "web-7d4b9c-x2x9z", "k8s.pod.uid": None},
        tags=["T1059", "T1059.004", "container", "maturity_stable", "mitre_execution", "shell"],
        hostname="node-7", uuid="not-sent-by-falco")


def outbound_connection() -> Alert:
    return Alert(
        rule="Outbound Connection to C2 Servers", priority="Warning", source="syscall", time_ns=T0 + 2_000,
        output="Outbound connection to C2 server (connection=10.1.1.5:51234->93.184.216.34:443 "
               "user=www-data process=curl)",
        output_fields={"evt.type": "connect", "fd.name": "10.1.1.5:51234->93.184.216.34:443",
                       "fd.cip": "10.1.1.5", "fd.cport": 51234, "fd.sip": "93.184.216.34", "fd.sport": 443,
                       "fd.sip.name": "c2.example.com", "fd.l4proto": "tcp", "proc.name": "curl",
                       "proc.pid": 7001, "user.name": "www-data", "user.uid": 33, "container.id": "host",
                       "container.name": "host"},
        tags=["T1071", "host", "mitre_command_and_control", "network"],
        hostname="node-3", uuid="not-sent-by-falco")


def attach_exec_pod() -> Alert:
    return Alert(
        rule="Attach/Exec Pod", priority="Notice", source="k8s_audit", time_ns=T0 + 3_000,
        output="Attach/Exec to pod (user=alice pod=web-7d4b9c-x2x9z resource=pods ns=shop action=exec "
               "command=sh)",
        output_fields={"ka.user.name": "alice", "ka.target.name": "web-7d4b9c-x2x9z",
                       "ka.target.resource": "pods", "ka.target.subresource": "exec",
                       "ka.target.namespace": "shop", "ka.uri.param[command]": "sh", "ka.verb": "create",
                       "ka.sourceips": ["10.0.0.8"], "ka.useragent": "kubectl/v1.30.0",
                       "ka.uri": "/api/v1/namespaces/shop/pods/web-7d4b9c-x2x9z/exec?command=sh",
                       "ka.response.code": 101},
        tags=["k8s", "mitre_execution", "T1609"], hostname="control-plane-1", uuid="not-sent-by-falco")


def sidekick_shell() -> Alert:
    a = shell_in_container()
    a.uuid = "3c6e0b8a-5f4e-4f43-9d51-3b3a4f9e2c03"
    return a


def falco_json(alert: Alert) -> dict[str, Any]:
    """Falco's own JSON alert (no uuid: Falcosidekick adds it)."""
    out = alert_dict(alert)
    del out["uuid"]
    return out


FALCONET = (sensitive_file, response_record)
FALCO = (shell_in_container, outbound_connection, attach_exec_pod)
SIDEKICK = (sidekick_shell,)
