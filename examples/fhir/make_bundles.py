#!/usr/bin/env python3
"""Write the example's own small FHIR R4 bundles into bundles/ (deterministic; rerun to regenerate).

    python3 make_bundles.py [OUT_DIR]        # default: bundles/ beside this script

Hand-made in the shape of Synthea's FHIR export, with every quirk of real Synthea output that
breaks naive models (see README.md):

  * patient bundles are Bundle.type "transaction" (POST entries), the hospital and practitioner
    files "batch" (POST with ifNoneExist);
  * patients point at practitioners, organizations and locations only by conditional reference
    (Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9999…), one of them percent-encoded;
  * blood-pressure and survey Observations have no value of their own, only components (one with
    a valueString); one has both a value and components, one neither (dataAbsentReason);
  * no payer Organization and no top-level Coverage: payers are named only inside
    ExplanationOfBenefit (contained Coverage, insurance, insurer), one EOB with two insurances;
  * a MedicationRequest names its drug by medicationReference to a Medication in the bundle;
  * an Observation without an id (only its fullUrl), as transactions allow;
  * non-ASCII file names (José830_Muñoz421_…, 美咲_佐藤_…) and one with a quote (O'Keefe54),
    as Synthea writes surnames like O'Keefe;
  * a patient with no encounters at all.
"""

import json
import sys
import uuid
from pathlib import Path

NS = uuid.UUID("6f1c3d2e-2b1a-4c55-9a51-0e5b8a3c7d10")
SYNTHEA = "https://github.com/synthetichealth/synthea"
NPI = "http://hl7.org/fhir/sid/us-npi"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CVX = "http://hl7.org/fhir/sid/cvx"
BB = "https://bluebutton.cms.gov/resources/variables/"
STAMP = "1700000000000"


def uid(name: str) -> str:
    return str(uuid.uuid5(NS, name))


def cc(system, code, display=None):
    """A CodeableConcept with one coding (no display/text when display is None)."""
    if display is None:
        return {"coding": [{"system": system, "code": code}]}
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def urn(resource_id):
    return f"urn:uuid:{resource_id}"


def post(resource, if_none_exist=None, full_url=None):
    entry = {
        "fullUrl": full_url or urn(resource["id"]),
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"]},
    }
    if if_none_exist:
        entry["request"]["ifNoneExist"] = if_none_exist
    return entry


# --- the hospital and practitioner files (batch bundles) -----------------------------------

ORGS = {
    "riverside": ("Riverside General Hospital", "Springfield"),
    "maple": ("Maple Street Clinic", "Shelbyville"),
    "lucia": ("Clínica Santa Lucía", "Lawrence"),
}
PRACTITIONERS = {
    "silva": ("9999000011", "Ana", "Silva", "female", "riverside"),
    "watanabe": ("9999000022", "Kenji", "Watanabe", "male", "maple"),
    "angstrom": ("9999000033", "Zoë", "Ångström", "female", "lucia"),
}


def org_id(key):
    return uid(f"org/{key}")


def loc_id(key):
    return uid(f"loc/{key}")


def org_ref(key):
    return {"reference": f"Organization?identifier={SYNTHEA}|{org_id(key)}", "display": ORGS[key][0]}


def loc_ref(key):
    return {"reference": f"Location?identifier={SYNTHEA}|{loc_id(key)}", "display": ORGS[key][0]}


def prac_ref(key, encoded=False):
    npi, given, family = PRACTITIONERS[key][:3]
    if encoded:  # the query of a conditional reference, percent-encoded as some writers do
        reference = "Practitioner?identifier=http%3A%2F%2Fhl7.org%2Ffhir%2Fsid%2Fus-npi%7C" + npi
    else:
        reference = f"Practitioner?identifier={NPI}|{npi}"
    return {"reference": reference, "display": f"Dr. {given} {family}"}


