//! The built-in HIMS records: importing facilities, beds, medicine stock,
//! approved answers, schemes and complaint categories from CSV files.
//!
//! The files in `agent-console/data/` are Careline's demo data for Delhi and
//! are compiled in; `careline hims import DIR` loads the same files from a
//! directory (any of them may be missing). Every row is checked before any
//! is written, and a bad file is refused as a whole with the line and the
//! reason.

use std::path::Path;

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Asia::Kolkata;
use serde::Deserialize;

use crate::store::{BedType, ComplaintCategory, FacilityKind, Faq, NewFacility, Scheme, Store};

/// The demo data shipped with Careline.
pub const DEMO: DataSet<'static> = DataSet {
    facilities: Some(include_str!("../../data/facilities.csv")),
    stock: Some(include_str!("../../data/stock.csv")),
    schemes: Some(include_str!("../../data/schemes.csv")),
    complaint_categories: Some(include_str!("../../data/complaint_categories.csv")),
    faq: Some(include_str!("../../data/faq.csv")),
};

/// The text of the CSV files to import; each is optional.
#[derive(Clone, Copy, Debug, Default)]
pub struct DataSet<'a> {
    pub facilities: Option<&'a str>,
    pub stock: Option<&'a str>,
    pub schemes: Option<&'a str>,
    pub complaint_categories: Option<&'a str>,
    pub faq: Option<&'a str>,
}

/// How many rows of each kind were imported.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub facilities: usize,
    pub stock: usize,
    pub schemes: usize,
    pub complaint_categories: usize,
    pub faq: usize,
}

impl std::fmt::Display for ImportReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "imported {} facilities, {} stock lines, {} schemes, {} complaint categories, {} answers",
            self.facilities, self.stock, self.schemes, self.complaint_categories, self.faq
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{file} line {line}: {message}")]
    Row { file: &'static str, line: u64, message: String },
    #[error("{file}: {0}", file = .1)]
    Io(std::io::Error, String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

#[derive(Deserialize)]
struct FacilityRow {
    code: String,
    name: String,
    name_hi: String,
    kind: String,
    district: String,
    address: String,
    phone: Option<String>,
    latitude: Option<f64>,
    longitude: Option<f64>,
    opening_hours: String,
    services: String,
    services_hi: String,
    #[serde(default)]
    general_beds: i64,
    #[serde(default)]
    general_vacant: i64,
    #[serde(default)]
    icu_beds: i64,
    #[serde(default)]
    icu_vacant: i64,
    #[serde(default)]
    ventilator_beds: i64,
    #[serde(default)]
    ventilator_vacant: i64,
    #[serde(default)]
    oxygen_beds: i64,
    #[serde(default)]
    oxygen_vacant: i64,
}

#[derive(Debug, Deserialize)]
struct StockRow {
    facility_code: String,
    medicine: String,
    quantity: i64,
    unit: String,
}

/// Parses every row of a CSV text, or says which line is wrong and why.
/// Each row comes with the line it starts on: a quoted field may hold line
/// breaks and blank lines are skipped, so counting rows would name the
/// wrong line in the later checks' errors.
fn rows<T: serde::de::DeserializeOwned>(file: &'static str, text: &str) -> Result<Vec<(u64, T)>, ImportError> {
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text.as_bytes());
    let row_error = |err: &csv::Error, line: Option<u64>| {
        let line = line.or_else(|| err.position().map(|p| p.line())).unwrap_or(0);
        let message = match err.kind() {
            csv::ErrorKind::Deserialize { err, .. } => match err.field() {
                Some(i) => format!("column {}: {}", i + 1, err.kind()),
                None => err.kind().to_string(),
            },
            _ => err.to_string(),
        };
        ImportError::Row { file, line, message }
    };
    let headers = reader.headers().map_err(|e| row_error(&e, None))?.clone();
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| row_error(&e, None))?;
        let line = start_line(text, record.position());
        let row = record.deserialize(Some(&headers)).map_err(|e| row_error(&e, Some(line)))?;
        out.push((line, row));
    }
    Ok(out)
}

