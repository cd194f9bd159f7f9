"""Concurrent requests are batched and still get their own answers; bad uploads get a 4xx JSON
error and the server goes on; a full queue answers 503."""

from __future__ import annotations

import http.client
import io
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import PIL.Image
import pytest
import requests

from tests.serve.conftest import EXAMPLES, pixels, upload


def _caption(url, path, **fields):
    return requests.post(f"{url}/caption", files=upload(path, **fields), timeout=120)


def test_32_concurrent_captions_equal_sequential(server, library):
    url = server["url"]
    jobs = [
        (EXAMPLES[i % len(EXAMPLES)], {"num_beams": 2} if i % 4 == 3 else {}) for i in range(32)
    ]
    sequential = {}
    for path, fields in jobs:  # every (image, settings) pair once, one at a time
        if (path, str(fields)) not in sequential:
            sequential[(path, str(fields))] = _caption(url, path, **fields).json()
    before = requests.get(f"{url}/health", timeout=10).json()["completed"]["caption"]
    with ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(pool.map(lambda job: _caption(url, job[0], **job[1]), jobs))
    assert [a.status_code for a in answers] == [200] * 32
    for (path, fields), answer in zip(jobs, answers):
        assert answer.json() == sequential[(path, str(fields))]
    task = library["caption"]
    for path in EXAMPLES:  # and the sequential answers are the library's
        assert sequential[(path, "{}")]["caption"] == task.caption_pixels(pixels(task, path))[0]
    after = requests.get(f"{url}/health", timeout=10).json()["completed"]["caption"]
    assert after - before == 32


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` pixels, with almost no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _png_bytes() -> bytes:
    buf = io.BytesIO()
    PIL.Image.new("RGB", (32, 32), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


BAD_UPLOADS = {
    "empty": (b"", 400, "empty"),
    "not an image": (b"hello, this is text\n" * 20, 415, "not an image"),
    "truncated png": (_png_bytes()[:60], 400, "not a readable image"),
    "decompression bomb": (_png_header(50_000, 50_000), 413, "pixels"),
}


@pytest.mark.parametrize("name", list(BAD_UPLOADS))
def test_bad_upload_is_4xx_then_good_request_succeeds(server, name):
    url = server["url"]
    data, status, words = BAD_UPLOADS[name]
    bad = requests.post(f"{url}/caption", files={"image": ("x.png", data, "image/png")}, timeout=60)
    assert bad.status_code == status, bad.text
    assert words in bad.json()["error"]
    assert _caption(url, EXAMPLES[0]).status_code == 200


@pytest.mark.parametrize(
    "files, status, words",
    [
        ({"prompt": (None, "a picture of")}, 422, "'image'"),
        ({"image": (None, "/etc/passwd")}, 422, "'image'"),  # a text field, never opened
        ({"image": ("x.png", b"x" * 1024)}, 415, "not an image"),
    ],
)
def test_missing_or_path_fields_are_4xx(server, files, status, words):
    got = requests.post(f"{server['url']}/caption", files=files, timeout=60)
    assert got.status_code == status and words in got.json()["error"], got.text


def test_out_of_range_settings_are_422(server):
    for fields in ({"num_beams": 99}, {"max_new_tokens": 0}, {"num_beams": "abc"}):
        got = _caption(server["url"], EXAMPLES[0], **fields)
        assert got.status_code == 422 and next(iter(fields)) in got.json()["error"], got.text


def test_upload_limit_413_with_and_without_content_length(server):
    url = server["url"]
    big = b"\0" * (11 * 2**20)  # over the default 10 MiB
    got = requests.post(f"{url}/caption", files={"image": ("big.png", big)}, timeout=60)
    assert got.status_code == 413 and "at most" in got.json()["error"]

    def chunks():  # no Content-Length: counted as it streams in
        yield b'--xyz\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
        for _ in range(11 * 16):
            yield b"\0" * 65536

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    conn.request(
        "POST", "/caption", body=chunks(), encode_chunked=True,
        headers={"Content-Type": "multipart/form-data; boundary=xyz"},
    )  # fmt: skip
    response = conn.getresponse()
    assert response.status == 413
    conn.close()
    assert _caption(url, EXAMPLES[0]).status_code == 200


def test_full_queue_answers_503(server, library):
    tight = server["tight"]
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda _: _caption(tight, EXAMPLES[1], num_beams=4), range(16)))
    codes = [a.status_code for a in answers]
    assert set(codes) <= {200, 503}, codes
    assert 503 in codes and 200 in codes, codes
    task = library["caption"]
    expected = task.caption_pixels(pixels(task, EXAMPLES[1]), num_beams=4)[0]
    assert all(a.json()["caption"] == expected for a in answers if a.status_code == 200)
    assert _caption(tight, EXAMPLES[1]).status_code == 200  # and it goes on


def test_disconnected_request_is_not_run(server):
    """A client that gives up while its request waits is dropped: the model never runs it."""
    import socket
    import time

    tight = server["tight"]
    parts = urlsplit(tight)
    health = f"{tight}/health"
    before = requests.get(health, timeout=10).json()["completed"]["caption"]
    body = (
        b'--xyz\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
        b"Content-Type: image/png\r\n\r\n" + EXAMPLES[1].read_bytes() + b"\r\n"
        b'--xyz\r\nContent-Disposition: form-data; name="num_beams"\r\n\r\n4\r\n--xyz--\r\n'
    )
    head = (
        f"POST {parts.path}/caption HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Content-Type: multipart/form-data; boundary=xyz\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with ThreadPoolExecutor(max_workers=1) as pool:
        busy = pool.submit(_caption, tight, EXAMPLES[1], num_beams=4)  # holds the replica
        time.sleep(0.2)
        with socket.create_connection((parts.hostname, parts.port)) as sock:
            sock.sendall(head + body)  # waits behind the busy one ...
            time.sleep(0.2)
        # ... and hangs up
        assert busy.result().status_code == 200
    time.sleep(3)
    after = requests.get(health, timeout=10).json()["completed"]["caption"]
    assert after - before == 1
