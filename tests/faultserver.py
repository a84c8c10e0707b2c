"""A real HTTP server on loopback that misbehaves on request, for fetch, robots and politeness tests.

In-process (pytest)::

    with FaultServer("127.0.0.1") as srv:
        fetcher.fetch(srv.url("/status/503?retry_after=7"))

As a subprocess (like Scrapy's mock server)::

    python -m tests.faultserver --port 8090 --host 127.0.0.1 --host 127.0.0.2

prints ``READY http://127.0.0.1:8090`` once it listens. Any 127.x.y.z address binds on Linux without setup,
so servers on 127.0.0.2 and 127.0.0.3 act as two distinct hosts.

Endpoints (GET):
  /article/<n>                 realistic article page, UTF-8
  /status/<code>?retry_after=  that status, optional Retry-After
  /delay?s=                    wait, then an article
  /slow?chunks=&delay=         body sent in chunks with pauses (Content-Length set)
  /trickle?s=                  one byte every 0.1 s for s seconds (no Content-Length)
  /trickle-status?s=&every=    the status line itself one byte every ``every`` s (0.5) for s seconds (60)
  /trickle-header?s=&every=    status line, then ``X-Slow: `` and one byte every ``every`` s for s seconds
  /reset                       TCP reset before any response
  /drop                        connection closed before any response
  /partial                     Content-Length 10000, 100 bytes sent, then close
  /redirect?n=                 n redirects, then /article/1
  /redirect-loop?step=         /redirect-loop?step=0 -> step=1 -> step=0 ...
  /redirect-to?url=&status=    one redirect to url
  /gzip, /deflate              compressed article
  /gzip-bomb?mb=               mb MiB of spaces inside a ~mb KiB gzip body, text/html
  /big?kb=&cl=                 kb KiB of HTML, with Content-Length unless cl=0
  /binary, /json, /pdf         non-HTML types
  /lie/<kind>                  html-as-binary, no-type, octet-html, plain-text, html-as-png
  /charset/<enc>?via=          article in <enc>; via=header|meta|http-equiv|both|none|bom|header-lies
  /etag                        ETag "v1" / Last-Modified; honours If-None-Match and If-Modified-Since
  /echo                        request line and headers as text/html
  /robots.txt                  from ``server.robots`` (status, body, content-type); counted in hits;
                               ``set_robots(trickle="status"|"header")`` trickles it like the above
"""

from __future__ import annotations

import argparse
import codecs
import gzip
import html
import socket
import ssl
import struct
import sys
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(64)

CHARSET_TEXTS: dict[str, str] = {
    "windows-1252": (
        "Le café de la gare coûte 3 € et l’addition arrive vite. « C’est très cher », dit-elle — "
        "mais la crème brûlée est délicieuse. Der Bäcker öffnet früh; die Straße ist ruhig. "
        "Señor Muñoz pidió una canción en el salón. “Quoted words” and ‘single quotes’ are typical… "
        "Naïve façades, coöperation and résumés appear in English text too. "
    ),
    "iso-8859-1": (
        "Le café de la gare coûte trois euros et l'addition arrive vite. « C'est très cher », dit-elle, "
        "mais la crème brûlée est délicieuse. Der Bäcker öffnet früh; die Straße ist ruhig und schön. "
        "Señor Muñoz pidió una canción en el salón. Ação e coração são palavras portuguesas. "
    ),
    "iso-8859-2": (
        "Zażółć gęślą jaźń. Pchnąć w tę łódź jeża lub ośm skrzyń fig. Wóz był pełen śliwek i jabłek. "
        "Mieszkańcy miasta spotkali się wczoraj w ratuszu, żeby porozmawiać o nowym budżecie i o budowie "
        "mostu na rzece. Radni powiedzieli, że prace zaczną się jesienią, a koszt wyniesie kilka milionów. "
    ),
    "iso-8859-5": (
        "Съешь же ещё этих мягких французских булок, да выпей чаю. Москва - столица России. "
        "Городской совет обсудил новый бюджет и план строительства моста через реку. "
        "Жители района сказали, что предложение изменит их жизнь на ближайшие годы. "
    ),
    "iso-8859-7": (
        "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία. Η Αθήνα είναι η πρωτεύουσα της Ελλάδας. "
        "Το δημοτικό συμβούλιο συζήτησε τον νέο προϋπολογισμό και το σχέδιο για τη γέφυρα. "
        "Οι κάτοικοι της περιοχής είπαν ότι η πρόταση θα αλλάξει τη ζωή τους. "
    ),
    "shift_jis": (
        "日本語のテキストです。東京都の今日の天気は晴れ、最高気温は二十五度の予想です。"
        "市議会は新しい予算と橋の建設計画について話し合いました。"
        "住民は、この提案が今後数年間の生活を大きく変えるだろうと述べました。"
    ),
    "gb18030": (
        "这是一个中文网页内容测试。北京市今天天气晴朗，最高气温二十五度。"
        "市议会讨论了新的预算和桥梁建设计划。居民们表示，这项提议将在未来几年改变他们的出行、购物和工作方式。"
    ),
    "euc-kr": (
        "한국어 텍스트입니다. 서울의 오늘 날씨는 맑고 최고 기온은 이십오도로 예상됩니다. "
        "시의회는 새로운 예산과 다리 건설 계획에 대해 논의했습니다. "
    ),
    "utf-8": "Grüße aus Zürich — 東京 — Москва — 北京 — ✓ emoji 🎉 and ordinary ASCII text. ",
}
"""Sample text per encoding; each encodes losslessly in it."""


