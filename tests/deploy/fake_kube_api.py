"""A small Kubernetes API server on loopback for the batch/v1 Job calls the training service
makes: the real ``kubernetes`` client talks real HTTP to it. It keeps Jobs in memory, answers
409 to a second create of the same name and 404 for unknown ones, like the real server."""

from __future__ import annotations

import json
import re
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

JOBS = re.compile(
    r"^/apis/batch/v1/namespaces/(?P<ns>[^/]+)/jobs(?:/(?P<name>[^/]+))?(?P<status>/status)?$"
)


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
    }


class FakeKubeApi:
    def __init__(self) -> None:
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeKubeApi:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def set_condition(
        self, namespace: str, name: str, kind: str, reason: str, message: str
    ) -> None:
        """What the Job controller would do: mark the Job Complete or Failed."""
        with self.lock:
            job = self.jobs[(namespace, name)]
            job["status"] = {
                "conditions": [
                    {"type": kind, "status": "True", "reason": reason, "message": message}
                ],
                ("succeeded" if kind == "Complete" else "failed"): 1,
            }

    def count(self, method: str) -> int:
        return sum(1 for m, _ in self.calls if m == method)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self, method: str) -> None:
                url = urlparse(self.path)
                api.calls.append((method, url.path))
                match = JOBS.match(url.path)
                if not match:
                    self._send(404, _status(404, "NotFound", f"no route {url.path}"))
                    return
                ns, name = match["ns"], match["name"]
                with api.lock:
                    if method == "POST" and not name:
                        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                        if body.get("kind") != "Job" or not body.get("metadata", {}).get("name"):
                            self._send(
                                422, _status(422, "Invalid", "a Job with a name is required")
                            )
                            return
                        key = (ns, body["metadata"]["name"])
                        if key in api.jobs:
                            self._send(
                                409,
                                _status(
                                    409, "AlreadyExists", f'jobs.batch "{key[1]}" already exists'
                                ),
                            )
                            return
                        body["metadata"].update(
                            namespace=ns,
                            uid=str(uuid.uuid4()),
                            creationTimestamp=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                        )
                        body["status"] = {"active": 1}
                        api.jobs[key] = body
                        self._send(201, body)
                    elif method == "GET" and not name:
                        selector = parse_qs(url.query).get("labelSelector", [""])[0]
                        wanted = dict(p.split("=", 1) for p in selector.split(",") if p)
                        items = [
                            j
                            for (n, _), j in api.jobs.items()
                            if n == ns and wanted.items() <= j["metadata"].get("labels", {}).items()
                        ]
                        self._send(
                            200,
                            {
                                "kind": "JobList",
                                "apiVersion": "batch/v1",
                                "metadata": {},
                                "items": items,
                            },
                        )
                    elif (ns, name) not in api.jobs:
                        self._send(404, _status(404, "NotFound", f'jobs.batch "{name}" not found'))
                    elif method == "GET":
                        self._send(200, api.jobs[(ns, name)])
                    elif method == "DELETE":
                        del api.jobs[(ns, name)]
                        self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})
                    else:
                        self._send(405, _status(405, "MethodNotAllowed", method))

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                self._route("POST")

            def do_DELETE(self) -> None:
                self._route("DELETE")

        return Handler
