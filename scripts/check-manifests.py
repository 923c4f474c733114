#!/usr/bin/env python3
"""Parses every Kubernetes manifest in deploy/kubernetes and checks what Vouch relies on.

Prints one JSON object: the vouch command lines found (for the caller to check against
`vouch <command> --help`) and a list of problems (empty when all is well).
"""
import glob
import json
import os
import sys

import yaml

root = sys.argv[1] if len(sys.argv) > 1 else "deploy/kubernetes"
problems, commands, kinds = [], [], {}
files = sorted(glob.glob(os.path.join(root, "*.yaml")))
for path in files:
    name = os.path.basename(path)
    try:
        documents = [d for d in yaml.safe_load_all(open(path)) if d is not None]
    except yaml.YAMLError as error:
        problems.append(f"{name}: not valid YAML: {error}")
        continue
    for doc in documents:
        kind = doc.get("kind")
        if not doc.get("apiVersion") or not kind:
            problems.append(f"{name}: a document without apiVersion or kind")
            continue
        kinds.setdefault(kind, []).append(name)
        if kind == "Kustomization":
            listed = set(doc.get("resources", []))
            for other in files:
                if os.path.basename(other) != name and os.path.basename(other) not in listed:
                    problems.append(f"{name}: does not list {os.path.basename(other)}")
            continue
        if not doc.get("metadata", {}).get("name"):
            problems.append(f"{name}: {kind} without metadata.name")
        if kind not in ("StatefulSet", "DaemonSet", "Deployment"):
            continue
        pod = doc["spec"]["template"]["spec"]
        if not pod.get("securityContext", {}).get("runAsNonRoot"):
            problems.append(f"{name}: {kind} pods may run as root")
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        claims = {c["metadata"]["name"] for c in doc["spec"].get("volumeClaimTemplates", [])}
        for container in pod.get("initContainers", []) + pod["containers"]:
            context = container.get("securityContext", {})
            if context.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{name}: container {container['name']} allows privilege escalation")
            for mount in container.get("volumeMounts", []):
                if mount["name"] not in volumes and mount["name"] not in claims:
                    problems.append(f"{name}: container {container['name']} mounts unknown volume {mount['name']}")
            if container.get("image", "").startswith("vouch") and container.get("args"):
                commands.append({"file": name, "args": container["args"]})
        if kind == "StatefulSet" and not claims:
            problems.append(f"{name}: the server StatefulSet has no volume for its SQLite database")
        if kind == "Deployment":
            server = next((c for c in pod["containers"] if c.get("args", [])[:1] == ["server"]), None)
            if server is None:
                continue  # a workload (e.g. with an agent sidecar)
            kinds.setdefault("server Deployment", []).append(name)
            args = server["args"]
            # Replicas share one PostgreSQL database; on SQLite each would have a database of its own.
            if not any(a.startswith("--database=postgres") for a in args):
                problems.append(f"{name}: the server Deployment has no --database=postgres://...")
            if any(a.startswith("--database=") and ":" in a.split("//", 1)[-1].split("@", 1)[0] for a in args):
                problems.append(f"{name}: a password in the --database URL (use --database-password-file)")
            if doc["spec"].get("replicas", 1) < 2:
                problems.append(f"{name}: the server Deployment runs fewer than two replicas")
            if server.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/healthz":
                problems.append(f"{name}: readiness is not /healthz (a replica without its database must leave the Service)")
            if server.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz":
                problems.append(f"{name}: liveness on /healthz restarts every replica during a database outage")
        if kind == "DaemonSet" and not any("secret" in v for v in volumes.values()):
            problems.append(f"{name}: the agent DaemonSet gets no token Secret")
# A directory holds either the single-node set (StatefulSet on SQLite, agents) or the replicated
# server on PostgreSQL (Deployment), applied next to the agents of the single-node set.
for required in ("server Deployment", "Secret", "Service") if "server Deployment" in kinds else ("StatefulSet", "DaemonSet", "Secret", "Service"):
    if required not in kinds:
        problems.append(f"no {required} in {root}")
print(json.dumps({"files": [os.path.basename(f) for f in files], "kinds": kinds, "commands": commands, "problems": problems}))
