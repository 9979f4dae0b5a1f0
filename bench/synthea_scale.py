#!/usr/bin/env python3
"""Writes N distinct FHIR bundle files made from a folder of real Synthea bundles, for scale runs
that need no Synthea install.

    bench/synthea_scale.py N OUT_DIR [--sample DIR] [--seed S]

The sample defaults to ../shared/data/synthea-sample (relative to the repository). Its batch
files (hospitalInformation*, practitionerInformation*: Organizations, Locations, Practitioners,
referenced conditionally by identifier) are written once, as they are; the other N minus that
many files are copies of the patient bundles in turn, each with fresh ids: every UUID that a
bundle's entries use as resource id or fullUrl is replaced, everywhere in the text, by a UUID
derived from (seed, copy, old id). So `urn:uuid:` fullUrls, `Type/<id>` references, the
patient's Synthea identifier and contained references stay consistent within a copy, and
conditional references to the shared practitioner and hospital files still resolve. The same
N, sample and seed give the same files byte for byte, and a larger N the same files and more
(copy numbers are written with six digits), so a second call adds an incremental batch.
"""

import argparse
import json
import re
import sys
import uuid
from pathlib import Path

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
NAMESPACE = uuid.UUID("6f1d3e9a-4c1b-5a57-9d0e-8f2b7c4a1e30")


def entry_ids(bundle: dict) -> set:
    """The UUIDs naming the bundle's own resources (ids and fullUrls)."""
    ids = set()
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource") or {}
        for value in (resource.get("id"), entry.get("fullUrl")):
            if isinstance(value, str):
                ids.update(UUID.findall(value))
    return ids


def main(argv) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", type=int, help="how many files to write")
    parser.add_argument("out", type=Path, help="folder to write them into (created)")
    parser.add_argument("--sample", type=Path,
                        default=Path(__file__).resolve().parent.parent / "../shared/data/synthea-sample")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    files = sorted(args.sample.glob("*.json"))
    shared = [f for f in files if f.name.startswith(("hospitalInformation", "practitionerInformation"))]
    patients = [f for f in files if f not in shared]
    if not patients:
        print(f"synthea_scale: no patient bundles in {args.sample}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    shared = shared[: args.n]
    for f in shared:
        (args.out / f.name).write_bytes(f.read_bytes())
    texts = [f.read_text(encoding="utf-8") for f in patients]
    ids = [entry_ids(json.loads(t)) for t in texts]
    for copy in range(args.n - len(shared)):
        k = copy % len(patients)
        fresh = {old: str(uuid.uuid5(NAMESPACE, f"{args.seed}:{copy}:{old}")) for old in ids[k]}
        text = UUID.sub(lambda m: fresh.get(m.group(0), m.group(0)), texts[k])
        name = UUID.sub(lambda m: fresh.get(m.group(0), m.group(0)), patients[k].name)
        (args.out / f"{copy:06d}_{name}").write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
