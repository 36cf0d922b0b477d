//! The HIMS as a FHIR R4 server, over its RESTful API
//! (<https://hl7.org/fhir/R4/http.html>).
//!
//! Reads are searches (`Patient?identifier=system|value`, `Patient?telecom=`,
//! `RelatedPerson?patient=`, `Location`, `HealthcareService?location=`,
//! `Schedule?actor=`, `Slot?schedule=&status=free&start=ge..`); what they
//! find is copied into the store under Careline's ids (see the module
//! above) only after every answer was read and understood, so a server
//! that fails half-way leaves nothing behind. Writes are transactions
//! (`POST [base]` with a `transaction` Bundle), so the server applies all of
//! one or none: a booking marks the Slot `busy` only if it is still the
//! version that was read as free (`If-Match`), and creates the Appointment
//! in the same transaction; two bookings of one slot cannot both succeed.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use telemed::fhir::{ABHA_SYSTEM, BookedFollowUp, EHEALTH_CARD_SYSTEM, consult_bundle_for_server};

use super::{Booking, Consult, Hims, HimsError, Result, not_found};
use crate::store::{
    Appointment, ConsultRecord, Facility, FacilityQuery, HimsKind, NewPatient, Patient, PatientId, PatientKey, Slot,
    Store, StoreError,
};

const FHIR_JSON: &str = "application/fhir+json";
/// Search results per page asked for; Careline reads the first page.
const PAGE: &str = "500";

/// A FHIR R4 server as the HIMS.
#[derive(Clone)]
pub struct FhirHims {
    store: Store,
    /// The service base URL, without a trailing slash, e.g. `https://hims.example.org/fhir`.
    base: String,
    http: reqwest::Client,
}

/// A FHIR answer: its status, its JSON and its `ETag`.
struct Answer {
    status: StatusCode,
    body: Value,
}

