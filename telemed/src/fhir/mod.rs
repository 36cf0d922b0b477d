//! The consult as FHIR R4 resources for the patient's HIMS record: Patient,
//! Practitioner, Encounter (class `VR`, virtual), DocumentReference (notes and
//! transcript), MedicationRequest (one per prescribed drug), and the
//! follow-up Appointment at a Slot of a Location's Schedule, linked to the
//! Encounter, in one transaction Bundle.
//!
//! Pure functions from plain values to JSON; the resources are checked with
//! the official R4 JSON schema in the tests (`tests/node/fhir-validate.mjs`).

use base64::Engine as _;
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Value, json};

/// The FHIR identifier system of ABHA numbers (ABDM).
pub const ABHA_SYSTEM: &str = "https://healthid.ndhm.gov.in";
/// Careline's systems for the Delhi e-health card, HIMS ids and registrations.
pub const EHEALTH_CARD_SYSTEM: &str = "urn:careline:delhi-ehealth-card";
pub const HIMS_SYSTEM: &str = "urn:careline:hims-patient-id";
pub const REGISTRATION_SYSTEM: &str = "urn:careline:medical-council-registration";
/// Careline's systems for facility codes, contacts (calls and chats) and appointments.
pub const FACILITY_SYSTEM: &str = "urn:careline:facility";
pub const CONTACT_SYSTEM: &str = "urn:careline:contact";
pub const APPOINTMENT_SYSTEM: &str = "urn:careline:appointment";

pub struct FhirPatient<'a> {
    pub name: &'a str,
    /// `male`, `female`, `other` or `unknown`.
    pub sex: &'a str,
    pub birth_date: Option<NaiveDate>,
    pub phone: Option<&'a str>,
    pub email: Option<&'a str>,
    pub abha_number: Option<&'a str>,
    pub ehealth_card: Option<&'a str>,
    pub hims_id: Option<&'a str>,
}

pub struct FhirPractitioner<'a> {
    pub name: &'a str,
    pub qualification: &'a str,
    pub registration_number: &'a str,
}

pub struct FhirConsult<'a> {
    pub contact_id: &'a str,
    pub started: DateTime<Utc>,
    pub ended: Option<DateTime<Utc>>,
    pub reason: &'a str,
    /// The doctor's notes as text, and the transcript when consent allowed one.
    pub notes: &'a str,
    pub transcript: Option<&'a str>,
}

pub struct FhirMedication<'a> {
    pub generic: &'a str,
    pub dosage: String,
}

pub struct FhirFollowUp<'a> {
    pub facility_code: &'a str,
    pub facility_name: &'a str,
    pub department: &'a str,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

fn instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `urn:uuid:` references, stable for one bundle.
struct Ids {
    seed: String,
}

impl Ids {
    fn id(&self, kind: &str) -> String {
        uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, format!("careline:{}:{kind}", self.seed).as_bytes()).to_string()
    }
    fn urn(&self, kind: &str) -> String {
        format!("urn:uuid:{}", self.id(kind))
    }
}

pub fn patient(p: &FhirPatient) -> Value {
    let mut identifiers = Vec::new();
    if let Some(a) = p.abha_number {
        identifiers.push(json!({"system": ABHA_SYSTEM, "value": a}));
    }
    if let Some(c) = p.ehealth_card {
        identifiers.push(json!({"system": EHEALTH_CARD_SYSTEM, "value": c}));
    }
    if let Some(h) = p.hims_id {
        identifiers.push(json!({"system": HIMS_SYSTEM, "value": h}));
    }
    let mut telecom = Vec::new();
    if let Some(phone) = p.phone {
        telecom.push(json!({"system": "phone", "value": phone, "use": "mobile"}));
    }
    if let Some(email) = p.email {
        telecom.push(json!({"system": "email", "value": email}));
    }
    let mut r = json!({
        "resourceType": "Patient",
        "identifier": identifiers,
        "name": [{"text": p.name}],
        "gender": match p.sex { "male" | "female" | "other" => p.sex, _ => "unknown" },
        "telecom": telecom,
    });
    if let Some(b) = p.birth_date {
        r["birthDate"] = json!(b.format("%Y-%m-%d").to_string());
    }
    if r["identifier"].as_array().is_some_and(Vec::is_empty) {
        r.as_object_mut().expect("object").remove("identifier");
    }
    if r["telecom"].as_array().is_some_and(Vec::is_empty) {
        r.as_object_mut().expect("object").remove("telecom");
    }
    r
}

pub fn practitioner(d: &FhirPractitioner) -> Value {
    json!({
        "resourceType": "Practitioner",
        "identifier": [{"system": REGISTRATION_SYSTEM, "value": d.registration_number}],
        "name": [{"text": d.name}],
        "qualification": [{"code": {"text": d.qualification}}],
    })
}

/// A follow-up already booked on the FHIR server: the Appointment as the
/// server holds it, and its version (for `If-Match`).
pub struct BookedFollowUp<'a> {
    /// `Appointment/{id}` on the server.
    pub reference: &'a str,
    pub version: &'a str,
    pub resource: &'a Value,
}