/// The line a record starts on. The reader's position is where it began
/// reading the record, before the blank lines it skips, so its line can be
/// too early: count the lines up to the record's first character instead.
fn start_line(text: &str, position: Option<&csv::Position>) -> u64 {
    let Some(position) = position else { return 0 };
    let bytes = text.as_bytes();
    let from = usize::try_from(position.byte()).map_or(bytes.len(), |b| b.min(bytes.len()));
    let blank = bytes[from..].iter().take_while(|b| matches!(b, b'\n' | b'\r')).count();
    // \n, \r\n and a lone \r each end a line, as the reader counts them.
    let ends = (0..from + blank)
        .filter(|&i| bytes[i] == b'\n' || (bytes[i] == b'\r' && bytes.get(i + 1) != Some(&b'\n')))
        .count();
    u64::try_from(ends).map_or(u64::MAX, |n| n + 1)
}

fn bad(file: &'static str, line: u64, message: impl Into<String>) -> ImportError {
    ImportError::Row { file, line, message: message.into() }
}

fn list(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|x| !x.is_empty()).map(str::to_owned).collect()
}

/// Checks every file, then writes them all.
pub async fn import(store: &Store, data: &DataSet<'_>) -> Result<ImportReport, ImportError> {
    // Parse and check everything first: a bad row refuses the whole import.
    let facilities = match data.facilities {
        Some(text) => rows::<FacilityRow>("facilities.csv", text)?,
        None => Vec::new(),
    };
    let mut checked = Vec::with_capacity(facilities.len());
    for (line, f) in facilities {
        let kind: FacilityKind = f.kind.parse().map_err(|e: String| bad("facilities.csv", line, e))?;
        if f.code.is_empty() || f.name.is_empty() {
            return Err(bad("facilities.csv", line, "code and name are required"));
        }
        let beds = [
            (BedType::General, f.general_beds, f.general_vacant),
            (BedType::Icu, f.icu_beds, f.icu_vacant),
            (BedType::Ventilator, f.ventilator_beds, f.ventilator_vacant),
            (BedType::Oxygen, f.oxygen_beds, f.oxygen_vacant),
        ];
        for (t, total, vacant) in beds {
            if total < 0 || vacant < 0 || vacant > total {
                return Err(bad("facilities.csv", line, format!("{vacant} vacant of {total} {t} beds is impossible")));
            }
        }
        let new = NewFacility {
            code: f.code,
            name: f.name,
            name_hi: f.name_hi,
            kind,
            district: f.district,
            address: f.address,
            phone: f.phone.filter(|p| !p.is_empty()),
            latitude: f.latitude,
            longitude: f.longitude,
            opening_hours: f.opening_hours,
            services: list(&f.services),
            services_hi: list(&f.services_hi),
        };
        checked.push((new, beds));
    }
    let stock = match data.stock {
        Some(text) => rows::<StockRow>("stock.csv", text)?,
        None => Vec::new(),
    };
    for (line, s) in &stock {
        if s.quantity < 0 {
            return Err(bad("stock.csv", *line, "quantity cannot be negative"));
        }
        let known = checked.iter().any(|(f, _)| f.code == s.facility_code);
        if !known && store.facility_by_code(&s.facility_code).await.is_err() {
            return Err(bad("stock.csv", *line, format!("unknown facility `{}`", s.facility_code)));
        }
    }
    let schemes = match data.schemes {
        Some(text) => rows::<Scheme>("schemes.csv", text)?,
        None => Vec::new(),
    };
    let categories = match data.complaint_categories {
        Some(text) => rows::<ComplaintCategory>("complaint_categories.csv", text)?,
        None => Vec::new(),
    };
    for (line, c) in &categories {
        if c.sla_hours <= 0 {
            return Err(bad("complaint_categories.csv", *line, "sla_hours must be positive"));
        }
    }
    #[derive(Deserialize)]
    struct FaqRow {
        topic: String,
        question_en: String,
        answer_en: String,
        question_hi: String,
        answer_hi: String,
    }
    let faq = match data.faq {
        Some(text) => rows::<FaqRow>("faq.csv", text)?,
        None => Vec::new(),
    };

    let mut report = ImportReport::default();
    for (facility, beds) in &checked {
        let id = store.upsert_facility(facility).await?;
        for (t, total, vacant) in beds {
            if *total > 0 {
                store.set_beds(id, *t, *total, *vacant).await?;
            }
        }
        report.facilities += 1;
    }
    for (_, s) in &stock {
        let facility = store.facility_by_code(&s.facility_code).await?;
        store.set_stock(facility.facility_id, &s.medicine, s.quantity, &s.unit).await?;
        report.stock += 1;
    }
    for (_, s) in &schemes {
        store.upsert_scheme(s).await?;
        report.schemes += 1;
    }
    for (_, c) in &categories {
        store.upsert_complaint_category(c).await?;
        report.complaint_categories += 1;
    }
    for (_, f) in faq {
        store
            .upsert_faq(&Faq {
                faq_id: 0,
                topic: f.topic,
                question_en: f.question_en,
                answer_en: f.answer_en,
                question_hi: f.question_hi,
                answer_hi: f.answer_hi,
            })
            .await?;
        report.faq += 1;
    }
    Ok(report)
}

