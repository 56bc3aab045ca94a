"""`python -m pipeline.download` against a local HTTP server: verify, resume, refuse, repeat."""

from __future__ import annotations

import csv
import hashlib
import http.server
import io
import json
import os
import socket
import tarfile
import threading
import urllib.error

import pytest

from pipeline.download import fetch, untar
from pipeline.download import real_data as download

from tests.conftest import jpeg_bytes

IDS = [str(1_300_000_000_000_000_000 + i) for i in range(6)]


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves `server.files`, honours `Range: bytes=N-`, and cuts a body once when asked."""

    def do_GET(self):  # noqa: N802  (http.server's naming)
        server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        data = server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = int(self.headers["Range"].removeprefix("bytes=").rstrip("-")) if self.headers.get("Range") else 0
        if start >= len(data) and start:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.end_headers()
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        cut = server.cut_after.pop(self.path, None)
        self.wfile.write(body if cut is None else body[:cut])
        self.wfile.flush()
        if cut is not None:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.requests, httpd.cut_after = {}, [], {}
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=10)


def _csv_bytes() -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["id_1", "text_1", "image_1", "id_2", "text_2", "image_2", "label"])
    for i in range(0, 6, 2):
        writer.writerow([IDS[i], f"text {i}", f"http://pbs.twimg.com/media/a{i}.jpg", IDS[i + 1], f"text {i + 1}",
                         f"http://pbs.twimg.com/media/b{i}.jpg", "NoEntailment"])
    writer.writerow(["x", "bad id", "http://x/c.jpg", IDS[0], "t", "http://x/d.jpg", "Implies"])
    return buffer.getvalue().encode("utf-8")


def _tarball(members: dict[str, bytes], extra=()) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for info in extra:
            archive.addfile(info)
    return buffer.getvalue()


def _images_tarball() -> bytes:
    """The real archive's layout: one `tweet_images/` folder; the last image is missing."""
    return _tarball({f"tweet_images/{tweet_id}.jpg": jpeg_bytes(32, 24, seed=i) for i, tweet_id in enumerate(IDS[:-1])})


def _run(server, out, *flags) -> int:
    return download.main(["--out", str(out), "--csv-url", f"{server.url}/tweets.csv",
                          "--images-url", f"{server.url}/images.tar.gz", "--backoff", "0", *flags])


def test_download_extracts_checks_the_csv_and_a_rerun_downloads_nothing(server, tmp_path, capsys):
    server.files = {"/tweets.csv": _csv_bytes(), "/images.tar.gz": _images_tarball()}
    assert _run(server, tmp_path) == 0
    out = capsys.readouterr().out
    images = sorted(os.listdir(tmp_path / "images"))
    assert images == sorted(f"{tweet_id}.jpg" for tweet_id in IDS[:-1])
    lock = json.loads((tmp_path / download.LOCK_FILE).read_text())
    for name, path in (("tweets.csv", "/tweets.csv"), ("tweet_images.tar.gz", "/images.tar.gz")):
        assert lock["files"][name]["sha256"] == hashlib.sha256(server.files[path]).hexdigest()
        assert lock["files"][name]["bytes"] == len(server.files[path])
    # The CSV's 4 rows: 2 complete, 1 whose image_2 the archive lacks, 1 with a bad id.
    assert (tmp_path / download.MISSING_FILE).read_text() == f"{IDS[-1]}.jpg\trow 3\n"
    assert "4 rows; 2 are valid and have both images here" in out
    assert "1 images named by 1 rows are not in the archive" in out and "bad_id 1" in out

    server.requests.clear()
    assert _run(server, tmp_path) == 0
    assert server.requests == []
    assert "already extracted" in capsys.readouterr().out


def test_a_digest_mismatch_fails_and_leaves_no_file(server, tmp_path, capsys):
    server.files = {"/tweets.csv": _csv_bytes(), "/images.tar.gz": _images_tarball()}
    lock = {"files": {"tweets.csv": {"url": f"{server.url}/tweets.csv", "sha256": "0" * 64, "bytes": len(_csv_bytes())}}}
    (tmp_path / download.LOCK_FILE).write_text(json.dumps(lock))
    assert _run(server, tmp_path) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "is not the file expected (sha256" in err[-1]
    assert sorted(os.listdir(tmp_path)) == [download.LOCK_FILE]  # No tweets.csv, no .part.
    assert json.loads((tmp_path / download.LOCK_FILE).read_text()) == lock


def test_a_cut_download_resumes_with_a_range_request(server, tmp_path):
    archive = _images_tarball()
    server.files = {"/tweets.csv": _csv_bytes(), "/images.tar.gz": archive}
    server.cut_after["/images.tar.gz"] = len(archive) // 3
    # An earlier run that was killed left the first 100 bytes.
    (tmp_path / "tweet_images.tar.gz.part").write_bytes(archive[:100])
    assert _run(server, tmp_path) == 0
    archive_requests = [r for path, r in server.requests if path == "/images.tar.gz"]
    assert archive_requests == ["bytes=100-", f"bytes={100 + len(archive) // 3}-"]
    assert (tmp_path / "tweet_images.tar.gz").read_bytes() == archive
    assert not (tmp_path / "tweet_images.tar.gz.part").exists()


def test_an_archive_with_a_traversal_member_and_a_link_is_refused_whole(server, tmp_path, capsys):
    link = tarfile.TarInfo("tweet_images/link.jpg")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    device = tarfile.TarInfo("tweet_images/null")
    device.type = tarfile.CHRTYPE
    server.files = {"/tweets.csv": _csv_bytes(),
                    "/images.tar.gz": _tarball({"tweet_images/ok.jpg": b"x", "../evil.jpg": b"x"}, (link, device))}
    out = tmp_path / "data"
    assert _run(server, out) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: refused 3 of 4 members")
    assert "'../evil.jpg': its path leaves the output folder" in err and "symbolic link" in err and "device" in err
    assert not (out / "images").exists() and not (tmp_path / "evil.jpg").exists()
    assert [name for name in os.listdir(out) if name.startswith(".extracting")] == []


def test_oversized_members_and_absolute_paths_are_refused():
    big = tarfile.TarInfo("tweet_images/huge.jpg")
    big.size = 2 * 2**20
    absolute = tarfile.TarInfo("/tmp/x.jpg")
    assert "over the 1,048,576-byte limit" in untar.refusal(big, 2**20)
    assert untar.refusal(absolute, 2**20) == "its path leaves the output folder"
    assert untar.refusal(tarfile.TarInfo("tweet_images/a.jpg"), 2**20) is None


def test_unreachable_hosts_give_one_error_line(server, tmp_path, capsys):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # Nothing listens there now: connection refused.
    code = download.main(["--out", str(tmp_path), "--csv-url", f"http://127.0.0.1:{port}/tweets.csv", "--backoff", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err == [f"error: cannot reach 127.0.0.1:{port}: connection refused"]
    offline = fetch._classify(urllib.error.URLError(socket.gaierror(-3, "Temporary failure")), "https://github.com/x")
    assert isinstance(offline, fetch.FetchError) and "github.com: the name does not resolve (offline?" in str(offline)
    server.files = {}
    assert download.main(["--out", str(tmp_path), "--csv-url", f"{server.url}/nope.csv"]) == 1
    assert capsys.readouterr().err.strip().endswith("/nope.csv: HTTP 404 Not Found")
