//! The login page in a real headless Chromium (tests/node/login.mjs).

use std::process::{Command, Output};

use serde_json::{Value, json};
use tests::{Careline, client, node_script, repo_root};

/// Runs `tests/node/SCRIPT` against `server`, signed in as `user`.
fn node(script: &str, server: &Careline, user: &str) -> Output {
    node_with(script, server, user, &[])
}

/// [`node`], with more environment for the script.
fn node_with(script: &str, server: &Careline, user: &str, env: &[(&str, &std::ffi::OsStr)]) -> Output {
    node_script(script, server, user).envs(env.iter().copied()).output().expect("run node (install Node.js)")
}

#[test]
fn demo_operator_signs_in_in_chromium_and_switches_to_hindi() {
    let dir = tempfile::tempdir().unwrap();
    let server = Careline::start(dir.path(), &["--demo"], &[]);
    let root = repo_root();
    assert!(
        root.join("tests/node/node_modules/playwright-core").exists(),
        "playwright-core is missing: run `npm ci --prefix tests/node` (bash .ci/run does)"
    );
    let out = Command::new("node")
        .arg(root.join("tests/node/login.mjs"))
        .env("CARELINE_URL", &server.base)
        .env("CARELINE_USER", "asha")
        .env("CARELINE_PASSWORD", &server.passwords["asha"])
        .env("CARELINE_ARTIFACTS", root.join("tests/artifacts"))
        .output()
        .expect("run node (install Node.js)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "login.mjs failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("landed /operator"), "{stdout}");
    drop(server);
}

