"""The examples and the docs run: examples/ through each framework's test client (the Django
project in a process of its own), every Python block of docs/*.md in order in a fresh
interpreter, `make demo`'s script against a real uvicorn, and a configuration reference that
documents every field."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from types import ModuleType

import pytest
from starlette.testclient import TestClient

from py_rate_guard.models.config import RateGuardConfig, RateLimitRule

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
DOCS = ROOT / "docs"

# DESIGN §1: the public contract, to run exactly as written.
QUICK_START = """\
from fastapi import FastAPI, Request
from py_rate_guard.adapters.fastapi import FastAPIRateGuard, RateLimitMiddleware
from py_rate_guard.models.config import RateGuardConfig, RateLimitRule

config = RateGuardConfig(global_rules=[RateLimitRule(limit="100/minute")])
guard = FastAPIRateGuard(config)
app = FastAPI()
app.add_middleware(RateLimitMiddleware, guard=guard)

@app.get("/sensitive-data")
@guard.limit(limit="5/minute")
async def get_data(request: Request):
    return {"data": "..."}
"""


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{uuid.uuid4().hex}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", path.read_text(), flags=re.S | re.M)


def test_the_quick_start_example_is_the_contract_snippet() -> None:
    assert (EXAMPLES / "fastapi_quickstart.py").read_text().startswith(QUICK_START)
    guide = DOCS / "fastapi.md"
    assert QUICK_START in python_blocks(guide)


def test_fastapi_quickstart_example() -> None:
    app = load(EXAMPLES / "fastapi_quickstart.py").app
    c = TestClient(app, client=("203.0.113.7", 1))
    answers = [c.get("/sensitive-data") for _ in range(6)]
    assert [r.status_code for r in answers] == [200] * 5 + [429]
    assert answers[0].json() == {"data": "..."}
    assert answers[-1].json() == {"detail": "Rate limit exceeded: 5 per 1 minute"}


def test_starlette_example() -> None:
    app = load(EXAMPLES / "starlette_app.py").app
    c = TestClient(app, client=("203.0.113.7", 1))
    assert [c.get("/search", params={"q": "x"}).status_code for _ in range(6)] == [200] * 5 + [429]
    r = c.get("/items")
    assert r.json() == [{"id": 1}, {"id": 2}]
    assert {"x-ratelimit-limit", "ratelimit-policy", "ratelimit"} <= set(r.headers)
    posts = [c.post("/items", headers={"x-api-key": "k"}).status_code for _ in range(3)]
    assert posts == [201, 201, 429]
    assert c.post("/items", headers={"x-api-key": "other"}).status_code == 201
    assert c.get("/report").text == "line 1\nline 2\nline 3\n"
    with c.websocket_connect("/echo") as ws:
        ws.send_text("ping")
        assert ws.receive_text() == "ping"
    health = [c.get("/health") for _ in range(3)]
    assert [r.status_code for r in health] == [200] * 3
    assert "x-ratelimit-limit" not in health[0].headers


DJANGO_DRIVER = """
import json, django
django.setup()
from django.test import Client
c = Client(REMOTE_ADDR="203.0.113.7")
out = {
    "data": [c.get("/sensitive-data").status_code for _ in range(6)],
    "get": [c.get("/items/1").status_code for _ in range(3)],
    "post": [c.post(f"/items/{i}", HTTP_X_API_KEY="k").status_code for i in range(3)],
    "report": c.get("/report").json(),
    "health": [c.get("/health").status_code for _ in range(3)],
    "remaining": c.get("/items/9")["X-RateLimit-Remaining"],
}
print(json.dumps(out))
"""


def test_django_example_project() -> None:
    project = EXAMPLES / "django_project"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "demo_site.settings"}
    check = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=project, env=env, capture_output=True
    )
    assert check.returncode == 0, check.stderr.decode()
    run = subprocess.run(
        [sys.executable, "-c", DJANGO_DRIVER], cwd=project, env=env, capture_output=True
    )
    assert run.returncode == 0, run.stderr.decode()
    out = json.loads(run.stdout)
    assert out["data"] == [200] * 5 + [429]
    assert out["get"] == [200, 200, 200]
    assert out["post"] == [200, 200, 429]
    assert out["report"] == {"report": "ready"}
    assert out["health"] == [200] * 3
    # 100/minute per client across views: 5 + 3 + 2 + 1 admitted, then this one.
    assert out["remaining"] == str(100 - 12)


@pytest.mark.parametrize("doc", sorted(DOCS.glob("*.md")), ids=lambda p: p.name)
def test_docs_examples_run(doc: Path, tmp_path: Path) -> None:
    blocks = python_blocks(doc)
    assert blocks, f"{doc.name} has no Python example"
    script = tmp_path / f"{doc.stem}_examples.py"
    script.write_text("\n\n".join(textwrap.dedent(block) for block in blocks))
    run = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, timeout=120
    )
    assert run.returncode == 0, run.stderr.decode()[-4000:]


def test_the_configuration_reference_documents_every_field() -> None:
    text = (DOCS / "configuration.md").read_text()
    for name, field in RateGuardConfig.model_fields.items():
        default = field.get_default(call_default_factory=True)
        assert f"| `{name}` | `RATE_GUARD_{name.upper()}` | " in text, name
        row = re.search(rf"^\| `{name}` \| `RATE_GUARD_{name.upper()}` \| (.*?) \|", text, re.M)
        assert row is not None and _shows(row.group(1), default), (name, default)
    for name in RateLimitRule.model_fields:
        assert f"| `{name}` | " in text, name


def _shows(cell: str, default: object) -> bool:
    """Whether a documented default is the model's."""
    if isinstance(default, str):
        return cell == f'`"{default}"`'
    if isinstance(default, list):
        return cell == f"`{json.dumps(default)}`"
    return cell == f"`{default}`"


def test_make_demo_script_shows_allowed_and_limited_requests() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATE_GUARD_")}
    run = subprocess.run(
        [sys.executable, str(EXAMPLES / "demo.py")], capture_output=True, timeout=120, env=env
    )
    assert run.returncode == 0, run.stderr.decode()
    lines = run.stdout.decode().splitlines()
    allowed = [line for line in lines if " 200 allowed " in line]
    limited = [line for line in lines if " 429 LIMITED " in line]
    assert (len(allowed), len(limited)) == (5, 3)
    assert "x-ratelimit-remaining: 0" in allowed[-1]
    assert all("retry-after: " in line for line in limited)
