"""Opens each CSV with LibreOffice headless, split on commas and on semicolons, with formula
evaluation on, and checks what the spreadsheet made of the cells (see spreadsheet.sh)."""
import csv
import os
import subprocess
import sys

work, files = sys.argv[1], sys.argv[2:]
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
if failures:
    print("\n".join(failures))
    sys.exit(1)