/// Reads `facilities.csv`, `stock.csv`, `schemes.csv`,
/// `complaint_categories.csv` and `faq.csv` from `dir` (those present) and imports them.
pub async fn import_dir(store: &Store, dir: &Path) -> Result<ImportReport, ImportError> {
    let read = |name: &str| -> Result<Option<String>, ImportError> {
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ImportError::Io(e, path.display().to_string())),
        }
    };
    let files = [
        read("facilities.csv")?,
        read("stock.csv")?,
        read("schemes.csv")?,
        read("complaint_categories.csv")?,
        read("faq.csv")?,
    ];
    let data = DataSet {
        facilities: files[0].as_deref(),
        stock: files[1].as_deref(),
        schemes: files[2].as_deref(),
        complaint_categories: files[3].as_deref(),
        faq: files[4].as_deref(),
    };
    import(store, &data).await
}

/// OPD slots for `days` days from `first`: every hospital and polyclinic
/// department in its services, Monday to Saturday, 09:00–13:00 IST in
/// 30-minute slots of 6 places.
pub async fn add_opd_slots(store: &Store, first: NaiveDate, days: u32) -> Result<usize, ImportError> {
    const DEPARTMENTS: &[&str] = &["general medicine", "paediatrics", "gynaecology", "orthopaedics", "medicine"];
    let mut added = 0;
    for facility in store.search_facilities(&Default::default()).await? {
        if !matches!(facility.kind, FacilityKind::Hospital | FacilityKind::Polyclinic) {
            continue;
        }
        let departments: Vec<&String> =
            facility.services.iter().filter(|s| DEPARTMENTS.contains(&s.as_str())).collect();
        for day in first.iter_days().take(days as usize) {
            if day.format("%u").to_string() == "7" {
                continue; // Sunday
            }
            for department in &departments {
                for half_hour in 0..8 {
                    let start = day.and_time(NaiveTime::from_hms_opt(9, 0, 0).expect("09:00"))
                        + Duration::minutes(30 * half_hour);
                    let starts_at: DateTime<Utc> =
                        Kolkata.from_local_datetime(&start).single().expect("IST has no gaps").with_timezone(&Utc);
                    store
                        .add_slot(facility.facility_id, department, starts_at, starts_at + Duration::minutes(30), 6)
                        .await?;
                    added += 1;
                }
            }
        }
    }
    Ok(added)
}

fn bad_resource(message: impl Into<String>) -> String {
    message.into()
}

fn text(v: &serde_json::Value) -> Option<String> {
    v.as_str().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned)
}

