"""The HTTP API: a FastAPI app served by a Ray Serve deployment whose ``@serve.batch`` methods
(one per task) gather concurrent requests into batches for :class:`~blip_apps.serve.work.ServeModels`.

Endpoints: ``POST /caption``, ``POST /vqa``, ``POST /match``, ``POST /embed``, ``GET /health``,
the web page at ``/`` and the OpenAPI description at ``/openapi.json`` (``/docs``).  Every
error is JSON ``{"error": "..."}`` with a 4xx status for a bad request (400 bad field or image,
413 too large, 415 not an image, 422 missing or out-of-range field) and 500 for a bug; the
server goes on either way.  Images are decoded from the uploaded bytes only: no request field
is ever used as a path.  A request whose client disconnects or times out is cancelled, and a
cancelled request still waiting for its batch is dropped from it (Ray Serve's batching).
"""

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from ray import serve
from starlette.exceptions import HTTPException

from blip_apps.serve.page import PAGE
from blip_apps.serve.uploads import DEFAULT_MAX_PIXELS, BodyLimit, RequestError, decode_image
from blip_apps.serve.work import CaptionJob, EmbedJob, MatchJob, ServeModels, VqaJob

MAX_BEAMS = 8
MAX_NEW_TOKENS = 256
MAX_TEXTS = 64
MAX_TEXT_CHARS = 2000