def hospital_bundle():
    entries = []
    for key, (name, city) in ORGS.items():
        address = {"line": [f"{len(name)} Main Street"], "city": city, "state": "MA", "country": "US"}
        entries.append(post({
            "resourceType": "Organization",
            "id": org_id(key),
            "identifier": [{"system": SYNTHEA, "value": org_id(key)}],
            "active": True,
            "type": [cc("http://terminology.hl7.org/CodeSystem/organization-type", "prov", "Healthcare Provider")],
            "name": name,
            "telecom": [{"system": "phone", "value": "555-0100"}],
            "address": [address],
        }, if_none_exist=f"identifier={SYNTHEA}|{org_id(key)}"))
        entries.append(post({
            "resourceType": "Location",
            "id": loc_id(key),
            "identifier": [{"system": SYNTHEA, "value": loc_id(key)}],
            "status": "active",
            "name": name,
            "address": address,
            "managingOrganization": {"identifier": {"system": SYNTHEA, "value": org_id(key)}, "display": name},
        }, if_none_exist=f"identifier={SYNTHEA}|{loc_id(key)}"))
    return {"resourceType": "Bundle", "type": "batch", "entry": entries}


def practitioner_bundle():
    entries = []
    for key, (npi, given, family, gender, org) in PRACTITIONERS.items():
        entries.append(post({
            "resourceType": "Practitioner",
            "id": uid(f"practitioner/{key}"),
            "identifier": [{"system": NPI, "value": npi}],
            "active": True,
            "name": [{"family": family, "given": [given], "prefix": ["Dr."]}],
            "gender": gender,
            "address": [{"city": ORGS[org][1], "state": "MA", "country": "US"}],
        }, if_none_exist=f"identifier={NPI}|{npi}"))
        entries.append(post({
            "resourceType": "PractitionerRole",
            "id": uid(f"role/{key}"),
            "practitioner": {"identifier": {"system": NPI, "value": npi}, "display": f"Dr. {given} {family}"},
            "organization": {"identifier": {"system": SYNTHEA, "value": org_id(org)}, "display": ORGS[org][0]},
            "code": [cc("http://nucc.org/provider-taxonomy", "208D00000X", "General Practice Physician")],
            "specialty": [cc("http://nucc.org/provider-taxonomy", "208D00000X", "General Practice Physician")],
            "location": [{"identifier": {"system": SYNTHEA, "value": loc_id(org)}, "display": ORGS[org][0]}],
        }))
    return {"resourceType": "Bundle", "type": "batch", "entry": entries}


# --- patient bundles (transaction bundles) -------------------------------------------------