/// A FHIR R4 Location as a facility, with the services offered there (the
/// names of the HealthcareServices that point to it), or why it is not one.
pub fn location_from_fhir(r: &serde_json::Value, offered: Vec<String>) -> Result<NewFacility, String> {
    let name = text(&r["name"]).ok_or_else(|| bad_resource("a Location needs a name"))?;
    let id = text(&r["id"]);
    let code = r["identifier"][0]["value"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| id.clone())
        .ok_or_else(|| bad_resource("a Location needs an identifier or an id"))?;
    let kind_text = format!("{} {}", r["type"][0]["text"].as_str().unwrap_or_default(), name).to_lowercase();
    let kind = if kind_text.contains("mohalla") || (kind_text.contains("clinic") && !kind_text.contains("poly")) {
        FacilityKind::MohallaClinic
    } else if kind_text.contains("poly") {
        FacilityKind::Polyclinic
    } else if kind_text.contains("dispensary") {
        FacilityKind::Dispensary
    } else {
        FacilityKind::Hospital
    };
    let hours = r["hoursOfOperation"].as_array().and_then(|h| h.first()).map(|h| {
        if h["allDay"] == true {
            "24x7".to_owned()
        } else {
            let days: Vec<&str> = h["daysOfWeek"].as_array().into_iter().flatten().filter_map(|d| d.as_str()).collect();
            format!(
                "{} {}-{}",
                days.join(","),
                h["openingTime"].as_str().unwrap_or("").get(..5).unwrap_or(""),
                h["closingTime"].as_str().unwrap_or("").get(..5).unwrap_or("")
            )
        }
    });
    Ok(NewFacility {
        code,
        name_hi: name.clone(),
        name,
        kind,
        district: text(&r["address"]["district"]).unwrap_or_else(|| "Delhi".into()),
        address: text(&r["address"]["text"]).unwrap_or_default(),
        phone: r["telecom"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["system"] == "phone")
            .and_then(|t| text(&t["value"])),
        latitude: r["position"]["latitude"].as_f64(),
        longitude: r["position"]["longitude"].as_f64(),
        opening_hours: hours.unwrap_or_else(|| "ask the facility".into()),
        services_hi: offered.clone(),
        services: offered,
    })
}

