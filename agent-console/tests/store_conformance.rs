//! One conformance suite, run on both backends of the store.
//!
//! SQLite always runs, on a fresh file. PostgreSQL is required: each run
//! creates its own database on the server named by `CARELINE_TEST_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/postgres`) and drops it after.
//! A missing server fails the suite; it is never skipped.
//!
//! The rule: every public method of `Store` (each `pub fn` or `pub async fn`
//! in an `impl Store` block of `agent-console/src/store/*.rs`) is called in
//! this file, as `.name(` or `::name(`, with assertions on what it returns.
//! `every_public_store_method_has_a_case` reads those sources and fails
//! naming each method that has none: a new method comes with its case.

use agent_console::store::Claimant;
use agent_console::store::claim::{AMBULANCE_LEASE, CHANNEL_EVENT_LEASE, MAIL_LEASE};
use agent_console::store::{
    AbhaNumber, Attempt, BackendKind, BedType, ComplaintStatus, FacilityKind, FacilityQuery, NewAudit, NewComplaint,
    NewMail, NewPatient, NewStaff, PatientKey, Role, Sex, Store, StoreError, TokenKind,
};
use agent_console::store::{
    AmbulanceRequest, ComplaintCategory, ConsultNote, Delivery, Faq, NewFacility, PrescriptionKind, PrescriptionMode,
    RoutingEventRow, Scheme, StoredPrescription, UNNAMED_REFERENCE,
};
use agent_console::store::{
    Channel, ConsultRecord, ContactChange, ContactStatus, HimsKind, NewCaption, NewContact, RecordWrite,
};
use chrono::{DateTime, Duration, NaiveDate, SubsecRound, Utc};
use sqlx::Connection;

fn postgres_admin_url() -> String {
    std::env::var("CARELINE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Runs `suite` on a fresh SQLite file and a fresh PostgreSQL database.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            use super::Store;
            $(
                #[tokio::test]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let url = dir.path().join("careline.db").display().to_string();
                    let store = Store::open(&url).await.expect("open sqlite");
                    assert_eq!(store.kind(), super::BackendKind::Sqlite);
                    super::$name(&store, &url).await;
                    store.close().await;
                }
            )*
        }
        mod postgres {
            use super::Store;
            $(
                #[tokio::test]
                async fn $name() {
                    let db = super::TempPgDatabase::create(stringify!($name)).await;
                    let store = Store::open(&db.url).await.expect("open postgres");
                    assert_eq!(store.kind(), super::BackendKind::Postgres);
                    super::$name(&store, &db.url).await;
                    store.close().await;
                    db.drop().await;
                }
            )*
        }
    };
}

/// A database of its own on the PostgreSQL server, for one test.
struct TempPgDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl TempPgDatabase {
    async fn create(test: &str) -> Self {
        let admin_url = postgres_admin_url();
        // PostgreSQL names stop at 63 bytes: keep the test's name short.
        let short: String = test.chars().take(24).collect();
        let name = format!("careline_test_{short}_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let mut conn = sqlx::PgConnection::connect(&admin_url).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is required for the store conformance suite: cannot connect to {admin_url}: {e}. \
                 Start it (bash .ci/run does) or set CARELINE_TEST_POSTGRES_URL."
            )
        });
        sqlx::query(&format!("create database \"{name}\"")).execute(&mut conn).await.expect("create database");
        conn.close().await.ok();
        let base = admin_url.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin_url);
        let url = format!("{base}/{name}");
        TempPgDatabase { admin_url, name, url }
    }

    async fn drop(self) {
        let mut conn = sqlx::PgConnection::connect(&self.admin_url).await.expect("reconnect");
        sqlx::query(&format!("drop database if exists \"{}\" with (force)", self.name))
            .execute(&mut conn)
            .await
            .expect("drop database");
    }
}

conformance!(
    migrations_seed_seats_and_shifts,
    opening_twice_is_harmless,
    staff_accounts_round_trip,
    duplicate_username_is_a_conflict,
    auth_sessions_expire_and_revoke,
    patients_round_trip_and_search,
    family_links_both_ways,
    family_link_to_unknown_patient_is_refused_and_writes_nothing,
    roster_by_day,
    audit_log_is_append_only,
    facilities_search_in_english_and_hindi,
    bed_and_stock_updates_are_checked,
    answers_search_in_both_languages,
    schemes_of_the_whole_family,
    complaints_get_tickets_due_dates_and_tasks,
    slots_book_atomically_and_refuse_full_or_past,
    a_bad_import_file_writes_nothing,
    mail_outbox_retries_and_survives_reopening,
    contacts_from_arrival_to_wrap_up,
    captions_keep_the_transcript_in_order,
    the_hims_link_keeps_references_patients_and_consult_records,
    a_constraint_violation_names_its_field_the_same_on_both,
    routing_events_come_back_in_the_order_logged,
    prescriptions_and_consult_notes_round_trip,
    reference_data_upserts_update_in_place,
    shifts_secrets_audit_and_mail_read_back,
    ambulance_requests_keep_their_delivery,
    a_routing_event_and_its_record_change_are_written_together,
    a_routing_entry_is_written_once_whichever_node_carries_it_out,
    patient_access_facts_list_every_relation,
    messaging_channels_journal_threads_and_outbox,
    sms_opt_outs_are_kept_per_number,
    sign_in_devices_and_failures,
    a_stored_value_outside_its_domain_is_corrupt,
    two_nodes_claiming_one_due_row_get_it_once,
    a_row_raced_by_many_claimants_is_claimed_once,
);

fn new_staff(username: &str, role: Role) -> NewStaff {
    NewStaff {
        username: username.to_owned(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".to_owned(),
        role,
        display_name: format!("{username} display"),
        languages: vec!["hi".to_owned(), "en".to_owned()],
        specialty: (role == Role::Doctor).then(|| "general".to_owned()),
        qualification: (role == Role::Doctor).then(|| "MBBS".to_owned()),
        registration_number: (role == Role::Doctor).then(|| "DMC/R/12345".to_owned()),
    }
}

fn new_patient(name: &str, phone: &str) -> NewPatient {
    NewPatient {
        name: name.to_owned(),
        birth_date: Some(NaiveDate::from_ymd_opt(1980, 5, 17).unwrap()),
        age_years: None,
        sex: Some(Sex::Female),
        phone: Some(phone.to_owned()),
        email: None,
        preferred_language: Some("hi".to_owned()),
        ehealth_card: None,
        abha_number: None,
        hims_patient_id: None,
    }
}

async fn migrations_seed_seats_and_shifts(store: &Store, _url: &str) {
    let seats = store.seats().await.unwrap();
    assert_eq!(seats.len(), 45);
    assert_eq!(seats.iter().filter(|s| s.is_peak).count(), 5);
    let shifts = store.shifts().await.unwrap();
    let window = |name: &str| {
        let s = shifts.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("shift {name}"));
        (s.starts_minute, s.ends_minute, s.role)
    };
    assert_eq!(window("operator-morning"), (360, 840, Role::Operator));
    assert_eq!(window("operator-evening"), (840, 1320, Role::Operator));
    assert_eq!(window("operator-peak"), (600, 1080, Role::Operator));
    assert!(shifts.iter().find(|s| s.name == "operator-peak").unwrap().is_peak);
    // The doctors' rota covers every minute of the day.
    let doctors: Vec<_> = shifts.iter().filter(|s| s.role == Role::Doctor).collect();
    for minute in (0..1440).step_by(15) {
        let covered = doctors.iter().any(|s| {
            if s.starts_minute < s.ends_minute {
                (s.starts_minute..s.ends_minute).contains(&minute)
            } else {
                minute >= s.starts_minute || minute < s.ends_minute
            }
        });
        assert!(covered, "no doctor shift covers minute {minute}");
    }
}

async fn opening_twice_is_harmless(store: &Store, url: &str) {
    store.ping().await.expect("the database answers");
    store.create_staff(&new_staff("asha", Role::Operator)).await.unwrap();
    let again = Store::open(url).await.expect("reopen and re-run migrations");
    assert_eq!(again.count_staff().await.unwrap(), 1);
    assert_eq!(again.seats().await.unwrap().len(), 45);
    again.close().await;
}

async fn staff_accounts_round_trip(store: &Store, _url: &str) {
    let doctor = store.create_staff(&new_staff("dr.mehta", Role::Doctor)).await.unwrap();
    assert_eq!(doctor.role, Role::Doctor);
    assert_eq!(doctor.languages, vec!["hi", "en"]);
    assert_eq!(doctor.registration_number.as_deref(), Some("DMC/R/12345"));
    assert_eq!(store.staff(doctor.staff_id).await.unwrap(), doctor);
    store.create_staff(&new_staff("asha", Role::Operator)).await.unwrap();
    let all = store.list_staff().await.unwrap();
    assert_eq!(all.len(), 2);
    let (found, hash) = store.staff_credentials("dr.mehta").await.unwrap().unwrap();
    assert_eq!(found.staff_id, doctor.staff_id);
    assert!(hash.starts_with("$argon2id$"));
    assert!(store.staff_credentials("nobody").await.unwrap().is_none());
    assert!(matches!(store.staff(agent_console::store::StaffId(9999)).await, Err(StoreError::NotFound)));
}

