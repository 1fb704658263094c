"""The figures of a page: PNG files read and checked before they are shown (a truncated, foreign or
oversized file is said, not embedded), reduced in size where a page holds many, drawn from a figure, and laid
out as a grid of inline images."""

import base64
import io
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pvae.studies.report.markup import esc


def figures_in(folder: Path, skip: set[str] = frozenset()) -> list[tuple[str, bytes | None, str | None]]:
    """``(caption, PNG bytes or None, why unreadable)`` of each PNG directly in ``folder``.

    :param folder: the folder (none: no figure).
    :param skip: names left out.
    """
    if not folder.is_dir():
        return []
    return [_read_png(p) for p in sorted(folder.glob("*.png")) if p.name not in skip and not p.name.startswith(".")]


#: The most pixels a figure shown on a page may have (Pillow's own limit, where it sets none): a larger one is
#: said to be too large to show, not decoded (a 20000×20000 PNG is 1.6 GB of pixels).
MAX_PIXELS = 89_478_485


def _read_png(path: Path) -> tuple[str, bytes | None, str | None]:
    from PIL import Image, UnidentifiedImageError

    limit = Image.MAX_IMAGE_PIXELS or MAX_PIXELS
    try:
        data = path.read_bytes()
        size = _png_size(data)
        if size is not None and size[0] * size[1] > limit:
            return (
                path.name,
                None,
                _too_large(f"{size[0]}×{size[1]} px, {size[0] * size[1] / 1e6:.0f} million pixels", limit),
            )
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # said on the page, not on the terminal
            with Image.open(io.BytesIO(data)) as image:
                image.load()  # decodes every pixel: a truncated file fails here, not in the reader's browser
                if image.format != "PNG":
                    return path.name, None, f"a {image.format} file, not a PNG"
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        return path.name, None, _too_large(str(error).partition(",")[0], limit)
    except UnidentifiedImageError:
        return path.name, None, "not an image: no format Pillow reads"
    except (OSError, SyntaxError, ValueError) as error:
        text = re.sub(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>", path.name, str(error))  # Pillow names its buffer
        return path.name, None, text or type(error).__name__
    return path.name, data, None


def _png_size(data: bytes) -> tuple[int, int] | None:
    """A PNG's width and height from its header (its first chunk, IHDR), without decoding it; None for
    data that are not a PNG."""
    if len(data) < 24 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _too_large(what: str, limit: int) -> str:
    millions = f"{limit / 1e6:.0f} million pixels"
    return f"too large to show ({what}; a page shows figures of at most {millions}): open the file itself"


def reduce_png(data: bytes, bound: int) -> tuple[bytes, tuple[int, int] | None]:
    """A PNG at most ``bound`` pixels on its long side (Pillow's LANCZOS, re-encoded as PNG).

    :param data: a PNG that decodes.
    :param bound: the largest width and height.
    :returns: the PNG (``data`` itself where it is within the bound), and the original width and height
        where it was reduced (else None).
    """
    from PIL import Image  # Pillow comes with matplotlib; imported here like matplotlib, only to draw

    with Image.open(io.BytesIO(data)) as image:
        if max(image.size) <= bound:
            return data, None
        size = image.size
        image.thumbnail((bound, bound), Image.Resampling.LANCZOS)
        # a palette of 256 colours: a figure's flat colours survive it, and the smooth edges LANCZOS makes
        # would otherwise take more bytes than the full-size figure (no alpha: figures are on white)
        image = image.convert("RGB").quantize(256, dither=Image.Dither.NONE)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue(), size


def figures_grid(figures: list[tuple[str, bytes | None, str | None]], bound: int | None = None) -> str:
    """The figures as a grid of images (each a link that downloads it), reduced to ``bound`` pixels on
    their long side where given; an unreadable one as its caption and why.

    :param figures: ``(caption, PNG bytes or None, why unreadable)`` each.
    :param bound: the largest width and height in pixels (None: full size).
    """
    cells = []
    for caption, data, why in figures:
        if data is None:
            cells.append(
                f'<figure class="unreadable" data-unreadable="{esc(caption)}"><figcaption>{esc(caption)}: '
                f"unreadable ({esc(why)})</figcaption></figure>"
            )
        else:
            original = None
            if bound is not None:
                data, original = reduce_png(data, bound)
            uri = "data:image/png;base64," + base64.b64encode(data).decode()
            note = f" (reduced from {original[0]}×{original[1]} px)" if original else ""
            cells.append(
                # the link's href is the image's own data, set by the page's script: written twice, every
                # figure would take twice its bytes
                f'<figure><a download="{esc(caption)}"><img src="{uri}" alt="{esc(caption)}"></a>'
                f"<figcaption>{esc(caption)}{note}</figcaption></figure>"
            )
    return f'<div class="grid">{"".join(cells)}</div>'


def draw_png(draw: Callable[[], Any]) -> tuple[bytes | None, str | None, list[str]]:
    """The PNG of the figure ``draw()`` returns, or why it cannot be drawn, and the warnings drawing it gave
    (matplotlib's, NumPy's): said on the page, not printed on the terminal with a line of their source.

    :param draw: returns a figure.
    :returns: ``(png, None, warnings)`` or ``(None, why, warnings)``.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            png, why = _png_of(draw()), None
        except (KeyError, TypeError, ValueError, OverflowError) as error:
            png, why = None, str(error) or type(error).__name__
    return png, why, list(dict.fromkeys(str(w.message) for w in caught))


def _png_of(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()