/// The entries of one transaction Bundle, with `urn:uuid:` ids stable for one consult.
struct Entries {
    ids: Ids,
    entries: Vec<Value>,
}

impl Entries {
    /// Adds `resource` as a create (`POST Type`), with `if_none_exist` a conditional create.
    fn create(&mut self, kind: &str, mut resource: Value, if_none_exist: Option<String>) {
        resource["id"] = json!(self.ids.id(kind));
        let rtype = resource["resourceType"].as_str().expect("a resource type").to_owned();
        let mut request = json!({"method": "POST", "url": rtype});
        if let Some(query) = if_none_exist {
            request["ifNoneExist"] = json!(query);
        }
        self.entries.push(json!({"fullUrl": self.ids.urn(kind), "resource": resource, "request": request}));
    }
}

/// The Encounter, the notes and the prescriptions, for a patient and a doctor referenced as given.
fn consult_entries(
    out: &mut Entries,
    patient_ref: &str,
    doctor_ref: &str,
    consult: &FhirConsult,
    medications: &[FhirMedication],
) {
    let encounter_ref = out.ids.urn("encounter");
    let mut period = json!({"start": instant(consult.started)});
    if let Some(end) = consult.ended {
        period["end"] = json!(instant(end));
    }
    out.create(
        "encounter",
        json!({
            "resourceType": "Encounter",
            "status": if consult.ended.is_some() { "finished" } else { "in-progress" },
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "VR", "display": "virtual"},
            "identifier": [{"system": CONTACT_SYSTEM, "value": consult.contact_id}],
            "subject": {"reference": patient_ref},
            "participant": [{"individual": {"reference": doctor_ref}}],
            "period": period,
            "reasonCode": [{"text": consult.reason}],
        }),
        None,
    );
    let mut text = consult.notes.to_owned();
    if let Some(t) = consult.transcript {
        text.push_str("\n\nTranscript\n");
        text.push_str(t);
    }
    out.create(
        "notes",
        json!({
            "resourceType": "DocumentReference",
            "status": "current",
            "type": {"coding": [{"system": "http://loinc.org", "code": "11488-4", "display": "Consult note"}]},
            "subject": {"reference": patient_ref},
            "date": instant(consult.ended.unwrap_or(consult.started)),
            "author": [{"reference": doctor_ref}],
            "content": [{"attachment": {
                "contentType": "text/plain; charset=utf-8",
                "data": base64::engine::general_purpose::STANDARD.encode(text.as_bytes()),
                "title": "Tele-consultation notes",
            }}],
            "context": {"encounter": [{"reference": encounter_ref}]},
        }),
        None,
    );
    for (i, m) in medications.iter().enumerate() {
        out.create(
            &format!("medication-{i}"),
            json!({
                "resourceType": "MedicationRequest",
                "status": "active",
                "intent": "order",
                "medicationCodeableConcept": {"text": m.generic},
                "subject": {"reference": patient_ref},
                "encounter": {"reference": encounter_ref},
                "authoredOn": instant(consult.ended.unwrap_or(consult.started)),
                "requester": {"reference": doctor_ref},
                "dosageInstruction": [{"text": m.dosage}],
            }),
            None,
        );
    }
}

/// The consult, the prescriptions and the follow-up as one transaction Bundle.
pub fn consult_bundle(
    patient_res: &FhirPatient,
    doctor: &FhirPractitioner,
    consult: &FhirConsult,
    medications: &[FhirMedication],
    follow_up: Option<&FhirFollowUp>,
) -> Value {
    let mut out = Entries { ids: Ids { seed: consult.contact_id.to_owned() }, entries: Vec::new() };
    let (patient_ref, doctor_ref, encounter_ref) =
        (out.ids.urn("patient"), out.ids.urn("practitioner"), out.ids.urn("encounter"));
    out.create("patient", patient(patient_res), None);
    out.create("practitioner", practitioner(doctor), None);
    consult_entries(&mut out, &patient_ref, &doctor_ref, consult, medications);
    if let Some(f) = follow_up {
        let (location_ref, schedule_ref, slot_ref) =
            (out.ids.urn("location"), out.ids.urn("schedule"), out.ids.urn("slot"));
        out.create(
            "location",
            json!({
                "resourceType": "Location",
                "identifier": [{"system": FACILITY_SYSTEM, "value": f.facility_code}],
                "name": f.facility_name,
            }),
            None,
        );
        out.create(
            "schedule",
            json!({
                "resourceType": "Schedule",
                "actor": [{"reference": location_ref}],
                "serviceType": [{"text": f.department}],
            }),
            None,
        );
        out.create(
            "slot",
            json!({
                "resourceType": "Slot",
                "schedule": {"reference": schedule_ref},
                "status": "busy",
                "start": instant(f.start),
                "end": instant(f.end),
            }),
            None,
        );
        out.create(
            "appointment",
            json!({
                "resourceType": "Appointment",
                "status": "booked",
                "serviceType": [{"text": f.department}],
                "description": format!("Follow-up of the tele-consultation, {}", f.facility_name),
                "start": instant(f.start),
                "end": instant(f.end),
                "slot": [{"reference": slot_ref}],
                "supportingInformation": [{"reference": encounter_ref}],
                "participant": [
                    {"actor": {"reference": patient_ref}, "status": "accepted"},
                    {"actor": {"reference": doctor_ref}, "status": "accepted"},
                    {"actor": {"reference": location_ref}, "status": "accepted"},
                ],
            }),
            None,
        );
    }
    json!({"resourceType": "Bundle", "type": "transaction", "entry": out.entries})
}