def charset_page(enc: str, via: str = "header", repeat: int = 6) -> tuple[bytes, str]:
    """(body, Content-Type header) of an article written in ``enc``, declared as ``via`` says."""
    text = CHARSET_TEXTS[enc]
    label = enc
    meta = ""
    if via in ("meta", "both"):
        meta = f'<meta charset="{label}">'
    elif via == "http-equiv":
        meta = f'<meta http-equiv="Content-Type" content="text/html; charset={label}">'
    paragraphs = "\n".join(f"<p>{html.escape(text)}</p>" for _ in range(repeat))
    page = (
        f"<!DOCTYPE html>\n<html><head>{meta}<title>{html.escape(text[:30])}</title></head>"
        f"<body><article>\n{paragraphs}\n</article></body></html>"
    )
    body = page.encode(enc)
    ctype = "text/html"
    if via in ("header", "both"):
        ctype = f"text/html; charset={label}"
    elif via == "header-lies":
        ctype = "text/html; charset=utf-8"
    elif via == "bom":
        body = codecs.BOM_UTF8 + page.encode("utf-8") if enc == "utf-8" else body
    return body, ctype


def article_html(n: int) -> str:
    """A realistic news article page with navigation, byline and footer around the text."""
    paragraphs = "\n".join(
        f"<p>Paragraph {i} of story {n}: the harbour committee met on day {i} to discuss the plan, and "
        f"residents of district {n * 7 + i} said proposal {n}-{i} would change how they travel and work.</p>"
        for i in range(1, 8)
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Story {n} | Fault Times</title>
<meta property="og:title" content="Story {n}"><meta name="author" content="Reporter {n}">
</head><body>
<nav><a href="/">Home</a> <a href="/news">News</a></nav>
<article><h1>Story {n}</h1><p class="byline">By Reporter {n}</p>
{paragraphs}
</article><footer>Copyright 2026 Fault Times</footer></body></html>"""


_BOMBS: dict[int, bytes] = {}
_BOMBS_LOCK = threading.Lock()


def gzip_bomb(mb: int) -> bytes:
    """A gzip body that inflates to ``mb`` MiB, built without holding the inflated data in memory."""
    with _BOMBS_LOCK:
        if mb not in _BOMBS:
            comp = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
            chunk = b"<html><body>" + b" " * (1024 * 1024 - 12)
            parts = [comp.compress(chunk)] + [comp.compress(b" " * 1024 * 1024) for _ in range(mb - 1)]
            parts.append(comp.flush())
            _BOMBS[mb] = b"".join(parts)
        return _BOMBS[mb]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *args: Any) -> None:
        pass

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass  # the fault endpoints close the socket under our feet on purpose

    # -- helpers ----------------------------------------------------------------------------------------

    def _send(
        self,
        status: int,
        body: bytes = b"",
        ctype: str | None = "text/html; charset=utf-8",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        if ctype is not None:
            self.send_header("Content-Type", ctype)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str, status: int = 302) -> None:
        self._send(status, b"<html><body>moved</body></html>", headers={"Location": location})

    def _abort(self, reset: bool) -> None:
        self.close_connection = True
        if reset:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()

    # -- dispatch ---------------------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        parts = urlsplit(self.path)
        path = parts.path
        q = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        with self.server.lock:
            self.server.hits[path] += 1
            self.server.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        try:
            self._route(path, q)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):  # the client hung up (on purpose)
            self.close_connection = True

    def _route(self, path: str, q: dict[str, str]) -> None:
        if path.startswith("/article/"):
            return self._send(200, article_html(int(path.rsplit("/", 1)[1] or 0)).encode())
        if path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            headers = {"Retry-After": q["retry_after"]} if "retry_after" in q else {}
            if 300 <= code < 400 and "location" in q:
                headers["Location"] = q["location"]
            body = b"" if code in (204, 304) else f"<html><body>status {code}</body></html>".encode()
            return self._send(code, body, headers=headers)
        if path == "/delay":
            time.sleep(float(q.get("s", "1")))
            return self._send(200, article_html(1).encode())
        if path == "/slow":
            return self._slow(int(q.get("chunks", "5")), float(q.get("delay", "0.2")))
        if path == "/trickle":
            return self._trickle(float(q.get("s", "5")))
        if path in ("/trickle-status", "/trickle-header"):
            kind = path.removeprefix("/trickle-")
            return self._trickle_head(kind, float(q.get("s", "60")), float(q.get("every", "0.5")))
        if path == "/reset":
            return self._abort(reset=True)
        if path == "/drop":
            return self._abort(reset=False)
        if path == "/partial":
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", "10000")
            self.end_headers()
            self.wfile.write(b"<html><body>" + b"x" * 88)
            self.wfile.flush()
            return self._abort(reset=False)
        if path == "/redirect":
            n = int(q.get("n", "1"))
            return self._redirect(f"/redirect?n={n - 1}" if n > 1 else "/article/1")
        if path == "/redirect-loop":
            return self._redirect(f"/redirect-loop?step={1 - int(q.get('step', '0'))}")
        if path == "/redirect-to":
            return self._redirect(q["url"], int(q.get("status", "302")))
        if path == "/gzip":
            return self._send(
                200, gzip.compress(article_html(2).encode()), headers={"Content-Encoding": "gzip"}
            )
        if path == "/deflate":
            return self._send(
                200, zlib.compress(article_html(3).encode()), headers={"Content-Encoding": "deflate"}
            )
        if path == "/gzip-bomb":
            bomb = gzip_bomb(int(q.get("mb", "64")))
            return self._send(200, bomb, headers={"Content-Encoding": "gzip"})
        if path == "/big":
            body = b"<html><body>" + b"<p>lorem ipsum dolor</p>\n" * (int(q.get("kb", "1024")) * 41)
            if q.get("cl", "1") == "0":
                return self._stream_close(body, "text/html")
            return self._send(200, body)
        if path == "/binary":
            return self._send(200, PNG, "application/octet-stream")
        if path == "/json":
            return self._send(200, b'{"title": "not a page"}', "application/json")
        if path == "/pdf":
            return self._send(200, b"%PDF-1.4\n%binary", "application/pdf")
        if path.startswith("/lie/"):
            return self._lie(path.removeprefix("/lie/"))
        if path.startswith("/charset/"):
            body, ctype = charset_page(path.removeprefix("/charset/"), q.get("via", "header"))
            return self._send(200, body, ctype)
        if path == "/etag":
            return self._etag()
        if path == "/echo":
            lines = [self.requestline] + [f"{k}: {v}" for k, v in self.headers.items()]
            return self._send(
                200, ("<html><body><pre>" + html.escape("\n".join(lines)) + "</pre></body></html>").encode()
            )
        if path == "/robots.txt":
            status, body, ctype = self.server.robots
            if self.server.robots_delay:
                time.sleep(self.server.robots_delay)
            if self.server.robots_trickle:
                return self._trickle_head(self.server.robots_trickle, 60.0, 0.5)
            return self._send(status, body.encode(), ctype)
        return self._send(404, b"<html><body>not found</body></html>")

    def _slow(self, chunks: int, delay: float) -> None:
        piece = b"<p>" + b"slow " * 20 + b"</p>\n"
        head = b"<!DOCTYPE html><html><body>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(head) + len(piece) * chunks))
        self.end_headers()
        self.wfile.write(head)
        for _ in range(chunks):
            self.wfile.flush()
            time.sleep(delay)
            self.wfile.write(piece)

    def _trickle(self, seconds: float) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(b"<!DOCTYPE html><html><body>")
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.wfile.write(b"x")
            self.wfile.flush()
            time.sleep(0.1)
        self.close_connection = True

    def _trickle_head(self, kind: str, seconds: float, every: float) -> None:
        """The response head one byte per ``every`` seconds: a status line (``kind="status"``) or, after a
        whole status line, a header that never ends (``kind="header"``); each byte well inside any read
        timeout, so only a deadline on the whole exchange stops it."""
        self.close_connection = True
        if kind == "status":
            prefix, drip = b"", b"HTTP/1.1 200 OK" + b" " * 10_000
        else:
            prefix, drip = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nX-Slow: ", b"s" * 60_000
        self.wfile.write(prefix)
        self.wfile.flush()
        end = time.monotonic() + seconds
        for byte in drip:
            if time.monotonic() >= end:
                break
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            time.sleep(every)
        self.wfile.write(b"\r\n\r\n<html><body>late</body></html>")

    def _stream_close(self, body: bytes, ctype: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Connection", "close")
        self.end_headers()
        for i in range(0, len(body), 65536):
            self.wfile.write(body[i : i + 65536])
        self.close_connection = True

    def _lie(self, kind: str) -> None:
        page = article_html(4).encode()
        if kind == "html-as-binary":  # header says HTML, body is a PNG
            return self._send(200, PNG, "text/html")
        if kind == "no-type":  # HTML without any Content-Type
            return self._send(200, page, None)
        if kind == "octet-html":  # HTML labelled as a download
            return self._send(200, page, "application/octet-stream")
        if kind == "plain-text":  # genuinely plain text
            return self._send(200, b"just some words, no markup at all\n" * 20, "text/plain")
        if kind == "png-no-type":  # binary without a type
            return self._send(200, PNG, None)
        return self._send(404, b"unknown lie")

    def _etag(self) -> None:
        lm = "Wed, 01 Jan 2025 00:00:00 GMT"
        if self.headers.get("If-None-Match") == '"v1"' or self.headers.get("If-Modified-Since") == lm:
            self.send_response(304)
            self.send_header("ETag", '"v1"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._send(200, article_html(5).encode(), headers={"ETag": '"v1"', "Last-Modified": lm})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # many client threads connect at once; a short backlog costs SYN retries

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, _Handler)
        self.lock = threading.Lock()
        self.hits: Counter[str] = Counter()
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.robots: tuple[int, str, str] = (200, "User-agent: *\nDisallow: /private/\n", "text/plain")
        self.robots_delay = 0.0
        self.robots_trickle = ""


class FaultServer:
    """One fault server on ``host``; a context manager. ``port=0`` picks a free port; ``tls=(cert, key)``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: tuple[str, str] | None = None,
        poll_interval: float = 0.05,
    ) -> None:
        self._server = _Server((host, port))
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
        self.scheme = "https" if tls else "http"
        self.host = host
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            # shutdown() waits for one poll: short keeps test teardown quick; benchmarks with hundreds of
            # servers pass a longer one so idle polling costs no CPU
            kwargs={"poll_interval": poll_interval},
            name=f"faultserver-{host}",
            daemon=True,
        )

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base + path

    @property
    def hits(self) -> Counter[str]:
        """Requests per path since start (or :meth:`reset`)."""
        return self._server.hits

    @property
    def requests(self) -> list[tuple[str, dict[str, str]]]:
        """(path with query, lower-cased headers) of every request, in order."""
        return self._server.requests

    def set_robots(
        self,
        body: str = "",
        status: int = 200,
        content_type: str = "text/plain",
        delay: float = 0.0,
        trickle: str = "",
    ) -> None:
        """What /robots.txt answers from now on; ``trickle`` ("status" or "header") drips its head."""
        self._server.robots = (status, body, content_type)
        self._server.robots_delay = delay
        self._server.robots_trickle = trickle

    def reset(self) -> None:
        with self._server.lock:
            self._server.hits.clear()
            self._server.requests.clear()

    def start(self) -> FaultServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def fault_servers(*hosts: str) -> Iterator[list[FaultServer]]:
    """Several servers at once, e.g. ``fault_servers("127.0.0.2", "127.0.0.3")`` for per-host tests."""
    servers = [FaultServer(h).start() for h in hosts]
    try:
        yield servers
    finally:
        for s in servers:
            s.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", action="append", help="address to bind (repeatable); default 127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="port (0 = any free one)")
    parser.add_argument("--robots", default=None, help="robots.txt body (\\n for newlines)")
    args = parser.parse_args(argv)
    hosts = args.host or ["127.0.0.1"]
    servers = []
    port = args.port
    for h in hosts:
        srv = FaultServer(h, port).start()
        port = port or srv.port  # the same port on every address, so only the host differs
        if args.robots is not None:
            srv.set_robots(args.robots.replace("\\n", "\n"))
        servers.append(srv)
        print(f"READY {srv.base}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        for s in servers:
            s.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