impl FhirHims {
    pub fn new(store: Store, base: &str) -> anyhow::Result<Self> {
        let base = base.trim_end_matches('/').to_owned();
        let url = reqwest::Url::parse(&base).map_err(|e| anyhow::anyhow!("--hims-fhir-url `{base}`: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            anyhow::bail!("--hims-fhir-url `{base}` is not an http(s) URL");
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(20))
            .build()?;
        Ok(FhirHims { store, base, http })
    }

    fn unreachable(&self, e: reqwest::Error) -> HimsError {
        HimsError::Upstream(format!("the HIMS at {} could not be reached: {e}", self.base))
    }

    /// Sends a request and reads a FHIR JSON answer; a non-2xx answer is an error saying what the server said.
    async fn send(&self, request: reqwest::RequestBuilder, what: &str) -> Result<Answer> {
        let res = request.header(reqwest::header::ACCEPT, FHIR_JSON).send().await.map_err(|e| self.unreachable(e))?;
        let status = res.status();
        let text = res.text().await.map_err(|e| self.unreachable(e))?;
        let body: Option<Value> = serde_json::from_str(&text).ok().filter(|v: &Value| v["resourceType"].is_string());
        if status.is_success() {
            let body = body.ok_or_else(|| {
                HimsError::Upstream(format!(
                    "the HIMS answered {what} with something that is not FHIR JSON: {}",
                    snippet(&text)
                ))
            })?;
            return Ok(Answer { status, body });
        }
        let said = body.as_ref().and_then(outcome_text).unwrap_or_else(|| snippet(&text));
        Err(match status {
            StatusCode::NOT_FOUND => HimsError::NotFound(format!("{what} in the HIMS ({said})")),
            StatusCode::CONFLICT | StatusCode::PRECONDITION_FAILED => {
                HimsError::Refused(format!("the HIMS refused {what}: it changed meanwhile ({status}: {said})"))
            }
            _ => HimsError::Upstream(format!("the HIMS answered {what} with {status}: {said}")),
        })
    }

    /// The resources a search finds (the first page).
    async fn search(&self, rtype: &str, params: &[(&str, String)]) -> Result<Vec<Value>> {
        let mut query: Vec<(&str, String)> = params.to_vec();
        query.push(("_count", PAGE.into()));
        let what = format!("the search {rtype}?{}", serde_urlencoded::to_string(params).unwrap_or_default());
        let answer = self.send(self.http.get(format!("{}/{rtype}", self.base)).query(&query), &what).await?;
        if answer.body["resourceType"] != "Bundle" {
            return Err(HimsError::Upstream(format!(
                "the HIMS answered {what} with a {} instead of a Bundle",
                answer.body["resourceType"]
            )));
        }
        Ok(answer.body["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e["resource"].clone())
            .filter(|r| r["resourceType"] == rtype)
            .collect())
    }

    /// Reads one resource and its version (`meta.versionId`).
    async fn read(&self, reference: &str) -> Result<(Value, String)> {
        let answer = self.send(self.http.get(format!("{}/{reference}", self.base)), reference).await?;
        let version = answer.body["meta"]["versionId"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| HimsError::Upstream(format!("the HIMS sent {reference} without meta.versionId")))?;
        Ok((answer.body, version))
    }

    /// Posts a transaction Bundle; the answer is the `transaction-response` with one entry per entry sent.
    async fn transaction(&self, bundle: &Value, what: &str) -> Result<Vec<Value>> {
        let request =
            self.http.post(&self.base).header(reqwest::header::CONTENT_TYPE, FHIR_JSON).body(bundle.to_string());
        let answer = self.send(request, what).await?;
        let sent = bundle["entry"].as_array().map_or(0, Vec::len);
        let entries = answer.body["entry"].as_array().cloned().unwrap_or_default();
        if answer.body["type"] != "transaction-response" || entries.len() != sent || !answer.status.is_success() {
            return Err(HimsError::Upstream(format!(
                "the HIMS answered {what} with something that is not a transaction-response of {sent} entries"
            )));
        }
        Ok(entries)
    }

    /// Reads patients and their families from the server, then copies them into the store.
    async fn fetch_patients(&self, params: &[(&str, String)]) -> Result<Vec<Patient>> {
        let found = self.search("Patient", params).await?;
        let mut patients = Vec::new();
        for r in &found {
            patients.push(patient_of(r)?);
        }
        // Family (FHIR R4 5.2): a RelatedPerson of each patient, and the
        // relative's own Patient linked to that RelatedPerson (`Patient.link`, `seealso`).
        let mut family: Vec<(String, String, String)> = Vec::new(); // (patient id, relative id, relation)
        let mut relatives: HashMap<String, NewPatient> = HashMap::new();
        if !found.is_empty() {
            let of =
                found.iter().filter_map(|r| r["id"].as_str()).map(|id| format!("Patient/{id}")).collect::<Vec<_>>();
            let related = match self.search("RelatedPerson", &[("patient", of.join(","))]).await {
                Ok(r) => r,
                // A server without RelatedPerson has no family to tell.
                Err(HimsError::NotFound(_)) => Vec::new(),
                Err(e) => return Err(e),
            };
            let links: Vec<String> =
                related.iter().filter_map(|r| r["id"].as_str()).map(|id| format!("RelatedPerson/{id}")).collect();
            if !links.is_empty() {
                let people = self.search("Patient", &[("link", links.join(","))]).await?;
                for rp in &related {
                    let (Some(rp_id), Some(whose)) = (rp["id"].as_str(), rp["patient"]["reference"].as_str()) else {
                        continue;
                    };
                    let rp_ref = format!("RelatedPerson/{rp_id}");
                    let relative = people.iter().find(|p| {
                        p["link"].as_array().into_iter().flatten().any(|l| l["other"]["reference"] == rp_ref.as_str())
                    });
                    let Some(relative) = relative else { continue };
                    let relation = rp["relationship"][0]["text"]
                        .as_str()
                        .or(rp["relationship"][0]["coding"][0]["display"].as_str())
                        .or(rp["relationship"][0]["coding"][0]["code"].as_str())
                        .unwrap_or("relative")
                        .to_lowercase();
                    let rel = patient_of(relative)?;
                    let rel_id = rel.hims_patient_id.clone().unwrap_or_default();
                    family.push((whose.trim_start_matches("Patient/").to_owned(), rel_id.clone(), relation));
                    relatives.insert(rel_id, rel);
                }
            }
        }
        // Everything was read and understood: now the working copy.
        let mut local: HashMap<String, PatientId> = HashMap::new();
        for p in patients.iter().chain(relatives.values()) {
            let id = p.hims_patient_id.clone().unwrap_or_default();
            if let std::collections::hash_map::Entry::Vacant(slot) = local.entry(id) {
                slot.insert(self.store.sync_patient(p).await.map_err(conflict)?.patient_id);
            }
        }
        for (whose, relative, relation) in &family {
            let (Some(a), Some(b)) = (local.get(whose), local.get(relative)) else { continue };
            if a == b {
                continue;
            }
            // The reverse relation, when the server told it too.
            let reverse = family
                .iter()
                .find(|(w, r, _)| w == relative && r == whose)
                .map(|(_, _, rel)| rel.as_str())
                .unwrap_or("relative");
            self.store.link_family(*a, *b, relation, reverse).await?;
        }
        let mut out = Vec::new();
        for p in &patients {
            out.push(self.store.patient(local[p.hims_patient_id.as_deref().unwrap_or_default()]).await?);
        }
        Ok(out)
    }

    /// The server's Location for a local facility.
    async fn location_of(&self, facility: i64) -> Result<String> {
        self.store
            .hims_ref(HimsKind::Facility, facility)
            .await?
            .ok_or_else(|| HimsError::NotFound(format!("facility {facility}")))
    }
}

/// A unique-constraint clash while copying a HIMS patient (two HIMS
/// patients with one card, say) is the HIMS's data, not Careline's fault.
fn conflict(e: StoreError) -> HimsError {
    match e {
        StoreError::Conflict(what) => {
            HimsError::Upstream(format!("the HIMS sent a patient whose {what} belongs to another patient"))
        }
        other => other.into(),
    }
}

/// A Patient from the server, with its id on the server as the HIMS id.
fn patient_of(r: &Value) -> Result<NewPatient> {
    let id = r["id"].as_str().filter(|s| !s.is_empty());
    let mut p = super::patient_from_fhir(r)
        .map_err(|e| HimsError::Upstream(format!("the HIMS sent a Patient Careline cannot read: {e}")))?;
    p.hims_patient_id =
        Some(id.ok_or_else(|| HimsError::Upstream("the HIMS sent a Patient without an id".into()))?.to_owned());
    Ok(p)
}

/// What an OperationOutcome says, in one line.
fn outcome_text(body: &Value) -> Option<String> {
    if body["resourceType"] != "OperationOutcome" {
        return None;
    }
    let issues: Vec<String> = body["issue"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["details"]["text"].as_str().or(i["diagnostics"].as_str()).or(i["code"].as_str()))
        .map(str::to_owned)
        .collect();
    (!issues.is_empty()).then(|| issues.join("; "))
}

fn snippet(text: &str) -> String {
    let t: String = text.chars().take(200).collect();
    if t.trim().is_empty() { "an empty body".into() } else { format!("`{}`", t.trim()) }
}

fn instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn time_of(v: &Value, what: &str) -> Result<DateTime<Utc>> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| HimsError::Upstream(format!("the HIMS sent {what} without a valid instant")))
}