async fn duplicate_username_is_a_conflict(store: &Store, _url: &str) {
    store.create_staff(&new_staff("asha", Role::Operator)).await.unwrap();
    let err = store.create_staff(&new_staff("asha", Role::Supervisor)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    // The first account is untouched.
    let (staff, _) = store.staff_credentials("asha").await.unwrap().unwrap();
    assert_eq!(staff.role, Role::Operator);
    assert_eq!(store.count_staff().await.unwrap(), 1);
}

async fn auth_sessions_expire_and_revoke(store: &Store, _url: &str) {
    let staff = store.create_staff(&new_staff("asha", Role::Operator)).await.unwrap();
    let now = Utc::now();
    store.create_auth_session("live", staff.staff_id, TokenKind::Cookie, now + Duration::hours(1)).await.unwrap();
    store.create_auth_session("old", staff.staff_id, TokenKind::Bearer, now - Duration::minutes(1)).await.unwrap();
    let live = store.auth_session("live", now).await.unwrap().expect("live session");
    assert_eq!(live.staff.staff_id, staff.staff_id);
    assert!(store.auth_session("old", now).await.unwrap().is_none(), "expired session must not authenticate");
    assert!(store.auth_session("unknown", now).await.unwrap().is_none());
    store.revoke_auth_session("live").await.unwrap();
    store.revoke_auth_session("live").await.unwrap();
    assert!(store.auth_session("live", now).await.unwrap().is_none(), "revoked session must not authenticate");
    assert_eq!(store.purge_expired_sessions(now).await.unwrap(), 1);
}

async fn sign_in_devices_and_failures(store: &Store, _url: &str) {
    let asha = store.create_staff(&new_staff("asha", Role::Operator)).await.unwrap();
    let ravi = store.create_staff(&new_staff("ravi", Role::Operator)).await.unwrap();
    let now = Utc::now().trunc_subsecs(0);
    assert_eq!(store.device_owner("d1").await.unwrap(), None);
    store.remember_device("d1", asha.staff_id, now).await.unwrap();
    store.remember_device("d1", asha.staff_id, now + Duration::hours(1)).await.unwrap();
    assert_eq!(store.device_owner("d1").await.unwrap(), Some(asha.staff_id));
    // A device hash already asha's is not taken over by another account.
    store.remember_device("d1", ravi.staff_id, now).await.unwrap();
    assert_eq!(store.device_owner("d1").await.unwrap(), Some(asha.staff_id));
    assert!(matches!(
        store.remember_device("d2", agent_console::store::StaffId(999), now).await,
        Err(StoreError::InvalidReference(_))
    ));

    assert_eq!(store.take_login_failures(asha.staff_id).await.unwrap(), 0);
    for client in ["203.0.113.1", "203.0.113.2"] {
        store.record_login_failure(asha.staff_id, client, false, now).await.unwrap();
    }
    store.record_login_failure(asha.staff_id, "10.0.0.5", true, now).await.unwrap();
    store.record_login_failure(ravi.staff_id, "203.0.113.1", false, now).await.unwrap();
    assert_eq!(store.take_login_failures(asha.staff_id).await.unwrap(), 3);
    assert_eq!(store.take_login_failures(asha.staff_id).await.unwrap(), 0, "told once");
    assert_eq!(store.take_login_failures(ravi.staff_id).await.unwrap(), 1);
}

async fn patients_round_trip_and_search(store: &Store, _url: &str) {
    let mut input = new_patient("Kamla Devi", "9810000001");
    input.ehealth_card = Some("DL-EHC-0001".to_owned());
    input.abha_number = Some(AbhaNumber::parse("91 1234 5678 9012").unwrap());
    input.hims_patient_id = Some("HIMS-77".to_owned());
    let kamla = store.create_patient(&input).await.unwrap();
    assert_eq!(kamla.abha_number.as_ref().unwrap().as_str(), "91-1234-5678-9012");
    assert_eq!(kamla.sex, Sex::Female);
    assert_eq!(store.patient(kamla.patient_id).await.unwrap(), kamla);
    // A family shares a phone.
    let son = store.create_patient(&new_patient("Raju", "9810000001")).await.unwrap();
    let by_phone = store.find_patients(&PatientKey::Phone("9810000001".into())).await.unwrap();
    assert_eq!(by_phone.iter().map(|p| p.patient_id).collect::<Vec<_>>(), vec![kamla.patient_id, son.patient_id]);
    for key in [
        PatientKey::EhealthCard("DL-EHC-0001".into()),
        PatientKey::Abha(AbhaNumber::parse("91-1234-5678-9012").unwrap()),
        PatientKey::HimsId("HIMS-77".into()),
    ] {
        let found = store.find_patients(&key).await.unwrap();
        assert_eq!(found.len(), 1, "{key:?}");
        assert_eq!(found[0].patient_id, kamla.patient_id);
    }
    assert!(store.find_patients(&PatientKey::Phone("9999999999".into())).await.unwrap().is_empty());
    // A card number belongs to one patient.
    let mut clash = new_patient("Someone Else", "9810000002");
    clash.ehealth_card = Some("DL-EHC-0001".to_owned());
    assert!(matches!(store.create_patient(&clash).await, Err(StoreError::Conflict(_))));
    assert_eq!(store.find_patients(&PatientKey::Phone("9810000002".into())).await.unwrap().len(), 0);
}

async fn family_links_both_ways(store: &Store, _url: &str) {
    let mother = store.create_patient(&new_patient("Kamla Devi", "9810000001")).await.unwrap();
    let son = store.create_patient(&new_patient("Raju", "9810000001")).await.unwrap();
    store.link_family(mother.patient_id, son.patient_id, "son", "mother").await.unwrap();
    // Linking again updates rather than duplicates.
    store.link_family(mother.patient_id, son.patient_id, "son", "mother").await.unwrap();
    let mother = store.patient(mother.patient_id).await.unwrap();
    assert_eq!(mother.family.len(), 1);
    assert_eq!(mother.family[0].relation, "son");
    assert_eq!(mother.family[0].patient_id, son.patient_id);
    let son = store.patient(son.patient_id).await.unwrap();
    assert_eq!(son.family[0].relation, "mother");
}

async fn family_link_to_unknown_patient_is_refused_and_writes_nothing(store: &Store, _url: &str) {
    let mother = store.create_patient(&new_patient("Kamla Devi", "9810000001")).await.unwrap();
    let err =
        store.link_family(mother.patient_id, agent_console::store::PatientId(4242), "son", "mother").await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidReference(_) | StoreError::NotFound), "{err:?}");
    assert!(store.patient(mother.patient_id).await.unwrap().family.is_empty());
}

async fn roster_by_day(store: &Store, _url: &str) {
    let asha = store.create_staff(&new_staff("asha", Role::Operator)).await.unwrap();
    let shifts = store.shifts().await.unwrap();
    let morning = shifts.iter().find(|s| s.name == "operator-morning").unwrap().shift_id;
    let day = NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
    store.roster(morning, asha.staff_id, day).await.unwrap();
    store.roster(morning, asha.staff_id, day).await.unwrap();
    let today = store.roster_for(day).await.unwrap();
    assert_eq!(today.len(), 1);
    assert_eq!((today[0].shift_id, today[0].staff_id, today[0].day), (morning, asha.staff_id, day));
    assert!(store.roster_for(day.succ_opt().unwrap()).await.unwrap().is_empty());
}

async fn audit_log_is_append_only(store: &Store, url: &str) {
    let asha = store.create_staff(&new_staff("asha", Role::Operator)).await.unwrap();
    let kamla = store.create_patient(&new_patient("Kamla Devi", "9810000001")).await.unwrap();
    let entry = store
        .append_audit(&NewAudit {
            staff_id: Some(asha.staff_id),
            action: "patient.read".to_owned(),
            patient_id: Some(kamla.patient_id),
            contact_id: Some("C-1".to_owned()),
            detail: "lookup by phone".to_owned(),
        })
        .await
        .unwrap();
    assert!(entry.created_at <= Utc::now());
    let trail = store.audit_for_patient(kamla.patient_id).await.unwrap();
    assert_eq!(trail, vec![entry.clone()]);

    // Even with direct SQL, the log refuses updates and deletes.
    let update = "update audit_log set detail = 'tampered'";
    let delete = "delete from audit_log";
    if url.starts_with("postgres") {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        assert!(sqlx::query(update).execute(&mut conn).await.is_err(), "update must be refused");
        assert!(sqlx::query(delete).execute(&mut conn).await.is_err(), "delete must be refused");
    } else {
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{url}")).await.unwrap();
        assert!(sqlx::query(update).execute(&mut conn).await.is_err(), "update must be refused");
        assert!(sqlx::query(delete).execute(&mut conn).await.is_err(), "delete must be refused");
    }
    assert_eq!(store.audit_for_patient(kamla.patient_id).await.unwrap(), vec![entry]);
}

async fn demo_desk(store: &Store) {
    agent_console::hims::import(store, &agent_console::hims::DEMO).await.expect("import demo data");
}