class PatientBundle:
    def __init__(self, key, given, family, gender, birth_date, **extra):
        self.key = key
        self.patient_id = uid(f"patient/{key}")
        self.name = f"{given} {family}"
        self.entries = []
        self.counter = 0
        patient = {
            "resourceType": "Patient",
            "id": self.patient_id,
            "extension": [
                {"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
                 "extension": [{"url": "text", "valueString": extra.pop("race", "White")}]},
                {"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity",
                 "extension": [{"url": "text", "valueString": extra.pop("ethnicity", "Not Hispanic or Latino")}]},
            ],
            "identifier": [
                {"system": SYNTHEA, "value": self.patient_id},
                {"type": cc("http://terminology.hl7.org/CodeSystem/v2-0203", "MR", "Medical Record Number"),
                 "system": "http://hospital.smarthealthit.org", "value": self.patient_id},
            ],
            "name": [{"use": "official", "family": family, "given": [given]}],
            "gender": gender,
            "birthDate": birth_date,
            "address": [{"city": extra.pop("city", "Springfield"), "state": "MA", "country": "US"}],
        }
        patient.update(extra)
        self.add(patient)

    def new_id(self, kind):
        self.counter += 1
        return uid(f"{self.key}/{kind}/{self.counter}")

    def add(self, resource, full_url=None):
        self.entries.append(post(resource, full_url=full_url))
        return resource.get("id") or full_url

    def subject(self):
        return {"reference": urn(self.patient_id), "display": self.name}

    def encounter(self, start, end, code, display, practitioner, org, encoded=False, reason=None):
        encounter = {
            "resourceType": "Encounter",
            "id": self.new_id("encounter"),
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "type": [cc(SNOMED, code, display)],
            "subject": self.subject(),
            "participant": [{
                "type": [cc("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "PPRF", "primary performer")],
                "period": {"start": start, "end": end},
                "individual": prac_ref(practitioner, encoded),
            }],
            "period": {"start": start, "end": end},
            "location": [{"location": loc_ref(org)}],
            "serviceProvider": org_ref(org),
        }
        if reason:
            encounter["reasonCode"] = [cc(SNOMED, *reason)]
        return self.add(encounter)

    def condition(self, encounter, onset, code, display):
        return self.add({
            "resourceType": "Condition",
            "id": self.new_id("condition"),
            "clinicalStatus": cc("http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active"),
            "verificationStatus": cc("http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed", "Confirmed"),
            "category": [cc("http://terminology.hl7.org/CodeSystem/condition-category", "encounter-diagnosis", "Encounter Diagnosis")],
            "code": cc(SNOMED, code, display),
            "subject": {"reference": urn(self.patient_id)},
            "encounter": {"reference": urn(encounter)},
            "onsetDateTime": onset,
            "recordedDate": onset,
        })

    def observation(self, encounter, when, code, display, category="vital-signs", value=None,
                    components=None, absent=None, without_id=False):
        observation = {
            "resourceType": "Observation",
            "id": self.new_id("observation"),
            "status": "final",
            "category": [cc("http://terminology.hl7.org/CodeSystem/observation-category", category, category)],
            "code": cc(LOINC, code, display),
            "subject": {"reference": urn(self.patient_id)},
            "encounter": {"reference": urn(encounter)},
            "effectiveDateTime": when,
            "issued": when,
        }
        if value:
            observation.update(value)
        if components:
            observation["component"] = [{"code": cc(LOINC, c, d), **v} for c, d, v in components]
        if absent:
            observation["dataAbsentReason"] = cc(
                "http://terminology.hl7.org/CodeSystem/data-absent-reason", absent, absent.title())
        if without_id:  # transactions may leave the id to the server; the fullUrl names it
            full_url = urn(observation.pop("id"))
            return self.add(observation, full_url=full_url)
        return self.add(observation)

    def procedure(self, encounter, start, end, code, display, org, reason_ref=None, reason_code=None):
        procedure = {
            "resourceType": "Procedure",
            "id": self.new_id("procedure"),
            "status": "completed",
            "code": cc(SNOMED, code, display),
            "subject": {"reference": urn(self.patient_id)},
            "encounter": {"reference": urn(encounter)},
            "performedPeriod": {"start": start, "end": end},
            "location": loc_ref(org),
        }
        if reason_ref:
            procedure["reasonReference"] = [{"reference": urn(reason_ref)}]
        if reason_code:
            procedure["reasonCode"] = [cc(SNOMED, *reason_code)]
        return self.add(procedure)

    def medication_request(self, encounter, when, practitioner, drug=None, medication=None,
                           reason_ref=None, reason_code=None):
        request = {
            "resourceType": "MedicationRequest",
            "id": self.new_id("medication-request"),
            "status": "active",
            "intent": "order",
            "subject": {"reference": urn(self.patient_id)},
            "encounter": {"reference": urn(encounter)},
            "authoredOn": when,
            "requester": prac_ref(practitioner),
            "dosageInstruction": [{"sequence": 1, "text": "Take once daily", "asNeededBoolean": False}],
        }
        if drug:
            request["medicationCodeableConcept"] = cc(RXNORM, *drug)
        if medication:
            request["medicationReference"] = {"reference": urn(medication)}
        if reason_ref:
            request["reasonReference"] = [{"reference": urn(reason_ref)}]
        if reason_code:
            request["reasonCode"] = [cc(SNOMED, *reason_code)]
        return self.add(request)

    def medication(self, code, display):
        return self.add({
            "resourceType": "Medication",
            "id": self.new_id("medication"),
            "code": cc(RXNORM, code, display),
            "status": "active",
        })

    def immunization(self, encounter, when, code, display, org):
        return self.add({
            "resourceType": "Immunization",
            "id": self.new_id("immunization"),
            "status": "completed",
            "vaccineCode": cc(CVX, code, display),
            "patient": {"reference": urn(self.patient_id)},
            "encounter": {"reference": urn(encounter)},
            "occurrenceDateTime": when,
            "primarySource": True,
            "location": loc_ref(org),
        })

    def claim_and_eob(self, encounter, start, end, practitioner, org, lines, payers,
                      prescription=None):
        """A Claim and its ExplanationOfBenefit. lines: [(system, code, display, amount)];
        payers: payer names, the first one focal (Synthea's shape: contained Coverage)."""
        claim_id = self.new_id("claim")
        total = round(sum(line[3] for line in lines), 2)
        claim = {
            "resourceType": "Claim",
            "id": claim_id,
            "status": "active",
            "type": cc("http://terminology.hl7.org/CodeSystem/claim-type",
                       "pharmacy" if prescription else "professional"),
            "use": "claim",
            "patient": self.subject(),
            "billablePeriod": {"start": start, "end": end},
            "created": end,
            "provider": org_ref(org),
            "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": payers[0]}}],
            "item": [
                {"sequence": n, "productOrService": cc(system, code, display),
                 **({"encounter": [{"reference": urn(encounter)}]} if n == 1 else {}),
                 "net": {"value": amount, "currency": "USD"}}
                for n, (system, code, display, amount) in enumerate(lines, start=1)
            ],
            "total": {"value": total, "currency": "USD"},
        }
        if prescription:
            claim["prescription"] = {"reference": urn(prescription)}
        else:
            claim["facility"] = loc_ref(org)
        self.add(claim)

        contained = [{
            "resourceType": "ServiceRequest", "id": "referral", "status": "completed", "intent": "order",
            "subject": {"reference": urn(self.patient_id)},
            "requester": {"reference": prac_ref(practitioner)["reference"]},
        }]
        insurance = []
        for n, payer in enumerate(payers):
            coverage_id = "coverage" if n == 0 else f"coverage{n + 1}"
            coverage = {"resourceType": "Coverage", "id": coverage_id, "status": "active",
                        "type": {"text": payer}, "beneficiary": {"reference": urn(self.patient_id)},
                        "payor": [{"display": payer}]}
            entry = {"focal": n == 0, "coverage": {"reference": f"#{coverage_id}", "display": payer}}
            if n > 0:  # a secondary payer is named only by its contained Coverage's payor
                del coverage["type"], entry["coverage"]["display"]
            contained.append(coverage)
            insurance.append(entry)
        items, paid = [], 0.0
        for n, (system, code, display, amount) in enumerate(lines, start=1):
            item = {"sequence": n, "productOrService": cc(system, code, display),
                    "servicedPeriod": {"start": start, "end": end},
                    "encounter": [{"reference": urn(encounter)}]}
            if n > 1 or prescription:  # Synthea adjudicates the charged lines
                payment = round(amount * 0.8, 2)
                paid += payment
                item["net"] = {"value": amount, "currency": "USD"}
                item["adjudication"] = [
                    {"category": cc("https://bluebutton.cms.gov/resources/codesystem/adjudication",
                                    BB + code_, display_), "amount": {"value": value, "currency": "USD"}}
                    for code_, display_, value in [
                        ("line_coinsrnc_amt", "Line Beneficiary Coinsurance Amount", round(amount - payment, 2)),
                        ("line_prvdr_pmt_amt", "Line Provider Payment Amount", payment),
                        ("line_sbmtd_chrg_amt", "Line Submitted Charge Amount", amount),
                        ("line_alowd_chrg_amt", "Line Allowed Charge Amount", amount),
                        ("line_bene_ptb_ddctbl_amt", "Line Beneficiary Part B Deductible Amount", 0),
                    ]
                ]
            items.append(item)
        self.add({
            "resourceType": "ExplanationOfBenefit",
            "id": self.new_id("eob"),
            "contained": contained,
            "identifier": [{"system": BB + "clm_id", "value": claim_id}],
            "status": "active",
            "type": claim["type"],
            "use": "claim",
            "patient": {"reference": urn(self.patient_id)},
            "billablePeriod": {"start": start, "end": end},
            "created": end,
            "insurer": {"display": payers[0]},
            "provider": {"reference": prac_ref(practitioner)["reference"]},
            "referral": {"reference": "#referral"},
            "claim": {"reference": urn(claim_id)},
            "outcome": "complete",
            "insurance": insurance,
            "item": items,
            "total": [{"category": cc("http://terminology.hl7.org/CodeSystem/adjudication", "submitted",
                                      "Submitted Amount"), "amount": {"value": total, "currency": "USD"}}],
            "payment": {"amount": {"value": round(paid, 2), "currency": "USD"}},
        })
        return claim_id

    def bundle(self):
        return {"resourceType": "Bundle", "type": "transaction", "entry": self.entries}

    def file_name(self, given, family):
        return f"{given}_{family}_{self.patient_id}.json"