/// `Type/id` from a `response.location` such as `Type/id/_history/1` or an absolute URL.
fn reference_of(location: &str, rtype: &str) -> Option<String> {
    let parts: Vec<&str> = location.split('/').collect();
    let at = parts.iter().rposition(|p| *p == rtype)?;
    parts.get(at + 1).filter(|id| !id.is_empty()).map(|id| format!("{rtype}/{id}"))
}

fn text_of(concepts: &Value) -> Option<String> {
    let c = &concepts[0];
    c["text"].as_str().or(c["coding"][0]["display"].as_str()).or(c["coding"][0]["code"].as_str()).map(str::to_owned)
}

#[async_trait::async_trait]
impl Hims for FhirHims {
    fn name(&self) -> String {
        self.base.clone()
    }

    async fn find_patients(&self, key: &PatientKey) -> Result<Vec<Patient>> {
        let param = match key {
            PatientKey::EhealthCard(c) => ("identifier", format!("{EHEALTH_CARD_SYSTEM}|{c}")),
            PatientKey::Abha(a) => ("identifier", format!("{ABHA_SYSTEM}|{}", a.as_str())),
            PatientKey::Phone(p) => ("telecom", format!("phone|{p}")),
            PatientKey::HimsId(id) => ("_id", id.clone()),
        };
        self.fetch_patients(&[param]).await
    }

