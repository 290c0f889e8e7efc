"""Text rendered as an image and cut into patches: the input of PIXEL (Rust, Lotz,
Bugliarello, Salesky, de Lhoneux and Elliott, "Language Modelling with Pixels",
ICLR 2023).

PIXEL has no vocabulary: a text is drawn as one line of a grayscale image
`x ∈ R^{H × W}` with `H = P = 16` pixels, and the image is cut into `N = W / P`
square patches of `P × P` pixels, each flattened,

`x_p[j, a·P + b] = x[a, j·P + b]`    (`j < N`, `a, b < P`),

which a Vision Transformer reads as `z_0 = [x_class; x_p^1 E; …; x_p^N E] + E_pos`
(Dosovitskiy et al., ICLR 2021): `SequenceModel(d_in=P², pool="cls",
positions="learned")`. PIXEL's sequences hold at most `N = 529` patches (an image
of 16 × 8464 pixels) and an attention mask marks the patches that hold text: the
patches after the text's end are padding.

seqkit's renderer (`render_text`, `render_patches`):

- The font is the one inside Pillow (`PIL.ImageFont.load_default(size=...)`, a
  FreeType font embedded in Pillow ≥ 10.1, so the same on every install, with no
  file to find), laid out with Pillow's basic layout engine (no shaping library,
  so the pixels do not depend on whether one is installed). PIXEL renders with
  PangoCairo and the Go Noto fonts (many scripts); this font has the printable
  ASCII characters and a few more marks (curly quotes, `…`, `°`, `·`), and draws
  every other character, accented Latin letters (`é`, `ñ`, `ß`), Greek, Cyrillic
  and most dashes included, as one and the same box: such text loses those
  letters' identity (English prose and source code have few of them).
- Pixel values: `1` is ink, `0` is background (white paper is 0), so padding, a
  patch of zeros, is blank paper; PIXEL draws black text on white.
- One line: control characters (newlines, tabs, ...; Unicode category `Cc`) are
  drawn as spaces. The text starts at column 0, its baseline at
  `(H − ascent − descent) // 2 + ascent`; the default font size is the largest
  whose ascent + descent fits in `H` (13 for `H = 16`).
- Only the first `max_width` characters are drawn (every glyph of this font
  advances at least one pixel, so no more would fit), and the image is cut or
  padded with zeros to `max_width` columns.
- The mask: patch `j` is real when `j < ⌈e / P⌉`, with `e` one past the rightmost
  column holding ink (`e = 0` without ink): every patch up to the last one with ink,
  the spaces between words included. A text of spaces has no real patch.
- PIXEL also appends a black end-of-sequence patch after the text; seqkit does not.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Callable

import numpy as np

PATCH = 16  # PIXEL's patch: 16 x 16 pixels, a line 16 pixels high
MAX_PATCHES = 529  # PIXEL's longest sequence: 529 patches, 16 x 8464 pixels


def _require_freetype():
    from PIL import features

    if not features.check("freetype2"):
        import PIL

        raise RuntimeError(
            f"rendering text needs Pillow built with FreeType (PIL.features.check('freetype2') "
            f"is False for Pillow {PIL.__version__}): install a Pillow wheel from PyPI, which has it"
        )


@functools.lru_cache(maxsize=32)
def _font(height: int, font_size: int | None):
    """Pillow's embedded font at `font_size` (default: the largest fitting `height`)."""
    _require_freetype()
    from PIL import ImageFont

    def load(size):
        try:
            font = ImageFont.load_default(size=size)
        except TypeError:  # Pillow < 10.1 has no sized default font
            import PIL

            raise RuntimeError(
                f"rendering text needs Pillow >= 10.1 (its embedded FreeType font); got {PIL.__version__}"
            ) from None
        if not isinstance(font, ImageFont.FreeTypeFont):
            raise RuntimeError(
                "PIL.ImageFont.load_default(size=...) gave a bitmap font, not the embedded FreeType "
                "font: Pillow was built without FreeType; install a Pillow wheel from PyPI"
            )
        if font.layout_engine != ImageFont.Layout.BASIC:
            font = font.font_variant(layout_engine=ImageFont.Layout.BASIC)
        return font

    if font_size is not None:
        return load(font_size)
    for size in range(height, 0, -1):
        font = load(size)
        if sum(font.getmetrics()) <= height:
            return font
    raise ValueError(f"no font size fits a line {height} pixels high")


