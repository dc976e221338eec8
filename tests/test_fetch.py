"""The download path, against a real HTTP server on 127.0.0.1 serving a small Kaggle-layout zip."""
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest

from nucseg.fetch import download, ensure_raw
from nucseg.io import NucsegError


class _Handler(http.server.BaseHTTPRequestHandler):
    payload = b""
    cut_after = None      # bytes to send before dropping the connection (None: send all)
    honour_range = True
    chunked = False       # Transfer-Encoding: chunked, no Content-Length (the size is unknown to the client)

    def do_GET(self):
        start = 0
        rng = self.headers.get("Range")
        if rng and self.honour_range:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(self.payload):
                self.send_response(416)
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(self.payload) - 1}/{len(self.payload)}")
        else:
            self.send_response(200)
        body = self.payload[start:]
        self.server.requests.append(rng)
        if self.chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"%x\r\n" % len(body) + body[: self.cut_after])   # one chunk, cut short
            if self.cut_after is None:
                self.wfile.write(b"\r\n0\r\n\r\n")
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.cut_after is not None:
            self.wfile.write(body[: self.cut_after])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(kaggle_zip):
    handler = type("H", (_Handler,), {"payload": Path(kaggle_zip).read_bytes()})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd, handler, f"http://127.0.0.1:{httpd.server_port}/stage1_train.zip"
    httpd.shutdown()
    httpd.server_close()


def test_download_then_layout_check(server, tmp_path, kaggle_zip, samples):
    _, _, url = server
    source = ensure_raw(tmp_path / "raw", url, progress=False)
    assert source.path == tmp_path / "raw" / "stage1_train.zip"
    assert source.path.read_bytes() == Path(kaggle_zip).read_bytes()
    assert source.ids == sorted(samples)
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["stage1_train.zip"]


def test_resumes_a_partial_download(server, tmp_path, kaggle_zip):
    httpd, _, url = server
    whole = Path(kaggle_zip).read_bytes()
    dest = tmp_path / "raw" / "stage1_train.zip"
    dest.parent.mkdir()
    (tmp_path / "raw" / "stage1_train.zip.part").write_bytes(whole[:1000])
    download(url, dest, progress=False)
    assert dest.read_bytes() == whole
    assert httpd.requests == ["bytes=1000-"]


def test_restarts_when_the_server_ignores_range(server, tmp_path, kaggle_zip):
    _, handler, url = server
    handler.honour_range = False
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "stage1_train.zip.part").write_bytes(b"stale bytes")
    download(url, tmp_path / "raw" / "stage1_train.zip", progress=False)
    assert (tmp_path / "raw" / "stage1_train.zip").read_bytes() == Path(kaggle_zip).read_bytes()


def test_interrupted_download_leaves_no_zip_and_resumes(server, tmp_path, kaggle_zip):
    _, handler, url = server
    handler.cut_after = 500
    dest = tmp_path / "raw" / "stage1_train.zip"
    with pytest.raises(NucsegError, match="run again to resume"):
        download(url, dest, progress=False)
    assert not dest.exists()                       # nothing half-written under the real name
    assert (tmp_path / "raw" / "stage1_train.zip.part").stat().st_size == 500
    handler.cut_after = None
    download(url, dest, progress=False)
    assert dest.read_bytes() == Path(kaggle_zip).read_bytes()


def test_interrupted_chunked_download_leaves_no_zip_and_resumes(server, tmp_path, kaggle_zip):
    # a chunked reply has no Content-Length: only the cut itself says the file is incomplete
    httpd, handler, url = server
    handler.chunked, handler.cut_after = True, 500
    dest = tmp_path / "raw" / "stage1_train.zip"
    with pytest.raises(NucsegError, match=r"stopped at 500 bytes; run again to resume"):
        download(url, dest, progress=False)
    assert not dest.exists()
    assert (tmp_path / "raw" / "stage1_train.zip.part").stat().st_size == 500
    handler.cut_after = None
    download(url, dest, progress=False)
    assert dest.read_bytes() == Path(kaggle_zip).read_bytes()
    assert httpd.requests == [None, "bytes=500-"]


def test_offline_says_where_to_put_the_zip(tmp_path):
    import socket

    with socket.socket() as s:   # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(NucsegError) as exc:
        ensure_raw(tmp_path / "raw", f"http://127.0.0.1:{port}/stage1_train.zip", progress=False)
    message = str(exc.value)
    assert "\n" not in message
    assert f"put stage1_train.zip at {tmp_path / 'raw' / 'stage1_train.zip'}" in message
    assert not (tmp_path / "raw" / "stage1_train.zip").exists()


def test_existing_copy_is_used_without_network(tmp_path, kaggle_dir, samples):
    raw = kaggle_dir.parent
    source = ensure_raw(raw, "http://127.0.0.1:9/never-called", progress=False)
    assert source.path == kaggle_dir and source.ids == sorted(samples)


def test_check_refuses_a_corrupt_image_or_a_mask_of_the_wrong_size(tmp_path, samples):
    from conftest import png_bytes, write_kaggle_dir

    raw = tmp_path / "raw"
    folder = write_kaggle_dir(raw / "stage1_train", samples)
    assert ensure_raw(raw, progress=False).ids == sorted(samples)
    first, second = sorted(samples)[:2]
    (folder / second / "masks" / "m001.png").write_bytes(png_bytes(np.zeros((5, 7), np.uint8)))
    with pytest.raises(NucsegError, match=f"{second}/masks/m001.png is 7x5 but its image is 80x64"):
        ensure_raw(raw, progress=False)
    assert ensure_raw(raw, progress=False, check=False).ids == sorted(samples)   # layout only
    (folder / first / "images" / f"{first}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 30)
    with pytest.raises(NucsegError, match=f"{first}/images/{first}.png: not a readable image"):
        ensure_raw(raw, progress=False)


def test_check_names_an_empty_mask_without_pillows_internals(tmp_path, samples):
    """Pillow's own words for an unknown file name its buffer object (<_io.BytesIO object at 0x7f...>)."""
    from conftest import write_kaggle_dir

    raw = tmp_path / "raw"
    folder = write_kaggle_dir(raw / "stage1_train", samples)
    second = sorted(samples)[1]
    (folder / second / "masks" / "m001.png").write_bytes(b"")
    with pytest.raises(NucsegError) as exc:
        ensure_raw(raw, progress=False)
    assert str(exc.value) == (f"{folder}/{second}/masks/m001.png: not a readable image (an unknown format, or "
                              "damaged); replace it with the original from stage1_train.zip")


def test_a_copy_with_an_image_without_masks_says_get_it_again(tmp_path, samples):
    """In the zip, the member is named as in every other message (zip:member); the fix is the pipeline's."""
    from conftest import write_kaggle_zip

    raw = tmp_path / "raw"
    raw.mkdir()
    bad = sorted(samples)[1]
    write_kaggle_zip(raw / "stage1_train.zip", {**samples, bad: (samples[bad][0], [])})
    with pytest.raises(NucsegError) as exc:
        ensure_raw(raw, progress=False)
    assert str(exc.value) == (f"masks/ missing in {raw / 'stage1_train.zip'}:{bad}/ (Kaggle layout: <id>/images/<id>.png "
                              "and <id>/masks/*.png); delete it and 'dvc repro' downloads stage1_train.zip again (or "
                              "put a good copy in its place)")
