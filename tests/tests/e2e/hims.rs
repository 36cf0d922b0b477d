//! The HIMS as a FHIR R4 server (`--hims-fhir-url`), end to end: a real
//! HTTP FHIR server on loopback (`tests/node/fhir-server.mjs`: the
//! node-fhir-server-core REST framework over the test's own in-memory
//! storage, which validates every write against the official R4 JSON
//! schema), seeded with Delhi patients, facilities and slots; the real
//! `careline` binary in front of it; everything checked through
//! careline's HTTP API and read back from the FHIR server.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tests::{Careline, client, repo_root};

/// The FHIR server, stopped (killed) on drop; it also exits by itself when its stdin closes or after 15 minutes.
struct FhirServer {
    child: Child,
    base: String,
}

impl FhirServer {
    fn start() -> FhirServer {
        let node = repo_root().join("tests/node");
        assert!(
            node.join("node_modules/@asymmetrik/node-fhir-server-core").exists(),
            "the FHIR server framework is missing: run `npm ci --prefix tests/node` (bash .ci/run does)"
        );
        let mut child = Command::new("node")
            .arg(node.join("fhir-server.mjs"))
            .current_dir(&node)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start node");
        let (tx, rx) = std::sync::mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    if let Some(base) = line.strip_prefix("fhir listening on ") {
                        return FhirServer { child, base: base.trim().to_owned() };
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("the FHIR server did not start within 30 s");
                }
            }
        }
    }

    async fn get(&self, path: &str) -> Value {
        let res = client().get(format!("{}/{path}", self.base)).send().await.expect("FHIR read");
        assert!(res.status().is_success(), "GET {path}: {}", res.status());
        res.json().await.expect("FHIR JSON")
    }

    /// The resources a search finds.
    async fn search(&self, path: &str) -> Vec<Value> {
        let bundle = self.get(path).await;
        bundle["entry"].as_array().cloned().unwrap_or_default().into_iter().map(|e| e["resource"].clone()).collect()
    }

    async fn transaction(&self, entries: Vec<Value>) -> Value {
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
        let res = client()
            .post(&self.base)
            .header("content-type", "application/fhir+json")
            .body(bundle.to_string())
            .send()
            .await
            .expect("FHIR transaction");
        let status = res.status();
        let body: Value = res.json().await.expect("FHIR JSON");
        assert!(status.is_success(), "seed transaction: {status} {body}");
        body
    }
}

impl Drop for FhirServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn create(urn: &str, resource: Value) -> Value {
    let rtype = resource["resourceType"].as_str().unwrap().to_owned();
    json!({"fullUrl": format!("urn:uuid:{urn}"), "resource": resource, "request": {"method": "POST", "url": rtype}})
}