@dataclass
class ServeOptions:
    """What one deployment serves and how: ``models`` ``{task: directory}``, the backend, the
    batching (``max_batch_size`` 1 turns it off), the request limits and the queue bound."""

    models: dict[str, str] = field(default_factory=dict)
    backend: str = "torch"
    dtype: str | None = None  # None: as stored (float32); "auto": the hardware rule
    device: str | None = None  # torch: None (the CPU) or "cuda" (the GPU the replica reserves)
    max_batch_size: int = 8
    batch_wait_timeout_s: float = 0.01
    max_upload_bytes: int = 10 * 2**20
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_ongoing_requests: int = 16  # requests a replica holds (running or waiting for a batch)
    max_queued_requests: int = 64  # requests waiting for a replica; over it: 503
    # extra seconds each model batch holds the replica: simulates a slow model for queue and
    # disconnect tests and load experiments (0 in normal serving)
    hold_s: float = 0.0


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query"))
        parts.append(f"field {where!r}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


fastapi_app = FastAPI(
    title="BLIP",
    description="Captions, answers, image-text matching and embeddings from BLIP models.",
    version="1",
)
# The replica's limits, set by BlipService.__init__ (the app is built when the module is
# imported in the replica's process, before the deployment's options arrive).
_LIMITS = {"max_upload_bytes": ServeOptions.max_upload_bytes}
fastapi_app.add_middleware(BodyLimit, max_bytes=lambda: _LIMITS["max_upload_bytes"])


@fastapi_app.exception_handler(RequestError)
async def _request_error(request: Request, exc: RequestError):
    return _error(exc.status, exc.message)


@fastapi_app.exception_handler(RequestValidationError)
async def _invalid(request: Request, exc: RequestValidationError):
    return _error(422, _validation_message(exc))


@fastapi_app.exception_handler(HTTPException)
async def _http_error(request: Request, exc: HTTPException):
    return _error(exc.status_code, str(exc.detail))


@fastapi_app.exception_handler(Exception)
async def _bug(request: Request, exc: Exception):
    return _error(500, f"internal error: {type(exc).__name__}: {exc}")


def _bounded(name: str, value: int | None, low: int, high: int) -> int | None:
    if value is not None and not low <= value <= high:
        raise RequestError(422, f"field {name!r} is {value}; allowed: {low} to {high}")
    return value


def _text(name: str, value: str | None, required: bool = True) -> str | None:
    value = None if value is None else value.strip()
    if not value:
        if required:
            raise RequestError(422, f"field {name!r} is empty; give some text")
        return None
    if len(value) > MAX_TEXT_CHARS:
        raise RequestError(
            422, f"field {name!r} has {len(value)} characters; at most {MAX_TEXT_CHARS}"
        )
    return value


def _answer(result: Any) -> Any:
    """A batch slot's result, or its exception raised as the right HTTP error."""
    if isinstance(result, RequestError):
        raise result
    if isinstance(result, ValueError):  # the library's argument checks
        raise RequestError(422, str(result))
    if isinstance(result, BaseException):
        raise result
    return result


@serve.deployment(ray_actor_options={"num_cpus": 0})
@serve.ingress(fastapi_app)
class BlipService:
    """One replica: the models of :class:`ServeOptions` ``models``, one model thread, and a
    ``@serve.batch`` queue per task."""

    def __init__(self, options: dict):
        self.options = ServeOptions(**options)
        _LIMITS["max_upload_bytes"] = self.options.max_upload_bytes
        self.work = ServeModels(
            self.options.models, self.options.backend, self.options.dtype, self.options.device
        )
        self.model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blip-model")
        for method in (self._caption, self._vqa, self._retrieval):
            method.set_max_batch_size(self.options.max_batch_size)
            method.set_batch_wait_timeout_s(self.options.batch_wait_timeout_s)

    # -- helpers -----------------------------------------------------------------------------
    def _need(self, task: str) -> None:
        if task not in self.work.tasks:
            served = ", ".join(sorted(self.work.tasks))
            raise RequestError(404, f"this server does not serve {task!r}; it serves: {served}")

    async def _pixels(self, task: str, upload: UploadFile | None):
        if upload is None:
            raise RequestError(422, "field 'image': Field required")
        data = await upload.read()
        image = await asyncio.to_thread(decode_image, data, "image", self.options.max_pixels)
        return await asyncio.to_thread(self.work.preprocess, task, image)

    async def _run(self, fn, jobs):
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self.model_thread, fn, jobs)
        if self.options.hold_s:
            await asyncio.sleep(self.options.hold_s)
        return result

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def _caption(self, jobs: list[CaptionJob]) -> list:
        return await self._run(self.work.caption_batch, jobs)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def _vqa(self, jobs: list[VqaJob]) -> list:
        return await self._run(self.work.vqa_batch, jobs)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def _retrieval(self, jobs: list) -> list:
        return await self._run(self.work.retrieval_batch, jobs)

    # -- endpoints ---------------------------------------------------------------------------
    @fastapi_app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page(self) -> HTMLResponse:
        return HTMLResponse(PAGE)

    @fastapi_app.get("/health")
    def health(self) -> dict:
        """200 with the served tasks once the models are loaded, and ``completed``: the
        requests each task's model has run so far."""
        opts = self.options
        return {
            "status": "ok",
            "tasks": sorted(self.work.tasks),
            "backend": opts.backend,
            "max_batch_size": opts.max_batch_size,
            "completed": dict(self.work.completed),
        }

    @fastapi_app.post("/caption")
    async def caption(
        self,
        image: Annotated[UploadFile | None, File(description="the image file")] = None,
        prompt: Annotated[str | None, Form(description="text the caption starts with")] = None,
        max_new_tokens: Annotated[int | None, Form()] = None,
        num_beams: Annotated[int | None, Form()] = None,
    ) -> dict:
        """``{"caption", "score"}``: ``score`` is the mean log-probability of the caption's
        generated tokens (the prompt not included)."""
        self._need("caption")
        job = CaptionJob(
            await self._pixels("caption", image),
            _text("prompt", prompt, required=False),
            _bounded("max_new_tokens", max_new_tokens, 1, MAX_NEW_TOKENS),
            _bounded("num_beams", num_beams, 1, MAX_BEAMS),
        )
        return _answer(await self._caption(job))

    @fastapi_app.post("/vqa")
    async def vqa(
        self,
        image: Annotated[UploadFile | None, File()] = None,
        question: Annotated[str | None, Form()] = None,
        answers: Annotated[str | None, Form(description="comma-separated candidates")] = None,
        max_new_tokens: Annotated[int | None, Form()] = None,
        num_beams: Annotated[int | None, Form()] = None,
    ) -> dict:
        """``{"answer", "score"}`` (mean token log-probability), or with ``answers``
        ``{"answer", "score", "ranking"}`` (summed log-likelihoods, best first)."""
        self._need("vqa")
        question = _text("question", question)
        candidates = None
        if answers is not None:
            candidates = tuple(a.strip() for a in answers.split(",") if a.strip())
            if not candidates:
                raise RequestError(
                    422, f"field 'answers' is {answers!r}: no candidates; give e.g. red,blue"
                )
            if len(candidates) > MAX_TEXTS:
                raise RequestError(
                    422, f"field 'answers' has {len(candidates)} candidates; at most {MAX_TEXTS}"
                )
        job = VqaJob(
            await self._pixels("vqa", image),
            question,
            candidates,
            _bounded("max_new_tokens", max_new_tokens, 1, MAX_NEW_TOKENS),
            _bounded("num_beams", num_beams, 1, MAX_BEAMS),
        )
        return _answer(await self._vqa(job))

    @fastapi_app.post("/match")
    async def match(
        self,
        image: Annotated[UploadFile | None, File()] = None,
        text: Annotated[list[str] | None, Form(description="one or more texts")] = None,
    ) -> dict:
        """``{"matches": [{"text", "itm", "itc"}]}``: ITM probability and ITC cosine of the
        image with each text, in the order given."""
        self._need("retrieval")
        texts = [_text("text", t) for t in (text or [])]
        if not texts or len(texts) > MAX_TEXTS:
            raise RequestError(422, f"field 'text' given {len(texts)} times; give 1 to {MAX_TEXTS}")
        job = MatchJob(await self._pixels("retrieval", image), tuple(texts))
        return _answer(await self._retrieval(job))

    @fastapi_app.post("/embed")
    async def embed(
        self,
        image: Annotated[UploadFile | None, File()] = None,
        text: Annotated[str | None, Form()] = None,
    ) -> dict:
        """``{"embedding": [...]}``: the L2-normalised ITC embedding of ``image`` or ``text``
        (exactly one of them)."""
        self._need("retrieval")
        if (image is None) == (text is None):
            raise RequestError(422, "give exactly one of the fields 'image' and 'text'")
        if image is not None:
            job = EmbedJob(pixels=await self._pixels("retrieval", image))
        else:
            job = EmbedJob(text=_text("text", text))
        return _answer(await self._retrieval(job))


def build_app(options: ServeOptions):
    """The Ray Serve application for ``options`` (``serve.run`` it)."""
    gpu = options.device is not None and options.device.split(":")[0] == "cuda"
    return BlipService.options(
        max_ongoing_requests=options.max_ongoing_requests,
        max_queued_requests=options.max_queued_requests,
        # Ray shows an actor only the GPUs it reserves, as cuda:0 ...
        ray_actor_options={"num_cpus": 0, "num_gpus": 1 if gpu else 0},
    ).bind(asdict(options))


def default_models(task: str) -> dict[str, str]:
    """``{task: demo model directory}`` for ``task`` (``"all"``: the three demo models)."""
    from blip_apps.demo import model_dir

    tasks = ("caption", "vqa", "retrieval") if task == "all" else (task,)
    return {t: os.fspath(model_dir(t)) for t in tasks}


__all__ = ["BlipService", "ServeOptions", "build_app", "default_models", "fastapi_app"]
