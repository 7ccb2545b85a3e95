"""FastAPI under ``python -m mighty_patcher run app.py`` (``uvicorn.run(app)`` in the script, as
the issue tried it), edited as an editor saves, checked through real HTTP requests: endpoint
bodies, new, moved and removed endpoints, pydantic request and response models and
``/openapi.json``, dependencies, a new query parameter; never a duplicate route."""

from __future__ import annotations

import json

import pytest
from server import Server, need

APP = """
import os

import uvicorn
from fastapi import Depends, FastAPI, Header
from pydantic import BaseModel

app = FastAPI()

class Item(BaseModel):
    name: str
    price: float = 1.0

def get_user():
    return "alice"

@app.get("/__alive__")
def alive():
    return "ok"

@app.get("/__routes__")
def routes():
    return sorted(f"{sorted(r.methods)[0]} {r.path}" for r in app.routes if hasattr(r, "methods"))

@app.get("/hello")
def hello():
    return {"msg": "v1"}

@app.get("/old")
def moving():
    return "moving"

@app.get("/doomed")
def doomed():
    return "doomed"

@app.post("/items")
def create(item: Item) -> Item:
    return item

@app.get("/search")
def search(q: str = ""):
    return {"q": q}

@app.get("/me")
def me(user: str = Depends(get_user)):
    return {"user": user}

uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning")
"""


@pytest.fixture
def server(tmp_path):
    need("fastapi", "uvicorn", "pydantic")
    started: list[Server] = []

    def start(files: dict[str, str], script: str = "app.py") -> Server:
        s = Server(tmp_path, files, script)
        started.append(s)
        return s

    yield start
    for s in started:
        s.close()


def routes(s: Server) -> list[str]:
    status, text = s.get("/__routes__")
    assert status == 200, text
    found: list[str] = json.loads(text)
    assert len(found) == len(set(found)), f"a route is there twice: {found}"
    return found


def test_fastapi_endpoints_models_dependencies_and_parameters(server):
    s = server({"app.py": APP})
    assert s.get("/hello") == (200, '{"msg":"v1"}')
    first = routes(s)
    app = APP

    app = app.replace('"msg": "v1"', '"msg": "v2"')
    s.write("app.py", app, how="inplace")
    s.wait_for("GET", "/hello", 200, "v2")

    app = app.replace(
        '@app.get("/doomed")',
        '@app.get("/new")\ndef new():\n    return "new"\n\n@app.get("/doomed")',
    )
    s.write("app.py", app)
    s.wait_for("GET", "/new", 200, "new")

    # A changed path and method: the old one goes, the new one calls the same function.
    app = app.replace('@app.get("/old")', '@app.post("/moved")')
    s.write("app.py", app)
    s.wait_for("POST", "/moved", 200, "moving")
    assert s.get("/old")[0] == 404
    app = app.replace('return "moving"', 'return "moving v2"')
    s.write("app.py", app)
    s.wait_for("POST", "/moved", 200, "moving v2")

    # The decorator's arguments change, the path does not (a remade route equals the one
    # it replaces under Starlette's ==): the route stays, with the new status, every time.
    for code in (201, 202, 203):
        app = app.replace('@app.get("/hello"', f'@app.get("/hello", status_code={code}', 1)
        app = app.replace(f"status_code={code}, status_code={code - 1}", f"status_code={code}")
        s.write("app.py", app)
        s.wait_for("GET", "/hello", code, "v2")

    app = app.replace('@app.get("/doomed")\ndef doomed():\n    return "doomed"\n', "")
    s.write("app.py", app)
    s.wait_for("GET", "/doomed", 404)
    assert sorted(routes(s)) == sorted(
        [r for r in first if r not in ("GET /old", "GET /doomed")] + ["GET /new", "POST /moved"]
    )

    # The request and response model gains a field: validation, output and the schema follow.
    app = app.replace("price: float = 1.0", "price: float = 1.0\n    qty: int = 1")
    s.write("app.py", app)
    s.wait_for("POST", "/items", 200, '"qty":3', body={"name": "a", "qty": 3})
    assert json.loads(s.request("POST", "/items", {"name": "b"})[1]) == {
        "name": "b",
        "price": 1.0,
        "qty": 1,
    }
    schema = json.loads(s.get("/openapi.json")[1])
    assert "qty" in schema["components"]["schemas"]["Item"]["properties"]
    assert "/new" in schema["paths"] and "/old" not in schema["paths"]
    status, text = s.request("POST", "/items", {"name": "c", "qty": "many"})
    assert status == 422 and "qty" in text

    # A new query parameter: the signature changed, the decorator did not.
    app = app.replace(
        'def search(q: str = ""):\n    return {"q": q}',
        ('def search(q: str = "", limit: int = 10):\n    return {"q": q, "limit": limit}'),
    )
    s.write("app.py", app)
    s.wait_for("GET", "/search?q=x&limit=5", 200, '"limit":5')
    assert s.get("/search?limit=no")[0] == 422
    schema = json.loads(s.get("/openapi.json")[1])
    assert [p["name"] for p in schema["paths"]["/search"]["get"]["parameters"]] == ["q", "limit"]

    # A dependency's body, then its signature (a header it reads).
    app = app.replace('return "alice"', 'return "bob"')
    s.write("app.py", app)
    s.wait_for("GET", "/me", 200, "bob")
    app = app.replace(
        'def get_user():\n    return "bob"',
        'def get_user(x_user: str = Header("nobody")):\n    return x_user',
    )
    s.write("app.py", app)

    def header_read():
        got = s.request("GET", "/me", headers={"X-User": "carol"})
        return got == (200, '{"user":"carol"}')

    s.wait_until(header_read, "the dependency to read the X-User header")
    assert s.get("/me") == (200, '{"user":"nobody"}')
    routes(s)
    assert "Traceback" not in s.log, s.log


