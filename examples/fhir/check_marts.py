#!/usr/bin/env python3
"""Check the dbt marts in a DuckDB file against the FHIR bundle files they were built from.

    check_marts.py BUNDLE_DIR DUCKDB_FILE

Recomputes, in plain Python from the JSON files and independently of the dbt models, what the
warehouse must hold: which files were loaded, the row counts of the marts and staging tables,
and per row the keys and values that depend on the tricky parts of Synthea's output
(conditional references resolved by identifier, blood-pressure and survey observations that
only have components, payers that exist only inside ExplanationOfBenefit, Medication by
reference). Prints a table of expected and actual counts, then every difference; exits 1 if
there is any, 2 on bad usage.

Needs the `duckdb` Python package (the dbt venv's python has it).
"""

import json
import math
import os
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path
from urllib.parse import unquote

MAX_SHOWN = 10  # differences listed per table


# --- reading the bundles ---------------------------------------------------------------

def bundle_paths(bundle_dir: Path) -> dict:
    """file_key -> path, for every *.json under bundle_dir (keys as the loader makes them)."""
    paths = {}
    for root, dirs, names in os.walk(bundle_dir):
        for name in names:
            if name.endswith(".json"):
                path = Path(root, name)
                paths[path.relative_to(bundle_dir).as_posix()] = path
    return paths


# The resource types whose content expected() reads; of the others only the id and identifiers
# are kept, so that memory follows the checked content rather than every bundle's whole text.
READ_TYPES = {"ExplanationOfBenefit", "Organization", "Claim", "Encounter", "Patient", "Condition",
              "Medication", "MedicationRequest", "Procedure", "Observation"}


class Bundles:
    """Every resource of every bundle, deduplicated, and an index of every way to reference one.
    The files are read one at a time and not kept."""

    def __init__(self, paths: dict):
        self.files = set(paths)
        self.by_type = defaultdict(dict)  # type -> id -> (resource, file_key, fullUrl)
        for file_key in sorted(paths):    # a later file_key wins, as in the models
            with open(paths[file_key], encoding="utf-8") as f:
                bundle = json.load(f)
            for entry in bundle.get("entry") or []:
                resource = entry.get("resource")
                if not isinstance(resource, dict) or not resource.get("resourceType"):
                    continue
                rtype = resource["resourceType"]
                full_url = entry.get("fullUrl")
                rid = resource.get("id")
                if rid is None and full_url:
                    match = re.search(r"([^/:]+)$", full_url)
                    rid = match.group(1) if match else None
                if rtype not in READ_TYPES:
                    resource = {"identifier": resource.get("identifier")}
                self.by_type[rtype][rid] = (resource, file_key, full_url)
            del bundle
        # reference -> (file_key, type, id) of the newest file, the least (type, id) among ties
        self.index = {}
        for rtype, resources in self.by_type.items():
            for rid, (resource, file_key, full_url) in resources.items():
                keys = [full_url, f"{rtype}/{rid}"]
                for ident in resource.get("identifier") or []:
                    if isinstance(ident, dict) and ident.get("value") is not None:
                        system = ident.get("system")
                        keys.append(f"{rtype}?identifier=" + (f"{system}|" if system is not None else "")
                                    + ident["value"])
                for key in keys:
                    if key is None:
                        continue
                    found = self.index.get(key)
                    if found is None or file_key > found[0] or (file_key == found[0] and (rtype, rid) < found[1:]):
                        self.index[key] = (file_key, rtype, rid)
        self.index = {key: (t, i) for key, (_, t, i) in self.index.items()}

    def resources(self, rtype):
        """[(id, resource, file_key, fullUrl)] sorted by id."""
        return [(rid, r, f, u) for rid, (r, f, u) in sorted(self.by_type.get(rtype, {}).items())]

    def resolve(self, reference, rtype=None):
        """The id of the resource a reference names (of type rtype), else None."""
        if not isinstance(reference, str):
            return None
        if "?" in reference:
            reference = unquote(reference)
        found = self.index.get(reference)
        if found is None or (rtype is not None and found[0] != rtype):
            return None
        return found[1]

    def resolve_at(self, obj, *path, rtype=None):
        return self.resolve(get(obj, *path, "reference"), rtype)


