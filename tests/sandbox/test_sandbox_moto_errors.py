"""The sandbox's moto answers a crash inside moto as AWS answers an internal error: a plain 500
that botocore retries, not an HTML page it cannot parse."""

from __future__ import annotations

from typing import Any

import pytest

from werkzeug.test import Client
from werkzeug.wrappers import Response

from kopsy.sandbox.motoserver import aws_like_errors


def _app(status: int, body: str, mimetype: str) -> Any:
    return Response(body, status=status, mimetype=mimetype)


def test_an_html_500_becomes_an_empty_500_which_botocore_retries() -> None:
    from botocore.parsers import QueryParser

    page = "<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n"
    resp = Client(aws_like_errors(_app(500, page, "text/html"))).get("/")
    assert resp.status_code == 500 and resp.data == b""
    assert resp.headers["Content-Length"] == "0" and "Content-Type" not in resp.headers
    # botocore reads an empty 500 as the generic (retryable) server error, not a parse failure
    parsed = QueryParser().parse({"status_code": 500, "headers": {}, "body": resp.data}, None)
    assert parsed["Error"]["Code"] == "500"


def test_other_answers_pass_unchanged() -> None:
    xml_error = "<ErrorResponse><Error><Code>ValidationError</Code></Error></ErrorResponse>"
    for status, body, mimetype in ((200, "<ok/>", "text/xml"), (400, xml_error, "text/xml"), (500, '{"x": 1}', "application/json")):
        resp = Client(aws_like_errors(_app(status, body, mimetype))).get("/")
        assert (resp.status_code, resp.get_data(as_text=True)) == (status, body)


def test_an_exception_in_the_app_becomes_an_empty_500_not_werkzeugs_page() -> None:
    """Under debug moto lets a backend's exception propagate, and werkzeug's server would render
    its own HTML 500 outside any middleware: the middleware answers it first."""

    def raising(environ: Any, start_response: Any) -> Any:
        raise RuntimeError("moto backend raced")

    def raising_late(environ: Any, start_response: Any) -> Any:
        start_response("200 OK", [("Content-Type", "text/xml")])
        yield b""
        raise RuntimeError("moto backend raced while answering")

    for app in (raising, raising_late):
        resp = Client(aws_like_errors(app)).get("/")
        assert resp.status_code == 500 and resp.data == b"", app.__name__


def test_the_real_server_under_debug_answers_a_crash_with_an_empty_500() -> None:
    """Through werkzeug's own server with ``debug`` on, as the sandbox runs moto."""
    import threading
    import urllib.error
    import urllib.request

    from werkzeug.serving import make_server

    def raising(environ: Any, start_response: Any) -> Any:
        raise RuntimeError("moto backend raced")

    server = make_server("127.0.0.1", 0, aws_like_errors(raising), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/", timeout=10)
        assert err.value.code == 500 and err.value.read() == b""
    finally:
        server.shutdown()
        thread.join(timeout=10)
