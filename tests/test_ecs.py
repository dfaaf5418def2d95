"""sensor/ecs.py: the ECS document of an alert, as Elasticsearch will store it."""

from __future__ import annotations

import pytest

from sensor import ecs
from sensor.alert import NAMES as PRIORITIES
from sensor.alert import Alert, alert_dict

T0 = 1_715_606_609_089_890_892        # 2024-05-13T13:23:29.089890892Z


def shell_alert(**over) -> Alert:
    fields = {
        "evt.type": "execve", "evt.hostname": "node-7",
        "proc.name": "bash", "proc.exepath": "/usr/bin/bash", "proc.cmdline": "bash -i",
        "proc.pid": 4242, "proc.vpid": 17, "proc.cwd": "/app/", "proc.sid": 4200, "thread.tid": 4242,
        "proc.pname": "runc", "proc.ppid": 4100, "proc.pexepath": "/usr/bin/runc", "proc.pcmdline": "runc init",
        "proc.args": "-i", "user.name": "root", "user.uid": 0, "group.name": "root", "group.gid": 0,
        "container.id": "0123456789ab", "container.name": "web", "container.image.repository": "nginx",
        "container.image.tag": "1.25", "container.type": "containerd", "container.privileged": False,
        "k8s.ns.name": "shop", "k8s.pod.name": "web-7d4b9c-x2x9z", "k8s.pod.uid": None,
    }
    args = dict(rule="Terminal shell in container", priority="Notice", source="syscall", time_ns=T0,
                output="A shell was spawned in a container (user=root shell=bash)", output_fields=fields,
                tags=["container", "shell", "mitre_execution", "T1059"], hostname="node-7",
                uuid="9f1f6a2e-5c55-4a64-9d0b-3c1d5d1c0e01")
    args.update(over)
    return Alert(**args)


def test_syscall_alert_becomes_the_ecs_document():
    a = shell_alert()
    doc = ecs.to_ecs(a)
    assert doc == {
        "@timestamp": "2024-05-13T13:23:29.089Z",
        "message": "A shell was spawned in a container (user=root shell=bash)",
        "ecs": {"version": ecs.ECS_VERSION},
        "event": {"kind": "alert", "category": ["intrusion_detection"], "type": ["info"], "severity": 5,
                  "module": "falconet", "dataset": "falconet.alerts", "id": "9f1f6a2e-5c55-4a64-9d0b-3c1d5d1c0e01",
                  "action": "execve"},
        "rule": {"name": "Terminal shell in container", "ruleset": "syscall"},
        "log": {"level": "notice"},
        "tags": ["T1059", "container", "mitre_execution", "shell"],
        "host": {"name": "node-7"},
        "process": {"name": "bash", "executable": "/usr/bin/bash", "command_line": "bash -i", "pid": 4242,
                    "vpid": 17, "working_directory": "/app/", "session_leader": {"pid": 4200},
                    "thread": {"id": 4242},
                    "parent": {"name": "runc", "pid": 4100, "executable": "/usr/bin/runc",
                               "command_line": "runc init"}},
        "user": {"name": "root", "id": "0"},
        "group": {"name": "root", "id": "0"},
        "container": {"id": "0123456789ab", "name": "web", "image": {"name": "nginx", "tag": "1.25"},
                      "runtime": "containerd", "security_context": {"privileged": False}},
        "orchestrator": {"namespace": "shop", "resource": {"name": "web-7d4b9c-x2x9z"}},
        "threat": {"framework": "MITRE ATT&CK",
                   "tactic": {"id": ["TA0002"], "name": ["Execution"],
                              "reference": ["https://attack.mitre.org/tactics/TA0002/"]},
                   "technique": {"id": ["T1059"], "reference": ["https://attack.mitre.org/techniques/T1059/"]}},
        "falco": alert_dict(a),
    }
    # The Falco-shaped alert is kept whole, output_fields included (nulls and unmapped fields too).
    assert doc["falco"]["output_fields"]["proc.args"] == "-i"
    assert doc["falco"]["output_fields"]["k8s.pod.uid"] is None
    assert doc["falco"]["uuid"] == a.uuid and doc["falco"]["priority"] == "Notice"


def test_k8s_audit_alert_maps_the_api_request():
    a = Alert(rule="Attach/Exec Pod", priority="Notice", source="k8s_audit", time_ns=T0,
              output="Attach/Exec to pod (user=alice pod=web ns=shop action=exec)",
              output_fields={"ka.user.name": "alice", "ka.verb": "create", "ka.target.resource": "pods",
                             "ka.target.subresource": "exec", "ka.target.name": "web", "ka.target.namespace": "shop",
                             "ka.sourceips": ["10.0.0.8", "fd00::8"], "ka.uri": "/api/v1/namespaces/shop/pods/web/exec",
                             "ka.useragent": "kubectl/v1.30.0", "ka.response.code": 101},
              tags=["k8s", "mitre_execution"], hostname="node-7", uuid="u-1")
    doc = ecs.to_ecs(a)
    assert doc["event"]["category"] == ["intrusion_detection", "api"]
    assert doc["event"]["action"] == "create"
    assert doc["rule"]["ruleset"] == "k8s_audit"
    assert doc["user"] == {"name": "alice"}
    assert doc["orchestrator"] == {"namespace": "shop", "resource": {"name": "web", "type": "pods"}}
    assert doc["source"] == {"ip": ["10.0.0.8", "fd00::8"]}
    assert doc["url"] == {"original": "/api/v1/namespaces/shop/pods/web/exec"}
    assert doc["user_agent"] == {"original": "kubectl/v1.30.0"}
    assert doc["http"] == {"response": {"status_code": 101}}


