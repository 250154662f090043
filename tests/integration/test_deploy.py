"""Container and Kubernetes files, checked statically (no Docker engine or cluster here)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import kubernetes_validate
import yaml

from streamd.config_file import parse_config
from streamd.demo.clip import make_clip
from tests.conftest import REPO

COMPOSE_DIR = REPO / "deploy/compose"
K8S_DIR = REPO / "deploy/k8s"


def compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((COMPOSE_DIR / "docker-compose.yml").read_text())


def test_compose_images_are_pinned_and_every_mount_exists() -> None:
    stack = compose()
    named_volumes = set(stack.get("volumes", {}))
    host_ports: list[str] = []
    for name, service in stack["services"].items():
        image = service["image"]
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", image) and not image.endswith(":latest"), f"{name}: {image}"
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith("."):
                assert (COMPOSE_DIR / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in named_volumes, f"{name}: undeclared volume {source}"
            assert target.startswith("/")
        host_ports += [port.split(":")[0] for port in service.get("ports", [])]
        for secret in service.get("secrets", []):
            assert (COMPOSE_DIR / stack["secrets"][secret]["file"]).exists()
        if "build" in service:
            assert (COMPOSE_DIR / service["build"]["context"] / service["build"]["dockerfile"]).exists()
    assert len(host_ports) == len(set(host_ports)), "no host port used twice"


def test_compose_pieces_agree_with_each_other() -> None:
    stack = compose()
    streamd_config = tomllib.loads((COMPOSE_DIR / "streamd.toml").read_text())
    metrics_port = streamd_config["http"]["listen"].rsplit(":", 1)[1]
    assert f"{metrics_port}:{metrics_port}" in stack["services"]["streamd"]["ports"]
    assert streamd_config["mqtt"]["host"] == "mosquitto" and "mosquitto" in stack["services"]
    assert streamd_config["mqtt"]["password_file"] == "/run/secrets/mqtt-password"
    scrape = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())
    assert scrape["scrape_configs"][0]["static_configs"][0]["targets"] == [f"streamd:{metrics_port}"]
    assert scrape["rule_files"] == ["alerts.yml"]
    provider = yaml.safe_load((COMPOSE_DIR / "grafana/provisioning/dashboards/streamd.yml").read_text())
    dashboards = provider["providers"][0]["options"]["path"]
    assert any(v.endswith(f":{dashboards}/streamd.json:ro") for v in stack["services"]["grafana"]["volumes"])
    mosquitto = (COMPOSE_DIR / "mosquitto.conf").read_text()
    assert "allow_anonymous false" in mosquitto and "password_file /mosquitto/config/passwd" in mosquitto
    assert (COMPOSE_DIR / "passwd").read_text().startswith("streamd:")
    # The control topics are writable by one user only (any client could switch detection off).
    assert "acl_file /mosquitto/config/acl" in mosquitto
    acl = (COMPOSE_DIR / "acl").read_text()
    assert "user streamd\ntopic readwrite streamd/#" in acl and "topic write streamd/+/+/detect/set" in acl


def test_dockerfile_is_multi_stage_non_root_with_a_healthcheck() -> None:
    dockerfile = (REPO / "deploy/Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", dockerfile, re.M)
    assert len(stages) >= 2 and all(":" in s and not s.endswith(":latest") for s in stages)
    assert re.search(r"^USER 10001$", dockerfile, re.M)
    assert "HEALTHCHECK" in dockerfile and "/healthz" in dockerfile and "EXPOSE 9108" in dockerfile
    assert "python -m streamd.demo.model" in dockerfile, "the default model is converted at build time"
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile, re.M):
        for path in source.split():
            assert (REPO / path).exists(), path


def test_the_config_the_stack_mounts_passes_streamd_check(tmp_path: Path, default_model: Path) -> None:
    data = tmp_path / "streamd-data"
    (data / "models").mkdir(parents=True)
    (data / "models" / default_model.parent.name).symlink_to(default_model.parent)
    (data / "demo").mkdir()
    make_clip(data / "demo" / "people.mp4", ["astronaut", None] * 3)
    text = (COMPOSE_DIR / "streamd.toml").read_text().replace("/opt/streamd-data", str(data))
    text = text.replace("/run/secrets/mqtt-password", str(COMPOSE_DIR / "mqtt-password"))
    config = tmp_path / "streamd.toml"
    config.write_text(text)
    result = subprocess.run(
        [sys.executable, "-m", "streamd", "check", "-c", str(config)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "demo             ok" in result.stdout


def test_kubernetes_manifests_validate_and_agree() -> None:
    documents = {p.name: yaml.safe_load(p.read_text()) for p in sorted(K8S_DIR.glob("*.yaml"))}
    for document in documents.values():
        kubernetes_validate.validate(document, "1.30.0", strict=True)  # raises on any schema error
    sts = documents["statefulset.yaml"]
    container = sts["spec"]["template"]["spec"]["containers"][0]
    shard = container["args"][container["args"].index("--shard") + 1]
    assert shard == f"auto/{sts['spec']['replicas']}", "shard count = replicas, index = pod ordinal"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert all(container[p]["timeoutSeconds"] <= 5 for p in ("livenessProbe", "readinessProbe", "startupProbe"))
    assert container["resources"]["requests"]["cpu"] and container["securityContext"]["readOnlyRootFilesystem"]
    assert documents["service.yaml"]["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    configured = tomllib.loads(documents["configmap.yaml"]["data"]["streamd.toml"])
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert configured["mqtt"]["password_file"].startswith(mounts["mqtt"])
    assert configured["mqtt"]["buffer_dir"] == mounts["state"], "the MQTT buffer lives on the claim"
    assert "mqtt-password" in documents["secret.yaml"]["stringData"]
    configured["model"]["path"] = str(Path(__file__))  # an existing file: validate the rest of the config
    parse_config(configured)
