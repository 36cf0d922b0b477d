//! The demo roster for `careline serve --demo`: on an empty database, a
//! working helpline for a newcomer: operators on the three shifts, doctors on
//! the 24-hour rota, a supervisor, an admin, and a few Delhi patients.

use chrono::{Days, NaiveDate};

use crate::accounts::StaffInput;
use crate::auth::random_password;
use crate::store::{AbhaNumber, NewPatient, Role, Sex, Store};

/// A demo account and its one-time password.
pub struct DemoAccount {
    pub username: String,
    pub role: Role,
    pub password: String,
}

struct Person {
    username: &'static str,
    name: &'static str,
    role: Role,
    languages: &'static [&'static str],
    specialty: Option<&'static str>,
    shift: &'static str,
}

const PEOPLE: &[Person] = &[
    Person {
        username: "asha",
        name: "Asha Kumari",
        role: Role::Operator,
        languages: &["hi", "en"],
        specialty: None,
        shift: "operator-morning",
    },
    Person {
        username: "imran",
        name: "Imran Qureshi",
        role: Role::Operator,
        languages: &["hi", "ur", "en"],
        specialty: None,
        shift: "operator-morning",
    },
    Person {
        username: "gurpreet",
        name: "Gurpreet Kaur",
        role: Role::Operator,
        languages: &["hi", "pa", "en"],
        specialty: None,
        shift: "operator-peak",
    },
    Person {
        username: "neha",
        name: "Neha Sharma",
        role: Role::Operator,
        languages: &["hi", "en"],
        specialty: None,
        shift: "operator-peak",
    },
    Person {
        username: "ravi",
        name: "Ravi Verma",
        role: Role::Operator,
        languages: &["hi"],
        specialty: None,
        shift: "operator-evening",
    },
    Person {
        username: "sunita",
        name: "Sunita Devi",
        role: Role::Operator,
        languages: &["hi", "en"],
        specialty: None,
        shift: "operator-evening",
    },
    Person {
        username: "dr.mehta",
        name: "Dr. Anil Mehta",
        role: Role::Doctor,
        languages: &["hi", "en"],
        specialty: Some("general"),
        shift: "doctor-morning",
    },
    Person {
        username: "dr.khan",
        name: "Dr. Farah Khan",
        role: Role::Doctor,
        languages: &["hi", "ur", "en"],
        specialty: Some("paediatrics"),
        shift: "doctor-evening",
    },
    Person {
        username: "dr.singh",
        name: "Dr. Harpreet Singh",
        role: Role::Doctor,
        languages: &["hi", "pa", "en"],
        specialty: Some("general"),
        shift: "doctor-night",
    },
    // Real helplines rest their operators 22:00-06:00 (doctors take the
    // night); the demo has one night operator so that a newcomer who starts
    // it at any hour finds a working operator desk.
    Person {
        username: "pooja",
        name: "Pooja Yadav",
        role: Role::Operator,
        languages: &["hi", "en"],
        specialty: None,
        shift: DEMO_NIGHT_SHIFT,
    },
    Person {
        username: "meera",
        name: "Meera Joshi",
        role: Role::Supervisor,
        languages: &["hi", "en"],
        specialty: None,
        shift: "",
    },
    Person {
        username: "admin",
        name: "Helpline Admin",
        role: Role::Admin,
        languages: &["hi", "en"],
        specialty: None,
        shift: "",
    },
];

/// The demo's own operator shift, 22:00-06:00 (Delhi time): only `--demo`
/// creates it; a real installation keeps the helpline's three operator shifts.
const DEMO_NIGHT_SHIFT: &str = "operator-night-demo";

