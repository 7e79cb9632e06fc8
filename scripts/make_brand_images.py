"""Draw the integration's brand images (custom_components/energy_tracker/brand/).

Home Assistant 2026.3 and later serve a custom integration's own `brand/` images (icon and
logo, light and dark, normal and @2x) instead of the brands CDN, which has no entry for
us. The mark is the add-on store's (addon/icon.png): a yellow bolt on a blue disc. Drawn
four times larger and scaled down for smooth edges. Run from the repository root:

    .venv/bin/python scripts/make_brand_images.py
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

OUT = Path(__file__).parents[1] / "custom_components" / "energy_tracker" / "brand"
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
BLUE = (3, 169, 244, 255)
YELLOW = (255, 235, 59, 255)
TEXT = {"light": (34, 34, 34, 255), "dark": (240, 240, 240, 255)}
# The bolt in units of the disc's diameter
BOLT = ((0.62, 0.16), (0.30, 0.57), (0.49, 0.57), (0.38, 0.86),
        (0.72, 0.43), (0.53, 0.43))
OVERSAMPLE = 4


def mark(size: int) -> Image.Image:
    big = size * OVERSAMPLE
    image = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.ellipse((0, 0, big - 1, big - 1), fill=BLUE)
    draw.polygon([(x * big, y * big) for x, y in BOLT], fill=YELLOW)
    return image.resize((size, size), Image.Resampling.LANCZOS)


def logo(height: int, theme: str) -> Image.Image:
    """The mark with "Energy" over "Tracker" beside it, landscape like the add-on's logo."""
    big = height * OVERSAMPLE
    font = ImageFont.truetype(FONT, int(big * 0.36))
    lines = (("Energy", TEXT[theme]), ("Tracker", BLUE))
    text_width = max(int(font.getlength(line)) for line, _ in lines)
    image = Image.new("RGBA", (big + big // 8 + text_width, big), (0, 0, 0, 0))
    image.alpha_composite(mark(big))
    draw = ImageDraw.Draw(image)
    for row, (line, colour) in enumerate(lines):
        draw.text((big + big // 8, big * (0.06 + 0.46 * row)), line, font=font, fill=colour)
    width = image.width // (2 * OVERSAMPLE) * 2  # even: the 1x logo is exactly half
    return image.resize((width, height), Image.Resampling.LANCZOS)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for size, suffix in ((256, ""), (512, "@2x")):
        mark(size).save(OUT / f"icon{suffix}.png", optimize=True)
    for theme, prefix in (("light", ""), ("dark", "dark_")):
        big = logo(256, theme)
        big.save(OUT / f"{prefix}logo@2x.png", optimize=True)
        half = big.resize((big.width // 2, 128), Image.Resampling.LANCZOS)
        half.save(OUT / f"{prefix}logo.png", optimize=True)


if __name__ == "__main__":
    main()