/// A FHIR R4 Patient as the helpline's patient record, or why it is not one.
/// The HIMS id is the HIMS-id identifier, else the resource's id.
pub fn patient_from_fhir(r: &serde_json::Value) -> Result<crate::store::NewPatient, String> {
    let name = text(&r["name"][0]["text"])
        .or_else(|| {
            let given: Vec<&str> =
                r["name"][0]["given"].as_array().into_iter().flatten().filter_map(|g| g.as_str()).collect();
            let full = format!("{} {}", given.join(" "), r["name"][0]["family"].as_str().unwrap_or_default());
            Some(full.trim().to_owned()).filter(|s| !s.is_empty())
        })
        .ok_or_else(|| bad_resource("a Patient needs a name"))?;
    let ident = |system: &str| {
        r["identifier"].as_array().into_iter().flatten().find(|x| x["system"] == system).and_then(|x| text(&x["value"]))
    };
    let abha = match ident(telemed::fhir::ABHA_SYSTEM) {
        Some(a) => Some(crate::store::AbhaNumber::parse(&a).map_err(bad_resource)?),
        None => None,
    };
    let telecom = |system: &str| {
        r["telecom"].as_array().into_iter().flatten().find(|t| t["system"] == system).and_then(|t| text(&t["value"]))
    };
    let phone = match telecom("phone") {
        Some(p) => Some(crate::http::patients::normalise_phone(&p).map_err(bad_resource)?),
        None => None,
    };
    // Stored as the patient form stores it (upper case): the search by card
    // and a scanned QR code look it up in that form, exactly.
    let ehealth_card = match ident(telemed::fhir::EHEALTH_CARD_SYSTEM) {
        Some(c) => Some(crate::http::patients::normalise_card(&c).map_err(bad_resource)?),
        None => None,
    };
    Ok(crate::store::NewPatient {
        name,
        birth_date: r["birthDate"].as_str().and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()),
        age_years: None,
        sex: Some(match r["gender"].as_str() {
            Some("male") => crate::store::Sex::Male,
            Some("female") => crate::store::Sex::Female,
            Some("other") => crate::store::Sex::Other,
            _ => crate::store::Sex::Unknown,
        }),
        phone,
        email: telecom("email"),
        preferred_language: None,
        ehealth_card,
        abha_number: abha,
        hims_patient_id: ident(telemed::fhir::HIMS_SYSTEM).or_else(|| text(&r["id"])),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_row_names_its_line_and_column() {
        let text = "facility_code,medicine,quantity,unit\nDL-1,PARACETAMOL,10,tablet\nDL-1,ORS,many,sachet\n";
        let err = rows::<StockRow>("stock.csv", text).unwrap_err().to_string();
        assert!(err.starts_with("stock.csv line 3: column 3"), "{err}");
    }

    #[test]
    fn the_demo_files_parse() {
        assert!(rows::<FacilityRow>("facilities.csv", DEMO.facilities.unwrap()).unwrap().len() >= 10);
        assert!(rows::<StockRow>("stock.csv", DEMO.stock.unwrap()).unwrap().len() >= 20);
        assert_eq!(rows::<Scheme>("schemes.csv", DEMO.schemes.unwrap()).unwrap().len(), 5);
    }

    mod properties {
        use proptest::prelude::*;
        use serde_json::{Value, json};

        use super::*;
        use crate::arbitrary;
        use crate::http::patients::{normalise_card, normalise_phone};
        use crate::store::Sex;

        /// A stock line as a facility writes it; the medicine may hold the
        /// characters CSV must quote (comma, quote, line break).
        fn stock_row() -> impl Strategy<Value = (String, String, i64, String)> {
            ("[A-Z]{2}-[0-9]{1,4}", "[A-Za-z]([A-Za-z0-9 ,\"\n]{0,20}[A-Za-z0-9])?", any::<i64>(), "[a-z]{1,8}")
        }

        fn is_row_error(e: &ImportError, file: &str) -> bool {
            matches!(e, ImportError::Row { file: f, message, .. } if *f == file && !message.is_empty())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn arbitrary_csv_never_panics(text in "\\PC{0,200}|[a-z0-9,\"\r\n -]{0,200}") {
                let with_header = format!("facility_code,medicine,quantity,unit\n{text}");
                for t in [&text, &with_header] {
                    if let Err(e) = rows::<StockRow>("stock.csv", t) {
                        prop_assert!(is_row_error(&e, "stock.csv"), "{e}");
                    }
                    if let Err(e) = rows::<FacilityRow>("facilities.csv", t) {
                        prop_assert!(is_row_error(&e, "facilities.csv"), "{e}");
                    }
                }
            }

            /// Rows written by a CSV writer read back as written, each with
            /// the line it starts on: a quoted line break or a blank line
            /// between rows must not shift the lines named in errors.
            #[test]
            fn stock_rows_round_trip_with_their_lines(
                written in proptest::collection::vec((stock_row(), any::<bool>()), 0..8),
                crlf in any::<bool>(),
            ) {
                let (end, terminator) = if crlf { ("\r\n", csv::Terminator::CRLF) } else { ("\n", csv::Terminator::Any(b'\n')) };
                let mut text = format!("facility_code,medicine,quantity,unit{end}");
                let mut lines = Vec::new();
                for (row, blank_after) in &written {
                    lines.push(text.matches('\n').count() as u64 + 1);
                    let mut w = csv::WriterBuilder::new().has_headers(false).terminator(terminator).from_writer(Vec::new());
                    w.serialize(row).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    let record = w.into_inner().map_err(|e| TestCaseError::fail(e.to_string()))?;
                    text += &String::from_utf8(record).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    if *blank_after {
                        text += end;
                    }
                }
                let read = rows::<StockRow>("stock.csv", &text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
                prop_assert_eq!(read.len(), written.len());
                for ((_, got), ((code, medicine, quantity, unit), _)) in read.iter().zip(&written) {
                    prop_assert_eq!(
                        (&got.facility_code, &got.medicine, got.quantity, &got.unit),
                        (code, medicine, *quantity, unit)
                    );
                }
                let read_lines: Vec<u64> = read.iter().map(|(line, _)| *line).collect();
                prop_assert_eq!(read_lines, lines, "{}", text);
            }

            #[test]
            fn arbitrary_fhir_resources_never_panic(r in arbitrary::json()) {
                for rtype in ["Patient", "Location"] {
                    let mut typed = r.clone();
                    if let Some(o) = typed.as_object_mut() {
                        o.insert("resourceType".into(), json!(rtype));
                    }
                    for resource in [&r, &typed] {
                        if let Ok(p) = patient_from_fhir(resource) {
                            prop_assert!(!p.name.trim().is_empty());
                        }
                        if let Ok(f) = location_from_fhir(resource, vec!["OPD".into()]) {
                            prop_assert!(!f.name.is_empty());
                        }
                    }
                }
            }

            /// A Patient as Careline writes it (telemed's FHIR builder) reads
            /// back to the same record, identifiers in the form the patient
            /// search and a card's QR code look them up by.
            #[test]
            fn a_written_patient_reads_back(
                name in "[A-Za-z][A-Za-z ]{0,20}[A-Za-z]",
                sex in proptest::sample::select(&["male", "female", "other", "unknown"][..]),
                birth in proptest::option::of(0i32..40_000),
                phone in proptest::option::of("[6-9][0-9]{9}"),
                email in proptest::option::of("[a-z]{1,8}@[a-z]{1,8}\\.in"),
                abha in proptest::option::of("91[0-9]{12}"),
                card in proptest::option::of("[A-Za-z]{2}-[A-Za-z]{3}-[0-9]{6}"),
                hims in proptest::option::of("[A-Z0-9-]{1,12}"),
            ) {
                let birth_date = birth.and_then(|d| NaiveDate::from_num_days_from_ce_opt(700_000 + d));
                let resource = telemed::fhir::patient(&telemed::fhir::FhirPatient {
                    name: &name,
                    sex,
                    birth_date,
                    phone: phone.as_deref(),
                    email: email.as_deref(),
                    abha_number: abha.as_deref(),
                    ehealth_card: card.as_deref(),
                    hims_id: hims.as_deref(),
                });
                let p = patient_from_fhir(&resource).map_err(|e| TestCaseError::fail(format!("{e}\n{resource}")))?;
                prop_assert_eq!(&p.name, &name);
                prop_assert_eq!(p.sex.map(Sex::as_str), Some(sex));
                prop_assert_eq!(p.birth_date, birth_date);
                prop_assert_eq!(p.phone, phone.map(|n| normalise_phone(&n)).transpose().map_err(TestCaseError::fail)?);
                prop_assert_eq!(&p.email, &email);
                let want_abha = abha.map(|a| crate::store::AbhaNumber::parse(&a)).transpose().map_err(TestCaseError::fail)?;
                prop_assert_eq!(&p.abha_number, &want_abha);
                let want_card = card.map(|c| normalise_card(&c)).transpose().map_err(TestCaseError::fail)?;
                prop_assert_eq!(&p.ehealth_card, &want_card);
                prop_assert_eq!(&p.hims_patient_id, &hims);
            }

            /// A Location's identifier, name, kind and hours come out as given.
            #[test]
            fn a_location_reads_back(
                code in "[A-Z]{2}-[0-9]{1,4}",
                kind in proptest::sample::select(&["Mohalla Clinic", "Polyclinic", "Dispensary", "Hospital"][..]),
                name in "[A-Za-z]{1,12}",
                hours in proptest::option::of(("([0-1][0-9]|2[0-3]):[0-5][0-9]:00", "([0-1][0-9]|2[0-3]):[0-5][0-9]:00")),
            ) {
                let mut r = json!({
                    "resourceType": "Location",
                    "id": "loc-1",
                    "identifier": [{"value": code}],
                    "name": format!("{name} {kind}"),
                    "type": [{"text": kind}],
                });
                if let Some((open, close)) = &hours {
                    r["hoursOfOperation"] = json!([{"daysOfWeek": ["mon", "tue"], "openingTime": open, "closingTime": close}]);
                }
                let f = location_from_fhir(&r, vec!["OPD".into()]).map_err(TestCaseError::fail)?;
                prop_assert_eq!(&f.code, &code);
                let want = match kind {
                    "Mohalla Clinic" => FacilityKind::MohallaClinic,
                    "Polyclinic" => FacilityKind::Polyclinic,
                    "Dispensary" => FacilityKind::Dispensary,
                    _ => FacilityKind::Hospital,
                };
                // A name that happens to say "clinic" or "poly" wins over the type text.
                let lower = name.to_lowercase();
                if !["mohalla", "clinic", "poly", "dispensary"].iter().any(|w| lower.contains(w)) {
                    prop_assert_eq!(f.kind, want);
                }
                let want_hours = match &hours {
                    Some((open, close)) => format!("mon,tue {}-{}", &open[..5], &close[..5]),
                    None => "ask the facility".into(),
                };
                prop_assert_eq!(&f.opening_hours, &want_hours);
                prop_assert_eq!(&f.services, &vec!["OPD".to_owned()]);
                // Without a name it is refused, with the reason.
                let mut nameless: Value = r.clone();
                nameless["name"] = json!("  ");
                prop_assert!(location_from_fhir(&nameless, vec![]).is_err());
            }
        }
    }
}

/// What a FHIR import added or updated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FhirImportReport {
    pub facilities: usize,
    pub patients: usize,
    pub skipped: usize,
}

impl std::fmt::Display for FhirImportReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "imported {} facilities and {} patients ({} other resources skipped)",
            self.facilities, self.patients, self.skipped
        )
    }
}