@functools.lru_cache(maxsize=32)
def _advance(font):
    """`c -> font.getlength(c)`, memoized per font."""
    return functools.lru_cache(maxsize=4096)(font.getlength)


def _check_positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"expected {name} a positive integer, got {value!r}")
    return int(value)


def _one_line(text: str) -> str:
    return "".join(" " if unicodedata.category(c) == "Cc" else c for c in text)


def render_text(
    text: str,
    *,
    height: int = PATCH,
    max_width: int = PATCH * MAX_PATCHES,
    font_size: int | None = None,
) -> np.ndarray:
    """`text` drawn as one line of grayscale pixels, left to right.

    PIXEL (Rust et al., "Language Modelling with Pixels", ICLR 2023) renders a text
    as a `16 × 8464` image (`H × W`); this is that image, with `x[r, c] ∈ [0, 1]`
    the ink at row `r`, column `c` (`1` ink, `0` background). The layout rules
    (font, baseline, control characters, cut) are in `seqkit.data._render`'s
    module docstring. The same text gives the same pixels every time.

    **Arguments:** `text`, a `str`; `height`, `H` in pixels; `max_width`, `W`: the
    image is cut or padded with zeros to it; `font_size`, the font's size in
    pixels (default: the largest whose ascent + descent fits in `height`).

    **Returns:** float32 `(height, max_width)`.
    """
    if not isinstance(text, str):
        raise TypeError(f"expected text as a str, got {type(text).__name__}; decode bytes first")
    height = _check_positive("height", height)
    max_width = _check_positive("max_width", max_width)
    if font_size is not None:
        font_size = _check_positive("font_size", font_size)
    font = _font(height, font_size)
    line = _one_line(text[:max_width])
    out = np.zeros((height, max_width), np.float32)
    if not line.strip():
        return out
    from PIL import Image, ImageDraw

    # The basic layout puts each glyph at the sum of the advances before it (no
    # kerning): a glyph whose origin lies past the image's edge (plus a margin
    # for overhang) draws nothing there, so the line is cut before it.
    advance = _advance(font)
    origin, keep = 0.0, 0
    for c in line:
        if origin >= max_width + height:
            break
        origin += advance(c)
        keep += 1
    line = line[:keep]
    ascent, descent = font.getmetrics()
    baseline = (height - ascent - descent) // 2 + ascent
    width = min(max_width, int(np.ceil(origin)) + 2 * height)
    image = Image.new("L", (width, height), 0)
    ImageDraw.Draw(image).text((0, baseline), line, fill=255, font=font, anchor="ls")
    out[:, :width] = np.asarray(image, np.float32) / 255.0
    return out