fn instant(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

const CARD: &str = "urn:careline:delhi-ehealth-card";
const ABHA: &str = "https://healthid.ndhm.gov.in";

/// Two Delhi hospitals with their services and OPD schedules, a family of
/// three sharing a phone, and slots: four free in two days, one busy, one past.
async fn seed(fhir: &FhirServer) -> chrono::DateTime<chrono::Utc> {
    let day = (chrono::Utc::now() + chrono::Duration::days(2)).date_naive();
    let at = |h: u32, m: u32| day.and_hms_opt(h, m, 0).unwrap().and_utc();
    let past = chrono::Utc::now() - chrono::Duration::hours(2);
    let person = |id: &str, name: &str, gender: &str, birth: &str, ids: Vec<Value>, link: Option<&str>| {
        let mut p = json!({"resourceType": "Patient", "identifier": ids, "name": [{"text": name}], "gender": gender,
            "birthDate": birth, "telecom": [{"system": "phone", "value": "+919811122233", "use": "mobile"}]});
        if let Some(l) = link {
            p["link"] = json!([{"other": {"reference": format!("urn:uuid:{l}")}, "type": "seealso"}]);
        }
        create(id, p)
    };
    let related = |id: &str, of: &str, relation: &str, name: &str| {
        create(
            id,
            json!({"resourceType": "RelatedPerson", "patient": {"reference": format!("urn:uuid:{of}")},
                "relationship": [{"text": relation}], "name": [{"text": name}]}),
        )
    };
    let slot = |id: &str, schedule: &str, start: chrono::DateTime<chrono::Utc>, status: &str| {
        create(
            id,
            json!({"resourceType": "Slot", "schedule": {"reference": format!("urn:uuid:{schedule}")}, "status": status,
                "start": instant(start), "end": instant(start + chrono::Duration::minutes(15))}),
        )
    };
    fhir.transaction(vec![
        person(
            "p-mohan",
            "Mohan Lal",
            "male",
            "1971-03-14",
            vec![
                json!({"system": CARD, "value": "DL-EHC-300101"}),
                json!({"system": ABHA, "value": "91-7733-2211-0045"}),
            ],
            Some("rp-mohan-of-kusum"),
        ),
        person(
            "p-kusum",
            "Kusum Lata",
            "female",
            "1975-08-02",
            vec![json!({"system": CARD, "value": "DL-EHC-300102"})],
            Some("rp-kusum-of-mohan"),
        ),
        related("rp-kusum-of-mohan", "p-mohan", "wife", "Kusum Lata"),
        related("rp-mohan-of-kusum", "p-kusum", "husband", "Mohan Lal"),
        create(
            "l-aruna",
            json!({"resourceType": "Location", "status": "active",
                "identifier": [{"system": "urn:careline:facility", "value": "DL-H-AAAGH"}],
                "name": "Aruna Asaf Ali Government Hospital", "type": [{"text": "hospital"}],
                "address": {"text": "5 Rajpur Road, Civil Lines", "district": "Central"},
                "telecom": [{"system": "phone", "value": "011-23924950"}],
                "hoursOfOperation": [{"allDay": true}]}),
        ),
        create(
            "l-mehrauli",
            json!({"resourceType": "Location", "status": "active",
                "identifier": [{"system": "urn:careline:facility", "value": "DL-M-MHR"}],
                "name": "Aam Aadmi Mohalla Clinic Mehrauli", "type": [{"text": "mohalla clinic"}],
                "address": {"text": "Ward 1, Mehrauli", "district": "South"}}),
        ),
        create(
            "hs-aruna-medicine",
            json!({"resourceType": "HealthcareService", "name": "General medicine OPD",
                "location": [{"reference": "urn:uuid:l-aruna"}]}),
        ),
        create(
            "hs-aruna-paeds",
            json!({"resourceType": "HealthcareService", "name": "Paediatrics OPD",
                "location": [{"reference": "urn:uuid:l-aruna"}]}),
        ),
        create(
            "s-medicine",
            json!({"resourceType": "Schedule", "active": true, "actor": [{"reference": "urn:uuid:l-aruna"}],
                "serviceType": [{"text": "general medicine"}]}),
        ),
        create(
            "s-paeds",
            json!({"resourceType": "Schedule", "active": true, "actor": [{"reference": "urn:uuid:l-aruna"}],
                "serviceType": [{"text": "paediatrics"}]}),
        ),
        slot("slot-1", "s-medicine", at(4, 10), "free"),
        slot("slot-2", "s-medicine", at(4, 25), "free"),
        slot("slot-3", "s-paeds", at(5, 10), "free"),
        slot("slot-4", "s-paeds", at(5, 25), "free"),
        slot("slot-busy", "s-medicine", at(4, 40), "busy"),
        slot("slot-past", "s-medicine", past, "free"),
    ])
    .await;
    at(4, 10)
}

async fn get(server: &Careline, token: &str, path: &str) -> (u16, Value) {
    let res = client().get(server.url(path)).bearer_auth(token).send().await.expect("request");
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn count(dir: &std::path::Path, table: &str) -> i64 {
    let url = format!("sqlite://{}", dir.join("careline.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.expect("open careline's database");
    let (n,): (i64,) = sqlx::query_as(&format!("select count(*) from {table}")).fetch_one(&pool).await.unwrap();
    pool.close().await;
    n
}

#[tokio::test]
async fn identify_book_and_record_a_consult_through_a_fhir_server() {
    let fhir = FhirServer::start();
    let first_slot = seed(&fhir).await;
    let dir = tempfile::tempdir().unwrap();
    let server = Careline::start(dir.path(), &["--demo", "--hims-fhir-url", &fhir.base], &[]);
    server.round_the_clock("operator", "asha").await;
    server.round_the_clock("doctor", "dr.mehta").await;
    let asha = server.bearer("asha").await;
    let doctor = server.bearer("dr.mehta").await;

    // A caller rings (by chat); the operator takes it.
    let start = json!({"language": "hi", "phone": "9811122233", "channel": "chat"});
    let (status, started) = server.post("", "/api/contacts", start).await;
    assert_eq!(status, 201, "{started}");
    let contact = started["contact_id"].as_str().unwrap().to_owned();
    server.post(&asha, "/api/agent/session", json!({"seat_id": 1})).await;
    let (_, ready) = server.post(&asha, "/api/agent/ready", json!(null)).await;
    assert_eq!(ready["state"], "offered", "{ready}");
    let (status, _) = server.post(&asha, &format!("/api/contacts/{contact}/accept"), json!(null)).await;
    assert_eq!(status, 200);

    // Identified by card, by ABHA number and by phone: the HIMS's patients, with family.
    let (status, by_card) = get(&server, &asha, &format!("/api/patients?card=dl-ehc-300101&contact={contact}")).await;
    assert_eq!(status, 200, "{by_card}");
    let mohan = &by_card[0];
    assert_eq!(by_card.as_array().unwrap().len(), 1);
    assert_eq!(mohan["name"], "Mohan Lal");
    assert_eq!(mohan["abha_number"], "91-7733-2211-0045");
    let fhir_id = mohan["hims_patient_id"].as_str().unwrap().to_owned();
    assert_eq!(fhir.get(&format!("Patient/{fhir_id}")).await["name"][0]["text"], "Mohan Lal");
    assert_eq!(mohan["family"][0]["name"], "Kusum Lata", "{mohan}");
    assert_eq!(mohan["family"][0]["relation"], "wife");
    let pid = mohan["patient_id"].as_i64().unwrap();
    let (_, by_abha) = get(&server, &asha, &format!("/api/patients?abha=91773322110045&contact={contact}")).await;
    assert_eq!(by_abha[0]["patient_id"], pid, "{by_abha}");
    let (_, by_phone) =
        get(&server, &asha, &format!("/api/patients?phone=%2B91%2098111%2022233&contact={contact}")).await;
    let mut names: Vec<&str> = by_phone.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["Kusum Lata", "Mohan Lal"]);
    let kusum = by_phone.as_array().unwrap().iter().find(|p| p["name"] == "Kusum Lata").unwrap().clone();
    assert_eq!(kusum["family"][0]["relation"], "husband", "{kusum}");
    let (status, none) = get(&server, &asha, &format!("/api/patients?card=DL-EHC-999999&contact={contact}")).await;
    assert_eq!((status, none), (200, json!([])));
    let (status, bad) = get(&server, &asha, &format!("/api/patients?card=x&contact={contact}")).await;
    assert_eq!(status, 422, "{bad}");

    // The facilities are the HIMS's Locations, with their HealthcareServices.
    let (status, facilities) = get(&server, &asha, "/api/facilities?q=aruna").await;
    assert_eq!(status, 200, "{facilities}");
    assert_eq!(facilities.as_array().unwrap().len(), 1, "{facilities}");
    let aruna = &facilities[0];
    assert_eq!(aruna["code"], "DL-H-AAAGH");
    assert_eq!(aruna["services"], json!(["General medicine OPD", "Paediatrics OPD"]));
    let (_, all) = get(&server, &asha, "/api/facilities").await;
    let mut codes: Vec<&str> = all.as_array().unwrap().iter().map(|f| f["code"].as_str().unwrap()).collect();
    codes.sort();
    assert_eq!(codes, ["DL-H-AAAGH", "DL-M-MHR"], "only the HIMS's facilities");
    let fid = aruna["facility_id"].as_i64().unwrap();

    // Free slots: not the busy one, not the past one.
    let (status, slots) = get(&server, &asha, &format!("/api/facilities/{fid}/slots")).await;
    assert_eq!(status, 200, "{slots}");
    let slots = slots.as_array().unwrap().clone();
    assert_eq!(slots.len(), 4, "{slots:?}");
    assert_eq!(slots[0]["starts_at"].as_str().unwrap(), instant(first_slot));
    let (_, medicine) =
        get(&server, &asha, &format!("/api/facilities/{fid}/slots?department=general%20medicine")).await;
    assert_eq!(medicine.as_array().unwrap().len(), 2);
    let slot_1 = slots[0]["slot_id"].as_i64().unwrap();
    let slot_2 = slots[1]["slot_id"].as_i64().unwrap();

    // The operator identifies the caller and escalates; the doctor joins, prescribes and writes notes.
    let (status, _) = server.post(&asha, &format!("/api/contacts/{contact}/patient"), json!({"patient_id": pid})).await;
    assert_eq!(status, 200);
    let esc = json!({"specialty": "general", "note": "Cough and fever for four days"});
    server.post(&asha, &format!("/api/contacts/{contact}/escalate"), esc).await;
    server.post(&doctor, "/api/agent/session", json!({"seat_id": 2})).await;
    server.post(&doctor, "/api/agent/ready", json!(null)).await;
    let (status, joined) = server.post(&doctor, &format!("/api/contacts/{contact}/accept"), json!(null)).await;
    assert_eq!(status, 200, "{joined}");
    // A chat is a text consult (the server says so): a List O drug.
    let rx = json!({"kind": "first", "diagnosis": "Acute bronchitis", "advice": "Steam inhalation",
        "items": [{"generic": "paracetamol", "strength": "500 mg", "dose": "1 tablet", "frequency": "three times a day",
                   "duration": "5 days"}]});
    let (status, issued) = server.post(&doctor, &format!("/api/contacts/{contact}/prescriptions"), rx).await;
    assert_eq!(status, 201, "{issued}");
    let note = json!({"consent": {"kind": "implied"}, "chief_complaint": "Cough", "findings": "Scattered wheeze",
        "diagnosis": "Acute bronchitis", "advice": "Steam inhalation; review in two days"});
    let res = client()
        .put(server.url(&format!("/api/contacts/{contact}/consult")))
        .bearer_auth(&doctor)
        .json(&note)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // The follow-up is booked in the HIMS: the Slot is busy there, the Appointment is there.
    let booking = json!({"slot_id": slot_1, "patient_id": pid, "contact_id": contact});
    let (status, appointment) = server.post(&doctor, "/api/appointments", booking).await;
    assert_eq!(status, 201, "{appointment}");
    let busy = fhir.search(&format!("Slot?start=ge{}&status=busy", instant(first_slot))).await;
    assert!(busy.iter().any(|s| s["start"] == instant(first_slot).as_str()), "{busy:?}");
    let booked = fhir.search(&format!("Appointment?actor=Patient/{fhir_id}")).await;
    assert_eq!(booked.len(), 1, "{booked:?}");
    assert_eq!(booked[0]["status"], "booked");
    // A second booking of the same slot is refused, and nothing is stored.
    let kusum_id = kusum["patient_id"].as_i64().unwrap();
    let again = json!({"slot_id": slot_1, "patient_id": kusum_id});
    let (status, refused) = server.post(&asha, "/api/appointments", again).await;
    assert_eq!(status, 409, "{refused}");
    // Two bookings of one slot at the same moment: exactly one succeeds.
    let (a, b) = tokio::join!(
        server.post(&asha, "/api/appointments", json!({"slot_id": slot_2, "patient_id": kusum_id})),
        server.post(&doctor, "/api/appointments", json!({"slot_id": slot_2, "patient_id": pid})),
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [201, 409], "{a:?} {b:?}");
    assert_eq!(fhir.search("Appointment").await.len(), 2, "one Appointment per slot on the FHIR server");
    assert_eq!(count(dir.path(), "appointment").await, 2);

    // The HIMS moves a slot's end after Careline has seen it: the next search
    // updates the working copy, and the Appointment booked in it ends with its Slot.
    let slot_4_start = slots[3]["starts_at"].as_str().unwrap().to_owned();
    let mut moved = fhir.search(&format!("Slot?start=eq{slot_4_start}")).await.remove(0);
    let new_end =
        instant(chrono::DateTime::parse_from_rfc3339(&slot_4_start).unwrap().to_utc() + chrono::Duration::minutes(25));
    moved["end"] = json!(new_end);
    let moved_ref = format!("Slot/{}", moved["id"].as_str().unwrap());
    moved.as_object_mut().unwrap().remove("meta");
    fhir.transaction(vec![json!({"resource": moved, "request": {"method": "PUT", "url": moved_ref}})]).await;
    assert_eq!(fhir.get(&moved_ref).await["end"], new_end.as_str(), "the FHIR server took the new end");
    let (_, again) = get(&server, &asha, &format!("/api/facilities/{fid}/slots?department=paediatrics")).await;
    let slot_4 = again.as_array().unwrap().iter().find(|s| s["starts_at"] == slot_4_start.as_str()).unwrap().clone();
    assert_eq!(
        slot_4["ends_at"].as_str().map(|e| instant(chrono::DateTime::parse_from_rfc3339(e).unwrap().to_utc())),
        Some(new_end.clone()),
        "{slot_4}"
    );
    let (status, booked_4) =
        server.post(&asha, "/api/appointments", json!({"slot_id": slot_4["slot_id"], "patient_id": kusum_id})).await;
    assert_eq!(status, 201, "{booked_4}");
    let in_slot_4 =
        fhir.search("Appointment").await.into_iter().find(|a| a["slot"][0]["reference"] == moved_ref.as_str()).unwrap();
    assert_eq!(
        (in_slot_4["start"].as_str(), in_slot_4["end"].as_str()),
        (Some(slot_4_start.as_str()), Some(new_end.as_str())),
        "{in_slot_4}"
    );

    // The consult ends and is written into the HIMS record.
    let record_url = format!("/api/contacts/{contact}/hims-record");
    let (status, early) = server.post(&doctor, &record_url, json!(null)).await;
    assert_eq!(status, 409, "a consult still going is not recorded: {early}");
    let (status, _) = server.post(&doctor, &format!("/api/contacts/{contact}/end"), json!(null)).await;
    assert_eq!(status, 204);
    let (status, _) = server.post(&asha, &record_url, json!(null)).await;
    assert_eq!(status, 403, "operators do not record consults");
    let (status, record) = server.post(&doctor, &record_url, json!(null)).await;
    assert_eq!(status, 201, "{record}");
    assert_eq!(record["hims"], fhir.base.as_str());
    let encounter_ref = record["encounter_ref"].as_str().unwrap().to_owned();
    let encounter = fhir.get(&encounter_ref).await;
    assert_eq!(encounter["class"]["code"], "VR");
    assert_eq!(encounter["status"], "finished");
    assert_eq!(encounter["subject"]["reference"], format!("Patient/{fhir_id}"));
    let doctor_ref = encounter["participant"][0]["individual"]["reference"].as_str().unwrap().to_owned();
    let practitioner = fhir.get(&doctor_ref).await;
    assert_eq!(
        practitioner["identifier"][0]["value"], issued["body"]["prescriber"]["registration_number"],
        "{practitioner}"
    );
    let documents = fhir.search(&format!("DocumentReference?encounter={encounter_ref}")).await;
    assert_eq!(documents.len(), 1);
    use base64::Engine as _;
    let notes = base64::engine::general_purpose::STANDARD
        .decode(documents[0]["content"][0]["attachment"]["data"].as_str().unwrap())
        .unwrap();
    assert!(String::from_utf8(notes).unwrap().contains("Findings: Scattered wheeze"));
    let medications = fhir.search(&format!("MedicationRequest?encounter={encounter_ref}")).await;
    assert_eq!(medications.len(), 1);
    assert_eq!(medications[0]["medicationCodeableConcept"]["text"], "PARACETAMOL");
    assert_eq!(medications[0]["subject"]["reference"], format!("Patient/{fhir_id}"));
    let follow_up = fhir.search(&format!("Appointment?actor=Patient/{fhir_id}")).await;
    let follow_up = follow_up.iter().find(|a| a["start"] == instant(first_slot).as_str()).unwrap();
    assert_eq!(follow_up["status"], "booked");
    assert_eq!(follow_up["meta"]["versionId"], "2", "the booked Appointment was updated, not duplicated");
    assert!(
        follow_up["supportingInformation"].as_array().unwrap().iter().any(|r| r["reference"] == encounter_ref.as_str()),
        "{follow_up}"
    );
    let actors: Vec<&str> = follow_up["participant"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["actor"]["reference"].as_str().unwrap())
        .collect();
    assert!(
        actors.contains(&format!("Patient/{fhir_id}").as_str()) && actors.contains(&doctor_ref.as_str()),
        "{actors:?}"
    );
    assert!(follow_up["end"].is_string());
    // Once per consult; a second Practitioner is never made.
    let (status, twice) = server.post(&doctor, &record_url, json!(null)).await;
    assert_eq!(status, 409, "{twice}");
    assert_eq!(fhir.search("Encounter").await.len(), 1);
    assert_eq!(fhir.search("Practitioner").await.len(), 1);

    // The FHIR server goes away: a clear 502, and careline stores nothing.
    let slot_3 = slots[2]["slot_id"].as_i64().unwrap();
    drop(fhir);
    let before = (count(dir.path(), "appointment").await, count(dir.path(), "patient").await);
    let (status, down) =
        server.post(&asha, "/api/appointments", json!({"slot_id": slot_3, "patient_id": kusum_id})).await;
    assert_eq!(status, 502, "{down}");
    assert!(down["detail"].as_str().unwrap().contains("could not be reached"), "{down}");
    let meera = server.bearer("meera").await;
    let (status, down) = get(&server, &meera, "/api/patients?card=DL-EHC-100299").await;
    assert_eq!(status, 502, "{down}");
    assert_eq!(before, (count(dir.path(), "appointment").await, count(dir.path(), "patient").await));
    server.stop();
}

/// An HTTP server that answers every request with `status`, `content_type` and `body`.
fn canned_server(status: &'static str, content_type: &'static str, body: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { break };
            s.set_read_timeout(Some(Duration::from_secs(2))).ok();
            let mut buf = [0u8; 8192];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}/fhir")
}

#[tokio::test]
async fn a_fhir_server_answering_garbage_is_a_502_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = canned_server("200 OK", "text/html", "<html><body>Welcome to nginx!</body></html>");
    let server = Careline::start(dir.path(), &["--demo", "--hims-fhir-url", &garbage], &[]);
    let meera = server.bearer("meera").await;
    let patients = count(dir.path(), "patient").await;
    let facilities = count(dir.path(), "hims_ref").await;
    for path in ["/api/patients?card=DL-EHC-300101", "/api/patients?phone=9811122233", "/api/facilities?q=lok"] {
        let (status, problem) = get(&server, &meera, path).await;
        assert_eq!(status, 502, "{path}: {problem}");
        assert!(problem["detail"].as_str().unwrap().contains("not FHIR JSON"), "{problem}");
        assert_eq!(problem["status"], 502);
    }
    assert_eq!(count(dir.path(), "patient").await, patients);
    assert_eq!(count(dir.path(), "hims_ref").await, facilities);
    server.stop();
}

#[tokio::test]
async fn what_a_failing_fhir_server_said_is_in_the_502() {
    let outcome = r#"{"resourceType": "OperationOutcome", "issue": [{"severity": "fatal", "code": "transient",
        "details": {"text": "the patient index is being rebuilt"}}]}"#;
    let failing = canned_server("503 Service Unavailable", "application/fhir+json", outcome);
    let dir = tempfile::tempdir().unwrap();
    let server = Careline::start(dir.path(), &["--demo", "--hims-fhir-url", &failing], &[]);
    let meera = server.bearer("meera").await;
    let (status, problem) = get(&server, &meera, "/api/patients?abha=91-7733-2211-0045").await;
    assert_eq!(status, 502, "{problem}");
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("503") && detail.contains("the patient index is being rebuilt"), "{detail}");
    server.stop();
}