def quantity(value, unit):
    return {"valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}}


def blood_pressure(systolic, diastolic):
    return [("8462-4", "Diastolic Blood Pressure", quantity(diastolic, "mm[Hg]")),
            ("8480-6", "Systolic Blood Pressure", quantity(systolic, "mm[Hg]"))]


def jose():
    p = PatientBundle("jose", "José830", "Muñoz421", "male", "1961-03-14",
                      ethnicity="Hispanic or Latino", city="Lawrence", maritalStatus=cc(
                          "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "M", "Married"))
    t1, t1e = "2024-02-05T09:00:00+00:00", "2024-02-05T09:30:00+00:00"
    e1 = p.encounter(t1, t1e, "162673000", "General examination of patient (procedure)", "watanabe", "maple")
    htn = p.condition(e1, t1, "59621000", "Essential hypertension (disorder)")
    p.observation(e1, t1, "85354-9", "Blood pressure panel with all children optional",
                  components=blood_pressure(148, 92))
    p.observation(e1, t1, "29463-7", "Body weight", value=quantity(88.2, "kg"))
    p.observation(e1, t1, "72166-2", "Tobacco smoking status", category="social-history",
                  value={"valueCodeableConcept": cc(SNOMED, "8517006", "Ex-smoker (person)")})
    p.immunization(e1, t1, "140", "Influenza, seasonal, injectable, preservative free", "maple")
    rx1 = p.medication_request(e1, t1, "watanabe", drug=("314076", "lisinopril 10 MG Oral Tablet"),
                               reason_ref=htn)
    p.claim_and_eob(e1, t1, t1e, "watanabe", "maple", [
        (SNOMED, "162673000", "General examination of patient (procedure)", 0),
        (CVX, "140", "Influenza, seasonal, injectable, preservative free", 136.0),
    ], ["Blue Cross Blue Shield"])
    p.claim_and_eob(e1, t1, t1e, "watanabe", "maple", [
        (RXNORM, "314076", "lisinopril 10 MG Oral Tablet", 12.5),
    ], ["Blue Cross Blue Shield"], prescription=rx1)

    t2, t2e = "2024-06-11T14:00:00+00:00", "2024-06-11T15:10:00+00:00"
    e2 = p.encounter(t2, t2e, "185345009", "Encounter for symptom (procedure)", "silva", "riverside",
                     reason=("10509002", "Acute bronchitis (disorder)"))
    bronchitis = p.condition(e2, t2, "10509002", "Acute bronchitis (disorder)")
    p.observation(e2, t2, "85354-9", "Blood pressure panel with all children optional",
                  components=blood_pressure(135, 85))
    p.procedure(e2, t2, "2024-06-11T14:20:00+00:00", "399208008", "Plain X-ray of chest (procedure)",
                "riverside", reason_ref=bronchitis)
    p.procedure(e2, "2024-06-11T14:30:00+00:00", "2024-06-11T14:40:00+00:00", "23426006",
                "Measurement of respiratory function (procedure)", "riverside",
                reason_code=("10509002", "Acute bronchitis (disorder)"))
    med = p.medication("1043400", "Acetaminophen 21.7 MG/ML / Dextromethorphan Hydrobromide 1 MG/ML Oral Solution")
    p.medication_request(e2, t2, "silva", medication=med, reason_code=("10509002", "Acute bronchitis (disorder)"))
    p.claim_and_eob(e2, t2, t2e, "silva", "riverside", [
        (SNOMED, "185345009", "Encounter for symptom (procedure)", 0),
        (SNOMED, "399208008", "Plain X-ray of chest (procedure)", 412.3),
        (SNOMED, "23426006", "Measurement of respiratory function (procedure)", 98.0),
    ], ["NO_INSURANCE"])
    p.add({
        "resourceType": "ImagingStudy", "id": p.new_id("imaging"), "status": "available",
        "subject": {"reference": urn(p.patient_id)}, "encounter": {"reference": urn(e2)},
        "started": t2, "numberOfSeries": 1, "numberOfInstances": 1,
        "procedureCode": [cc(SNOMED, "399208008", "Plain X-ray of chest (procedure)")],
        "location": loc_ref("riverside"),
        "series": [{"uid": "1.2.840.99999999.1", "number": 1,
                    "modality": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CR",
                                 "display": "Computed Radiography"},
                    "numberOfInstances": 1,
                    "bodySite": {"system": SNOMED, "code": "51185008", "display": "Thoracic structure (body structure)"}}],
    })
    p.add({
        "resourceType": "DiagnosticReport", "id": p.new_id("report"), "status": "final",
        "code": cc(LOINC, "34117-2", "History and physical note"),
        "subject": {"reference": urn(p.patient_id)}, "encounter": {"reference": urn(e2)},
        "effectiveDateTime": t2, "performer": [prac_ref("silva")],
    })
    return p.file_name("José830", "Muñoz421"), p.bundle()


def ciara():
    p = PatientBundle("ciara", "Ciara", "O'Keefe54", "female", "1988-11-02", city="Shelbyville")
    t1, t1e = "2023-09-19T10:00:00+00:00", "2023-09-19T10:45:00+00:00"
    # the practitioner's conditional reference is percent-encoded here
    e1 = p.encounter(t1, t1e, "424441002", "Prenatal initial visit (regime/therapy)", "angstrom", "lucia",
                     encoded=True)
    p.observation(e1, t1, "85354-9", "Blood pressure panel with all children optional",
                  components=blood_pressure(118, 76))
    p.observation(e1, t1, "93025-5", "Protocol for Responding to and Assessing Patients' Assets, Risks, and Experiences [PRAPARE]",
                  category="survey", components=[
                      ("56051-6", "Do you consider yourself Hispanic/Latino?",
                       {"valueCodeableConcept": cc(LOINC, "LA32-8", "No")}),
                      ("32624-9", "Marital status", {"valueCodeableConcept": cc(LOINC, "LA48-4", "Married")}),
                      ("63586-2", "What was your best estimate of the total income of all family members",
                       {"valueQuantity": {"value": 54000, "unit": "/a"}}),
                      ("93031-3", "Have you or any family members you live with been unable to get any of the following",
                       {"valueString": "Médicaments — none missing"}),
                  ])
    # a value and components: the total and its parts
    p.observation(e1, t1, "9272-6", "1 minute Apgar Score", category="exam",
                  value={"valueInteger": 9}, components=[
                      ("32401-2", "1 minute Apgar Color", {"valueInteger": 2}),
                      ("32407-9", "1 minute Apgar Heart rate", {"valueInteger": 2}),
                  ])
    # neither a value nor components
    p.observation(e1, t1, "2339-0", "Glucose [Mass/volume] in Blood", category="laboratory",
                  absent="not-performed")
    # no id, only a fullUrl
    p.observation(e1, t1, "8302-2", "Body Height", value=quantity(167.4, "cm"), without_id=True)
    p.add({
        "resourceType": "AllergyIntolerance", "id": p.new_id("allergy"),
        "clinicalStatus": cc("http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "active", "Active"),
        "verificationStatus": cc("http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "confirmed", "Confirmed"),
        "type": "allergy", "category": ["food"], "criticality": "low",
        "code": cc(SNOMED, "91935009", "Allergy to peanuts (finding)"),
        "patient": {"reference": urn(p.patient_id)}, "recordedDate": t1,
        "reaction": [{"manifestation": [cc(SNOMED, "247472004", "Wheal (finding)")], "severity": "mild"}],
    })
    p.add({
        "resourceType": "CarePlan", "id": p.new_id("careplan"), "status": "active", "intent": "order",
        "category": [cc("http://hl7.org/fhir/us/core/CodeSystem/careplan-category", "assess-plan"),
                     cc(SNOMED, "134435003", "Routine antenatal care (regime/therapy)")],
        "subject": {"reference": urn(p.patient_id)}, "encounter": {"reference": urn(e1)},
        "period": {"start": t1},
        "activity": [{"detail": {"code": cc(SNOMED, "135892000", "Antenatal education"), "status": "in-progress"}}],
    })
    p.add({
        "resourceType": "SupplyDelivery", "id": p.new_id("supply"), "status": "completed",
        "patient": {"reference": urn(p.patient_id)},
        "type": cc("http://terminology.hl7.org/CodeSystem/supply-item-type", "device", "Device"),
        "suppliedItem": {"quantity": {"value": 2},
                         "itemCodeableConcept": cc(SNOMED, "337388004", "Blood glucose testing strips (physical object)")},
        "occurrenceDateTime": t1,
    })
    p.add({
        "resourceType": "Device", "id": p.new_id("device"), "status": "active",
        "udiCarrier": [{"deviceIdentifier": "00844588003288"}], "lotNumber": "L-42", "serialNumber": "S-7",
        "deviceName": [{"name": "Glucometer (physical object)", "type": "user-friendly-name"}],
        "type": cc(SNOMED, "337414009", "Blood glucose meters (physical object)"),
        "patient": {"reference": urn(p.patient_id)},
    })
    # two insurances: Medicare focal, Medicaid secondary
    p.claim_and_eob(e1, t1, t1e, "angstrom", "lucia", [
        (SNOMED, "424441002", "Prenatal initial visit (regime/therapy)", 0),
        (LOINC, "2339-0", "Glucose [Mass/volume] in Blood", 45.75),
    ], ["Medicare", "Medicaid"])
    return p.file_name("Ciara", "O'Keefe54"), p.bundle()


def misaki():
    p = PatientBundle("misaki", "美咲", "佐藤", "female", "1940-05-30", race="Asian", city="Boston",
                      deceasedDateTime="2024-12-24T08:00:00+00:00")
    t1, t1e = "2024-11-03T08:00:00+00:00", "2024-11-03T08:20:00+00:00"
    e1 = p.encounter(t1, t1e, "390906007", "Follow-up encounter (procedure)", "silva", "riverside")
    p.observation(e1, t1, "85354-9", "Blood pressure panel with all children optional",
                  components=blood_pressure(160, 95))
    p.observation(e1, t1, "8867-4", "Heart rate", value=quantity(88, "/min"))
    p.procedure(e1, t1, t1e, "430193006", "Medication reconciliation (procedure)", "riverside")
    p.claim_and_eob(e1, t1, t1e, "silva", "riverside", [
        (SNOMED, "390906007", "Follow-up encounter (procedure)", 0),
        (SNOMED, "430193006", "Medication reconciliation (procedure)", 310.2),
    ], ["Medicaid"])
    return p.file_name("美咲", "佐藤"), p.bundle()


def newborn():
    p = PatientBundle("newborn", "Remy", "Baker", "male", "2025-10-01")
    return p.file_name("Remy", "Baker"), p.bundle()


def dump(bundle):
    """The bundle as JSON with one entry per line: small, and readable in a diff."""
    compact = {"ensure_ascii": False, "separators": (",", ":")}
    entries = ",\n".join("  " + json.dumps(e, **compact) for e in bundle["entry"])
    head = json.dumps({k: v for k, v in bundle.items() if k != "entry"}, **compact)[:-1]
    return f'{head},"entry":[\n{entries}\n]}}\n'


def main(argv):
    out = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent / "bundles"
    out.mkdir(parents=True, exist_ok=True)
    files = [jose(), ciara(), misaki(), newborn(),
             (f"hospitalInformation{STAMP}.json", hospital_bundle()),
             (f"practitionerInformation{STAMP}.json", practitioner_bundle())]
    for name, bundle in files:
        text = dump(bundle)
        (out / name).write_text(text, encoding="utf-8")
        print(f"{len(text.encode()):>7}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