def patch_mask(image: np.ndarray, patch: int) -> np.ndarray:
    """Which of the `W / P` patches of a rendered line are real: patch `j` is real when
    `j < ⌈e / P⌉`, `e` one past the rightmost column with ink (0 without ink)."""
    ink = np.flatnonzero(np.asarray(image).any(axis=0))
    end = 0 if ink.size == 0 else int(ink[-1]) + 1
    return np.arange(np.shape(image)[1] // patch) < -(-end // patch)


def render_patches(
    text: str, *, patch: int = PATCH, max_patches: int = MAX_PATCHES, font_size: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """`text` as PIXEL's input: a line `patch` pixels high cut into `max_patches`
    square patches (Rust et al., "Language Modelling with Pixels", ICLR 2023).

    With `x = render_text(text, height=P, max_width=N·P)` (`P = patch`,
    `N = max_patches`):

    `patches[j, a·P + b] = x[a, j·P + b]`    (`j < N`, `a, b < P`),

    each patch flattened row by row; `mask[j]` is True for the patches up to the
    last one holding ink, False for the padding after the text's end.

    **Returns:** `(patches, mask)`: float32 `(N, P·P)` in `[0, 1]` (1 ink) and
    bool `(N,)`.
    """
    patch = _check_positive("patch", patch)
    max_patches = _check_positive("max_patches", max_patches)
    image = render_text(text, height=patch, max_width=patch * max_patches, font_size=font_size)
    patches = image.reshape(patch, max_patches, patch).transpose(1, 0, 2).reshape(max_patches, -1)
    return patches, patch_mask(image, patch)


def decode_byte_tokens(item) -> str:
    """The text of an item of seqkit's byte-token text sources (`imdb`, `aan`'s
    convention): `inputs` int32 tokens `byte + 1` (padding 0) and a bool `mask`,
    decoded as UTF-8 (an invalid or cut sequence becomes U+FFFD)."""
    tokens = np.asarray(item["inputs"])
    if tokens.ndim != 1 or not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(
            f"expected byte tokens, integer inputs of shape (L,); got {tokens.dtype} {tokens.shape}"
        )
    mask = np.asarray(item["mask"], bool) if "mask" in item else tokens > 0
    raw = tokens[mask] - 1
    if raw.size and (raw.min() < 0 or raw.max() > 255):
        raise ValueError(
            f"expected tokens byte + 1 in 1..256 at real positions, got {raw.min() + 1}..{raw.max() + 1}"
        )
    return raw.astype(np.uint8).tobytes().decode("utf-8", errors="replace")


def decode_utf8(item) -> str:
    """The text of an item of the byte corpora (`pytext`, `enwik8`, `text8`):
    `inputs` int32 bytes 0..255 decoded as UTF-8 (a character cut at a chunk's
    edge becomes U+FFFD)."""
    raw = np.asarray(item["inputs"])
    if raw.ndim != 1 or not np.issubdtype(raw.dtype, np.integer):
        raise ValueError(f"expected bytes, integer inputs of shape (L,); got {raw.dtype} {raw.shape}")
    return raw.astype(np.uint8).tobytes().decode("utf-8", errors="replace")


class RenderedTextSource:
    """A text source seen as PIXEL sees it (Rust et al., "Language Modelling with
    Pixels", ICLR 2023): item `i` is `source[i]` with its text rendered and cut into
    patches ([`seqkit.data.render_patches`][]),

    `inputs` float32 `(N, P·P)` (1 = ink), `mask` bool `(N,)` (True up to the last
    patch with ink), every other key (`label`, ...) as it was.

    **Arguments:** `source`, any random-access source; `decode`, `item -> str`
    (default [`seqkit.data.decode_byte_tokens`][]: `inputs` byte + 1 with a `mask`,
    as `imdb` gives them); `patch`, `P`; `max_patches`, `N`; `font_size` as for
    [`seqkit.data.render_text`][].

    `len` is the wrapped source's; it pickles as the wrapped source does.
    """

    def __init__(
        self,
        source,
        decode: Callable[[dict], str] | None = None,
        *,
        patch: int = PATCH,
        max_patches: int = MAX_PATCHES,
        font_size: int | None = None,
    ):
        self.source = source
        self.decode = decode_byte_tokens if decode is None else decode
        self.patch = _check_positive("patch", patch)
        self.max_patches = _check_positive("max_patches", max_patches)
        self.font_size = None if font_size is None else _check_positive("font_size", font_size)
        _font(self.patch, self.font_size)  # no FreeType or no fitting size: fail now

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i):
        item = dict(self.source[i])
        text = self.decode(item)
        if not isinstance(text, str):
            raise TypeError(f"decode must return a str; got {type(text).__name__} for item {i}")
        patches, mask = render_patches(
            text, patch=self.patch, max_patches=self.max_patches, font_size=self.font_size
        )
        item["inputs"], item["mask"] = patches, mask
        return item

    def __repr__(self):
        return f"RenderedTextSource({self.source!r}, patch={self.patch}, max_patches={self.max_patches})"
