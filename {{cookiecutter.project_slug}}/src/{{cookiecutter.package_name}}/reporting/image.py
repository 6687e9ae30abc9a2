"""Image projects: the downscaled thumbnails of the report's worst examples (only the shown rows are read)."""
from __future__ import annotations

import base64
import io
from pathlib import Path

from .page import esc


def thumbnail(path: Path, side: int) -> str:
    from PIL import Image
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((side, side))
            buf = io.BytesIO()
            im.save(buf, format="PNG")
    except OSError as e:
        return esc(f"(not readable: {e})")
    return f'<img alt="{esc(path.name)}" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'