    async fn search_facilities(&self, query: &FacilityQuery) -> Result<Vec<Facility>> {
        let locations = self.search("Location", &[]).await?;
        let ids: Vec<&str> = locations.iter().filter_map(|l| l["id"].as_str()).collect();
        // The services offered at each Location, asked for a few Locations at a time.
        let mut services: HashMap<String, Vec<String>> = HashMap::new();
        for chunk in ids.chunks(50) {
            let at = chunk.iter().map(|id| format!("Location/{id}")).collect::<Vec<_>>().join(",");
            for s in self.search("HealthcareService", &[("location", at)]).await? {
                let Some(name) = s["name"].as_str() else { continue };
                for l in s["location"].as_array().into_iter().flatten() {
                    if let Some(r) = l["reference"].as_str() {
                        services.entry(r.to_owned()).or_default().push(name.to_owned());
                    }
                }
            }
        }
        let mut facilities = Vec::new();
        for l in &locations {
            let Some(id) = l["id"].as_str() else {
                return Err(HimsError::Upstream("the HIMS sent a Location without an id".into()));
            };
            let reference = format!("Location/{id}");
            let offered = services.get(&reference).cloned().unwrap_or_default();
            let f = super::location_from_fhir(l, offered).map_err(|e| {
                HimsError::Upstream(format!("the HIMS sent {reference}, which Careline cannot read: {e}"))
            })?;
            facilities.push((reference, f));
        }
        let mut known = HashSet::new();
        for (reference, f) in &facilities {
            let local = self.store.upsert_facility(f).await?;
            self.store.set_hims_ref(HimsKind::Facility, local, reference).await?;
            known.insert(local);
        }
        // The search itself (words in Hindi or English, kind, beds) runs on the working copy.
        let all = self.store.search_facilities(query).await?;
        Ok(all.into_iter().filter(|f| known.contains(&f.facility_id)).collect())
    }

    async fn facility(&self, id: i64) -> Result<Facility> {
        self.location_of(id).await?;
        self.store.facility(id).await.map_err(not_found(format!("facility {id}")))
    }