def get(obj, *path):
    """obj[path[0]][path[1]]..., None when any step is missing (ints index lists)."""
    for step in path:
        if isinstance(step, int):
            if not isinstance(obj, list) or len(obj) <= step:
                return None
        elif not isinstance(obj, dict):
            return None
        obj = obj[step] if isinstance(step, int) else obj.get(step)
    return obj


def code(cc):
    return get(cc, "coding", 0, "code")


def display(cc):
    shown = get(cc, "coding", 0, "display")
    return shown if shown is not None else get(cc, "text")


def number(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def scalar_text(value):
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


def observed_value(element):
    """(value_type, value_numeric, value_unit, value_code, value_text) of an element's value[x]."""
    keys = [k for k in element if k.startswith("value")]
    value_type = keys[0][5:] if keys else None
    quantity = element.get("valueQuantity")
    numeric = number(get(quantity, "value"))
    if numeric is None:
        numeric = number(element.get("valueInteger"))
    unit = get(quantity, "unit")
    if unit is None:
        unit = get(quantity, "code")
    concept = element.get("valueCodeableConcept")
    text = None
    for candidate in (element.get("valueString"), display(concept), element.get("valueBoolean"),
                      element.get("valueDateTime"), element.get("valueTime")):
        if candidate is not None:
            text = scalar_text(candidate)
            break
    return value_type, numeric, unit, code(concept), text


def adjudication(item, codes):
    for adj in item.get("adjudication") or []:
        category = code(adj.get("category")) or ""
        if category.rsplit("/", 1)[-1] in codes:
            return number(get(adj, "amount", "value"))
    return None


# --- what the warehouse must hold ----------------------------------------------------------

def expected(b: Bundles) -> dict:
    """table -> {key: {column: value}} (an empty dict per row when only the keys are checked)."""
    exp = {}

    # payers, as stg_payer_transitions: one row per EOB insurance entry
    transitions = {}
    for rid, eob, _, _ in b.resources("ExplanationOfBenefit"):
        contained = eob.get("contained") or []
        for n, insurance in enumerate(eob.get("insurance") or [], start=1):
            coverage_ref = get(insurance, "coverage", "reference")
            coverage = None
            if isinstance(coverage_ref, str) and coverage_ref.startswith("#"):
                coverage = next((c for c in contained if c.get("resourceType") == "Coverage"
                                 and "#" + str(c.get("id")) == coverage_ref), None)
            payer = next((p for p in (get(coverage, "payor", 0, "display"), get(coverage, "type", "text"),
                                      get(insurance, "coverage", "display"), get(eob, "insurer", "display"))
                          if p is not None), None)
            focal = insurance.get("focal")
            transitions[f"{rid}:{n}"] = {
                "eob_id": rid, "insurance_index": n, "payer_name": payer,
                "is_focal": focal if isinstance(focal, bool) else n == 1,
                "claim_id": b.resolve_at(eob, "claim", rtype="Claim"),
            }
    exp["staging.stg_payer_transitions"] = {k: {"payer_name": v["payer_name"]} for k, v in transitions.items()}
    payer_names = {t["payer_name"] for t in transitions.values() if t["payer_name"] is not None}
    payer_names |= {r.get("name") for _, r, _, _ in b.resources("Organization")
                    if code(get(r, "type", 0)) == "pay" and r.get("name") is not None}
    exp["staging.stg_payers"] = {name: {} for name in payer_names}

    # EOB lines, as stg_claims_transactions
    lines = {}
    for rid, eob, _, _ in b.resources("ExplanationOfBenefit"):
        for n, item in enumerate(eob.get("item") or [], start=1):
            lines[f"{rid}:{n}"] = {"paid_amount": adjudication(item, {"line_prvdr_pmt_amt", "benefit"})}
    exp["staging.stg_claims_transactions"] = lines
    lines_by_eob = defaultdict(list)  # eob id -> its lines' paid amounts
    for key, line in lines.items():
        lines_by_eob[key.rsplit(":", 1)[0]].append(line["paid_amount"])

    # claims, enriched as int_claims_enriched
    focal_eob = {}  # claim id -> (eob_id, payer) of the first focal insurance by eob id
    for key in sorted(transitions, key=lambda k: (transitions[k]["eob_id"], transitions[k]["insurance_index"])):
        t = transitions[key]
        if t["is_focal"] and t["claim_id"] is not None and t["claim_id"] not in focal_eob:
            focal_eob[t["claim_id"]] = (t["eob_id"], t["payer_name"])
    claims = {}
    for rid, claim, _, _ in b.resources("Claim"):
        item_encounters = [get(e, "reference") for item in claim.get("item") or []
                           for e in item.get("encounter") or []]
        insurances = claim.get("insurance") or []
        focal = next((i for i in insurances if i.get("focal") is True), insurances[0] if insurances else None)
        eob_id, payer = focal_eob.get(rid, (None, None))
        if payer is None:
            payer = get(focal, "coverage", "display")
        eob_lines = lines_by_eob.get(eob_id, [])
        paid = sum(p or 0.0 for p in eob_lines) if eob_lines else None
        claims[rid] = {
            "claim_type": code(claim.get("type")),
            "patient_id": b.resolve_at(claim, "patient", rtype="Patient"),
            "encounter_id": b.resolve(item_encounters[0] if item_encounters else None, "Encounter"),
            "medication_id": b.resolve_at(claim, "prescription", rtype="MedicationRequest"),
            "claim_total": number(get(claim, "total", "value")),
            "payer_name": payer,
            "paid_amount": paid,
        }
    exp["intermediate.int_claims_enriched"] = {
        k: {c: v[c] for c in ("patient_id", "encounter_id", "medication_id", "payer_name")} for k, v in claims.items()}

    def total(values):
        present = [v for v in values if v is not None]
        return sum(present) if present else None

    claims_by_encounter = defaultdict(list)
    claim_totals_by_medication = defaultdict(list)
    for claim_id, claim in claims.items():
        claims_by_encounter[claim["encounter_id"]].append((claim_id, claim))
        claim_totals_by_medication[claim["medication_id"]].append(claim["claim_total"])

    # encounters
    encounters = {}
    for rid, enc, _, _ in b.resources("Encounter"):
        performer = next((p.get("individual") for p in enc.get("participant") or [] if p.get("individual")), None)
        own = sorted(claims_by_encounter.get(rid, []),
                     key=lambda c: (c[1]["claim_type"] == "pharmacy", c[0]))
        encounters[rid] = {
            "patient_id": b.resolve_at(enc, "subject", rtype="Patient"),
            "practitioner_id": b.resolve(get(performer, "reference"), "Practitioner"),
            "location_id": b.resolve(get(enc, "location", 0, "location", "reference"), "Location"),
            "organization_id": b.resolve_at(enc, "serviceProvider", rtype="Organization"),
            "claim_count": len(own),
            "claim_total": total(c["claim_total"] for _, c in own),
            "paid_total": total(c["paid_amount"] for _, c in own),
            "payer_name": own[0][1]["payer_name"] if own else None,
        }
    exp["marts.fct_encounters"] = encounters

    # patients
    encounter_counts = Counter(e["patient_id"] for e in encounters.values() if e["patient_id"])
    patients = {}
    for rid, patient, file_key, _ in b.resources("Patient"):
        names = patient.get("name") or []
        name = next((n for n in names if n.get("use") == "official"), names[0] if names else None)
        patients[rid] = {
            "first_name": get(name, "given", 0),
            "last_name": get(name, "family"),
            "gender": patient.get("gender"),
            "birth_date": patient.get("birthDate"),
            "source_file": file_key,
            "encounter_count": encounter_counts.get(rid, 0),
        }
    exp["marts.dim_patients"] = patients

    conditions = {rid: r for rid, r, _, _ in b.resources("Condition")}

    def reason(resource):
        condition_id = b.resolve(get(resource, "reasonReference", 0, "reference"), "Condition")
        if condition_id not in conditions:
            condition_id = None
        if condition_id is not None:
            return condition_id, code(conditions[condition_id].get("code"))
        return None, code(get(resource, "reasonCode", 0))

    # medication requests
    medication_codes = {}
    for rid, med, _, full_url in b.resources("Medication"):
        for key in (full_url, f"Medication/{rid}"):
            medication_codes[key] = code(med.get("code"))
    medications = {}
    for rid, request, _, _ in b.resources("MedicationRequest"):
        drug = code(request.get("medicationCodeableConcept"))
        if drug is None:
            drug = medication_codes.get(get(request, "medicationReference", "reference"))
        condition_id, reason_code = reason(request)
        medications[rid] = {
            "patient_id": b.resolve_at(request, "subject", rtype="Patient"),
            "encounter_id": b.resolve_at(request, "encounter", rtype="Encounter"),
            "practitioner_id": b.resolve_at(request, "requester", rtype="Practitioner"),
            "medication_code": drug,
            "reason_condition_id": condition_id,
            "reason_code": reason_code,
            "claim_total": total(claim_totals_by_medication.get(rid, [])),
        }
    exp["marts.fct_medications"] = medications

    # procedures
    procedures = {}
    for rid, procedure, _, _ in b.resources("Procedure"):
        condition_id, reason_code = reason(procedure)
        procedures[rid] = {
            "patient_id": b.resolve_at(procedure, "subject", rtype="Patient"),
            "encounter_id": b.resolve_at(procedure, "encounter", rtype="Encounter"),
            "procedure_code": code(procedure.get("code")),
            "location_id": b.resolve_at(procedure, "location", rtype="Location"),
            "reason_condition_id": condition_id,
            "reason_code": reason_code,
        }
    exp["marts.fct_procedures"] = procedures

    # observations: the own value (index 0) when there is one or no component, then each component
    observations = {}
    for rid, obs, _, _ in b.resources("Observation"):
        components = obs.get("component") or []
        common = {
            "observation_id": rid,
            "patient_id": b.resolve_at(obs, "subject", rtype="Patient"),
            "encounter_id": b.resolve_at(obs, "encounter", rtype="Encounter"),
            "observation_code": code(obs.get("code")),
        }
        rows = []
        own = observed_value(obs)
        if own[0] is not None or not components:
            rows.append((0, code(obs.get("code")), own))
        for n, component in enumerate(components, start=1):
            rows.append((n, code(component.get("code")), observed_value(component)))
        for n, row_code, (value_type, numeric, unit, value_code, text) in rows:
            observations[f"{rid}:{n}"] = dict(common, component_index=n, code=row_code, value_type=value_type,
                                              value_numeric=numeric, value_unit=unit, value_code=value_code,
                                              value_text=text)
    exp["marts.fct_observations"] = observations

    # the other staging models: one row per resource
    for rtype, table in [("Condition", "stg_conditions"), ("Immunization", "stg_immunizations"),
                         ("AllergyIntolerance", "stg_allergies"), ("CarePlan", "stg_careplans"),
                         ("Device", "stg_devices"), ("SupplyDelivery", "stg_supplies"),
                         ("ImagingStudy", "stg_imaging_studies"), ("Claim", "stg_claims"),
                         ("Practitioner", "stg_providers"), ("Organization", "stg_organizations")]:
        exp[f"staging.{table}"] = {rid: {} for rid, _, _, _ in b.resources(rtype)}
    return exp


# --- what the warehouse holds --------------------------------------------------------------

KEYS = {
    "marts.dim_patients": "patient_id",
    "marts.fct_encounters": "encounter_id",
    "marts.fct_medications": "medication_id",
    "marts.fct_procedures": "procedure_id",
    "marts.fct_observations": "observation_value_id",
    "intermediate.int_claims_enriched": "claim_id",
    "staging.stg_payer_transitions": "payer_transition_id",
    "staging.stg_payers": "payer_name",
    "staging.stg_claims_transactions": "claim_transaction_id",
    "staging.stg_conditions": "condition_id",
    "staging.stg_immunizations": "immunization_id",
    "staging.stg_allergies": "allergy_id",
    "staging.stg_careplans": "careplan_id",
    "staging.stg_devices": "device_id",
    "staging.stg_supplies": "supply_delivery_id",
    "staging.stg_imaging_studies": "imaging_study_id",
    "staging.stg_claims": "claim_id",
    "staging.stg_providers": "practitioner_id",
    "staging.stg_organizations": "organization_id",
}


def actual(con, table, columns):
    key = KEYS[table]
    cols = ", ".join([key] + columns)
    rows = con.execute(f"select {cols} from {table}").fetchall()
    found, duplicates = {}, []
    for row in rows:
        value = {c: (v.isoformat() if hasattr(v, "isoformat") else v) for c, v in zip(columns, row[1:])}
        if row[0] in found:
            duplicates.append(row[0])
        found[row[0]] = value
    return found, duplicates


def same(a, b):
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is None and b is None
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-6)
    return a == b