def test_network_fields_go_to_source_and_destination_and_a_socket_is_not_a_file():
    doc = ecs.to_ecs(shell_alert(output_fields={
        "fd.name": "10.1.1.5:51234->93.184.216.34:443", "fd.cip": "10.1.1.5", "fd.cport": 51234,
        "fd.sip": "93.184.216.34", "fd.sport": 443, "fd.l4proto": "tcp", "fd.sip.name": "example.com"}, tags=[]))
    assert doc["source"] == {"ip": "10.1.1.5", "port": 51234}
    assert doc["destination"] == {"ip": "93.184.216.34", "port": 443, "domain": "example.com"}
    assert doc["network"] == {"transport": "tcp"}
    assert "file" not in doc


def test_file_fields():
    doc = ecs.to_ecs(shell_alert(output_fields={"fd.name": "/etc/shadow", "fd.directory": "/etc",
                                                "fd.filename": "shadow", "fd.ino": 1311}, tags=["filesystem"]))
    assert doc["file"] == {"path": "/etc/shadow", "directory": "/etc", "name": "shadow", "inode": "1311"}
    assert doc["event"]["category"] == ["intrusion_detection", "file"]


def test_first_row_with_a_value_wins_and_missing_values_are_left_out():
    doc = ecs.to_ecs(shell_alert(output_fields={"fd.name": None, "fs.path.name": "/tmp/x", "proc.name": "",
                                                "user.name": None}, tags=[]))
    assert doc["file"] == {"path": "/tmp/x"}
    assert "process" not in doc and "user" not in doc


@pytest.mark.parametrize("priority", PRIORITIES)
def test_priority_gives_severity_and_level(priority):
    doc = ecs.to_ecs(shell_alert(priority=priority))
    assert doc["event"]["severity"] == PRIORITIES.index(priority)
    assert doc["log"]["level"] == priority.lower()


def test_mitre_tags_become_threat_fields_in_attack_order():
    doc = ecs.to_ecs(shell_alert(tags=["mitre_persistence", "T1098", "mitre_initial_access", "T1078.004",
                                       "T1078", "T99", "t1059", "mitre_unknown"]))
    assert doc["threat"] == {
        "framework": "MITRE ATT&CK",
        "tactic": {"id": ["TA0001", "TA0003"], "name": ["Initial Access", "Persistence"],
                   "reference": ["https://attack.mitre.org/tactics/TA0001/",
                                 "https://attack.mitre.org/tactics/TA0003/"]},
        # Tags are sorted as Falco prints them: T1078, T1078.004, T1098, ...
        "technique": {"id": ["T1078", "T1098"],
                      "reference": ["https://attack.mitre.org/techniques/T1078/",
                                    "https://attack.mitre.org/techniques/T1098/"],
                      "subtechnique": {"id": ["T1078.004"],
                                       "reference": ["https://attack.mitre.org/techniques/T1078/004/"]}},
    }


def test_no_mitre_tags_no_threat():
    assert "threat" not in ecs.to_ecs(shell_alert(tags=["container"]))


def test_response_record_extra_is_merged():
    from sensor.response.records import done, record

    answered = shell_alert()
    rec = record("kill-shells", "kill_process", done("killed pid 4242", "pid 4242"), answered, dry_run=False)
    doc = ecs.to_ecs(rec)
    assert doc["event"]["kind"] == "event"
    assert doc["event"]["category"] == ["process"] and doc["event"]["type"] == ["end"]
    assert doc["event"]["outcome"] == "success" and doc["event"]["action"] == "kill-shells"
    assert doc["event"]["id"] == rec.uuid != answered.uuid
    assert doc["event"]["dataset"] == "falconet.alerts"       # kept from the base document
    assert doc["falconet"]["response"]["alert_id"] == answered.uuid
    assert doc["falconet"]["response"]["dry_run"] is False
    assert doc["rule"] == {"name": rec.rule, "ruleset": "internal"}


def test_extra_merges_objects_and_replaces_values():
    a = shell_alert(extra={"rule": {"description": "a shell in a container"}, "event": {"category": ["host"]},
                           "labels": {"team": "blue"}})
    doc = ecs.to_ecs(a)
    assert doc["rule"] == {"name": a.rule, "ruleset": "syscall", "description": "a shell in a container"}
    assert doc["event"]["category"] == ["host"] and doc["event"]["kind"] == "alert"
    assert doc["labels"] == {"team": "blue"}


def test_internal_alert_without_output_fields():
    a = Alert(rule="Falconet internal: syscall event drop", priority="Debug", source="internal", time_ns=T0,
              output="Falconet dropped 12 events", output_fields={"n_drops": 12}, tags=[], hostname="",
              uuid="u-2")
    doc = ecs.to_ecs(a)
    assert doc["event"]["category"] == ["host"]
    assert "host" not in doc
    assert doc["falco"]["output_fields"] == {"n_drops": 12}


def test_as_string_rows_have_one_source():
    # convert-to-string is applied to the ECS field; a second source row would be converted too.
    for row in ecs.TABLE:
        if row.as_string:
            assert [r.falco for r in ecs.TABLE if r.ecs == row.ecs] == [row.falco]


@pytest.mark.parametrize("tag, yes", [("T1059", True), ("T1059.004", True), ("T105", False),
                                      ("T10590", False), ("T1059.04", False), ("t1059", False), ("TA0002", False)])
def test_is_technique(tag, yes):
    assert ecs.is_technique(tag) is yes
