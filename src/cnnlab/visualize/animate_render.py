"""Drawing an :class:`~cnnlab.visualize.animate.Animation`: an animated GIF (Pillow), or one
self-contained HTML page that draws the same frames as SVG (play, pause, step, scrub)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from cnnlab.errors import CnnlabError
from cnnlab.pages import write_page
from cnnlab.storage import atomic_write
from cnnlab.visualize.animate import Animation, Frame, Panel

__all__ = ["save_animation", "render_frames", "write_gif", "write_html"]

COLORS = {"input": (207, 226, 243), "pad": (236, 236, 236), "inserted": (255, 242, 204), "window": (61, 133, 198),
          "out_done": (182, 215, 168), "out_now": (56, 118, 29), "out_todo": (255, 255, 255), "line": (90, 90, 90),
          "text": (20, 20, 20), "white": (255, 255, 255), "bg": (255, 255, 255), "order": (204, 0, 0)}
DURATIONS = (1800, 700, 3000)  # ms: title frame, each position, summary frame


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType sizes
        return ImageFont.load_default()


class _Layout:
    """Pixel geometry shared by every frame of one animation."""

    def __init__(self, anim: Animation):
        self.n = len(anim.panels[0].grid)
        self.oh, self.ow = anim.output_size
        biggest = max(self.n, self.oh, anim.kernel_size)
        self.cell = max(12, min(34, 300 // biggest))
        self.margin = 16
        self.top = 44
        self.kernel_w = anim.kernel_size * self.cell if anim.panels[0].kernel is not None else 0
        self.panel_w = self.n * self.cell + 30 + self.kernel_w + 30 + self.ow * self.cell
        self.panel_h = max(self.n, self.oh) * self.cell + 50
        self.width = max(2 * self.margin + self.panel_w, 560)
        self.height = self.top + len(anim.panels) * self.panel_h + 18 * (len(anim.caption) + 1) + 12
        self.values = self.cell >= 18
        self.font = _font(max(9, self.cell // 2 - 2))
        self.small = _font(11)
        self.title = _font(14)

    def panel_origin(self, index: int) -> tuple[int, int]:
        return self.margin, self.top + index * self.panel_h + 34


def _box(draw: ImageDraw.ImageDraw, x: int, y: int, size: int, fill, outline=COLORS["line"], width: int = 1) -> None:
    draw.rectangle([x, y, x + size, y + size], fill=fill, outline=outline, width=width)


def _center_text(draw, x: int, y: int, size: int, text: str, font, fill=COLORS["text"]) -> None:
    draw.text((x + size / 2, y + size / 2), text, fill=fill, font=font, anchor="mm")


def _draw_grid(draw, lay: _Layout, anim: Animation, panel: Panel, frame: Frame, x0: int, y0: int) -> None:
    window = {(r, c): (u, v) for u, v, r, c in anim.taps(frame.window)} if frame.window is not None else {}
    for r, row in enumerate(panel.grid):
        for c, value in enumerate(row):
            x, y = x0 + c * lay.cell, y0 + r * lay.cell
            inside = (r, c) in window
            _box(draw, x, y, lay.cell, COLORS["window"] if inside else COLORS[panel.kinds[r][c]])
            if lay.values and panel.kinds[r][c] == "input":
                _center_text(draw, x, y, lay.cell, f"{value:g}", lay.font, COLORS["white"] if inside else COLORS["text"])
            if inside and panel.order is not None:
                u, v = window[(r, c)]
                draw.text((x + 2, y + 1), str(panel.order[u][v]), fill=(255, 230, 0), font=lay.small)


def _draw_kernel(draw, lay: _Layout, panel: Panel, x0: int, y0: int) -> None:
    if panel.kernel is None:
        return
    for u, row in enumerate(panel.kernel):
        for v, value in enumerate(row):
            x, y = x0 + v * lay.cell, y0 + u * lay.cell
            _box(draw, x, y, lay.cell, COLORS["window"])
            if lay.values:
                _center_text(draw, x, y, lay.cell, f"{value:g}", lay.font, COLORS["white"])
            if panel.order is not None:
                draw.text((x + 2, y + 1), str(panel.order[u][v]), fill=(255, 230, 0), font=lay.small)
    draw.text((x0, y0 + len(panel.kernel) * lay.cell + 4), panel.kernel_label, fill=COLORS["text"], font=lay.small)


def _draw_output(draw, lay: _Layout, panel: Panel, frame: Frame, done: int, x0: int, y0: int) -> None:
    for y, row in enumerate(panel.output):
        for x, value in enumerate(row):
            index = y * lay.ow + x
            now = frame.out == (y, x)
            fill = COLORS["out_now"] if now else COLORS["out_done"] if index < done else COLORS["out_todo"]
            px, py = x0 + x * lay.cell, y0 + y * lay.cell
            _box(draw, px, py, lay.cell, fill)
            if lay.values and (index < done or now):
                _center_text(draw, px, py, lay.cell, f"{value:.3g}", lay.font, COLORS["white"] if now else COLORS["text"])


def _draw_frame(anim: Animation, lay: _Layout, frame: Frame, done: int) -> Image.Image:
    image = Image.new("RGB", (lay.width, lay.height), COLORS["bg"])
    draw = ImageDraw.Draw(image)
    draw.text((lay.margin, 10), frame.title, fill=COLORS["text"], font=lay.title)
    for index, panel in enumerate(anim.panels):
        x0, y0 = lay.panel_origin(index)
        draw.text((x0, y0 - 32), panel.name, fill=(70, 70, 160), font=lay.small)
        if index < len(frame.texts):
            draw.text((x0, y0 - 16), frame.texts[index], fill=COLORS["text"], font=lay.small)
        _draw_grid(draw, lay, anim, panel, frame, x0, y0)
        kx = x0 + lay.n * lay.cell + 30
        _draw_kernel(draw, lay, panel, kx, y0)
        _draw_output(draw, lay, panel, frame, done, kx + lay.kernel_w + (30 if lay.kernel_w else 0), y0)
    y = lay.top + len(anim.panels) * lay.panel_h + 6
    for line in anim.caption:
        draw.text((lay.margin, y), line, fill=COLORS["text"], font=lay.small)
        y += 18
    return image


def render_frames(anim: Animation) -> list[Image.Image]:
    """One RGB picture per frame."""
    lay = _Layout(anim)
    frames, done = [], 0
    for frame in anim.frames:
        if frame.out is None and frame is anim.frames[-1] and len(anim.frames) > 1:
            done = anim.positions
        frames.append(_draw_frame(anim, lay, frame, done))
        if frame.out is not None:
            done += 1
    return frames


def write_gif(anim: Animation, path: Path) -> Path:
    images = [im.convert("P", palette=Image.ADAPTIVE, colors=32) for im in render_frames(anim)]
    durations = [DURATIONS[0], *[DURATIONS[1]] * (len(images) - 2), DURATIONS[2]][: len(images)]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda fh: images[0].save(fh, format="GIF", save_all=True, append_images=images[1:],
                                                 duration=durations, loop=0, disposal=1))
    return path


def write_html(anim: Animation, path: Path) -> Path:
    """The player page (``templates/animation.html``): the frames drawn as SVG in the browser."""
    return write_page(path, "animation.html", title=anim.frames[0].title, animation=anim.to_dict())


def save_animation(anim: Animation, path: str | Path) -> Path:
    """``FILE.gif`` (one GIF frame per animation frame) or ``FILE.html`` (self-contained, no network)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".gif":
        return write_gif(anim, path)
    if suffix in (".html", ".htm"):
        return write_html(anim, path)
    raise CnnlabError(f"--out {path}: the animation is written as .gif or .html, not {suffix or 'no suffix'!r}")