def main(argv):
    if len(argv) != 3:
        print("usage: check_marts.py BUNDLE_DIR DUCKDB_FILE", file=sys.stderr)
        return 2
    bundle_dir, db_file = Path(argv[1]), argv[2]
    if not bundle_dir.is_dir() or not Path(db_file).is_file():
        print(f"check_marts: need a bundle directory and a DuckDB file, got {argv[1]} and {argv[2]}",
              file=sys.stderr)
        return 2
    import duckdb  # here, so that --help-less usage errors need no duckdb

    bundles = Bundles(bundle_paths(bundle_dir.resolve()))
    exp = expected(bundles)
    con = duckdb.connect(db_file, read_only=True)

    report, problems = [], []

    loaded = {row[0] for row in con.execute("select file_key from raw.fhir_bundles").fetchall()}
    files = bundles.files
    report.append(("raw.fhir_bundles (files)", len(files), len(loaded)))
    for name in sorted(files - loaded)[:MAX_SHOWN]:
        problems.append(f"raw.fhir_bundles: file not loaded (or its key differs): {name!r}")
    for name in sorted(loaded - files)[:MAX_SHOWN]:
        problems.append(f"raw.fhir_bundles: loaded key with no such file: {name!r}")

    layer = {"marts": 0, "intermediate": 1, "staging": 2}
    for table, rows in sorted(exp.items(), key=lambda t: (layer[t[0].split(".")[0]], t[0])):
        columns = sorted({c for row in rows.values() for c in row})
        try:
            got, duplicates = actual(con, table, columns)
        except duckdb.Error as err:
            report.append((table, len(rows), None))
            problems.append(f"{table}: cannot read it: {str(err).splitlines()[0]}")
            continue
        report.append((table, len(rows), len(got) + len(duplicates)))
        if table == "marts.fct_observations":
            report.append(("  of which component rows",
                           sum(1 for r in rows.values() if r["component_index"] > 0),
                           sum(1 for r in got.values() if r["component_index"] > 0)))
        shown = 0
        for key in duplicates[:MAX_SHOWN]:
            problems.append(f"{table}: key {key!r} appears more than once")
        for key in sorted(set(rows) - set(got)):
            if shown < MAX_SHOWN:
                problems.append(f"{table}: missing row {key!r}")
            shown += 1
        for key in sorted(set(got) - set(rows)):
            if shown < MAX_SHOWN:
                problems.append(f"{table}: unexpected row {key!r}")
            shown += 1
        for key in sorted(set(rows) & set(got)):
            for column in columns:
                want, have = rows[key].get(column), got[key].get(column)
                if not same(want, have):
                    if shown < MAX_SHOWN:
                        problems.append(f"{table}: row {key!r}: {column} is {have!r}, expected {want!r}")
                    shown += 1
        if shown > MAX_SHOWN:
            problems.append(f"{table}: ... {shown - MAX_SHOWN} more difference(s)")
    con.close()

    print(f"check_marts: {bundle_dir} ({len(files)} files) against {db_file}")
    width = max(len(name) for name, _, _ in report)
    print(f"  {'table'.ljust(width)}  {'expected':>9}  {'actual':>9}")
    for name, want, have in report:
        status = "ok" if want == have else "MISMATCH"
        print(f"  {name.ljust(width)}  {want:>9}  {'-' if have is None else have:>9}  {status}")
    if problems:
        print(f"\ncheck_marts: {len(problems)} difference(s):")
        for problem in problems:
            print(f"  {problem}")
        return 1
    print("check_marts: every count, key and checked value matches")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