    async fn free_slots(
        &self,
        facility: i64,
        department: Option<&str>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Slot>> {
        let location = self.location_of(facility).await?;
        let schedules = self.search("Schedule", &[("actor", location)]).await?;
        // A Schedule's department is its service type (else its specialty).
        let mut departments: HashMap<String, String> = HashMap::new();
        for s in &schedules {
            let Some(id) = s["id"].as_str() else { continue };
            let dept =
                text_of(&s["serviceType"]).or_else(|| text_of(&s["specialty"])).unwrap_or_else(|| "general".into());
            if department.is_none_or(|d| d.eq_ignore_ascii_case(&dept)) {
                departments.insert(format!("Schedule/{id}"), dept.to_lowercase());
            }
        }
        if departments.is_empty() {
            return Ok(Vec::new());
        }
        let on = departments.keys().cloned().collect::<Vec<_>>().join(",");
        let slots = self
            .search(
                "Slot",
                &[
                    ("schedule", on),
                    ("status", "free".into()),
                    // One bound only: some servers refuse a repeated parameter; the end is checked below.
                    ("start", format!("ge{}", instant(from))),
                ],
            )
            .await?;
        let mut read = Vec::new();
        for s in &slots {
            let (Some(id), Some(schedule)) = (s["id"].as_str(), s["schedule"]["reference"].as_str()) else {
                return Err(HimsError::Upstream("the HIMS sent a Slot without an id or a schedule".into()));
            };
            let Some(dept) = departments.get(schedule) else { continue };
            let (start, end) = (time_of(&s["start"], "a Slot's start")?, time_of(&s["end"], "a Slot's end")?);
            if s["status"] != "free" || end <= start || start < from || start >= to {
                continue;
            }
            read.push((format!("Slot/{id}"), dept.clone(), start, end));
        }
        let mut out = Vec::new();
        for (reference, dept, start, end) in read {
            // A FHIR Slot is one appointment (R4 Slot: `busy` once booked).
            // The server's word wins: a slot already in the working copy takes its end.
            let slot = self.store.add_slot(facility, &dept, start, end, 1).await?;
            self.store.set_hims_ref(HimsKind::Slot, slot.slot_id, &reference).await?;
            if slot.booked < slot.capacity {
                out.push(slot);
            }
        }
        out.sort_by_key(|s| (s.starts_at, s.department.clone()));
        Ok(out)
    }

    async fn book(&self, b: &Booking<'_>) -> Result<Appointment> {
        let slot = self.store.slot(b.slot_id).await.map_err(not_found(format!("slot {}", b.slot_id)))?;
        let slot_ref = self
            .store
            .hims_ref(HimsKind::Slot, slot.slot_id)
            .await?
            .ok_or_else(|| HimsError::NotFound(format!("slot {} in the HIMS", slot.slot_id)))?;
        if slot.starts_at <= b.now {
            return Err(HimsError::Refused(format!("slot {} has already started", slot.slot_id)));
        }
        if slot.booked >= slot.capacity {
            return Err(HimsError::Refused(format!("slot {} is full", slot.slot_id)));
        }
        let patient_ref = b.patient.hims_patient_id.as_deref().map(|id| format!("Patient/{id}")).ok_or_else(|| {
            HimsError::Refused(format!(
                "patient {} has no record in the HIMS: find them by card, ABHA number or phone first",
                b.patient.patient_id.0
            ))
        })?;
        let location = self.location_of(slot.facility_id).await?;
        let (mut current, version) = self.read(&slot_ref).await?;
        if current["status"] != "free" {
            return Err(HimsError::Refused(format!("slot {} is no longer free in the HIMS", slot.slot_id)));
        }
        if let Some(o) = current.as_object_mut() {
            o.remove("meta");
        }
        current["status"] = json!("busy");
        let appointment_urn = format!("urn:uuid:{}", uuid::Uuid::new_v4());
        let appointment = json!({
            "resourceType": "Appointment",
            "status": "booked",
            "serviceType": [{"text": slot.department}],
            "description": "Booked through the Careline helpline",
            "start": instant(slot.starts_at),
            "end": instant(slot.ends_at),
            "created": b.now.format("%Y-%m-%d").to_string(),
            "slot": [{"reference": slot_ref}],
            "participant": [
                {"actor": {"reference": patient_ref, "display": b.patient.name}, "status": "accepted"},
                {"actor": {"reference": location}, "status": "accepted"},
            ],
        });
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": current, "request": {"method": "PUT", "url": slot_ref, "ifMatch": format!("W/\"{version}\"")}},
            {"fullUrl": appointment_urn, "resource": appointment, "request": {"method": "POST", "url": "Appointment"}},
        ]});
        let what = format!("the booking of {slot_ref}");
        let answers = self.transaction(&bundle, &what).await?;
        let appointment_ref =
            answers[1]["response"]["location"].as_str().and_then(|l| reference_of(l, "Appointment")).ok_or_else(
                || HimsError::Upstream(format!("the HIMS answered {what} without the Appointment's location")),
            )?;
        match self.store.book_appointment(slot.slot_id, b.patient.patient_id, b.booked_by, b.contact_id, b.now).await {
            Ok(booked) => {
                self.store.set_hims_ref(HimsKind::Appointment, booked.appointment_id, &appointment_ref).await?;
                Ok(booked)
            }
            Err(e) => {
                // The server booked it but Careline could not keep it: take the booking back there.
                let mut undo = bundle.clone();
                undo["entry"][0]["resource"]["status"] = json!("free");
                undo["entry"][0]["request"] = json!({"method": "PUT", "url": slot_ref});
                undo["entry"][1]["resource"]["status"] = json!("cancelled");
                undo["entry"][1]["resource"]["id"] = json!(appointment_ref.trim_start_matches("Appointment/"));
                undo["entry"][1]["request"] = json!({"method": "PUT", "url": appointment_ref});
                if let Some(o) = undo["entry"][1].as_object_mut() {
                    o.remove("fullUrl");
                }
                if let Err(undo_err) = self.transaction(&undo, "the cancellation of a booking").await {
                    tracing::error!(%appointment_ref, error = %undo_err, "a HIMS booking Careline could not keep was not taken back");
                }
                Err(match e {
                    StoreError::Refused(why) => HimsError::Refused(why),
                    other => other.into(),
                })
            }
        }
    }

    async fn record_consult(&self, c: &Consult) -> Result<ConsultRecord> {
        if self.store.consult_record(&c.contact_id).await?.is_some() {
            return Err(HimsError::Refused(format!("the consult on contact {} is already recorded", c.contact_id)));
        }
        let patient_ref = c.patient.hims_patient_id.as_deref().map(|id| format!("Patient/{id}")).ok_or_else(|| {
            HimsError::Refused(format!(
                "patient {} has no record in the HIMS: find them by card, ABHA number or phone first",
                c.patient.patient_id.0
            ))
        })?;
        let booked = match &c.follow_up {
            Some((_, a)) => {
                let reference =
                    self.store.hims_ref(HimsKind::Appointment, a.appointment_id).await?.ok_or_else(|| {
                        HimsError::Refused(format!(
                            "the follow-up appointment {} is not booked in the HIMS",
                            a.appointment_id
                        ))
                    })?;
                let (resource, version) = self.read(&reference).await?;
                Some((reference, resource, version))
            }
            None => None,
        };
        let follow_up =
            booked.as_ref().map(|(reference, resource, version)| BookedFollowUp { reference, version, resource });
        let bundle = consult_bundle_for_server(
            &patient_ref,
            &super::practitioner_of(&c.doctor),
            &super::consult_of(c),
            &super::medications_of(c),
            follow_up.as_ref(),
        );
        let what = format!("the consult of contact {}", c.contact_id);
        let answers = self.transaction(&bundle, &what).await?;
        let at = bundle["entry"]
            .as_array()
            .and_then(|e| e.iter().position(|e| e["resource"]["resourceType"] == "Encounter"))
            .unwrap_or_default();
        let encounter_ref = answers[at]["response"]["location"]
            .as_str()
            .and_then(|l| reference_of(l, "Encounter"))
            .ok_or_else(|| HimsError::Upstream(format!("the HIMS answered {what} without the Encounter's location")))?;
        let record = ConsultRecord {
            contact_id: c.contact_id.clone(),
            hims: self.name(),
            encounter_ref,
            bundle,
            recorded_by: c.recorded_by,
            recorded_at: c.now,
        };
        self.store.save_consult_record(&record).await?;
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_from_locations() {
        assert_eq!(reference_of("Appointment/12/_history/1", "Appointment").as_deref(), Some("Appointment/12"));
        assert_eq!(reference_of("http://h/fhir/Encounter/9/_history/2", "Encounter").as_deref(), Some("Encounter/9"));
        assert_eq!(reference_of("Slot/3", "Encounter"), None);
    }

    #[test]
    fn operation_outcomes_in_one_line() {
        let o = json!({"resourceType": "OperationOutcome", "issue": [
            {"severity": "error", "code": "invalid", "details": {"text": "Slot.start is required"}},
            {"severity": "error", "code": "conflict", "diagnostics": "version 2 is not 1"}]});
        assert_eq!(outcome_text(&o).as_deref(), Some("Slot.start is required; version 2 is not 1"));
        assert_eq!(outcome_text(&json!({"resourceType": "Patient"})), None);
    }
}
