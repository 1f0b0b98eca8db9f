#!/usr/bin/env python3
"""Splink (DuckDB backend) on a household donor file, scored like Steward's import bench.

    python3 bench/splink_households.py FILE TRUTH [--thresholds 0.99,0.999,0.9999]

FILE is what `steward-bench household-file` writes (the file `import-households` imports),
TRUTH its `row,entity,household` lines. Splink is configured as a competent user would:
names with term-frequency adjustments, birth date, email, phones, postcode, street and town,
five blocking rules, u by random sampling, lambda from a deterministic rule, m by EM.
Pairs are rows clustered together at a threshold (connected components, Splink's own
clustering), against pairs of rows of one person. One JSON line per threshold: precision,
recall, F1, seconds (reading, training, scoring, and that threshold's clustering) and peak
RSS (this process, DuckDB included).
"""

import json
import resource
import sys
import time

import pandas as pd
import splink.comparison_library as cl
from splink import DuckDBAPI, Linker, SettingsCreator, block_on


def digits(s):
    d = "".join(c for c in str(s) if c.isdigit())
    if d.startswith("44"):
        d = "0" + d[2:]
    return d or None


def clean(v):
    v = str(v).strip().lower()
    return v or None


def main():
    path, truth_path = sys.argv[1], sys.argv[2]
    thresholds = [0.99, 0.999, 0.9999]
    if "--thresholds" in sys.argv:
        thresholds = [float(t) for t in sys.argv[sys.argv.index("--thresholds") + 1].split(",")]
    t0 = time.time()
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    df = pd.DataFrame(
        {
            "unique_id": range(2, len(raw) + 2),  # the file's line numbers
            "first_name": raw["First Name"].map(clean),
            "surname": raw["Last Name"].map(clean),
            "email": raw["Email"].map(clean),
            "phone": raw["Phone"].map(digits),
            "mobile": raw["Mobile"].map(digits),
            "street": raw["Street"].map(clean),
            "town": raw["Town"].map(clean),
            "postcode": raw["Postcode"].map(lambda v: clean(str(v).replace(" ", ""))),
            "dob": raw["Birth Date"].map(clean),
        }
    )
    settings = SettingsCreator(
        link_type="dedupe_only",
        comparisons=[
            cl.NameComparison("first_name").configure(term_frequency_adjustments=True),
            cl.NameComparison("surname").configure(term_frequency_adjustments=True),
            cl.DateOfBirthComparison("dob", input_is_string=True, datetime_format="%Y-%m-%d"),
            cl.EmailComparison("email").configure(term_frequency_adjustments=True),
            cl.ExactMatch("phone").configure(term_frequency_adjustments=True),
            cl.ExactMatch("mobile").configure(term_frequency_adjustments=True),
            cl.PostcodeComparison("postcode"),
            cl.LevenshteinAtThresholds("street", 2).configure(term_frequency_adjustments=True),
            cl.ExactMatch("town").configure(term_frequency_adjustments=True),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("first_name", "surname"),
            block_on("email"),
            block_on("mobile"),
            block_on("surname", "dob"),
            block_on("postcode", "street"),
        ],
        retain_intermediate_calculation_columns=False,
    )
    db_api = DuckDBAPI()
    linker = Linker(db_api.register(df), settings)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("first_name", "surname", "dob")], recall=0.7
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=5e6, seed=1)
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("first_name", "surname")
    )
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("dob"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("postcode"))
    pred = linker.inference.predict(threshold_match_probability=0.5)
    predict_s = time.time() - t0

    entity = {}
    with open(truth_path) as f:
        next(f)
        for line in f:
            parts = line.strip().split(",")
            entity[int(parts[0])] = parts[1]
    by_entity = {}
    for r, e in entity.items():
        by_entity.setdefault(e, []).append(r)

    def pairs(groups):
        return sum(len(g) * (len(g) - 1) // 2 for g in groups)

    true = pairs(by_entity.values())
    for t in thresholds:
        t1 = time.time()
        clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(pred, t)
        cl_df = clusters.as_pandas_dataframe()[["unique_id", "cluster_id"]]
        cluster_s = time.time() - t1
        by_cluster = {}
        for uid, c in zip(cl_df["unique_id"], cl_df["cluster_id"]):
            by_cluster.setdefault(c, []).append(int(uid))
        found = pairs(by_cluster.values())
        right = 0
        wrong_clusters = 0
        for members in by_cluster.values():
            counts = {}
            for r in members:
                counts[entity[r]] = counts.get(entity[r], 0) + 1
            right += sum(c * (c - 1) // 2 for c in counts.values())
            if len(counts) > 1:
                wrong_clusters += 1
        precision = right / found if found else 1.0
        recall = right / true if true else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        print(
            json.dumps(
                {
                    "tool": "splink " + __import__("splink").__version__,
                    "rows": len(df),
                    "threshold": t,
                    "precision": round(precision, 5),
                    "recall": round(recall, 5),
                    "f1": round(f1, 5),
                    "wrong_pairs": found - right,
                    "clusters_with_two_people": wrong_clusters,
                    "seconds": round(predict_s + cluster_s, 1),
                    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
