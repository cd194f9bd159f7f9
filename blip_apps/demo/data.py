"""A seeded generator of toy scenes for the demo BLIP models: images, captions, questions.

Every scene holds one to three shapes (circle, square, triangle, cross) in six colours and two
sizes, drawn on a light background.  The text is a deterministic function of the scene, so an
exact-match score is a meaningful target:

* caption: the shapes from left to right, ``"a small red circle left of a large blue square"``
  (``"left of"`` joins every neighbouring pair; no two shapes share an x position within
  :data:`MIN_DX` pixels, so "left" is never ambiguous);
* questions: count, colour / size of a shape named by its kind, shape on the left / right,
  existence of a coloured shape, count of a colour, shape of a colour; every answer is one word.

Only numpy and Pillow are used.  The same seed gives the same scenes, images and questions on every
machine; the training and held-out sets use different seeds (:data:`TRAIN_SEED`,
:data:`HELDOUT_SEED`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 64
SUPERSAMPLE = 4  # draw at 4x and downsample: smooth edges, still deterministic
MIN_DX = 8  # minimum horizontal distance between two shape centres (pixels)
GAP = 2  # minimum gap between two shapes' bounding boxes (pixels)

KINDS = ("circle", "square", "triangle", "cross")
SIZES = ("small", "large")
COLORS = {
    "red": (220, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 205, 30),
    "purple": (140, 60, 180),
    "orange": (245, 135, 25),
}
COLOR_NAMES = tuple(COLORS)
HALF_EXTENT = {"small": (6, 7), "large": (11, 12)}  # inclusive range of half-widths per size
NUMBERS = ("zero", "one", "two", "three")

TRAIN_SEED = 0
HELDOUT_SEED = 1_000_003


@dataclass(frozen=True)
class Shape:
    kind: str
    color: str
    size: str
    x: int  # centre, pixels
    y: int
    r: int  # half-extent, pixels

    @property
    def phrase(self) -> str:
        return f"a {self.size} {self.color} {self.kind}"


@dataclass(frozen=True)
class Scene:
    """Shapes ordered left to right, and the background grey level."""

    shapes: tuple[Shape, ...]
    background: int = 245

    def to_dict(self) -> dict:
        return {
            "shapes": [dataclasses.asdict(s) for s in self.shapes],
            "background": self.background,
        }


@dataclass(frozen=True)
class Example:
    scene: Scene
    image: Image.Image
    caption: str
    question: str
    answer: str


# ---- scenes -------------------------------------------------------------------------------------


def _fits(candidate: Shape, placed: list[Shape]) -> bool:
    for other in placed:
        if abs(candidate.x - other.x) < MIN_DX:
            return False
        apart_x = abs(candidate.x - other.x) >= candidate.r + other.r + GAP
        apart_y = abs(candidate.y - other.y) >= candidate.r + other.r + GAP
        if not (apart_x or apart_y):
            return False
    return True


def sample_scene(rng: np.random.Generator, num_shapes: int | None = None) -> Scene:
    """One random scene: ``num_shapes`` (1-3, random if None) non-overlapping shapes."""
    n = int(rng.integers(1, 4)) if num_shapes is None else num_shapes
    if not 1 <= n <= 3:
        raise ValueError(f"num_shapes must be 1, 2 or 3, got {n}")
    while True:
        placed: list[Shape] = []
        for _ in range(n):
            kind = KINDS[rng.integers(len(KINDS))]
            color = COLOR_NAMES[rng.integers(len(COLOR_NAMES))]
            size = SIZES[rng.integers(len(SIZES))]
            lo, hi = HALF_EXTENT[size]
            r = int(rng.integers(lo, hi + 1))
            for _attempt in range(50):
                x = int(rng.integers(r + 1, IMAGE_SIZE - r - 1))
                y = int(rng.integers(r + 1, IMAGE_SIZE - r - 1))
                shape = Shape(kind, color, size, x, y, r)
                if _fits(shape, placed):
                    placed.append(shape)
                    break
            else:
                break  # no room: start the scene again
        if len(placed) == n:
            background = int(rng.integers(225, 256))
            return Scene(tuple(sorted(placed, key=lambda s: s.x)), background)


# ---- rendering ----------------------------------------------------------------------------------


def _polygon(shape: Shape, k: int) -> list[tuple[float, float]] | None:
    x, y, r = shape.x * k, shape.y * k, shape.r * k
    if shape.kind == "triangle":
        return [(x, y - r), (x + r, y + r), (x - r, y + r)]
    if shape.kind == "cross":
        t = r / 3.0
        return [
            (x - t, y - r), (x + t, y - r), (x + t, y - t), (x + r, y - t),
            (x + r, y + t), (x + t, y + t), (x + t, y + r), (x - t, y + r),
            (x - t, y + t), (x - r, y + t), (x - r, y - t), (x - t, y - t),
        ]  # fmt: skip
    return None


def render(scene: Scene, image_size: int = IMAGE_SIZE) -> Image.Image:
    """The scene as an RGB ``image_size`` x ``image_size`` Pillow image."""
    k = SUPERSAMPLE * image_size / IMAGE_SIZE
    big = round(image_size * SUPERSAMPLE)
    canvas = Image.new("RGB", (big, big), (scene.background,) * 3)
    draw = ImageDraw.Draw(canvas)
    for shape in scene.shapes:
        fill = COLORS[shape.color]
        x, y, r = shape.x * k, shape.y * k, shape.r * k
        if shape.kind == "circle":
            draw.ellipse([x - r, y - r, x + r, y + r], fill=fill)
        elif shape.kind == "square":
            s = r * 0.9  # a square of the same half-extent looks bigger than a circle
            draw.rectangle([x - s, y - s, x + s, y + s], fill=fill)
        else:
            draw.polygon(_polygon(shape, k), fill=fill)
    return canvas.resize((image_size, image_size), Image.Resampling.BOX)


def label_map(scene: Scene, image_size: int = IMAGE_SIZE) -> np.ndarray:
    """``(image_size, image_size)`` int array: ``i + 1`` where shape ``i`` (left to right) is
    drawn, 0 on the background (drawn without anti-aliasing)."""
    k = image_size / IMAGE_SIZE
    canvas = Image.new("L", (image_size, image_size), 0)
    draw = ImageDraw.Draw(canvas)
    for index, shape in enumerate(scene.shapes, start=1):
        x, y, r = shape.x * k, shape.y * k, shape.r * k
        if shape.kind == "circle":
            draw.ellipse([x - r, y - r, x + r, y + r], fill=index)
        elif shape.kind == "square":
            s = r * 0.9
            draw.rectangle([x - s, y - s, x + s, y + s], fill=index)
        else:
            draw.polygon(_polygon(shape, k), fill=index)
    return np.asarray(canvas, dtype=np.int64)


# ---- text ---------------------------------------------------------------------------------------


def caption(scene: Scene) -> str:
    """The canonical caption: the shapes from left to right joined by ``"left of"``."""
    return " left of ".join(s.phrase for s in scene.shapes)


def _unique(scene: Scene, attr: str) -> list[Shape]:
    values = [getattr(s, attr) for s in scene.shapes]
    return [s for s in scene.shapes if values.count(getattr(s, attr)) == 1]


def all_questions(scene: Scene) -> list[tuple[str, str]]:
    """Every question the scene answers unambiguously, with its one-word answer.

    Existence and colour-count questions are listed for every colour/kind, so this list is long;
    :func:`sample_question` draws one question type uniformly instead.
    """
    shapes = scene.shapes
    qa = [("how many shapes are there?", NUMBERS[len(shapes)])]
    for s in _unique(scene, "kind"):
        qa.append((f"what color is the {s.kind}?", s.color))
        qa.append((f"is the {s.kind} small or large?", s.size))
    for s in _unique(scene, "color"):
        qa.append((f"what shape is {s.color}?", s.kind))
    if len(shapes) >= 2:
        qa.append(("what shape is on the left?", shapes[0].kind))
        qa.append(("what shape is on the right?", shapes[-1].kind))
        qa.append(("what color is the shape on the left?", shapes[0].color))
        qa.append(("what color is the shape on the right?", shapes[-1].color))
    present = {(s.color, s.kind) for s in shapes}
    for color in COLOR_NAMES:
        for kind in KINDS:
            answer = "yes" if (color, kind) in present else "no"
            qa.append((f"is there a {color} {kind}?", answer))
        count = sum(s.color == color for s in shapes)
        qa.append((f"how many {color} shapes are there?", NUMBERS[count]))
    return qa


def sample_question(scene: Scene, rng: np.random.Generator) -> tuple[str, str]:
    """One question: a question type drawn uniformly among those the scene allows, then a
    question of that type (existence questions are balanced between yes and no)."""
    shapes = scene.shapes
    types = ["count", "exists", "color_count"]
    if _unique(scene, "kind"):
        types += ["kind_color", "kind_size"]
    if _unique(scene, "color"):
        types.append("color_kind")
    if len(shapes) >= 2:
        types += ["side_kind", "side_color"]
    kind_of_q = types[rng.integers(len(types))]
    if kind_of_q == "count":
        return "how many shapes are there?", NUMBERS[len(shapes)]
    if kind_of_q == "kind_color":
        cand = _unique(scene, "kind")
        s = cand[rng.integers(len(cand))]
        return f"what color is the {s.kind}?", s.color
    if kind_of_q == "kind_size":
        cand = _unique(scene, "kind")
        s = cand[rng.integers(len(cand))]
        return f"is the {s.kind} small or large?", s.size
    if kind_of_q == "color_kind":
        cand = _unique(scene, "color")
        s = cand[rng.integers(len(cand))]
        return f"what shape is {s.color}?", s.kind
    if kind_of_q in ("side_kind", "side_color"):
        side = ("left", "right")[rng.integers(2)]
        s = shapes[0] if side == "left" else shapes[-1]
        if kind_of_q == "side_kind":
            return f"what shape is on the {side}?", s.kind
        return f"what color is the shape on the {side}?", s.color
    if kind_of_q == "exists":
        present = sorted({(s.color, s.kind) for s in shapes})
        if rng.integers(2) == 0:
            color, kind = present[rng.integers(len(present))]
            return f"is there a {color} {kind}?", "yes"
        absent = [(c, k) for c in COLOR_NAMES for k in KINDS if (c, k) not in present]
        color, kind = absent[rng.integers(len(absent))]
        return f"is there a {color} {kind}?", "no"
    # color_count: a colour in the scene two times out of three
    if rng.integers(3) < 2:
        color = shapes[rng.integers(len(shapes))].color
    else:
        color = COLOR_NAMES[rng.integers(len(COLOR_NAMES))]
    count = sum(s.color == color for s in shapes)
    return f"how many {color} shapes are there?", NUMBERS[count]


# ---- datasets -----------------------------------------------------------------------------------


def iter_examples(seed: int | Sequence[int]) -> Iterator[Example]:
    """An endless, deterministic stream of examples for ``seed`` (an int or a list of ints, as
    ``numpy.random.default_rng`` takes)."""
    rng = np.random.default_rng(seed)
    while True:
        scene = sample_scene(rng)
        question, answer = sample_question(scene, rng)
        yield Example(scene, render(scene), caption(scene), question, answer)


def make_examples(seed: int | Sequence[int], n: int) -> list[Example]:
    """The first ``n`` examples of the stream for ``seed``."""
    stream = iter_examples(seed)
    return [next(stream) for _ in range(n)]


def heldout_examples(n: int) -> list[Example]:
    """The held-out evaluation examples (seed :data:`HELDOUT_SEED`)."""
    return make_examples(HELDOUT_SEED, n)


def retrieval_set(seed: int, n: int) -> list[Example]:
    """``n`` examples whose captions are all different (a retrieval gallery has one right
    answer per query): the stream for ``seed`` with repeated captions skipped."""
    seen: set[str] = set()
    out = []
    for example in iter_examples(seed):
        if example.caption not in seen:
            seen.add(example.caption)
            out.append(example)
            if len(out) == n:
                return out
    raise AssertionError("unreachable")  # pragma: no cover


def corpus() -> list[str]:
    """Every word the captions, questions and answers can use, in sentences: the tokenizer's
    training text (complete by construction, so no demo text falls back to ``[UNK]``)."""
    lines = []
    for kind in KINDS:
        for color in COLOR_NAMES:
            for size in SIZES:
                lines.append(Shape(kind, color, size, 0, 0, 0).phrase + " left of a circle")
    rng = np.random.default_rng(TRAIN_SEED)
    for _ in range(200):
        scene = sample_scene(rng)
        lines.append(caption(scene))
        lines.extend(q + " " + a for q, a in all_questions(scene))
    return lines


# ---- example images -----------------------------------------------------------------------------

EXAMPLE_SCENES = {
    "red_circle_blue_square": Scene(
        (Shape("circle", "red", "small", 15, 40, 7), Shape("square", "blue", "large", 42, 26, 12)),
        245,
    ),
    "three_in_a_row": Scene(
        (
            Shape("triangle", "yellow", "large", 14, 34, 11),
            Shape("cross", "green", "small", 34, 18, 6),
            Shape("circle", "purple", "small", 50, 44, 7),
        ),
        240,
    ),
    "orange_cross": Scene((Shape("cross", "orange", "large", 30, 34, 12),), 250),
    "two_blues": Scene(
        (
            Shape("triangle", "blue", "small", 12, 16, 6),
            Shape("circle", "blue", "large", 40, 40, 12),
        ),
        235,
    ),
    "staggered": Scene(
        (
            Shape("square", "red", "small", 10, 50, 6),
            Shape("circle", "green", "large", 30, 20, 11),
            Shape("triangle", "yellow", "small", 52, 48, 7),
        ),
        248,
    ),
}


def write_examples(directory) -> dict[str, dict]:
    """Render :data:`EXAMPLE_SCENES` as ``<name>.png`` in ``directory``; return their text
    (caption and every question with its answer) keyed by file name."""
    from pathlib import Path

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, scene in EXAMPLE_SCENES.items():
        render(scene).save(directory / f"{name}.png", optimize=True)
        qa = [
            (q, a) for q, a in all_questions(scene) if not q.startswith(("is there", "how many "))
        ]
        qa += [("how many shapes are there?", NUMBERS[len(scene.shapes)])]
        out[f"{name}.png"] = {"caption": caption(scene), "questions": qa}
    return out