SERVICE = """
from fastapi import FastAPI

import api

app = FastAPI()

@app.get("/__alive__")
def alive():
    return "ok"

app.include_router(api.router, prefix="/api")
"""

API = """
from fastapi import APIRouter
from pydantic import BaseModel

router = APIRouter()

class Base(BaseModel):
    a: int = 1

class Child(Base):
    b: int = 2

@router.get("/ping")
def ping():
    return "pong v1"

@router.get("/child")
def child() -> Child:
    return Child()
"""

MAIN = """
import os

import uvicorn

from service import app

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning")
"""


def test_fastapi_routers_and_what_needs_a_restart(server):
    s = server({"app.py": MAIN, "service.py": SERVICE, "api.py": API})
    assert s.get("/api/ping") == (200, '"pong v1"')
    api, service = API, SERVICE

    api = api.replace("pong v1", "pong v2")
    s.write("api.py", api, how="inplace")
    s.wait_for("GET", "/api/ping", 200, "pong v2")
    api += '\n@router.get("/extra")\ndef extra():\n    return "extra"\n'
    s.write("api.py", api)
    s.wait_for("GET", "/api/extra", 200, "extra")
    # A new endpoint above one with a path parameter goes before it, as in a restart
    # (Starlette matches in order: /{name} would take /count).
    api += '\n@router.get("/{name}")\ndef by_name(name: str):\n    return "by " + name\n'
    s.write("api.py", api)
    s.wait_for("GET", "/api/someone", 200, "by someone")
    api = api.replace(
        '@router.get("/{name}")',
        '@router.get("/count")\ndef count():\n    return 7\n\n@router.get("/{name}")',
    )
    s.write("api.py", api)
    s.wait_for("GET", "/api/count", 200, "7")

    # A changed include_router statement runs again: the new prefix answers, and the routes
    # of the old one leave the table.
    start = s.mark()
    service = service.replace('prefix="/api"', 'prefix="/v2"')
    s.write("service.py", service)
    s.wait_for("GET", "/v2/ping", 200, "pong v2")
    # add_api_route alike: a changed path takes its route along.
    service += '\ndef added():\n    return "added"\n\napp.add_api_route("/added", added)\n'
    s.write("service.py", service)
    s.wait_for("GET", "/added", 200, "added")
    service = service.replace('"/added"', '"/moved"')
    s.write("service.py", service)
    s.wait_for("GET", "/moved", 200, "added")
    assert s.get("/added")[0] == 404
    assert s.get("/api/ping")[0] == 404
    line = s.wait_log("reloaded service", start)
    assert "deleted app.include_router(" in line and "needs a restart" not in line
    # Removed: its routes go.
    s.write("service.py", service.replace('app.include_router(api.router, prefix="/v2")', ""))
    s.wait_for("GET", "/v2/ping", 404)
    assert s.get("/__alive__") == (200, '"ok"')
    s.write("service.py", service)
    s.wait_for("GET", "/v2/ping", 200, "pong v2")

    # A model whose subclass inherited its fields: the model follows, the subclass needs a
    # restart, and the report says so.
    start = s.mark()
    api = api.replace("    a: int = 1", "    a: int = 1\n    c: int = 3")
    s.write("api.py", api)
    line = s.wait_log("needs a restart", start)
    assert "Child inherits the fields of Base as they were when it was created" in line
    assert s.get("/v2/child") == (200, '{"a":1,"b":2}')
