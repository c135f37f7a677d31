"""A tiny web server on $PORT that answers with $GREETING."""

import http.server
import os

GREETING = os.environ.get("GREETING", "hello")
PORT = int(os.environ.get("PORT", "5000"))


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"{GREETING} from {os.environ.get('GPROC_SERVICE')}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


server = http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
print(f"listening on http://127.0.0.1:{PORT}", flush=True)
try:
    server.serve_forever()
except KeyboardInterrupt:
    print("web: interrupted, closing the socket", flush=True)
