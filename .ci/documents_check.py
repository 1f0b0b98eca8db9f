"""Opens each CSV with LibreOffice headless, split on commas and on semicolons, with formula
evaluation on, and checks what the spreadsheet made of the cells; renders the access
package's letter in headless Chromium and checks the picture and the text (see documents.sh)."""
import csv
import html
import os
import re
import struct
import subprocess
import sys
import zlib

work, files, letter = sys.argv[1], sys.argv[2:-1], sys.argv[-1]
# What the planted formulas evaluate to; none may appear as a cell.
EVALUATED = {"40002", "50003", "60004"}
failures = []
for path in files:
    for sep, name in ((44, "commas"), (59, "semicolons")):
        out = os.path.join(work, f"out-{sep}-{os.path.basename(os.path.dirname(path))}")
        os.makedirs(out, exist_ok=True)
        # Tokens: separator, quote, UTF-8, first line, cell formats, language, quoted as
        # text (no), detect special numbers (yes), ..., evaluate formulas (yes).
        subprocess.run(
            ["soffice", "--headless", f"-env:UserInstallation=file://{work}/lo-profile",
             f"--infilter=CSV:{sep},34,76,1,,0,false,true,false,false,false,-1,true",
             "--convert-to", "csv:Text - txt - csv (StarCalc):44,34,76,1", "--outdir", out, path],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
        with open(os.path.join(out, os.path.basename(path)), newline="", encoding="utf-8") as f:
            cells = [c.strip() for row in csv.reader(f) for c in row]
        where = f"{os.path.basename(path)} split on {name}"
        for c in cells:
            if c in EVALUATED or c.startswith("Err:") or c.startswith("#"):
                failures.append(f"{where}: a cell ran as a formula: {c!r}")
        if sep == 44:
            if "447700900123" in cells:
                failures.append(f"{where}: the phone number became the number 447700900123")
            if "package" in path and "+44 7700 900123" not in cells:
                failures.append(f"{where}: the phone number is not shown as +44 7700 900123: {cells}")
        print(f"ok: {where}: {len(cells)} cells, none ran as a formula")


def png_pixels(path):
    """Width, height and rows of RGB(A) bytes of an 8-bit PNG, filters undone."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert depth == 8 and colour in (2, 6), f"unexpected PNG format {depth}/{colour}"
    bpp = 3 if colour == 2 else 4
    raw, stride, rows, prev = zlib.decompress(idat), width * bpp, [], bytearray(width * bpp)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, bpp, rows


chromium = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            f"--user-data-dir={work}/chromium-profile"]
shot = os.path.join(work, "letter.png")
subprocess.run(chromium + ["--window-size=900,1400", f"--screenshot={shot}", f"file://{letter}"],
               check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
width, height, bpp, rows = png_pixels(shot)
dark = sum(1 for row in rows for x in range(0, len(row), bpp) if sum(row[x:x + 3]) < 300)
share = dark / (width * height)
if not 0.005 < share < 0.5:
    failures.append(f"the letter's screenshot is {share:.1%} dark: not a page of text")
else:
    print(f"ok: the letter renders ({width}x{height}, {share:.1%} of pixels text)")
dom = subprocess.run(chromium + ["--dump-dom", f"file://{letter}"], check=True, capture_output=True,
                     text=True, timeout=120).stdout
text = html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom)))
for words, what in [
    ("Dear ", "a greeting"),
    ("Example Charity", "the controller from organisation.toml"),
    ("Why we process it", "(a) purposes"),
    ("What kinds of data", "(b) categories"),
    ("Who receives it", "(c) recipients"),
    ("How long we keep it", "(d) retention"),
    ("Your rights", "(e) rights"),
    ("complain", "(f) the right to complain"),
    ("Where the data came from", "(g) source"),
    ("Automated decisions", "(h) automated decision-making"),
    ("+44 7700 900123", "the phone as people write it"),
]:
    if words not in text:
        failures.append(f"the letter lacks {what} ({words!r})")
for internal in ["given_name", "family_name", "user.contact", "LegitimateInterests", "retention class"]:
    if internal in text:
        failures.append(f"the letter shows the internal name {internal!r}")
if failures:
    print("\n".join(failures))
    sys.exit(1)
print("ok: the letter holds every Art. 15(1)(a)-(h) item in plain words")
