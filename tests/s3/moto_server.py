"""moto's S3 server for rocksnap's tests, one request at a time.

moto checks a conditional write's precondition and then writes without a lock,
and its server runs requests on several threads, so two racing create-only
writes can both succeed. Serving its WSGI application behind one lock makes
every request atomic, as on S3.

Usage: python moto_server.py [PORT]   (0 or nothing: a free port)
Prints "PORT <n>" once it listens, and exits when its standard input closes,
so a test process that dies never leaves it behind.
"""
import io
import os
import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import WSGIRequestHandler, make_server

LOCK = threading.Lock()


class Serialized:
    """Runs each request under LOCK and buffers the whole response."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        with LOCK:
            captured = {}

            def capture(status, headers, exc_info=None):
                captured["status"] = status
                captured["headers"] = headers
                return lambda data: body.write(data)

            body = io.BytesIO()
            result = self.app(environ, capture)
            try:
                for chunk in result:
                    body.write(chunk)
            finally:
                if hasattr(result, "close"):
                    result.close()
        start_response(captured["status"], captured["headers"])
        return [body.getvalue()]


class QuietHandler(WSGIRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_request(self, *args, **kwargs):
        pass


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    app = Serialized(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=QuietHandler)
    print(f"PORT {server.server_port}", flush=True)

    def watch_stdin():
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=watch_stdin, daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