async fn facilities_search_in_english_and_hindi(store: &Store, _url: &str) {
    demo_desk(store).await;
    let q = |text: &str| FacilityQuery { text: Some(text.to_owned()), ..Default::default() };
    let lnh = store.search_facilities(&q("lok nayak")).await.unwrap();
    assert_eq!(lnh.len(), 1);
    assert_eq!(lnh[0].code, "DL-H-LNH");
    assert!(lnh[0].beds.iter().any(|b| b.bed_type == BedType::Icu && b.total == 120));
    let hindi = store.search_facilities(&q("लोक नायक")).await.unwrap();
    assert_eq!(hindi.iter().map(|f| &f.code).collect::<Vec<_>>(), vec!["DL-H-LNH"]);
    // Services match in either language.
    let dialysis = store.search_facilities(&q("Dialysis")).await.unwrap();
    assert!(dialysis.iter().any(|f| f.code == "DL-H-LNH"));
    let mohalla = store
        .search_facilities(&FacilityQuery { kind: Some(FacilityKind::MohallaClinic), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(mohalla.len(), 2);
    // Vacant ventilators, most first; GTB has none free.
    let vent = store
        .search_facilities(&FacilityQuery { vacant_bed: Some(BedType::Ventilator), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(vent.first().map(|f| f.code.as_str()), Some("DL-H-RGSSH"));
    assert!(!vent.iter().any(|f| f.code == "DL-H-GTB"));
    // A medicine at zero stock does not count.
    let rabies = store
        .search_facilities(&FacilityQuery { medicine: Some("anti-rabies".into()), ..Default::default() })
        .await
        .unwrap();
    assert!(rabies.iter().any(|f| f.code == "DL-H-LNH"));
    assert!(!rabies.iter().any(|f| f.code == "DL-H-GTB"));
    // `%` and `_` are literal, not wildcards.
    assert!(store.search_facilities(&q("%")).await.unwrap().is_empty());
}

async fn bed_and_stock_updates_are_checked(store: &Store, _url: &str) {
    demo_desk(store).await;
    let lnh = store.facility_by_code("DL-H-LNH").await.unwrap();
    assert!(matches!(store.set_beds(lnh.facility_id, BedType::Icu, 10, 11).await, Err(StoreError::Refused(_))));
    store.set_beds(lnh.facility_id, BedType::Icu, 120, 0).await.unwrap();
    let icu = store.facility(lnh.facility_id).await.unwrap();
    assert_eq!(icu.beds.iter().find(|b| b.bed_type == BedType::Icu).unwrap().vacant, 0);
    assert!(matches!(store.set_stock(lnh.facility_id, "ors", -1, "sachet").await, Err(StoreError::Refused(_))));
    store.set_stock(lnh.facility_id, "ors", 50, "sachet").await.unwrap();
    let ors = store.stock(None, Some("ORS")).await.unwrap();
    assert!(ors.iter().any(|s| s.facility_id == lnh.facility_id && s.medicine == "ORS" && s.quantity == 50));
}

async fn answers_search_in_both_languages(store: &Store, _url: &str) {
    demo_desk(store).await;
    let en = store.search_faq("ambulance").await.unwrap();
    assert!(en.iter().any(|f| f.answer_en.contains("102")));
    let hi = store.search_faq("एम्बुलेंस").await.unwrap();
    assert_eq!(hi.iter().map(|f| f.faq_id).collect::<Vec<_>>(), en.iter().map(|f| f.faq_id).collect::<Vec<_>>());
    assert!(store.search_faq("").await.unwrap().len() >= 8);
}

async fn schemes_of_the_whole_family(store: &Store, _url: &str) {
    demo_desk(store).await;
    let father = store.create_patient(&new_patient("Ramesh Kumar", "9810012345")).await.unwrap();
    let son = store.create_patient(&new_patient("Aarav Kumar", "9810012345")).await.unwrap();
    store.link_family(father.patient_id, son.patient_id, "son", "father").await.unwrap();
    store.map_scheme(father.patient_id, "DAK").await.unwrap();
    store.map_scheme(father.patient_id, "DAK").await.unwrap();
    let of_son: Vec<String> =
        store.schemes_of_family(son.patient_id).await.unwrap().into_iter().map(|s| s.code).collect();
    assert_eq!(of_son, vec!["DAK"]);
    assert!(matches!(store.map_scheme(son.patient_id, "NOPE").await, Err(StoreError::InvalidReference(_))));
}

async fn complaints_get_tickets_due_dates_and_tasks(store: &Store, _url: &str) {
    demo_desk(store).await;
    let asha = store.create_staff(&new_staff("asha", Role::Operator)).await.unwrap();
    let gtb = store.facility_by_code("DL-H-GTB").await.unwrap();
    let now = Utc::now();
    let new = NewComplaint {
        category: "medicine_unavailable".into(),
        facility_id: Some(gtb.facility_id),
        patient_id: None,
        contact_id: Some("C-9".into()),
        description: "Anti-rabies vaccine not given at GTB emergency".into(),
        created_by: asha.staff_id,
    };
    let c = store.create_complaint(&new, now).await.unwrap();
    assert_eq!(store.complaint(c.complaint_id).await.unwrap(), c);
    assert!(matches!(store.complaint(c.complaint_id + 100).await, Err(StoreError::NotFound)));
    assert!(c.ticket.starts_with("CL-") && c.ticket.len() == 16, "{}", c.ticket);
    assert_eq!(c.status, ComplaintStatus::Open);
    assert_eq!((c.due_at - c.created_at).num_hours(), 48);
    assert_eq!(c.tasks.len(), 1);
    assert_eq!(store.complaint_by_ticket(&c.ticket.to_lowercase()).await.unwrap().complaint_id, c.complaint_id);
    // The first task falls due at half the service level: a reminder then.
    assert!(store.due_complaint_tasks(now + Duration::hours(23)).await.unwrap().is_empty());
    let due = store.due_complaint_tasks(now + Duration::hours(25)).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].0, c.ticket);
    // A task done is no longer a reminder; doing it twice keeps the first time.
    store.complete_complaint_task(due[0].1.task_id, now + Duration::hours(1)).await.unwrap();
    store.complete_complaint_task(due[0].1.task_id, now + Duration::hours(3)).await.unwrap();
    assert!(store.due_complaint_tasks(now + Duration::hours(25)).await.unwrap().is_empty());
    let done_at = store.complaint(c.complaint_id).await.unwrap().tasks[0].done_at.map(|t| t.timestamp());
    assert_eq!(done_at, Some((now + Duration::hours(1)).timestamp()));
    assert!(matches!(store.complete_complaint_task(9999, now).await, Err(StoreError::NotFound)));
    store
        .add_complaint_task(c.complaint_id, "Call the patient back", now + Duration::hours(30), asha.staff_id, now)
        .await
        .unwrap();
    let done =
        store.set_complaint_status(c.complaint_id, ComplaintStatus::Resolved, now + Duration::hours(2)).await.unwrap();
    assert!(done.resolved_at.is_some());
    assert!(done.tasks.iter().all(|t| t.done_at.is_some()), "resolving closes the tasks");
    assert!(store.due_complaint_tasks(now + Duration::hours(100)).await.unwrap().is_empty());
    let unknown = NewComplaint { category: "nope".into(), ..new };
    assert!(store.create_complaint(&unknown, now).await.is_err());
}

async fn slots_book_atomically_and_refuse_full_or_past(store: &Store, _url: &str) {
    demo_desk(store).await;
    let asha = store.create_staff(&new_staff("asha", Role::Operator)).await.unwrap();
    let p1 = store.create_patient(&new_patient("One", "9810000001")).await.unwrap();
    let p2 = store.create_patient(&new_patient("Two", "9810000002")).await.unwrap();
    let p3 = store.create_patient(&new_patient("Three", "9810000003")).await.unwrap();
    let ddu = store.facility_by_code("DL-H-DDU").await.unwrap();
    let now = Utc::now();
    let start = now + Duration::days(1);
    store.add_slot(ddu.facility_id, "paediatrics", start, start + Duration::minutes(30), 2).await.unwrap();
    store
        .add_slot(ddu.facility_id, "paediatrics", now - Duration::hours(1), now - Duration::minutes(30), 2)
        .await
        .unwrap();
    assert!(matches!(store.add_slot(ddu.facility_id, "x", start, start, 2).await, Err(StoreError::Refused(_))));
    let free = store.free_slots(ddu.facility_id, Some("paediatrics"), now, now + Duration::days(2)).await.unwrap();
    assert_eq!(free.len(), 1, "past slots are not offered");
    let slot = free[0].slot_id;
    let a1 = store.book_appointment(slot, p1.patient_id, asha.staff_id, Some("C-1"), now).await.unwrap();
    assert_eq!(a1.slot.booked, 1);
    assert_eq!(store.appointment(a1.appointment_id).await.unwrap(), a1);
    assert!(matches!(store.appointment(a1.appointment_id + 100).await, Err(StoreError::NotFound)));
    assert!(matches!(
        store.book_appointment(slot, p1.patient_id, asha.staff_id, None, now).await,
        Err(StoreError::Refused(_))
    ));
    store.book_appointment(slot, p2.patient_id, asha.staff_id, None, now).await.unwrap();
    let full = store.book_appointment(slot, p3.patient_id, asha.staff_id, None, now).await;
    assert!(matches!(full, Err(StoreError::Refused(ref m)) if m.contains("full")), "{full:?}");
    assert_eq!(store.slot(slot).await.unwrap().booked, 2, "a refused booking writes nothing");
    assert!(store.appointments_of(p3.patient_id).await.unwrap().is_empty());
    assert!(
        store.free_slots(ddu.facility_id, Some("paediatrics"), now, now + Duration::days(2)).await.unwrap().is_empty()
    );
    // Cancelling frees the place.
    store.cancel_appointment(a1.appointment_id, now).await.unwrap();
    assert!(matches!(store.cancel_appointment(a1.appointment_id, now).await, Err(StoreError::Refused(_))));
    let a3 = store.book_appointment(slot, p3.patient_id, asha.staff_id, None, now).await.unwrap();
    assert_eq!(a3.slot.booked, 2);
    let past = store.free_slots(ddu.facility_id, None, now - Duration::days(1), now).await.unwrap();
    assert!(past.is_empty() || past.iter().all(|s| s.starts_at < now));
    if let Some(old) = past.first() {
        assert!(matches!(
            store.book_appointment(old.slot_id, p1.patient_id, asha.staff_id, None, now).await,
            Err(StoreError::Refused(_))
        ));
    }
}

async fn a_bad_import_file_writes_nothing(store: &Store, _url: &str) {
    let bad = agent_console::hims::DataSet {
        facilities: Some(agent_console::hims::DEMO.facilities.unwrap()),
        stock: Some("facility_code,medicine,quantity,unit\nDL-H-LNH,ORS,10,sachet\nDL-X-NOPE,ORS,5,sachet\n"),
        ..Default::default()
    };
    let err = agent_console::hims::import(store, &bad).await.unwrap_err().to_string();
    assert!(err.contains("stock.csv line 3") && err.contains("DL-X-NOPE"), "{err}");
    assert!(store.search_facilities(&FacilityQuery::default()).await.unwrap().is_empty());
}

async fn mail_outbox_retries_and_survives_reopening(store: &Store, url: &str) {
    let now = Utc::now();
    let mail = NewMail {
        envelope_from: "helpline@careline.example".into(),
        envelope_to: vec!["ramesh@example.in".into()],
        subject: "Your appointment".into(),
        raw: "Subject: Your appointment\r\n\r\nSee you.\r\n".into(),
        purpose: "appointment.confirmation".into(),
        patient_id: None,
    };
    let queued = store.enqueue_mail(&mail, now).await.unwrap();
    let node = Claimant::new("node-a");
    assert_eq!(store.claim_due_mail(&node, now, 10).await.unwrap(), vec![queued.clone()]);
    assert!(store.claim_due_mail(&node, now, 10).await.unwrap().is_empty(), "claimed: not due again");
    let retry_at = now + Duration::seconds(30);
    let after = store
        .record_mail_attempt(queued.mail_id, &Attempt::Retry { error: "421 try later".into(), at: retry_at }, now)
        .await
        .unwrap();
    assert_eq!(after.attempts, 1);
    assert!(store.claim_due_mail(&node, now, 10).await.unwrap().is_empty(), "not due before the backoff");
    // A restart finds it still queued.
    let reopened = Store::open(url).await.unwrap();
    assert_eq!(reopened.next_mail_due().await.unwrap().map(|t| t.timestamp()), Some(retry_at.timestamp()));
    let due = reopened.claim_due_mail(&node, retry_at, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].raw, mail.raw);
    // Claimed, it falls due to the other nodes when the claim runs out.
    assert_eq!(
        reopened.next_mail_due().await.unwrap().map(|t| t.timestamp()),
        Some((retry_at + MAIL_LEASE).timestamp())
    );
    reopened.close().await;
    let sent = store.record_mail_attempt(queued.mail_id, &Attempt::Sent, retry_at).await.unwrap();
    assert_eq!((sent.attempts, sent.sent_at.is_some(), sent.last_error.as_deref()), (2, true, Some("421 try later")));
    assert!(store.claim_due_mail(&node, retry_at + Duration::days(1), 10).await.unwrap().is_empty());
    assert_eq!(store.next_mail_due().await.unwrap(), None);
    let nobody = NewMail { envelope_to: vec![], ..mail };
    assert!(matches!(store.enqueue_mail(&nobody, now).await, Err(StoreError::Refused(_))));
}

async fn contacts_from_arrival_to_wrap_up(store: &Store, _url: &str) {
    let asha = store.create_staff(&new_staff("asha", Role::Operator)).await.unwrap();
    let doctor = store.create_staff(&new_staff("dr.mehta", Role::Doctor)).await.unwrap();
    let kamla = store.create_patient(&new_patient("Kamla Devi", "9810000001")).await.unwrap();
    let now = Utc::now();
    let new = NewContact {
        channel: Some(Channel::Webrtc),
        language: "hi".into(),
        caller_phone: Some("+919810000001".into()),
        ..Default::default()
    };
    let c = store.create_contact("c-1", &new, "hash-1", now).await.unwrap();
    assert_eq!((c.status, c.tier, c.channel), (ContactStatus::Waiting, 1, Channel::Webrtc));
    assert_eq!(store.contact("c-1").await.unwrap(), c);
    assert!(matches!(store.contact("c-404").await, Err(StoreError::NotFound)));
    assert_eq!(store.contact_by_token("hash-1").await.unwrap().contact_id, "c-1");
    assert!(matches!(store.contact_by_token("other").await, Err(StoreError::NotFound)));
    assert!(matches!(store.create_contact("c-2", &new, "hash-1", now).await, Err(StoreError::Conflict(_))));

    let t1 = now + Duration::seconds(12);
    let c = store.update_contact("c-1", &ContactChange::Answered { by: asha.staff_id }, t1).await.unwrap();
    assert_eq!(
        (c.status, c.answered_by, c.answered_at.map(|t| t.timestamp())),
        (ContactStatus::Connected, Some(asha.staff_id), Some(t1.timestamp()))
    );
    store.update_contact("c-1", &ContactChange::Identified { patient: kamla.patient_id }, t1).await.unwrap();
    store.add_contact_staff("c-1", asha.staff_id, t1).await.unwrap();
    store.add_contact_staff("c-1", asha.staff_id, t1).await.unwrap();
    assert!(store.works_on_contact(asha.staff_id, "c-1").await.unwrap());
    assert!(!store.works_on_contact(doctor.staff_id, "c-1").await.unwrap());
    let c =
        store.update_contact("c-1", &ContactChange::Escalated { specialty: "paediatrics".into() }, t1).await.unwrap();
    assert_eq!((c.tier, c.specialty.as_deref()), (2, Some("paediatrics")));
    let c = store.update_contact("c-1", &ContactChange::DoctorJoined { doctor: doctor.staff_id }, t1).await.unwrap();
    assert_eq!(c.doctor_id, Some(doctor.staff_id));
    let t2 = now + Duration::minutes(9);
    let c = store.update_contact("c-1", &ContactChange::Ended, t2).await.unwrap();
    assert_eq!(c.status, ContactStatus::WrapUp);
    // Owed a disposition by the staff who worked on it, from when it ended.
    let owed = store.contacts_to_wrap_up(asha.staff_id, now).await.unwrap();
    assert_eq!(owed.iter().map(|c| c.contact_id.as_str()).collect::<Vec<_>>(), vec!["c-1"]);
    assert!(store.contacts_to_wrap_up(doctor.staff_id, now).await.unwrap().is_empty(), "not on contact_staff");
    assert!(store.contacts_to_wrap_up(asha.staff_id, t2 + Duration::seconds(1)).await.unwrap().is_empty());
    // An ended call cannot be abandoned.
    assert!(matches!(store.update_contact("c-1", &ContactChange::Abandoned, t2).await, Err(StoreError::Refused(_))));
    let c = store
        .update_contact(
            "c-1",
            &ContactChange::WrappedUp {
                disposition: agent_console::store::Disposition::Escalated,
                note: Some("fever".into()),
            },
            t2,
        )
        .await
        .unwrap();
    assert_eq!((c.status, c.disposition), (ContactStatus::Ended, Some(agent_console::store::Disposition::Escalated)));
    assert!(store.contacts_to_wrap_up(asha.staff_id, now).await.unwrap().is_empty(), "wrapped up");
    assert_eq!(store.contacts_of_patient(kamla.patient_id).await.unwrap().len(), 1);
    assert_eq!(store.contacts_between(now - Duration::hours(1), now + Duration::hours(1)).await.unwrap().len(), 1);
    assert!(matches!(store.update_contact("nope", &ContactChange::Ended, t2).await, Err(StoreError::NotFound)));

    let chat = NewContact { channel: Some(Channel::Chat), language: "en".into(), ..Default::default() };
    store.create_contact("c-3", &chat, "hash-3", now).await.unwrap();
    let m1 = store.add_chat_message("c-3", "patient", None, "Is GTB open on Sunday?", now).await.unwrap();
    let m2 = store.add_chat_message("c-3", "staff", Some(asha.staff_id), "Emergency is open 24x7.", now).await.unwrap();
    assert_eq!(store.last_chat_message_id("c-3").await.unwrap(), Some(m2.chat_message_id));
    assert_eq!(store.last_chat_message_id("c-1").await.unwrap(), None, "a call has no messages");
    assert_eq!(store.chat_messages("c-3", 0).await.unwrap().len(), 2);
    let after = store.chat_messages("c-3", m1.chat_message_id).await.unwrap();
    assert_eq!(after.iter().map(|m| m.sender.as_str()).collect::<Vec<_>>(), vec!["staff"]);
    let c = store.update_contact("c-3", &ContactChange::Abandoned, t2).await.unwrap();
    assert_eq!(c.status, ContactStatus::Abandoned);
}

async fn captions_keep_the_transcript_in_order(store: &Store, _url: &str) {
    let new = NewContact { channel: Some(Channel::Webrtc), language: "hi".into(), ..Default::default() };
    store.create_contact("c-cap", &new, "hash-cap", Utc::now()).await.unwrap();
    let said = [("patient", "patient", "मुझे कल से बुखार है", "hi"), ("dr.mehta", "doctor", "How high is the fever?", "en")];
    for (i, (who, role, text, language)) in said.iter().enumerate() {
        let c = NewCaption {
            contact_id: "c-cap",
            participant: who,
            role,
            text,
            start_ms: 1_000 * i as i64,
            end_ms: 1_000 * i as i64 + 800,
            language,
        };
        store.add_caption(&c, Utc::now()).await.unwrap();
    }
    let transcript = store.captions("c-cap").await.unwrap();
    assert_eq!(
        transcript.iter().map(|c| c.text.as_str()).collect::<Vec<_>>(),
        ["मुझे कल से बुखार है", "How high is the fever?"]
    );
    assert_eq!((transcript[1].role.as_str(), transcript[1].end_ms), ("doctor", 1_800));
    assert!(store.captions("no-such-contact").await.unwrap().is_empty());
    // A caption for an unknown contact is refused.
    let orphan = NewCaption {
        contact_id: "nope",
        participant: "x",
        role: "patient",
        text: "x",
        start_ms: 0,
        end_ms: 1,
        language: "en",
    };
    assert!(store.add_caption(&orphan, Utc::now()).await.is_err());
}

async fn the_hims_link_keeps_references_patients_and_consult_records(store: &Store, _url: &str) {
    demo_desk(store).await;
    // Which server resource a local record is, replaced when it changes.
    let lnh = store.facility_by_code("DL-H-LNH").await.unwrap().facility_id;
    assert_eq!(store.hims_ref(HimsKind::Facility, lnh).await.unwrap(), None);
    store.set_hims_ref(HimsKind::Facility, lnh, "Location/7").await.unwrap();
    store.set_hims_ref(HimsKind::Facility, lnh, "Location/8").await.unwrap();
    assert_eq!(store.hims_ref(HimsKind::Facility, lnh).await.unwrap().as_deref(), Some("Location/8"));
    assert_eq!(store.hims_ref(HimsKind::Slot, lnh).await.unwrap(), None, "kinds are apart");
    // A slot found again by its start.
    let start = Utc::now() + Duration::days(3);
    store.add_slot(lnh, "paediatrics", start, start + Duration::minutes(15), 1).await.unwrap();
    let slot = store.slot_at(lnh, "paediatrics", start).await.unwrap();
    assert_eq!((slot.capacity, slot.booked), (1, 0));
    // The HIMS moves the slot's end: the working copy follows, keeping its bookings.
    let asha = store.create_staff(&new_staff("asha", Role::Operator)).await.unwrap();
    let ravi = store.create_patient(&new_patient("Ravi", "+919810000009")).await.unwrap();
    store.book_appointment(slot.slot_id, ravi.patient_id, asha.staff_id, None, Utc::now()).await.unwrap();
    let new_end = start + Duration::minutes(20);
    let moved = store.add_slot(lnh, "paediatrics", start, new_end, 1).await.unwrap();
    assert_eq!(
        (moved.slot_id, moved.ends_at.timestamp(), moved.booked),
        (slot.slot_id, new_end.timestamp(), 1),
        "the upsert returns the slot with the new end"
    );
    assert_eq!(store.slot_at(lnh, "paediatrics", start).await.unwrap(), moved);
    assert!(matches!(store.slot_at(lnh, "surgery", start).await, Err(StoreError::NotFound)));

    // A HIMS patient updates the local copy with the same card (and gives it the HIMS id), or is added.
    let mut local = new_patient("Kamla Devi", "+919810000001");
    local.ehealth_card = Some("DL-EHC-500001".into());
    let kamla = store.create_patient(&local).await.unwrap();
    let mut from_hims = new_patient("Kamla Devi Sharma", "+919810000002");
    from_hims.ehealth_card = Some("DL-EHC-500001".into());
    from_hims.abha_number = Some(AbhaNumber::parse("91-1111-2222-3333").unwrap());
    from_hims.hims_patient_id = Some("17".into());
    let synced = store.sync_patient(&from_hims).await.unwrap();
    assert_eq!(synced.patient_id, kamla.patient_id);
    assert_eq!((synced.name.as_str(), synced.phone.as_deref()), ("Kamla Devi Sharma", Some("+919810000002")));
    assert_eq!(synced.hims_patient_id.as_deref(), Some("17"));
    // Again, found by the HIMS id now.
    from_hims.name = "Kamla Sharma".into();
    assert_eq!(store.sync_patient(&from_hims).await.unwrap().patient_id, kamla.patient_id);
    let mut other = new_patient("Ravi Verma", "+919810000003");
    other.hims_patient_id = Some("18".into());
    let ravi = store.sync_patient(&other).await.unwrap();
    assert_ne!(ravi.patient_id, kamla.patient_id);
    // Two HIMS patients with one card: a conflict, and nothing changes.
    let mut clash = new_patient("Someone Else", "+919810000004");
    clash.hims_patient_id = Some("18".into());
    clash.ehealth_card = Some("DL-EHC-500001".into());
    assert!(matches!(store.sync_patient(&clash).await, Err(StoreError::Conflict(_))));
    assert_eq!(store.patient(ravi.patient_id).await.unwrap().name, "Ravi Verma");

    // A consult record, once per contact.
    let doctor = store.create_staff(&new_staff("dr.mehta", Role::Doctor)).await.unwrap();
    let new = NewContact { channel: Some(Channel::Chat), language: "hi".into(), ..Default::default() };
    store.create_contact("c-h", &new, "hash-h", Utc::now()).await.unwrap();
    assert!(store.consult_record("c-h").await.unwrap().is_none());
    let record = ConsultRecord {
        contact_id: "c-h".into(),
        hims: "http://127.0.0.1:9/fhir".into(),
        encounter_ref: "Encounter/5".into(),
        bundle: serde_json::json!({"resourceType": "Bundle", "type": "transaction", "entry": []}),
        recorded_by: doctor.staff_id,
        recorded_at: Utc::now(),
    };
    store.save_consult_record(&record).await.unwrap();
    let kept = store.consult_record("c-h").await.unwrap().unwrap();
    assert_eq!((kept.encounter_ref.as_str(), &kept.bundle), ("Encounter/5", &record.bundle));
    assert!(matches!(store.save_consult_record(&record).await, Err(StoreError::Conflict(_))));
}

/// Now, to the second: PostgreSQL keeps microseconds, so a time read back
/// equals the one written only without the nanoseconds.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(0)
}

