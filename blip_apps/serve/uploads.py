"""Request bodies the server accepts: an upload-size limit enforced while the body streams in,
and image uploads decoded from memory only (never a path), with a pixel-count limit.

Every refusal is a :class:`RequestError`: an HTTP status (4xx) and one line saying what was
wrong, what was given and what is allowed; the app answers it as ``{"error": "..."}``.
"""

from __future__ import annotations

import io
import json
import warnings

import PIL.Image
import PIL.ImageOps

# The formats an upload may be in: Pillow's raster decoders that need no external program
# (EPS, for one, would run Ghostscript).
IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF", "PPM")
DEFAULT_MAX_PIXELS = 40_000_000  # about 6300 x 6300; Pillow's own bomb warning is at 89 M


class RequestError(Exception):
    """A request the server refuses: ``status`` (a 4xx code) and ``message`` (one line)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def decode_image(data: bytes, field: str = "image", max_pixels: int = DEFAULT_MAX_PIXELS):
    """The uploaded bytes ``data`` as an RGB ``PIL.Image`` (EXIF orientation applied, as
    :func:`blip_core.image_processing.load_image` does for files).

    The header is read first and the pixels are decoded only when ``width * height`` is at most
    ``max_pixels``, so a decompression bomb costs no memory.

    Raises:
        RequestError: 400 for an empty upload or a corrupt image, 413 for too many pixels,
            415 for bytes that are not an image in :data:`IMAGE_FORMATS`.
    """
    if not data:
        raise RequestError(400, f"the {field!r} upload is empty; send an image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PIL.Image.DecompressionBombWarning)
            with PIL.Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise RequestError(
                        413,
                        f"the {field!r} upload is {width}x{height} = {width * height} pixels; "
                        f"at most {max_pixels} are accepted",
                    )
                image = PIL.ImageOps.exif_transpose(image)
                return image.convert("RGB")
    except RequestError:
        raise
    except PIL.UnidentifiedImageError:
        raise RequestError(
            415,
            f"the {field!r} upload ({len(data)} bytes) is not an image in a supported format "
            f"({', '.join(IMAGE_FORMATS)})",
        ) from None
    except (PIL.Image.DecompressionBombError, PIL.Image.DecompressionBombWarning) as exc:
        raise RequestError(413, f"the {field!r} upload has too many pixels: {exc}") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise RequestError(
            400, f"the {field!r} upload is not a readable image ({type(exc).__name__}: {exc})"
        ) from None


class _TooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` (a number, or a function giving it when
    a request comes) is answered ``413`` with ``{"error": ...}``.

    A ``Content-Length`` over the limit is refused before any of the body is read; a body
    without one (chunked) is counted as it streams in and refused once it passes the limit,
    whatever the app was doing with it.
    """

    def __init__(self, app, max_bytes):
        self.app = app
        self._max_bytes = max_bytes

    @property
    def max_bytes(self) -> int:
        """The limit: ``max_bytes`` as given, or called when it is a function."""
        return int(self._max_bytes() if callable(self._max_bytes) else self._max_bytes)

    def _message(self, size: str) -> bytes:
        mb = self.max_bytes / 2**20
        text = (
            f"the request body is {size}; at most {self.max_bytes} bytes ({mb:g} MiB) are accepted"
        )
        return json.dumps({"error": text}).encode()

    async def _refuse(self, send, size: str) -> None:
        body = self._message(size)
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = -1
                if length > self.max_bytes:
                    return await self._refuse(send, f"{length} bytes")
        state = {"received": 0, "over": False, "started": False}

        async def limited_receive():
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.max_bytes:
                    state["over"] = True
                    raise _TooLarge
            return message

        async def guarded_send(message):
            if state["over"]:
                return  # the app's answer to a body it could not finish reading: replaced
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _TooLarge:
            pass
        if state["over"] and not state["started"]:
            await self._refuse(send, f"over {self.max_bytes} bytes")


__all__ = ["DEFAULT_MAX_PIXELS", "IMAGE_FORMATS", "BodyLimit", "RequestError", "decode_image"]