#[tokio::test]
async fn operator_identifies_a_caller_searches_the_desk_files_a_complaint_and_books() {
    let dir = tempfile::tempdir().unwrap();
    let server = Careline::start(dir.path(), &["--demo"], &[]);
    server.round_the_clock("operator", "asha").await;
    let out = node("operator-desk.mjs", &server, "asha");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "operator-desk.mjs failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("appointment booked") && stdout.contains("wrapped up"), "{stdout}");

    // What the browser did is in the records, and each patient read is audited.
    let http = client();
    let token = server.bearer("meera").await;
    let ticket = stdout.lines().find_map(|l| l.strip_prefix("ticket ")).unwrap();
    let complaint: Value = http
        .get(server.url(&format!("/api/complaints/{ticket}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(complaint["category"], "medicine_unavailable");
    let found: Value = http
        .get(server.url("/api/patients?phone=9810012345"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ramesh = found.as_array().unwrap().iter().find(|p| p["name"] == "Ramesh Kumar").unwrap();
    let id = ramesh["patient_id"].as_i64().unwrap();
    let audit: Value = http
        .get(server.url(&format!("/api/patients/{id}/audit")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = audit.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    for action in [
        "patient.lookup",
        "patient.schemes",
        "patient.appointments",
        "patient.contacts",
        "appointment.book",
        "complaint.create",
    ] {
        assert!(actions.contains(&action), "no {action} in {actions:?}");
    }
    // Selecting the caller in the desk recorded who called on the contact.
    let csv =
        http.get(server.url("/api/reports/day.csv")).bearer_auth(&token).send().await.unwrap().text().await.unwrap();
    assert!(csv.lines().nth(1).unwrap().contains(&format!(",{id},appointment")), "{csv}");
}

#[tokio::test]
async fn supervisor_wallboard_is_live_and_exports_the_day() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let server = Careline::start(dir.path(), &["--demo"], &[]);
    // Two of today's contacts: one answered after 12 s, one still waiting for 45 s.
    let url = format!("sqlite://{}", dir.path().join("careline.db").display());
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let now = chrono::Utc::now();
    for (id, status, answered) in
        [("c-answered", "ended", Some(now - chrono::Duration::seconds(48))), ("c-waiting", "waiting", None)]
    {
        let arrived =
            if answered.is_some() { now - chrono::Duration::seconds(60) } else { now - chrono::Duration::seconds(45) };
        sqlx::query(
            "insert into contact (contact_id, channel, language, status, patient_token_hash, created_at, answered_at) \
             values ($1, 'phone', 'hi', $2, $1, $3, $4)",
        )
        .bind(id)
        .bind(status)
        .bind(arrived)
        .bind(answered)
        .execute(&mut db)
        .await
        .unwrap();
    }
    let out = node("wallboard.mjs", &server, "meera");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wallboard.mjs failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("waiting 1 "), "{stdout}");
    assert!(stdout.contains("offered 2"), "{stdout}");
    assert!(stdout.contains("bars 96"), "{stdout}");
    assert!(stdout.contains("operator-morning 06:00–14:00: 2"), "{stdout}");
    assert!(stdout.contains("pushed again") && stdout.contains("csv lines 3"), "{stdout}");
}

#[tokio::test]
async fn a_patient_chats_with_an_operator_from_the_call_page() {
    let dir = tempfile::tempdir().unwrap();
    let server = Careline::start(dir.path(), &["--demo"], &[]);
    server.round_the_clock("operator", "asha").await;
    let out = node("chat-flow.mjs", &server, "asha");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "chat-flow.mjs failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("ended and wrapped up"), "{stdout}");
    // The contact is in the day's export, answered and wrapped up.
    let csv = client()
        .get(server.url("/api/reports/day.csv"))
        .bearer_auth(server.bearer("meera").await)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let row = csv.lines().nth(1).unwrap_or_default();
    assert!(row.contains(",chat,en,") && row.contains(",ended,") && row.ends_with(",information"), "{csv}");
}

#[tokio::test]
async fn a_doctor_takes_an_escalated_chat_records_consent_and_prescribes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Careline::start(dir.path(), &["--demo"], &[]);
    server.round_the_clock("operator", "asha").await;
    server.round_the_clock("doctor", "dr.mehta").await;
    // A patient's chat, answered and escalated by the operator through the API.
    let http = client();
    let asha = server.bearer("asha").await;
    let start = json!({"language": "en", "phone": "9810012345", "channel": "chat"});
    let started: Value =
        http.post(server.url("/api/contacts")).json(&start).send().await.unwrap().json().await.unwrap();
    let id = started["contact_id"].as_str().unwrap().to_owned();
    let post = |path: String, body: Value| {
        let http = http.clone();
        let token = asha.clone();
        let url = server.url(&path);
        async move {
            let res = http.post(url).bearer_auth(token).json(&body).send().await.unwrap();
            assert!(res.status().is_success(), "{path}: {}", res.text().await.unwrap());
        }
    };
    post("/api/agent/session".into(), json!({"seat_id": 1})).await;
    let res = http.post(server.url("/api/agent/ready")).bearer_auth(&asha).send().await.unwrap();
    assert!(res.status().is_success());
    let res = http.post(server.url(&format!("/api/contacts/{id}/accept"))).bearer_auth(&asha).send().await.unwrap();
    assert!(res.status().is_success());
    let patient = json!({"name": "Ramesh Kumar", "phone": "9810012345", "age_years": 55, "sex": "male"});
    // Registered from the call: the record is open to the operator on it.
    let patient: Value = http
        .post(server.url(&format!("/api/patients?contact={id}")))
        .bearer_auth(&asha)
        .json(&patient)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    post(format!("/api/contacts/{id}/patient"), json!({"patient_id": patient["patient_id"]})).await;
    post(format!("/api/contacts/{id}/escalate"), json!({"specialty": "general", "note": "Cough and fever, 3 days"}))
        .await;

    let out = node("doctor-consult.mjs", &server, "dr.mehta");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "doctor-consult.mjs failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("Cough and fever, 3 days"), "{stdout}");
    assert!(stdout.contains("refused as text: items[0].generic: AMOXICILLIN is on List A"), "{stdout}");
    assert!(stdout.contains("only by video"), "{stdout}");
    assert!(stdout.contains("claimed video refused: mode: this is a text consult"), "{stdout}");
    assert!(stdout.contains("issued:") && stdout.contains("AMOXICILLIN"), "{stdout}");
}

#[tokio::test]
async fn an_operator_handles_two_chats_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Careline::start(dir.path(), &["--demo"], &[]);
    server.round_the_clock("operator", "asha").await;
    let out = node("multi-chat.mjs", &server, "asha");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "multi-chat.mjs failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("message in the right conversation") && stdout.contains("both wrapped up"), "{stdout}");
}

/// Speech for a fake microphone: two espeak-ng phrases with a pause, 16 kHz mono.
fn speech_wav(dir: &std::path::Path) -> std::path::PathBuf {
    let raw = dir.join("speech-raw.wav");
    let wav = dir.join("speech.wav");
    let status = Command::new("espeak-ng")
        .args(["-v", "en", "-s", "140", "-w"])
        .arg(&raw)
        .arg("My father has chest pain. [[_:]] He is sixty two years old and has diabetes.")
        .status()
        .expect("run espeak-ng (apt-get install espeak-ng)");
    assert!(status.success());
    // Pad with silence so the loudness envelope has a clear shape.
    let status = Command::new("sox")
        .arg(&raw)
        .args(["-r", "16000", "-c", "1", "-b", "16"])
        .arg(&wav)
        .args(["pad", "0.5", "1.0"])
        .status()
        .expect("run sox (apt-get install sox)");
    assert!(status.success());
    wav
}

#[tokio::test]
async fn a_patient_calls_by_voice_and_the_operator_hears_them_through_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Careline::start(dir.path(), &["--demo"], &[]);
    server.round_the_clock("operator", "asha").await;
    let speech = speech_wav(dir.path());
    let out = node_with(
        "voice-call.mjs",
        &server,
        "asha",
        &[
            ("CARELINE_SPEECH", speech.as_os_str()),
            ("CARELINE_SUPERVISOR_PASSWORD", server.passwords["meera"].as_ref()),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "voice-call.mjs failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("operator receives the patient"), "{stdout}");
    assert!(stdout.contains("supervisor barged in"), "{stdout}");
    assert!(stdout.contains("rejoined the call"), "{stdout}");
    assert!(stdout.contains("call ended"), "{stdout}");
    println!("{stdout}");
}

/// A Y4M video (what Chromium's fake camera plays) of a QR code holding `text`.
fn qr_video(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let code = qrcode::QrCode::new(text.as_bytes()).unwrap();
    let (w, h, scale) = (640usize, 480usize, 8usize);
    let modules = code.width();
    let (x0, y0) = ((w - modules * scale) / 2, (h - modules * scale) / 2);
    let mut luma = vec![235u8; w * h];
    for y in 0..modules {
        for x in 0..modules {
            if code[(x, y)] == qrcode::Color::Dark {
                for dy in 0..scale {
                    let row = (y0 + y * scale + dy) * w;
                    luma[row + x0 + x * scale..row + x0 + (x + 1) * scale].fill(16);
                }
            }
        }
    }
    let mut video = format!("YUV4MPEG2 W{w} H{h} F10:1 Ip A1:1 C420jpeg\n").into_bytes();
    for _ in 0..10 {
        video.extend_from_slice(b"FRAME\n");
        video.extend_from_slice(&luma);
        video.extend(std::iter::repeat_n(128u8, w * h / 2));
    }
    let path = dir.join("card.y4m");
    std::fs::write(&path, video).unwrap();
    path
}

#[tokio::test]
async fn an_operator_scans_the_callers_card_qr_code_with_the_camera() {
    let dir = tempfile::tempdir().unwrap();
    let server = Careline::start(dir.path(), &["--demo"], &[]);
    server.round_the_clock("operator", "asha").await;
    let video = qr_video(dir.path(), "https://ehealth.delhi.gov.in/card/DL-EHC-100234");
    let out = node_with("qr-scan.mjs", &server, "asha", &[("CARELINE_CARD_VIDEO", video.as_os_str())]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "qr-scan.mjs failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("scanned card DL-EHC-100234: "), "{stdout}");
}

/// GETs `path` as `token` and returns the JSON answer (panics unless 200).
async fn get_json(server: &Careline, token: &str, path: &str) -> Value {
    let res = client().get(server.url(path)).bearer_auth(token).send().await.unwrap();
    assert_eq!(res.status(), 200, "{path}");
    res.json().await.unwrap()
}

/// The day's CSV export row of `contact`, as fields.
async fn csv_row(server: &Careline, contact: &str) -> Vec<String> {
    let token = server.bearer("meera").await;
    let csv =
        client().get(server.url("/api/reports/day.csv")).bearer_auth(token).send().await.unwrap().text().await.unwrap();
    let line = csv.lines().find(|l| l.starts_with(contact)).unwrap_or_else(|| panic!("no row for {contact}:\n{csv}"));
    line.split(',').map(str::to_owned).collect()
}

/// The value after `prefix` on the first line of `stdout` that starts with it.
fn printed<'a>(stdout: &'a str, prefix: &str) -> &'a str {
    stdout.lines().find_map(|l| l.strip_prefix(prefix)).unwrap_or_else(|| panic!("no `{prefix}` in:\n{stdout}"))
}

#[tokio::test]
async fn tier_one_a_caller_is_heard_identified_answered_a_complaint_filed_and_the_wallboard_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Careline::start(dir.path(), &["--demo"], &[]);
    server.round_the_clock("operator", "asha").await;
    let speech = speech_wav(dir.path());
    let out = node_with(
        "tier1-call.mjs",
        &server,
        "asha",
        &[
            ("CARELINE_SPEECH", speech.as_os_str()),
            ("CARELINE_SUPERVISOR_PASSWORD", server.passwords["meera"].as_ref()),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "tier1-call.mjs failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    println!("{stdout}");
    assert!(stdout.contains("operator hears the patient") && stdout.contains("identified Ramesh Kumar"), "{stdout}");
    assert!(stdout.contains("today: offered 1, answered 1, abandoned 0, service level 100%"), "{stdout}");

    // What the browsers did is in the records: the complaint names the
    // contact and the patient found by card; the call is answered and
    // wrapped up as a complaint.
    let contact = printed(&stdout, "contact ");
    let meera = server.bearer("meera").await;
    let ramesh = get_json(&server, &meera, "/api/patients?card=DL-EHC-100234").await;
    let ramesh = ramesh[0]["patient_id"].as_i64().unwrap();
    let complaint = get_json(&server, &meera, &format!("/api/complaints/{}", printed(&stdout, "ticket "))).await;
    assert_eq!(complaint["contact_id"], contact);
    assert_eq!(complaint["patient_id"], ramesh);
    assert_eq!(complaint["category"], "medicine_unavailable");
    let row = csv_row(&server, contact).await;
    assert_eq!((row[1].as_str(), row[6].as_str()), ("webrtc", "ended"), "{row:?}");
    assert_eq!(row[14], ramesh.to_string(), "{row:?}");
    assert_eq!(row[15], "complaint", "{row:?}");
    assert!(server.stop().success());
}

#[tokio::test]
async fn a_caller_asks_for_a_callback_keeps_the_place_and_is_called_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = Careline::start(dir.path(), &["--demo"], &[]);
    server.round_the_clock("operator", "asha").await;
    let out = node("callback.mjs", &server, "asha");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "callback.mjs failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    println!("{stdout}");
    assert!(stdout.contains("called back: Call the patient back: +919810012345"), "{stdout}");
    assert!(stdout.contains("the chat rings next"), "{stdout}");
    // The callback is a webrtc contact answered and wrapped up as a callback;
    // the chat still waits.
    let token = server.bearer("meera").await;
    let csv =
        client().get(server.url("/api/reports/day.csv")).bearer_auth(token).send().await.unwrap().text().await.unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().skip(1).map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 2, "{csv}");
    let callback = rows.iter().find(|r| r[1] == "webrtc").expect("the call");
    assert_eq!((callback[6], callback[15]), ("ended", "callback"), "{csv}");
    let chat = rows.iter().find(|r| r[1] == "chat").expect("the chat");
    assert!(chat[8].is_empty() && chat[15].is_empty(), "the chat was not answered: {csv}");
    assert!(server.stop().success());
}

#[tokio::test]
async fn tier_two_consult_prescribes_by_the_rules_books_a_follow_up_mails_it_and_exports_valid_fhir() {
    let dir = tempfile::tempdir().unwrap();
    let recordings = dir.path().join("recordings");
    let model = whisper_model(dir.path());
    let port = tests::free_port();
    let smtpd = tests::Smtpd::start(port, &dir.path().join("maildir"));
    let smtp = format!("smtp://127.0.0.1:{port}");
    let server = Careline::start(
        dir.path(),
        &[
            "--demo",
            "--recordings-dir",
            recordings.to_str().unwrap(),
            "--whisper-model",
            model.to_str().unwrap(),
            "--smtp-url",
            &smtp,
            "--mail-retry-seconds",
            "1",
        ],
        &[("CARELINE_MAIL_FROM", "Careline Helpline <helpline@careline.test>")],
    );
    server.round_the_clock("operator", "asha").await;
    server.round_the_clock("doctor", "dr.mehta").await;
    let speech = speech_wav(dir.path());
    let out = node_with(
        "tier2-consult.mjs",
        &server,
        "asha",
        &[("CARELINE_SPEECH", speech.as_os_str()), ("CARELINE_DOCTOR_PASSWORD", server.passwords["dr.mehta"].as_ref())],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "tier2-consult.mjs failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    println!("{stdout}");
    assert!(stdout.contains("captions: ") && stdout.contains("consult ended"), "{stdout}");
    assert!(stdout.contains("refused: items[0].generic: AMOXICILLIN is on List A"), "{stdout}");
    assert!(stdout.contains("claimed video with the camera off, refused: mode: this is an audio consult"), "{stdout}");
    assert!(
        stdout.contains("issued: ") && stdout.contains("prohibited, refused: items[0].generic: ALPRAZOLAM"),
        "{stdout}"
    );
    let contact = printed(&stdout, "contact ");
    // Recorded in the built-in HIMS record from the doctor's wrap-up, once.
    assert!(stdout.contains("hims record: Recorded: builtin urn:uuid:"), "{stdout}");
    let doctor = server.bearer("dr.mehta").await;
    let (status, again) = server.post(&doctor, &format!("/api/contacts/{contact}/hims-record"), json!({})).await;
    assert_eq!(status, 409, "{again}");
    assert!(again["detail"].as_str().unwrap_or_default().contains("already recorded"), "{again}");
    let slot: i64 = printed(&stdout, "follow-up booked: slot ").split(',').next().unwrap().parse().unwrap();

    // Recorded only after consent, and only who was still in the call: the
    // patient and the doctor, one file each.
    let calls: Vec<_> = std::fs::read_dir(&recordings).expect("a recordings folder").flatten().collect();
    assert_eq!(calls.len(), 1);
    let mut files: Vec<String> = std::fs::read_dir(calls[0].path())
        .unwrap()
        .flatten()
        .filter(|f| f.metadata().unwrap().len() > 4_000)
        .map(|f| f.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(files[0].starts_with("doctor-dr.mehta-") && files[1].starts_with("patient-patient-"), "{files:?}");

    // The follow-up is in Fatima's record, and its confirmation reached the
    // SMTP server with the invitation and the prescription summary.
    let meera = server.bearer("meera").await;
    let fatima = get_json(&server, &meera, "/api/patients?card=DL-EHC-220871").await;
    let fatima = fatima[0]["patient_id"].as_i64().unwrap();
    let booked = get_json(&server, &meera, &format!("/api/patients/{fatima}/appointments")).await;
    let booked: Vec<&Value> = booked.as_array().unwrap().iter().filter(|a| a["status"] == "booked").collect();
    assert_eq!(booked.len(), 1, "{booked:?}");
    assert_eq!((booked[0]["slot"]["slot_id"].as_i64(), booked[0]["contact_id"].as_str()), (Some(slot), Some(contact)));
    let mail = tests::read_mail(&smtpd.first_message(std::time::Duration::from_secs(20), &server));
    assert!(mail.to.contains("fatima.begum@example.in"), "{}", mail.to);
    let ics = &mail.ics;
    assert!(ics.contains("BEGIN:VCALENDAR") && ics.contains("METHOD:REQUEST") && ics.contains("BEGIN:VEVENT"), "{ics}");
    let start: chrono::DateTime<chrono::Utc> = booked[0]["slot"]["starts_at"].as_str().unwrap().parse().unwrap();
    let end: chrono::DateTime<chrono::Utc> = booked[0]["slot"]["ends_at"].as_str().unwrap().parse().unwrap();
    assert!(ics.contains(&format!("DTSTART:{}", start.format("%Y%m%dT%H%M%SZ"))), "{ics}");
    assert!(ics.contains(&format!("DTEND:{}", end.format("%Y%m%dT%H%M%SZ"))), "{ics}");
    assert!(ics.contains("ATTENDEE;CN=\"Fatima Begum\"") && ics.contains("mailto:fatima.begum@example.in"), "{ics}");
    assert!(ics.contains("LOCATION:Lok Nayak Hospital"), "{ics}");
    assert!(mail.text.contains("AMOXICILLIN 500 mg: 1 capsule three times a day, 5 days"), "{}", mail.text);
    assert!(!mail.text.contains("ALPRAZOLAM"), "{}", mail.text);

    // The consult as FHIR R4 passes the official R4 JSON schema, and says
    // what happened: a virtual encounter, the issued drug only, the booked follow-up.
    let bundle = get_json(&server, &doctor, &format!("/api/contacts/{contact}/fhir")).await;
    let file = dir.path().join("bundle.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&bundle).unwrap()).unwrap();
    let out = Command::new("node").arg(repo_root().join("tests/node/fhir-validate.mjs")).arg(&file).output().unwrap();
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let entries = bundle["entry"].as_array().unwrap();
    let resources: Vec<&Value> = entries.iter().map(|e| &e["resource"]).collect();
    let of = |t: &str| resources.iter().copied().filter(|r| r["resourceType"] == t).collect::<Vec<_>>();
    let url_of = |t: &str| entries.iter().find(|e| e["resource"]["resourceType"] == t).unwrap()["fullUrl"].clone();
    assert_eq!(of("Encounter")[0]["class"]["code"], "VR");
    let drugs: Vec<String> = of("MedicationRequest").iter().map(|m| m.to_string()).collect();
    assert!(drugs.len() == 1 && drugs[0].contains("AMOXICILLIN"), "{drugs:?}");
    let appointment = of("Appointment");
    assert_eq!(appointment[0]["status"], "booked");
    let actors: Vec<&Value> =
        appointment[0]["participant"].as_array().unwrap().iter().map(|p| &p["actor"]["reference"]).collect();
    assert!(actors.contains(&&url_of("Patient")) && actors.contains(&&url_of("Practitioner")), "{}", appointment[0]);
    assert_eq!(appointment[0]["supportingInformation"][0]["reference"], url_of("Encounter"), "{}", appointment[0]);
    assert!(of("Patient")[0].to_string().contains("Fatima Begum"));
    // A graceful stop, even with the consult's audio still queued for captions
    // (the transcriber waits for it only a few seconds).
    assert!(server.stop().success());
}

/// tiny.en as ggml, converted from the CTranslate2 model that
/// `transcription/scripts/fetch-models.sh` fetched, by `careline model import-ct2`.
fn whisper_model(dir: &std::path::Path) -> std::path::PathBuf {
    let cache = std::env::var_os("CARELINE_MODEL_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/careline/models"));
    let source = cache.join("tiny.en");
    assert!(
        source.join("model.bin").is_file(),
        "whisper tiny.en missing in {}: run transcription/scripts/fetch-models.sh (bash .ci/run does)",
        source.display()
    );
    let out = dir.join("tiny.en.bin");
    let status = Command::new(tests::careline_bin())
        .args(["model", "import-ct2"])
        .arg(&source)
        .arg(&out)
        .status()
        .expect("run careline model import-ct2");
    assert!(status.success() && out.is_file());
    out
}

#[tokio::test]
async fn a_server_restart_under_a_live_chat_costs_the_operator_the_patient_and_the_wallboard_nothing() {
    use std::io::{BufRead, BufReader, Write};
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", tests::free_port());
    let args = ["--demo", "--listen", listen.as_str()];
    let mut server = Careline::start(dir.path(), &args, &[]);
    server.round_the_clock("operator", "asha").await;
    let (supervisor, password) = ("meera", server.passwords["meera"].clone());
    let mut script = node_script("restart.mjs", &server, "asha")
        .env("CARELINE_SUPERVISOR", supervisor)
        .env("CARELINE_SUPERVISOR_PASSWORD", &password)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run node (install Node.js)");
    let mut to_script = script.stdin.take().unwrap();
    let mut printed = Vec::new();
    let mut from_script = BufReader::new(script.stdout.take().unwrap()).lines();
    let mut read_until = |want: &str, printed: &mut Vec<String>| {
        for line in from_script.by_ref() {
            let line = line.unwrap();
            printed.push(line.clone());
            if line == want {
                return true;
            }
        }
        false
    };
    assert!(read_until("restart now", &mut printed), "restart.mjs stopped before the restart: {printed:?}");
    assert!(server.stop().success());
    writeln!(to_script, "down").unwrap();
    assert!(read_until("seen reconnecting", &mut printed), "the pages did not say they reconnect: {printed:?}");
    server = Careline::start(dir.path(), &args, &[]);
    writeln!(to_script, "up").unwrap();
    let finished = read_until("ended and wrapped up", &mut printed);
    let status = script.wait().unwrap();
    assert!(finished && status.success(), "restart.mjs failed: {printed:?}");
    drop(server);
}