fn fhir_bad(index: usize, message: impl Into<String>) -> ImportError {
    ImportError::Row { file: "bundle", line: index as u64, message: message.into() }
}

/// Imports the Locations (with their HealthcareServices) and Patients of a
/// FHIR R4 Bundle into the built-in HIMS records. Every entry is checked
/// before anything is written; `line` in an error is the entry's index.
/// Facilities are matched by their identifier (else their id), patients by
/// ABHA number or e-health card; known ones are updated, not duplicated.
pub async fn import_fhir(store: &Store, bundle: &serde_json::Value) -> Result<FhirImportReport, ImportError> {
    use serde_json::Value;
    if bundle["resourceType"] != "Bundle" {
        return Err(fhir_bad(0, "expected a FHIR Bundle"));
    }
    let entries: Vec<&Value> =
        bundle["entry"].as_array().map(|e| e.iter().map(|x| &x["resource"]).collect()).unwrap_or_default();
    let text = |v: &Value| v.as_str().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
    // Services by the Location they are offered at.
    let mut services: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
    for r in &entries {
        if r["resourceType"] == "HealthcareService" {
            let name = text(&r["name"]).unwrap_or_default();
            for loc in r["location"].as_array().into_iter().flatten() {
                if let Some(reference) = text(&loc["reference"]) {
                    services.entry(reference).or_default().push(name.clone());
                }
            }
        }
    }
    let mut facilities = Vec::new();
    let mut patients = Vec::new();
    let mut report = FhirImportReport::default();
    for (i, r) in entries.iter().enumerate() {
        match r["resourceType"].as_str() {
            Some("Location") => {
                let offered = r["id"]
                    .as_str()
                    .and_then(|id| services.get(&format!("Location/{id}")).cloned())
                    .unwrap_or_default();
                facilities.push(location_from_fhir(r, offered).map_err(|e| fhir_bad(i, e))?);
            }
            Some("Patient") => patients.push(patient_from_fhir(r).map_err(|e| fhir_bad(i, e))?),
            _ => report.skipped += 1,
        }
    }
    for f in &facilities {
        store.upsert_facility(f).await?;
        report.facilities += 1;
    }
    for p in &patients {
        let known = match (&p.abha_number, &p.ehealth_card, &p.hims_patient_id) {
            (Some(a), _, _) => !store.find_patients(&crate::store::PatientKey::Abha(a.clone())).await?.is_empty(),
            (_, Some(c), _) => {
                !store.find_patients(&crate::store::PatientKey::EhealthCard(c.clone())).await?.is_empty()
            }
            (_, _, Some(h)) => !store.find_patients(&crate::store::PatientKey::HimsId(h.clone())).await?.is_empty(),
            _ => false,
        };
        if known {
            report.skipped += 1;
            continue;
        }
        store.create_patient(p).await?;
        report.patients += 1;
    }
    Ok(report)
}