/// Seeds the demo roster when the database has no staff; returns the accounts
/// created (empty when there already were staff). Rosters them from the day
/// before `today` (a night shift that began yesterday is still on) to six
/// days after.
pub async fn seed(store: &Store, today: NaiveDate) -> anyhow::Result<Vec<DemoAccount>> {
    if store.count_staff().await? > 0 {
        return Ok(Vec::new());
    }
    if !store.shifts().await?.iter().any(|s| s.name == DEMO_NIGHT_SHIFT) {
        store.create_shift(DEMO_NIGHT_SHIFT, Role::Operator, 22 * 60, 6 * 60, false).await?;
    }
    let shifts = store.shifts().await?;
    let mut accounts = Vec::new();
    for (n, p) in PEOPLE.iter().enumerate() {
        let password = random_password();
        let doctor = p.role == Role::Doctor;
        let staff = StaffInput {
            username: p.username.into(),
            password: password.clone(),
            role: p.role,
            display_name: p.name.into(),
            languages: p.languages.iter().map(|l| (*l).to_owned()).collect(),
            specialty: p.specialty.map(Into::into),
            qualification: doctor.then(|| "MBBS, MD (Medicine)".to_owned()),
            registration_number: doctor.then(|| format!("DMC/R/{:05}", 10231 + n)),
        }
        .create(store)
        .await
        .map_err(|e| anyhow::anyhow!("creating demo account {}: {e}", p.username))?;
        if let Some(shift) = shifts.iter().find(|s| s.name == p.shift) {
            let yesterday = today - Days::new(1);
            for d in 0..8 {
                store.roster(shift.shift_id, staff.staff_id, yesterday + Days::new(d)).await?;
            }
        }
        accounts.push(DemoAccount { username: p.username.into(), role: p.role, password });
    }
    crate::hims::import(store, &crate::hims::DEMO).await?;
    crate::hims::add_opd_slots(store, today, 14).await?;
    seed_patients(store).await?;
    Ok(accounts)
}

async fn seed_patients(store: &Store) -> anyhow::Result<()> {
    let patient = |name: &str, birth: &str, sex: Sex, phone: &str, card: &str, abha: Option<&str>| NewPatient {
        name: name.into(),
        birth_date: NaiveDate::parse_from_str(birth, "%Y-%m-%d").ok(),
        sex: Some(sex),
        phone: Some(phone.into()),
        preferred_language: Some("hi".into()),
        ehealth_card: Some(card.into()),
        abha_number: abha.map(|a| AbhaNumber::parse(a).expect("valid demo ABHA")),
        ..NewPatient::default()
    };
    let ramesh = store
        .create_patient(&patient(
            "Ramesh Kumar",
            "1971-03-14",
            Sex::Male,
            "+919810012345",
            "DL-EHC-100234",
            Some("91-4521-7788-1203"),
        ))
        .await?;
    let savitri = store
        .create_patient(&patient("Savitri Devi", "1975-08-02", Sex::Female, "+919810012345", "DL-EHC-100235", None))
        .await?;
    let aarav = store
        .create_patient(&patient("Aarav Kumar", "2016-11-20", Sex::Male, "+919810012345", "DL-EHC-100236", None))
        .await?;
    store.link_family(ramesh.patient_id, savitri.patient_id, "wife", "husband").await?;
    store.link_family(ramesh.patient_id, aarav.patient_id, "son", "father").await?;
    store.link_family(savitri.patient_id, aarav.patient_id, "son", "mother").await?;
    store.map_scheme(ramesh.patient_id, "DAK").await?;
    store.map_scheme(savitri.patient_id, "PMJAY").await?;
    // Fatima has an email address: her follow-ups are confirmed by mail.
    let fatima = store
        .create_patient(&NewPatient {
            email: Some("fatima.begum@example.in".into()),
            ..patient(
                "Fatima Begum",
                "1958-01-09",
                Sex::Female,
                "+919871100220",
                "DL-EHC-220871",
                Some("91-3098-1123-5567"),
            )
        })
        .await?;
    store.map_scheme(fatima.patient_id, "DAN").await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone, Utc};

    use super::*;

    /// A newcomer may start the demo at any hour: some operator is rostered
    /// on a shift that covers it, as the routing engine sees the roster.
    #[tokio::test]
    async fn the_demo_rota_has_an_operator_at_every_hour() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("demo.db").display().to_string()).await.unwrap();
        let today = NaiveDate::from_ymd_opt(2026, 12, 2).unwrap();
        assert!(!seed(&store, today).await.unwrap().is_empty());
        // 00:00 Delhi time on `today`, then every half hour of that day.
        let midnight = chrono_tz::Asia::Kolkata.from_local_datetime(&today.and_hms_opt(0, 0, 0).unwrap()).unwrap();
        for half_hours in 0..48 {
            let at = midnight.with_timezone(&Utc) + Duration::minutes(30 * half_hours);
            let roster = crate::center::roster_around(&store, at).await.unwrap();
            let t = at.timestamp_millis();
            let on = roster
                .shifts
                .iter()
                .filter(|s| s.role == routing::Role::Operator && s.start <= t && t < s.end)
                .map(|s| s.agents.len())
                .sum::<usize>();
            assert!(on > 0, "no operator on shift at {}", at.with_timezone(&chrono_tz::Asia::Kolkata));
        }
        store.close().await;
    }
}