/// A contact with a patient and a doctor on it, for the records made on a contact.
async fn doctor_contact(store: &Store, id: &str) -> (agent_console::store::Staff, agent_console::store::Patient) {
    let doctor = store.create_staff(&new_staff(&format!("dr.{id}"), Role::Doctor)).await.unwrap();
    let patient = store.create_patient(&new_patient("Kamla Devi", "9810000001")).await.unwrap();
    let new = NewContact { channel: Some(Channel::Webrtc), language: "hi".into(), ..Default::default() };
    store.create_contact(id, &new, &format!("hash-{id}"), now()).await.unwrap();
    store.update_contact(id, &ContactChange::Identified { patient: patient.patient_id }, now()).await.unwrap();
    (doctor, patient)
}

/// The field a constraint violation names, and which kind it is.
fn violation<T: std::fmt::Debug>(result: Result<T, StoreError>) -> (&'static str, String) {
    match result {
        Err(StoreError::Conflict(field)) => ("conflict", field),
        Err(StoreError::InvalidReference(field)) => ("invalid reference", field),
        other => panic!("expected a constraint violation, got {other:?}"),
    }
}

async fn a_constraint_violation_names_its_field_the_same_on_both(store: &Store, _url: &str) {
    // Unique keys: the clashing column, whichever backend said so.
    let new = NewContact { channel: Some(Channel::Chat), language: "hi".into(), ..Default::default() };
    store.create_contact("c-1", &new, "hash-1", now()).await.unwrap();
    assert_eq!(
        violation(store.create_contact("c-2", &new, "hash-1", now()).await),
        ("conflict", "patient_token_hash".to_owned())
    );
    assert_eq!(
        violation(store.create_contact("c-1", &new, "hash-2", now()).await),
        ("conflict", "contact_id".to_owned())
    );
    let mut card = new_patient("Kamla Devi", "9810000001");
    card.ehealth_card = Some("DL-EHC-0001".into());
    store.create_patient(&card).await.unwrap();
    assert_eq!(violation(store.create_patient(&card).await), ("conflict", "ehealth_card".to_owned()));
    // A key of several columns names the one the caller chose.
    store.set_hims_ref(HimsKind::Facility, 1, "Location/1").await.unwrap();
    assert_eq!(
        violation(store.set_hims_ref(HimsKind::Facility, 2, "Location/1").await),
        ("conflict", "fhir_id".to_owned())
    );
    // Foreign keys: the field the query names, else the same neutral words on both.
    let orphan = NewCaption {
        contact_id: "nope",
        participant: "x",
        role: "patient",
        text: "x",
        start_ms: 0,
        end_ms: 1,
        language: "en",
    };
    assert_eq!(violation(store.add_caption(&orphan, now()).await), ("invalid reference", "contact_id".to_owned()));
    let kamla = store.create_patient(&new_patient("Kamla", "9810000002")).await.unwrap();
    assert_eq!(
        violation(store.map_scheme(kamla.patient_id, "NOPE").await),
        ("invalid reference", "scheme_code".to_owned())
    );
    let doctor = store.create_staff(&new_staff("dr.mehta", Role::Doctor)).await.unwrap();
    let rx = StoredPrescription {
        prescription_id: "rx-1".into(),
        contact_id: "no-such-contact".into(),
        patient_id: kamla.patient_id,
        doctor_id: doctor.staff_id,
        mode: PrescriptionMode::Audio,
        kind: PrescriptionKind::First,
        body: serde_json::json!({}),
        issued_at: now(),
    };
    assert_eq!(violation(store.create_prescription(&rx).await), ("invalid reference", UNNAMED_REFERENCE.to_owned()));
}

