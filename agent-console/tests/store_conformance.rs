//! One conformance suite, run on both backends of the store.
//!
//! SQLite always runs, on a fresh file. PostgreSQL is required: each run
//! creates its own database on the server named by `CARELINE_TEST_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/postgres`) and drops it after.
//! A missing server fails the suite; it is never skipped.

use agent_console::store::{
    AbhaNumber, BackendKind, NewAudit, NewPatient, NewStaff, PatientKey, Role, Sex, Store, StoreError, TokenKind,
};
use chrono::{Duration, NaiveDate, Utc};
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
    let err = store
        .link_family(mother.patient_id, agent_console::store::PatientId(4242), "son", "mother")
        .await
        .unwrap_err();
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
