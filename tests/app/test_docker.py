"""docker/: the Dockerfile and compose.yaml name the real entry point, port, volume and health
check (no Docker engine runs here, so the files are checked statically against the code)."""

import ast
import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "docker" / "Dockerfile").read_text()
COMPOSE = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())


def _instruction(name: str) -> list[str]:
    joined = DOCKERFILE.replace("\\\n", " ")
    return [line.split(None, 1)[1] for line in joined.splitlines() if line.startswith(name + " ")]


def _entrypoint() -> list[str]:
    (entry,) = _instruction("ENTRYPOINT")
    return json.loads(entry)


def test_base_image_is_slim_python_and_user_is_not_root() -> None:
    (base,) = _instruction("FROM")
    assert re.match(r"python:3\.1[1-9]-slim", base)
    (user,) = _instruction("USER")
    assert user.strip() not in ("root", "0")
    assert "useradd" in DOCKERFILE


def test_entry_point_is_uvicorn_on_the_real_app_factory() -> None:
    argv = _entrypoint()
    assert argv[0] == "uvicorn" and "--factory" in argv
    target = next(a for a in argv if ":" in a and not a.startswith("-"))
    module, attr = target.split(":")
    source = ROOT / (module.replace(".", "/") + ".py")
    functions = {
        n.name for n in ast.parse(source.read_text()).body if isinstance(n, ast.FunctionDef)
    }
    assert attr in functions, f"{target} is not a function of {source}"
    assert (
        argv[argv.index("--loop") + 1] == "uvloop" and argv[argv.index("--http") + 1] == "httptools"
    )
    assert argv[argv.index("--workers") + 1] == "1"  # one writer per store root


def test_port_volume_and_health_check_agree() -> None:
    argv = _entrypoint()
    port = argv[argv.index("--port") + 1]
    (expose,) = _instruction("EXPOSE")
    assert expose.strip() == port
    (health,) = _instruction("HEALTHCHECK")
    assert f"127.0.0.1:{port}/health" in health
    (volume,) = _instruction("VOLUME")
    volumes = json.loads(volume)
    assert re.search(r"RICKHOUSE_ROOT=(\S+)", DOCKERFILE).group(1) in volumes


def test_compose_builds_this_dockerfile_and_maps_port_and_volume() -> None:
    service = COMPOSE["services"]["rickhouse"]
    build = service["build"]
    assert (ROOT / "docker" / build["context"] / build["dockerfile"]).resolve() == (
        ROOT / "docker" / "Dockerfile"
    )
    port = _entrypoint()[_entrypoint().index("--port") + 1]
    assert any(str(p).endswith(f":{port}") for p in service["ports"])
    root = service["environment"]["RICKHOUSE_ROOT"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
    assert root in mounts and mounts[root] in COMPOSE["volumes"]


def test_everything_the_image_copies_exists() -> None:
    for src in _instruction("COPY"):
        for part in src.split()[:-1]:
            assert (ROOT / part).exists(), part