async fn routing_events_come_back_in_the_order_logged(store: &Store, _url: &str) {
    let t0 = now();
    let event = |at: DateTime<Utc>, kind: &str, contact: Option<&str>, agent: Option<i64>| RoutingEventRow {
        at,
        kind: kind.into(),
        contact_id: contact.map(str::to_owned),
        agent_id: agent,
        body: format!(r#"{{"type":"{kind}"}}"#),
    };
    let old = event(t0 - Duration::hours(2), "agent_ready", None, Some(1));
    // Logged in engine order, which the clock need not follow.
    let arrived = event(t0 + Duration::seconds(5), "contact_arrived", Some("c-1"), None);
    let accepted = event(t0, "accepted", Some("c-1"), Some(1));
    for e in [&old, &arrived, &accepted] {
        store.append_routing_event("node-a", e).await.unwrap();
    }
    assert_eq!(store.routing_events_since(t0 - Duration::hours(1)).await.unwrap(), vec![arrived.clone(), accepted]);
    assert_eq!(store.routing_events_since(t0 - Duration::hours(3)).await.unwrap()[0], old);
    assert!(store.routing_events_since(t0 + Duration::hours(1)).await.unwrap().is_empty());
}

async fn a_routing_event_and_its_record_change_are_written_together(store: &Store, _url: &str) {
    let asha = store.create_staff(&new_staff("asha", Role::Operator)).await.unwrap();
    let t0 = now();
    let row = |kind: &str, contact: &str| RoutingEventRow {
        at: t0,
        kind: kind.into(),
        contact_id: Some(contact.to_owned()),
        agent_id: None,
        body: format!(r#"{{"type":"{kind}"}}"#),
    };
    let new = NewContact { channel: Some(Channel::Chat), language: "hi".into(), ..Default::default() };
    let create = RecordWrite::Create { contact_id: "c-1".into(), new: new.clone(), token_hash: "hash-1".into() };
    assert_eq!(create.contact_id(), Some("c-1"));
    store.log_routing_event("node-a", &row("contact_arrived", "c-1"), &create).await.unwrap();
    assert_eq!(store.contact("c-1").await.unwrap().status, ContactStatus::Waiting);
    assert_eq!(store.routing_events_since(t0 - Duration::seconds(1)).await.unwrap().len(), 1);
    // The same contact again: the insert fails, and the event is not logged either.
    let again = store.log_routing_event("node-a", &row("contact_arrived", "c-1"), &create).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert_eq!(store.routing_events_since(t0 - Duration::seconds(1)).await.unwrap().len(), 1, "neither");
    // A change with its staff member.
    let answer = RecordWrite::Change {
        contact_id: "c-1".into(),
        change: ContactChange::Answered { by: asha.staff_id },
        staff: Some(asha.staff_id),
    };
    store.log_routing_event("node-a", &row("accepted", "c-1"), &answer).await.unwrap();
    let c = store.contact("c-1").await.unwrap();
    assert_eq!((c.status, c.answered_by), (ContactStatus::Connected, Some(asha.staff_id)));
    assert!(store.works_on_contact(asha.staff_id, "c-1").await.unwrap());
    // A change the record's status refuses writes nothing, the event included.
    let abandon = RecordWrite::Change { contact_id: "c-1".into(), change: ContactChange::Abandoned, staff: None };
    let refused = store.log_routing_event("node-a", &row("abandoned", "c-1"), &abandon).await;
    assert!(matches!(refused, Err(StoreError::Refused(_))), "{refused:?}");
    assert_eq!(store.routing_events_since(t0 - Duration::seconds(1)).await.unwrap().len(), 2);
    assert_eq!(store.contact("c-1").await.unwrap().status, ContactStatus::Connected);
    // Nothing to write: the event alone; and a write on its own.
    store.log_routing_event("node-a", &row("tick", "c-1"), &RecordWrite::Nothing).await.unwrap();
    assert_eq!(store.routing_events_since(t0 - Duration::seconds(1)).await.unwrap().len(), 3);
    let end = RecordWrite::Change { contact_id: "c-1".into(), change: ContactChange::Ended, staff: None };
    store.write_contact(&end, t0).await.unwrap();
    assert_eq!(store.contact("c-1").await.unwrap().status, ContactStatus::WrapUp);
    assert!(matches!(store.write_contact(&abandon, t0).await, Err(StoreError::Refused(_))));
}

async fn a_routing_entry_is_written_once_whichever_node_carries_it_out(store: &Store, _url: &str) {
    let asha = store.create_staff(&new_staff("asha", Role::Operator)).await.unwrap();
    let t0 = now();
    let row = |kind: &str| RoutingEventRow {
        at: t0,
        kind: kind.into(),
        contact_id: Some("c-9".into()),
        agent_id: None,
        body: format!(r#"{{"type":"{kind}"}}"#),
    };
    let new = NewContact { channel: Some(Channel::Chat), language: "hi".into(), ..Default::default() };
    let create = RecordWrite::Create { contact_id: "c-9".into(), new, token_hash: "hash-9".into() };
    // The record change travels in the stream as JSON and comes back the same.
    let json = serde_json::to_string(&create).unwrap();
    assert_eq!(serde_json::from_str::<RecordWrite>(&json).unwrap(), create);
    assert!(store.log_routing_entry("node-a~1", "1-0", &row("contact_arrived"), &create).await.unwrap());
    // Another node carries out the same entry: nothing is written twice (no conflict either).
    assert!(!store.log_routing_entry("node-a~1", "1-0", &row("contact_arrived"), &create).await.unwrap());
    assert_eq!(store.routing_events_since(t0 - Duration::seconds(1)).await.unwrap().len(), 1);
    assert_eq!(store.contact("c-9").await.unwrap().status, ContactStatus::Waiting);
    let answer = RecordWrite::Change {
        contact_id: "c-9".into(),
        change: ContactChange::Answered { by: asha.staff_id },
        staff: Some(asha.staff_id),
    };
    assert!(store.log_routing_entry("node-b~2", "2-0", &row("accept"), &answer).await.unwrap());
    assert!(!store.log_routing_entry("node-c~3", "2-0", &row("accept"), &answer).await.unwrap());
    let c = store.contact("c-9").await.unwrap();
    assert_eq!((c.status, c.answered_by), (ContactStatus::Connected, Some(asha.staff_id)));
    // A change the record refuses: the event is still in the history, once, and the record as it was.
    let abandon = RecordWrite::Change { contact_id: "c-9".into(), change: ContactChange::Abandoned, staff: None };
    let refused = store.log_routing_entry("node-b~2", "3-0", &row("abandon"), &abandon).await;
    assert!(matches!(refused, Err(StoreError::Refused(_))), "{refused:?}");
    assert!(!store.log_routing_entry("node-c~3", "3-0", &row("abandon"), &abandon).await.unwrap());
    let kinds: Vec<String> =
        store.routing_events_since(t0 - Duration::seconds(1)).await.unwrap().into_iter().map(|r| r.kind).collect();
    assert_eq!(kinds, ["contact_arrived", "accept", "abandon"]);
    assert_eq!(store.contact("c-9").await.unwrap().status, ContactStatus::Connected);
}

async fn patient_access_facts_list_every_relation(store: &Store, _url: &str) {
    use agent_console::access::{ContactFact, Facts, Link};
    demo_desk(store).await;
    let asha = store.create_staff(&new_staff("asha", Role::Operator)).await.unwrap();
    let ravi = store.create_staff(&new_staff("ravi", Role::Operator)).await.unwrap();
    let kamla = store.create_patient(&new_patient("Kamla Devi", "9810000001")).await.unwrap();
    let raju = store.create_patient(&new_patient("Raju", "9810000002")).await.unwrap();
    let other = store.create_patient(&new_patient("Someone Else", "9810000003")).await.unwrap();
    store.link_family(kamla.patient_id, raju.patient_id, "son", "mother").await.unwrap();
    let t0 = now();
    let chat = NewContact { channel: Some(Channel::Chat), language: "hi".into(), ..Default::default() };
    // c-1 is Kamla's, worked on by asha; on c-2 asha found `other` by a lookup.
    store.create_contact("c-1", &chat, "hash-1", t0).await.unwrap();
    store.update_contact("c-1", &ContactChange::Identified { patient: kamla.patient_id }, t0).await.unwrap();
    store.add_contact_staff("c-1", asha.staff_id, t0).await.unwrap();
    store.create_contact("c-2", &chat, "hash-2", t0).await.unwrap();
    store.add_contact_staff("c-2", asha.staff_id, t0).await.unwrap();
    store.add_contact_lookup("c-2", asha.staff_id, other.patient_id, t0).await.unwrap();
    store.add_contact_lookup("c-2", asha.staff_id, other.patient_id, t0).await.unwrap();
    assert!(matches!(
        store.add_contact_lookup("c-404", asha.staff_id, other.patient_id, t0).await,
        Err(StoreError::InvalidReference(_))
    ));
    let fact =
        |id: &str, link| ContactFact { contact_id: id.into(), status: ContactStatus::Waiting, ended_at: None, link };
    let facts = |staff, patient| store.patient_access_facts(staff, false, patient, t0);
    assert_eq!(facts(asha.staff_id, kamla.patient_id).await.unwrap().contacts, vec![fact("c-1", Link::Patient)]);
    assert_eq!(facts(asha.staff_id, raju.patient_id).await.unwrap().contacts, vec![fact("c-1", Link::Relative)]);
    assert_eq!(facts(asha.staff_id, other.patient_id).await.unwrap().contacts, vec![fact("c-2", Link::LookedUp)]);
    assert_eq!(facts(ravi.staff_id, kamla.patient_id).await.unwrap(), Facts::default());
    assert!(store.patient_access_facts(ravi.staff_id, true, kamla.patient_id, t0).await.unwrap().supervisor);

    // A complaint task ravi holds, and a follow-up he booked, open Kamla to him.
    let complaint = store
        .create_complaint(
            &NewComplaint {
                category: store.complaint_categories().await.unwrap()[0].code.clone(),
                facility_id: None,
                patient_id: Some(kamla.patient_id),
                contact_id: None,
                description: "The pharmacy had no insulin".into(),
                created_by: asha.staff_id,
            },
            t0,
        )
        .await
        .unwrap();
    store
        .add_complaint_task(complaint.complaint_id, "call her back", t0 + Duration::days(2), ravi.staff_id, t0)
        .await
        .unwrap();
    assert_eq!(facts(ravi.staff_id, kamla.patient_id).await.unwrap().tasks, vec![complaint.ticket.clone()]);
    // Break the glass: the audit entry is the record of it.
    let entry = store
        .append_audit(&NewAudit {
            staff_id: Some(ravi.staff_id),
            action: agent_console::store::BREAK_GLASS_ACTION.into(),
            patient_id: Some(raju.patient_id),
            contact_id: None,
            detail: "mother on the line".into(),
        })
        .await
        .unwrap();
    assert_eq!(facts(ravi.staff_id, raju.patient_id).await.unwrap().broke_glass_at, Some(entry.created_at));
    let listed = store.audit_by_action(agent_console::store::BREAK_GLASS_ACTION, 10).await.unwrap();
    assert_eq!(listed, vec![entry]);
    assert!(store.audit_by_action("nothing.like.this", 10).await.unwrap().is_empty());
}

async fn prescriptions_and_consult_notes_round_trip(store: &Store, _url: &str) {
    let (doctor, kamla) = doctor_contact(store, "c-rx").await;
    let first = StoredPrescription {
        prescription_id: "rx-1".into(),
        contact_id: "c-rx".into(),
        patient_id: kamla.patient_id,
        doctor_id: doctor.staff_id,
        mode: agent_console::store::PrescriptionMode::Audio,
        kind: agent_console::store::PrescriptionKind::First,
        body: serde_json::json!({"items": [{"generic": "PARACETAMOL", "strength": "500 mg"}]}),
        issued_at: now() - Duration::days(3),
    };
    let follow_up = StoredPrescription {
        prescription_id: "rx-2".into(),
        kind: agent_console::store::PrescriptionKind::FollowUp,
        issued_at: now(),
        ..first.clone()
    };
    store.create_prescription(&first).await.unwrap();
    store.create_prescription(&follow_up).await.unwrap();
    assert_eq!(store.prescription("rx-1").await.unwrap(), first);
    assert!(matches!(store.prescription("rx-9").await, Err(StoreError::NotFound)));
    assert_eq!(store.prescriptions_of(kamla.patient_id).await.unwrap(), vec![follow_up, first.clone()]);
    assert!(matches!(store.create_prescription(&first).await, Err(StoreError::Conflict(_))));

    assert_eq!(store.consult_note("c-rx").await.unwrap(), None);
    let mut note = ConsultNote {
        contact_id: "c-rx".into(),
        doctor_id: doctor.staff_id,
        consent: serde_json::json!({"kind": "explicit", "by": "patient"}),
        recording_consent: true,
        chief_complaint: "Fever".into(),
        history: "Three days".into(),
        findings: "38.9 °C".into(),
        diagnosis: "Viral fever".into(),
        advice: "Fluids".into(),
        updated_at: now(),
    };
    store.save_consult_note(&note).await.unwrap();
    assert_eq!(store.consult_note("c-rx").await.unwrap().as_ref(), Some(&note));
    // Saving again replaces the note.
    note.diagnosis = "Dengue, suspected".into();
    note.recording_consent = false;
    store.save_consult_note(&note).await.unwrap();
    assert_eq!(store.consult_note("c-rx").await.unwrap(), Some(note));
}

async fn reference_data_upserts_update_in_place(store: &Store, _url: &str) {
    let mut facility = NewFacility {
        code: "DL-H-TEST".into(),
        name: "Test Hospital".into(),
        name_hi: "टेस्ट अस्पताल".into(),
        kind: FacilityKind::Hospital,
        district: "Central".into(),
        address: "1 Test Marg".into(),
        phone: Some("011-1111".into()),
        latitude: Some(28.6),
        longitude: Some(77.2),
        opening_hours: "24x7".into(),
        services: vec!["Emergency".into(), "Dialysis".into()],
        services_hi: vec!["आपातकाल".into()],
    };
    let id = store.upsert_facility(&facility).await.unwrap();
    facility.name = "Test Hospital (renamed)".into();
    facility.kind = FacilityKind::Polyclinic;
    assert_eq!(store.upsert_facility(&facility).await.unwrap(), id, "the same code is the same facility");
    let kept = store.facility(id).await.unwrap();
    assert_eq!(
        (kept.name.as_str(), kept.kind, kept.services.clone(), kept.services_hi.clone(), kept.latitude),
        (
            "Test Hospital (renamed)",
            FacilityKind::Polyclinic,
            facility.services.clone(),
            facility.services_hi,
            Some(28.6)
        )
    );

    let mut faq = Faq {
        faq_id: 0,
        topic: "ambulance".into(),
        question_en: "How do I call an ambulance?".into(),
        answer_en: "Dial 102.".into(),
        question_hi: "एम्बुलेंस कैसे बुलाएं?".into(),
        answer_hi: "102 डायल करें।".into(),
    };
    let faq_id = store.upsert_faq(&faq).await.unwrap();
    faq.answer_en = "Dial 102, or 108 in an emergency.".into();
    assert_eq!(store.upsert_faq(&faq).await.unwrap(), faq_id);
    faq.faq_id = faq_id;
    assert_eq!(store.search_faq("ambulance").await.unwrap(), vec![faq]);

    let mut scheme = Scheme {
        code: "DAK".into(),
        name: "Delhi Arogya Kosh".into(),
        name_hi: "दिल्ली आरोग्य कोष".into(),
        description: "Treatment in empanelled private hospitals".into(),
    };
    store.upsert_scheme(&scheme).await.unwrap();
    scheme.description = "Free treatment for Delhi residents".into();
    store.upsert_scheme(&scheme).await.unwrap();
    let kamla = store.create_patient(&new_patient("Kamla", "9810000001")).await.unwrap();
    store.map_scheme(kamla.patient_id, "DAK").await.unwrap();
    assert_eq!(store.schemes_of_family(kamla.patient_id).await.unwrap(), vec![scheme]);

    let mut category = ComplaintCategory {
        code: "staff_behaviour".into(),
        name_en: "Staff behaviour".into(),
        name_hi: "कर्मचारी व्यवहार".into(),
        sla_hours: 72,
    };
    store.upsert_complaint_category(&category).await.unwrap();
    category.sla_hours = 24;
    store.upsert_complaint_category(&category).await.unwrap();
    assert_eq!(store.complaint_categories().await.unwrap(), vec![category]);
}

async fn shifts_secrets_audit_and_mail_read_back(store: &Store, _url: &str) {
    let night = store.create_shift("operator-night", Role::Operator, 1320, 360, false).await.unwrap();
    assert_eq!((night.starts_minute, night.ends_minute, night.role), (1320, 360, Role::Operator));
    assert_eq!(store.shifts().await.unwrap().into_iter().find(|s| s.name == "operator-night"), Some(night));
    assert!(matches!(
        store.create_shift("operator-night", Role::Operator, 0, 60, false).await,
        Err(StoreError::Conflict(ref f)) if f == "name"
    ));

    // A secret is made once; later makers get the first one.
    assert_eq!(store.secret("rx-signing", || "first".into()).await.unwrap(), "first");
    assert_eq!(store.secret("rx-signing", || "second".into()).await.unwrap(), "first");
    assert_eq!(store.secret("other", || "third".into()).await.unwrap(), "third");

    let entry = |action: &str| NewAudit {
        staff_id: None,
        action: action.into(),
        patient_id: None,
        contact_id: None,
        detail: String::new(),
    };
    for action in ["login", "patient.read", "logout"] {
        store.append_audit(&entry(action)).await.unwrap();
    }
    let recent: Vec<String> = store.recent_audit(2).await.unwrap().into_iter().map(|e| e.action).collect();
    assert_eq!(recent, ["logout", "patient.read"], "newest first, at most the limit");

    let mail = NewMail {
        envelope_from: "helpline@careline.example".into(),
        envelope_to: vec!["ramesh@example.in".into()],
        subject: "Your appointment".into(),
        raw: "Subject: Your appointment\r\n\r\nSee you.\r\n".into(),
        purpose: "appointment.confirmation".into(),
        patient_id: None,
    };
    let queued = store.enqueue_mail(&mail, now()).await.unwrap();
    assert_eq!(store.mail(queued.mail_id).await.unwrap(), queued);
    assert!(matches!(store.mail(queued.mail_id + 1).await, Err(StoreError::NotFound)));
}

async fn ambulance_requests_keep_their_delivery(store: &Store, url: &str) {
    let (operator, kamla) = doctor_contact(store, "c-amb").await;
    let t0 = now();
    let request = AmbulanceRequest {
        ambulance_request_id: "amb-1".into(),
        contact_id: "c-amb".into(),
        patient_id: Some(kamla.patient_id),
        requested_by: operator.staff_id,
        location: "Gate 3, Kalkaji Mandir".into(),
        urgency: agent_console::store::Urgency::Critical,
        note: "Chest pain".into(),
        created_at: t0,
        delivered_at: None,
        attempts: 0,
        last_error: None,
        next_attempt_at: None,
    };
    let maker = Claimant::new("node-a");
    let retrier = Claimant::new("node-b");
    store.create_ambulance_request(&request, &maker).await.unwrap();
    assert_eq!(store.ambulance_request("amb-1").await.unwrap(), request);
    assert!(matches!(store.ambulance_request("amb-9").await, Err(StoreError::NotFound)));
    // Made claimed by the node that sends it at once: no retrier takes it meanwhile, not even the maker's own.
    assert_eq!(store.claim_due_ambulance_request(&retrier, t0).await.unwrap(), None);
    assert_eq!(store.claim_due_ambulance_request(&maker, t0).await.unwrap(), None);
    // Failed attempts: each kept with its error; the request is due again at the retry time, never dropped.
    // The maker died before recording its send: its claim runs out, and any node takes the request.
    let mut at = t0 + AMBULANCE_LEASE + Duration::seconds(1);
    for (n, wait) in [(1, 2), (2, 4), (3, 8)] {
        let claimed = store.claim_due_ambulance_request(&retrier, at).await.unwrap().expect("due");
        assert_eq!((claimed.ambulance_request_id.as_str(), claimed.attempts), ("amb-1", n - 1));
        assert_eq!(store.claim_due_ambulance_request(&maker, at).await.unwrap(), None, "claimed once");
        let failed = Delivery::Failed { error: format!("refused {n}"), retry_at: at + Duration::seconds(wait) };
        let after = store.record_ambulance_delivery("amb-1", &failed, at).await.unwrap();
        assert_eq!(
            (after.attempts, after.last_error.as_deref(), after.delivered_at, after.next_attempt_at),
            (n, Some(format!("refused {n}").as_str()), None, Some(at + Duration::seconds(wait)))
        );
        // Recorded, the claim is over: the request is due again (to any node) at its retry time, not before.
        assert_eq!(store.claim_due_ambulance_request(&maker, at + Duration::seconds(wait - 1)).await.unwrap(), None);
        at += Duration::seconds(wait);
    }
    // Undelivered a minute after it was made: the alarm's list has it, with what the attempts said.
    assert!(store.undelivered_ambulance_requests(t0 - Duration::seconds(1)).await.unwrap().is_empty());
    let alarms = store.undelivered_ambulance_requests(t0 + Duration::seconds(60)).await.unwrap();
    assert_eq!(
        alarms.iter().map(|r| (r.ambulance_request_id.as_str(), r.attempts)).collect::<Vec<_>>(),
        [("amb-1", 3)]
    );
    // A restart finds it still due.
    let reopened = Store::open(url).await.unwrap();
    let claimed = reopened.claim_due_ambulance_request(&maker, at).await.unwrap().expect("still due");
    assert_eq!((claimed.ambulance_request_id.as_str(), claimed.attempts), ("amb-1", 3));
    reopened.close().await;
    let delivered = store.record_ambulance_delivery("amb-1", &Delivery::Delivered, at).await.unwrap();
    assert_eq!(
        (delivered.attempts, delivered.delivered_at, delivered.next_attempt_at, delivered.last_error.as_deref()),
        (4, Some(at), None, Some("refused 3"))
    );
    assert_eq!(store.claim_due_ambulance_request(&retrier, at + Duration::days(1)).await.unwrap(), None);
    assert!(
        store.undelivered_ambulance_requests(at + Duration::days(1)).await.unwrap().is_empty(),
        "delivered clears the alarm"
    );
    let attempts = store.ambulance_attempts("amb-1").await.unwrap();
    assert_eq!(
        attempts.iter().map(|a| a.error.as_deref()).collect::<Vec<_>>(),
        [Some("refused 1"), Some("refused 2"), Some("refused 3"), None]
    );
    assert_eq!(attempts[3].attempted_at, at);
    assert!(store.ambulance_attempts("amb-9").await.unwrap().is_empty());
    assert!(matches!(
        store.record_ambulance_delivery("amb-9", &Delivery::Delivered, at).await,
        Err(StoreError::NotFound)
    ));
}

/// The public methods of `Store`: each `pub fn` / `pub async fn` inside an
/// `impl Store` block (one that starts at the line's beginning and ends at
/// the first `}` there) of the store's sources.
fn public_store_methods() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store");
    let mut methods = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for path in files.into_iter().filter(|p| p.extension().is_some_and(|e| e == "rs")) {
        let source = std::fs::read_to_string(&path).unwrap();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let mut in_impl = false;
        for line in source.lines() {
            if line.starts_with("impl Store {") {
                in_impl = true;
            } else if line.starts_with('}') {
                in_impl = false;
            } else if in_impl {
                let decl = line.trim_start();
                let rest = decl.strip_prefix("pub async fn ").or_else(|| decl.strip_prefix("pub fn "));
                if let Some(name) = rest.and_then(|r| r.split(['(', '<']).next()) {
                    methods.push((file.clone(), name.to_owned()));
                }
            }
        }
    }
    methods
}

#[test]
fn every_public_store_method_has_a_case() {
    let methods = public_store_methods();
    // The reader itself must see the store: a parse that finds nothing passes nothing.
    for known in ["open", "create_staff", "book_appointment", "secret"] {
        assert!(methods.iter().any(|(_, m)| m == known), "the reader missed Store::{known}: {methods:?}");
    }
    let suite = include_str!("store_conformance.rs");
    let missing: Vec<String> = methods
        .iter()
        .filter(|(_, m)| !suite.contains(&format!(".{m}(")) && !suite.contains(&format!("::{m}(")))
        .map(|(file, m)| format!("{file}: Store::{m}"))
        .collect();
    assert!(
        missing.is_empty(),
        "public Store methods with no conformance case (call each here):\n{}",
        missing.join("\n")
    );
}

async fn messaging_channels_journal_threads_and_outbox(store: &Store, _url: &str) {
    use agent_console::store::{
        DeliveryStatus, EventKind, EventOutcome, InboundMessage, NewChannelEvent, NewChannelSend, Provider,
        SendOutcome, SendState,
    };
    let asha = store.create_staff(&new_staff("asha", Role::Operator)).await.unwrap();
    let t0 = now();
    let message = |key: &str| NewChannelEvent {
        kind: EventKind::Message,
        event_key: key.to_owned(),
        message_ref: Some(key.to_owned()),
        opaque: None,
        payload: format!(r#"{{"kind":"message","id":"{key}"}}"#),
    };
    // One webhook's events in one transaction; a redelivery adds nothing.
    assert_eq!(
        store.journal_channel_events(Provider::Whatsapp, &[message("wamid.1"), message("wamid.2")], t0).await.unwrap(),
        2
    );
    assert_eq!(store.journal_channel_events(Provider::Whatsapp, &[message("wamid.1")], t0).await.unwrap(), 0);
    assert_eq!(
        store.journal_channel_events(Provider::Twilio, &[message("wamid.1")], t0).await.unwrap(),
        1,
        "per provider"
    );
    let pending = store.pending_channel_events(10).await.unwrap();
    assert_eq!(pending.iter().map(|e| e.event_key.as_str()).collect::<Vec<_>>(), ["wamid.1", "wamid.2", "wamid.1"]);
    assert_eq!(
        (pending[0].provider, pending[0].kind, pending[0].received_at),
        (Provider::Whatsapp, EventKind::Message, t0)
    );
    // Each entry is claimed before it is processed, by one node at a time, and given back after a
    // failure worth retrying; a node that died holding one holds it only until its lease runs out.
    let (a, b) = (Claimant::new("node-a"), Claimant::new("node-b"));
    let first = pending[0].channel_event_id;
    assert!(store.claim_channel_event(first, &a, t0).await.unwrap());
    assert!(!store.claim_channel_event(first, &b, t0).await.unwrap(), "held by node a");
    assert!(!store.release_channel_event(first, &b).await.unwrap(), "only its holder gives it back");
    assert!(store.release_channel_event(first, &a).await.unwrap());
    assert!(store.claim_channel_event(first, &b, t0).await.unwrap(), "given back: any node takes it");
    assert!(!store.claim_channel_event(first, &a, t0 + CHANNEL_EVENT_LEASE).await.unwrap());
    let expired = t0 + CHANNEL_EVENT_LEASE + Duration::seconds(1);
    assert!(store.claim_channel_event(first, &a, expired).await.unwrap(), "node b's lease ran out");
    assert_eq!(store.pending_channel_events(10).await.unwrap().len(), 3, "a claimed entry is still pending");

    // A WhatsApp contact (the channel check admits it) and its first message.
    let wa = NewContact { channel: Some(Channel::Whatsapp), language: "hi".into(), ..Default::default() };
    let c = store.create_contact("c-wa", &wa, "hash-wa", t0).await.unwrap();
    assert_eq!(c.channel, Channel::Whatsapp);
    assert_eq!(
        store.waiting_messaging_contacts().await.unwrap().iter().map(|c| c.contact_id.as_str()).collect::<Vec<_>>(),
        ["c-wa"]
    );
    let inbound = InboundMessage {
        event_id: pending[0].channel_event_id,
        channel: Channel::Whatsapp,
        provider: Provider::Whatsapp,
        address: "919810012345".into(),
        display_name: Some("Ramesh".into()),
        patient_id: None,
        contact_id: "c-wa".into(),
        body: "बुखार है".into(),
        sent_at: t0 - Duration::minutes(1),
    };
    let m = store.add_inbound_message(&inbound, t0).await.unwrap();
    assert!(!store.claim_channel_event(first, &b, t0 + Duration::days(1)).await.unwrap(), "processed: not claimable");
    assert!(!store.release_channel_event(first, &a).await.unwrap(), "processing ended the claim");
    assert_eq!((m.sender.as_str(), m.body.as_str()), ("patient", "बुखार है"));
    // Processed twice: refused, nothing added.
    assert!(matches!(store.add_inbound_message(&inbound, t0).await, Err(StoreError::Refused(_))));
    assert_eq!(store.chat_messages("c-wa", 0).await.unwrap().len(), 1);
    let thread = store.channel_thread(Channel::Whatsapp, "919810012345").await.unwrap().expect("the thread");
    assert_eq!((thread.contact_id.as_deref(), thread.last_inbound_at), (Some("c-wa"), t0 - Duration::minutes(1)));
    assert_eq!(store.thread_of_contact("c-wa").await.unwrap(), Some(thread.clone()));
    assert_eq!(store.channel_thread(Channel::Sms, "919810012345").await.unwrap(), None);
    // A later message moves the window; an older one (out of order) does not move it back.
    let second = InboundMessage {
        event_id: pending[1].channel_event_id,
        sent_at: t0 - Duration::hours(2),
        display_name: None,
        ..inbound.clone()
    };
    store.add_inbound_message(&second, t0).await.unwrap();
    let thread = store.channel_thread(Channel::Whatsapp, "919810012345").await.unwrap().unwrap();
    assert_eq!((thread.last_inbound_at, thread.display_name.as_deref()), (t0 - Duration::minutes(1), Some("Ramesh")));
    // A message for a contact that does not exist writes nothing, not even the event's mark.
    let stray = InboundMessage { event_id: pending[2].channel_event_id, contact_id: "c-404".into(), ..inbound.clone() };
    assert_eq!(violation(store.add_inbound_message(&stray, t0).await), ("invalid reference", "contact_id".to_owned()));
    assert_eq!(store.pending_channel_events(10).await.unwrap().len(), 1, "still pending");
    assert!(store.claim_channel_event(pending[2].channel_event_id, &a, t0).await.unwrap());
    store
        .finish_channel_event(pending[2].channel_event_id, EventOutcome::Unprocessable, Some("a `sticker`"), t0)
        .await
        .unwrap();
    assert!(!store.release_channel_event(pending[2].channel_event_id, &a).await.unwrap(), "finishing ended the claim");
    assert!(!store.claim_channel_event(pending[2].channel_event_id, &b, expired).await.unwrap());
    assert!(matches!(
        store.finish_channel_event(pending[2].channel_event_id, EventOutcome::Processed, None, t0).await,
        Err(StoreError::Refused(_))
    ));
    let kept = store.channel_events(Some(EventOutcome::Unprocessable), 10).await.unwrap();
    assert_eq!((kept.len(), kept[0].error.as_deref()), (1, Some("a `sticker`")));
    assert_eq!(store.channel_events(None, 10).await.unwrap().len(), 3);

    // A reply: its message and outbox row together.
    let send = NewChannelSend {
        provider: Provider::Whatsapp,
        recipient: "919810012345".into(),
        request: r#"{"to":"919810012345"}"#.into(),
        opaque: "op-1".into(),
    };
    let (reply, queued) = store.add_reply_with_send("c-wa", asha.staff_id, "Drink fluids", &send, t0).await.unwrap();
    assert_eq!(
        (queued.chat_message_id, queued.state, queued.delivery),
        (reply.chat_message_id, SendState::Queued, None)
    );
    assert_eq!(store.next_channel_send_due().await.unwrap(), Some(t0));
    assert_eq!(store.due_channel_sends(t0, 10).await.unwrap(), vec![queued.clone()]);
    assert!(store.due_channel_sends(t0 - Duration::seconds(1), 10).await.unwrap().is_empty());
    // A reply on a contact that does not exist: neither message nor row.
    let other = NewChannelSend { opaque: "op-x".into(), ..send.clone() };
    assert_eq!(
        violation(store.add_reply_with_send("c-404", asha.staff_id, "x", &other, t0).await),
        ("invalid reference", "contact_id".to_owned())
    );
    assert_eq!(store.chat_messages("c-wa", 0).await.unwrap().len(), 3);

    // A clear failure goes back to the queue; the retry is taken.
    let (node, other, lease) = (Claimant::new("node-a"), Claimant::new("node-b"), Duration::seconds(75));
    assert!(store.start_channel_send(queued.channel_outbox_id, &node, t0, lease).await.unwrap());
    assert!(!store.start_channel_send(queued.channel_outbox_id, &other, t0, lease).await.unwrap(), "claimed once");
    assert!(
        !store.start_channel_send(queued.channel_outbox_id, &other, t0 + lease * 2, lease).await.unwrap(),
        "a send is claimed once, even after its lease: it may have gone out"
    );
    assert!(store.due_channel_sends(t0, 10).await.unwrap().is_empty(), "not due while sending");
    let retry = SendOutcome::Retry { error: "503".into(), at: t0 + Duration::seconds(5) };
    let s = store.record_channel_send(queued.channel_outbox_id, &retry, t0).await.unwrap();
    assert_eq!(
        (s.state, s.attempts, s.next_attempt_at, s.last_error.as_deref()),
        (SendState::Queued, 1, Some(t0 + Duration::seconds(5)), Some("503"))
    );
    assert!(
        matches!(store.record_channel_send(queued.channel_outbox_id, &retry, t0).await, Err(StoreError::Refused(_))),
        "not sending"
    );
    // A status that arrives before the send's answer, kept unmatched, is matched by the answer.
    let early = NewChannelEvent {
        kind: EventKind::Status,
        event_key: "wamid.out:delivered".into(),
        message_ref: Some("wamid.out".into()),
        opaque: None,
        payload: "{}".into(),
    };
    store.journal_channel_events(Provider::Whatsapp, &[early], t0).await.unwrap();
    assert_eq!(store.apply_channel_status("wamid.out", None, DeliveryStatus::Delivered, t0).await.unwrap(), None);
    let e = store.pending_channel_events(10).await.unwrap().pop().unwrap();
    store.finish_channel_event(e.channel_event_id, EventOutcome::Unmatched, None, t0).await.unwrap();
    assert!(store.start_channel_send(queued.channel_outbox_id, &other, t0, lease).await.unwrap());
    let sent = SendOutcome::Sent { provider_message_id: "wamid.out".into() };
    let s = store.record_channel_send(queued.channel_outbox_id, &sent, t0).await.unwrap();
    assert_eq!(
        (s.state, s.provider_message_id.as_deref(), s.delivery),
        (SendState::Sent, Some("wamid.out"), Some(DeliveryStatus::Delivered))
    );
    // Read, then a late sent: stays read.
    let s = store.apply_channel_status("wamid.out", None, DeliveryStatus::Read, t0).await.unwrap().unwrap();
    assert_eq!(s.delivery, Some(DeliveryStatus::Read));
    let s = store.apply_channel_status("wamid.out", None, DeliveryStatus::Sent, t0).await.unwrap().unwrap();
    assert_eq!(s.delivery, Some(DeliveryStatus::Read));
    assert_eq!(store.channel_send(s.channel_outbox_id).await.unwrap(), s);

    // A timeout leaves it unknown; a status with its opaque key settles it as sent.
    let (_, second) = store
        .add_reply_with_send(
            "c-wa",
            asha.staff_id,
            "Are you there?",
            &NewChannelSend { opaque: "op-2".into(), ..send.clone() },
            t0,
        )
        .await
        .unwrap();
    assert!(store.start_channel_send(second.channel_outbox_id, &node, t0, lease).await.unwrap());
    let s = store
        .record_channel_send(second.channel_outbox_id, &SendOutcome::Unknown { error: "timed out".into() }, t0)
        .await
        .unwrap();
    assert_eq!((s.state, s.next_attempt_at), (SendState::Unknown, None));
    assert!(store.due_channel_sends(t0 + Duration::days(1), 10).await.unwrap().is_empty(), "never resent");
    let s =
        store.apply_channel_status("wamid.late", Some("op-2"), DeliveryStatus::Delivered, t0).await.unwrap().unwrap();
    assert_eq!(
        (s.state, s.provider_message_id.as_deref(), s.delivery),
        (SendState::Sent, Some("wamid.late"), Some(DeliveryStatus::Delivered))
    );

    // A crash mid-send leaves it sending: once its claim ran out it becomes unknown, never resent.
    let (_, third) = store
        .add_reply_with_send(
            "c-wa",
            asha.staff_id,
            "Third",
            &NewChannelSend { opaque: "op-3".into(), ..send.clone() },
            t0,
        )
        .await
        .unwrap();
    assert!(store.start_channel_send(third.channel_outbox_id, &node, t0, lease).await.unwrap());
    assert_eq!(store.interrupted_channel_sends(t0 + lease).await.unwrap(), 0, "its node may still be sending it");
    assert_eq!(store.channel_send(third.channel_outbox_id).await.unwrap().state, SendState::Sending);
    assert_eq!(store.interrupted_channel_sends(t0 + lease + Duration::seconds(1)).await.unwrap(), 1);
    assert_eq!(store.channel_send(third.channel_outbox_id).await.unwrap().state, SendState::Unknown);
    let failed = SendOutcome::Failed { error: "400".into() };
    assert!(matches!(
        store.record_channel_send(third.channel_outbox_id, &failed, t0).await,
        Err(StoreError::Refused(_))
    ));
    let states: Vec<SendState> =
        store.channel_sends_of_contact("c-wa").await.unwrap().iter().map(|s| s.state).collect();
    assert_eq!(states, [SendState::Sent, SendState::Sent, SendState::Unknown]);

    // After the SQLite rebuild of `contact`, the tables that refer to it still check their references.
    assert_eq!(
        violation(store.add_chat_message("c-404", "patient", None, "x", t0).await),
        ("invalid reference", UNNAMED_REFERENCE.to_owned())
    );
}

/// Runs raw SQL on the store's database, past its check constraints: what a
/// bad restore, a hand edit or an older or newer version could leave behind.
async fn tamper(url: &str, sql: &[&str]) {
    if url.starts_with("postgres") {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        for constraint in [
            "prescription_mode_check",
            "prescription_kind_check",
            "ambulance_request_urgency_check",
            "appointment_status_check",
            "staff_role_check",
            "patient_sex_check",
            "facility_kind_check",
        ] {
            let table = constraint.rsplitn(3, '_').nth(2).unwrap();
            sqlx::query(&format!("alter table {table} drop constraint if exists {constraint}"))
                .execute(&mut conn)
                .await
                .unwrap();
        }
        for q in sql {
            sqlx::query(q).execute(&mut conn).await.unwrap();
        }
    } else {
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{url}")).await.unwrap();
        sqlx::query("pragma ignore_check_constraints = on").execute(&mut conn).await.unwrap();
        for q in sql {
            sqlx::query(q).execute(&mut conn).await.unwrap();
        }
    }
}

/// Asserts `result` is `StoreError::Corrupt` with a message naming each of `words`.
fn assert_corrupt<T: std::fmt::Debug>(result: Result<T, StoreError>, words: &[&str]) {
    match result {
        Err(StoreError::Corrupt(m)) => {
            for w in words {
                assert!(m.contains(w), "{m:?} names {w:?}");
            }
        }
        other => panic!("expected StoreError::Corrupt, got {other:?}"),
    }
}

async fn a_stored_value_outside_its_domain_is_corrupt(store: &Store, url: &str) {
    use agent_console::store::{Disposition, PrescriptionKind, PrescriptionMode, Urgency};
    let (doctor, kamla) = doctor_contact(store, "c-bad").await;
    let wrapped = ContactChange::WrappedUp { disposition: Disposition::WrongNumber, note: None };
    let c = store.update_contact("c-bad", &wrapped, now()).await.unwrap();
    assert_eq!(c.disposition, Some(Disposition::WrongNumber));
    store
        .create_prescription(&StoredPrescription {
            prescription_id: "rx-bad".into(),
            contact_id: "c-bad".into(),
            patient_id: kamla.patient_id,
            doctor_id: doctor.staff_id,
            mode: PrescriptionMode::Audio,
            kind: PrescriptionKind::FollowUp,
            body: serde_json::json!({"items": []}),
            issued_at: now(),
        })
        .await
        .unwrap();
    assert_eq!(store.prescription("rx-bad").await.unwrap().kind, PrescriptionKind::FollowUp);
    store
        .save_consult_note(&ConsultNote {
            contact_id: "c-bad".into(),
            doctor_id: doctor.staff_id,
            consent: serde_json::json!({"kind": "implied"}),
            recording_consent: false,
            chief_complaint: "Fever".into(),
            history: String::new(),
            findings: String::new(),
            diagnosis: String::new(),
            advice: String::new(),
            updated_at: now(),
        })
        .await
        .unwrap();
    store
        .create_ambulance_request(
            &AmbulanceRequest {
                ambulance_request_id: "amb-bad".into(),
                contact_id: "c-bad".into(),
                patient_id: None,
                requested_by: doctor.staff_id,
                location: "Gate 3".into(),
                urgency: Urgency::Urgent,
                note: String::new(),
                created_at: now(),
                delivered_at: None,
                attempts: 0,
                last_error: None,
                next_attempt_at: None,
            },
            &Claimant::new("node-a"),
        )
        .await
        .unwrap();
    assert_eq!(store.ambulance_request("amb-bad").await.unwrap().urgency, Urgency::Urgent);
    demo_desk(store).await;
    let ddu = store.facility_by_code("DL-H-DDU").await.unwrap();
    let start = Utc::now() + Duration::days(1);
    let slot = store.add_slot(ddu.facility_id, "general", start, start + Duration::minutes(30), 2).await.unwrap();
    let booked = store.book_appointment(slot.slot_id, kamla.patient_id, doctor.staff_id, None, now()).await.unwrap();

    tamper(
        url,
        &[
            "update contact set disposition = 'lost' where contact_id = 'c-bad'",
            "update consult_note set consent = '{\"kind\": ' where contact_id = 'c-bad'",
            "update prescription set kind = 'repeat' where prescription_id = 'rx-bad'",
            "update ambulance_request set urgency = 'soon' where ambulance_request_id = 'amb-bad'",
            "update appointment set status = 'moved'",
            "update patient set sex = 'f'",
            "update facility set kind = 'camp' where code = 'DL-H-DDU'",
        ],
    )
    .await;
    assert_corrupt(store.contact("c-bad").await, &["c-bad", "disposition", "lost"]);
    assert_corrupt(store.contacts_of_patient(kamla.patient_id).await, &["c-bad"]);
    assert_corrupt(store.consult_note("c-bad").await, &["c-bad", "consent"]);
    assert_corrupt(store.prescription("rx-bad").await, &["rx-bad", "repeat"]);
    assert_corrupt(store.prescriptions_of(kamla.patient_id).await, &["rx-bad"]);
    assert_corrupt(store.ambulance_request("amb-bad").await, &["amb-bad", "soon"]);
    assert_corrupt(store.appointment(booked.appointment_id).await, &["moved"]);
    assert_corrupt(store.appointments_of(kamla.patient_id).await, &["moved"]);
    assert_corrupt(store.patient(kamla.patient_id).await, &["sex", "`f`"]);
    assert_corrupt(store.facility(ddu.facility_id).await, &["camp"]);
    // A role none knows is no role at all: never read as an operator's.
    assert!(store.staff(doctor.staff_id).await.is_ok());
    tamper(url, &["update staff set role = 'root'"]).await;
    assert_corrupt(store.staff(doctor.staff_id).await, &["root"]);
    assert_corrupt(store.list_staff().await, &["root"]);
}

async fn sms_opt_outs_are_kept_per_number(store: &Store, _url: &str) {
    let t0 = now();
    assert_eq!(store.channel_opt_out(Channel::Sms, "+919810012345").await.unwrap(), None);
    let out = store.set_channel_opt_out(Channel::Sms, "+919810012345", true, "STOP", t0).await.unwrap();
    assert_eq!((out.opted_out, out.keyword.as_str(), out.changed_at), (true, "STOP", t0));
    assert_eq!(store.channel_opt_out(Channel::Sms, "+919810012345").await.unwrap(), Some(out));
    // Per channel and number.
    assert_eq!(store.channel_opt_out(Channel::Whatsapp, "+919810012345").await.unwrap(), None);
    assert_eq!(store.channel_opt_out(Channel::Sms, "+919810099999").await.unwrap(), None);
    // The latest keyword wins.
    let t1 = t0 + Duration::minutes(5);
    let back = store.set_channel_opt_out(Channel::Sms, "+919810012345", false, "START", t1).await.unwrap();
    assert_eq!(store.channel_opt_out(Channel::Sms, "+919810012345").await.unwrap(), Some(back.clone()));
    assert_eq!((back.opted_out, back.keyword.as_str(), back.changed_at), (false, "START", t1));
}

/// Two nodes on one database: the first to claim a due row gets it; the
/// second gets nothing until the first's lease runs out (it died mid-send),
/// and nothing at all once the first recorded its attempt.
async fn two_nodes_claiming_one_due_row_get_it_once(store: &Store, _url: &str) {
    let t0 = now();
    let mail = NewMail {
        envelope_from: "helpline@careline.example".into(),
        envelope_to: vec!["ramesh@example.in".into()],
        subject: "Your appointment".into(),
        raw: "Subject: Your appointment\r\n\r\nSee you.\r\n".into(),
        purpose: "appointment.confirmation".into(),
        patient_id: None,
    };
    let queued = store.enqueue_mail(&mail, t0).await.unwrap();
    let later = store.enqueue_mail(&mail, t0 + Duration::seconds(1)).await.unwrap();
    let (a, b) = (Claimant::new("node-a/101/0a0a0a0a"), Claimant::new("node-b/102/0b0b0b0b"));
    assert_ne!(a, b);
    // Node A claims what it sends at once: one, the oldest.
    assert_eq!(store.claim_due_mail(&a, t0 + Duration::seconds(1), 1).await.unwrap(), vec![queued.clone()]);
    // Node B gets the rest, not A's.
    let mine: Vec<i64> =
        store.claim_due_mail(&b, t0 + Duration::seconds(1), 10).await.unwrap().iter().map(|m| m.mail_id).collect();
    assert_eq!(mine, [later.mail_id]);
    for (who, at) in [(&b, t0 + Duration::seconds(2)), (&a, t0 + Duration::seconds(2)), (&b, t0 + MAIL_LEASE)] {
        assert!(store.claim_due_mail(who, at, 10).await.unwrap().is_empty(), "{who} at {at}: both are held");
    }
    // Node B records its send: its row is done, for everyone.
    store.record_mail_attempt(later.mail_id, &Attempt::Sent, t0 + Duration::seconds(2)).await.unwrap();
    // Node A died mid-send: once its lease has run out, node B takes the message, once.
    // (A claimed it at t0 + 1 s.)
    let expired = t0 + Duration::seconds(1) + MAIL_LEASE + Duration::seconds(1);
    let taken = store.claim_due_mail(&b, expired, 10).await.unwrap();
    assert_eq!(taken.iter().map(|m| m.mail_id).collect::<Vec<_>>(), [queued.mail_id]);
    assert!(store.claim_due_mail(&a, expired, 10).await.unwrap().is_empty());
    store.record_mail_attempt(queued.mail_id, &Attempt::Sent, expired).await.unwrap();
    let end = t0 + Duration::days(1);
    assert!(store.claim_due_mail(&a, end, 10).await.unwrap().is_empty(), "sent: never claimed again");
    assert!(store.claim_due_mail(&b, end, 10).await.unwrap().is_empty());
    let sent = store.mail(queued.mail_id).await.unwrap();
    assert_eq!((sent.attempts, sent.sent_at), (1, Some(expired)));
}

/// Many claimants at once on one due row of each outbox, each its own
/// connection: exactly one gets it (the database decides, not the clock).
async fn a_row_raced_by_many_claimants_is_claimed_once(store: &Store, _url: &str) {
    use agent_console::store::{EventKind, NewChannelEvent, Provider};
    const RACERS: usize = 8;
    let (operator, kamla) = doctor_contact(store, "c-race").await;
    let t0 = now();
    let mail = NewMail {
        envelope_from: String::new(),
        envelope_to: vec!["kamla@example.in".into()],
        subject: "s".into(),
        raw: "Subject: s\r\n\r\nx\r\n".into(),
        purpose: "test".into(),
        patient_id: None,
    };
    let queued = store.enqueue_mail(&mail, t0).await.unwrap();
    let request = AmbulanceRequest {
        ambulance_request_id: "amb-race".into(),
        contact_id: "c-race".into(),
        patient_id: Some(kamla.patient_id),
        requested_by: operator.staff_id,
        location: "Gate 3".into(),
        urgency: agent_console::store::Urgency::Critical,
        note: String::new(),
        created_at: t0,
        delivered_at: None,
        attempts: 0,
        last_error: None,
        next_attempt_at: None,
    };
    store.create_ambulance_request(&request, &Claimant::new("maker")).await.unwrap();
    let event = NewChannelEvent {
        kind: EventKind::Message,
        event_key: "wamid.race".into(),
        message_ref: None,
        opaque: None,
        payload: "{}".into(),
    };
    store.journal_channel_events(Provider::Whatsapp, &[event], t0).await.unwrap();
    let event_id = store.pending_channel_events(1).await.unwrap()[0].channel_event_id;
    // The maker's claim on the request has run out: all may try.
    let at = t0 + AMBULANCE_LEASE + Duration::seconds(1);
    let racers: Vec<_> = (0..RACERS)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                let me = Claimant::new(format!("racer-{n}"));
                let mail = store.claim_due_mail(&me, at, 10).await.unwrap();
                let ambulance = store.claim_due_ambulance_request(&me, at).await.unwrap();
                let event = store.claim_channel_event(event_id, &me, at).await.unwrap();
                (mail.len(), ambulance.is_some() as usize, event as usize)
            })
        })
        .collect();
    let mut won = (0, 0, 0);
    for racer in racers {
        let (m, a, e) = racer.await.unwrap();
        won = (won.0 + m, won.1 + a, won.2 + e);
    }
    assert_eq!(won, (1, 1, 1), "mail, ambulance request, channel event: each claimed once");
    assert_eq!(store.mail(queued.mail_id).await.unwrap().attempts, 0);
}
