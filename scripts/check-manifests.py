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
        if kind == "DaemonSet" and not any("secret" in v for v in volumes.values()):
            problems.append(f"{name}: the agent DaemonSet gets no token Secret")
for required in ("StatefulSet", "DaemonSet", "Secret", "Service"):
    if required not in kinds:
        problems.append(f"no {required} in {root}")
print(json.dumps({"files": [os.path.basename(f) for f in files], "kinds": kinds, "commands": commands, "problems": problems}))