/// The consult for a FHIR server that already holds the patient (referenced
/// as `patient_ref`, e.g. `Patient/17`) and, when there is one, the booked
/// follow-up. The doctor is a conditional create (no second Practitioner
/// with the same registration number, FHIR R4 RESTful API 3.1.0.8.1); the
/// follow-up Appointment is updated only if the server still holds the
/// version it was read at (`If-Match`, 3.1.0.7.3), now linked to the
/// Encounter and with the doctor as a participant. One transaction: the
/// server writes all of it or none.
pub fn consult_bundle_for_server(
    patient_ref: &str,
    doctor: &FhirPractitioner,
    consult: &FhirConsult,
    medications: &[FhirMedication],
    follow_up: Option<&BookedFollowUp>,
) -> Value {
    let mut out = Entries { ids: Ids { seed: consult.contact_id.to_owned() }, entries: Vec::new() };
    let (doctor_ref, encounter_ref) = (out.ids.urn("practitioner"), out.ids.urn("encounter"));
    let if_none = format!("identifier={REGISTRATION_SYSTEM}|{}", doctor.registration_number);
    out.create("practitioner", practitioner(doctor), Some(if_none));
    consult_entries(&mut out, patient_ref, &doctor_ref, consult, medications);
    if let Some(f) = follow_up {
        let mut appointment = f.resource.clone();
        if let Some(o) = appointment.as_object_mut() {
            o.remove("meta");
        }
        let info = appointment["supportingInformation"].as_array().cloned().unwrap_or_default();
        let mut info: Vec<Value> =
            info.into_iter().filter(|r| r["reference"].as_str().is_some_and(|r| !r.starts_with("urn:"))).collect();
        info.push(json!({"reference": encounter_ref}));
        appointment["supportingInformation"] = json!(info);
        let mut participants = appointment["participant"].as_array().cloned().unwrap_or_default();
        participants.push(json!({"actor": {"reference": doctor_ref, "display": doctor.name}, "status": "accepted"}));
        appointment["participant"] = json!(participants);
        out.entries.push(json!({
            "resource": appointment,
            "request": {"method": "PUT", "url": f.reference, "ifMatch": format!("W/\"{}\"", f.version)},
        }));
    }
    json!({"resourceType": "Bundle", "type": "transaction", "entry": out.entries})
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_consult_bundle_links_everything_to_the_encounter() {
        let t = Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).unwrap();
        let p = FhirPatient {
            name: "Ramesh Kumar",
            sex: "male",
            birth_date: NaiveDate::from_ymd_opt(1971, 3, 14),
            phone: Some("+919810012345"),
            email: None,
            abha_number: Some("91-4521-7788-1203"),
            ehealth_card: Some("DL-EHC-100234"),
            hims_id: None,
        };
        let d =
            FhirPractitioner { name: "Dr. Anil Mehta", qualification: "MBBS, MD", registration_number: "DMC/R/10237" };
        let c = FhirConsult {
            contact_id: "c-1",
            started: t,
            ended: Some(t),
            reason: "Cough",
            notes: "Acute bronchitis",
            transcript: None,
        };
        let meds =
            [FhirMedication { generic: "AMOXICILLIN", dosage: "500 mg, 1 capsule three times a day, 5 days".into() }];
        let f = FhirFollowUp {
            facility_code: "DL-H-LNH",
            facility_name: "Lok Nayak Hospital",
            department: "general medicine",
            start: t,
            end: t,
        };
        let b = consult_bundle(&p, &d, &c, &meds, Some(&f));
        let entries = b["entry"].as_array().unwrap();
        let of = |t: &str| entries.iter().find(|e| e["resource"]["resourceType"] == t).unwrap();
        let encounter = of("Encounter");
        assert_eq!(encounter["resource"]["class"]["code"], "VR");
        assert_eq!(of("Patient")["resource"]["identifier"][0]["system"], ABHA_SYSTEM);
        assert_eq!(of("MedicationRequest")["resource"]["encounter"]["reference"], encounter["fullUrl"]);
        let appointment = &of("Appointment")["resource"];
        assert_eq!(appointment["status"], "booked");
        assert_eq!(appointment["supportingInformation"][0]["reference"], encounter["fullUrl"]);
        assert_eq!(appointment["participant"].as_array().unwrap().len(), 3);
        // The same consult gives the same ids.
        assert_eq!(b, consult_bundle(&p, &d, &c, &meds, Some(&f)));
    }
}
