//! The information desk and the built-in HIMS records: facilities (beds,
//! medicine stock, services, timings), approved answers, health schemes,
//! complaints with follow-up tasks, and appointment slots.
//!
//! Searches match English and Hindi text alike (`lower(..) like`), which
//! both backends run the same way.

use chrono::{DateTime, Duration, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{PatientId, Result, StaffId, Store, StoreError, on_pool};

/// A string-backed enum: `as_str`, `FromStr` with a helpful error, `Display`, serde.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> std::result::Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(format!(
                        "unknown {} `{s}`: expected one of {}",
                        stringify!($name).to_lowercase(),
                        [$($text),+].join(", ")
                    )),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use text_enum;

text_enum!(
    /// What kind of health facility.
    FacilityKind { Hospital = "hospital", Polyclinic = "polyclinic", MohallaClinic = "mohalla_clinic", Dispensary = "dispensary" }
);
text_enum!(
    /// Kinds of bed whose vacancy operators quote.
    BedType {
        General = "general",
        Icu = "icu",
        Ventilator = "ventilator",
        Oxygen = "oxygen",
        Maternity = "maternity",
        Paediatric = "paediatric",
    }
);
text_enum!(
    /// Where a complaint stands.
    ComplaintStatus { Open = "open", InProgress = "in_progress", Resolved = "resolved", Closed = "closed" }
);

/// A facility as the information desk shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Facility {
    pub facility_id: i64,
    pub code: String,
    pub name: String,
    pub name_hi: String,
    pub kind: FacilityKind,
    pub district: String,
    pub address: String,
    pub phone: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub opening_hours: String,
    pub services: Vec<String>,
    pub services_hi: Vec<String>,
    pub beds: Vec<Beds>,
    pub updated_at: DateTime<Utc>,
}

/// Beds of one type at a facility.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Beds {
    pub bed_type: BedType,
    pub total: i64,
    pub vacant: i64,
    pub updated_at: DateTime<Utc>,
}

/// A facility to create or update (by `code`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NewFacility {
    pub code: String,
    pub name: String,
    pub name_hi: String,
    pub kind: FacilityKind,
    pub district: String,
    pub address: String,
    pub phone: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub opening_hours: String,
    pub services: Vec<String>,
    pub services_hi: Vec<String>,
}

/// A medicine in stock at a facility.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Stock {
    pub facility_id: i64,
    pub facility_name: String,
    pub medicine: String,
    pub quantity: i64,
    pub unit: String,
    pub updated_at: DateTime<Utc>,
}

/// What an operator searches facilities by; all given conditions must hold.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FacilityQuery {
    /// Words in the name (English or Hindi), address, district or services.
    pub text: Option<String>,
    pub kind: Option<FacilityKind>,
    pub district: Option<String>,
    /// Only facilities with a vacant bed of this type, most vacant first.
    pub vacant_bed: Option<BedType>,
    /// Only facilities with this medicine (generic name) in stock.
    pub medicine: Option<String>,
}

/// An approved answer to a common question.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Faq {
    pub faq_id: i64,
    pub topic: String,
    pub question_en: String,
    pub answer_en: String,
    pub question_hi: String,
    pub answer_hi: String,
}

/// A government health scheme a family can be mapped to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Scheme {
    pub code: String,
    pub name: String,
    pub name_hi: String,
    pub description: String,
}

/// A kind of complaint and how soon it must be resolved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ComplaintCategory {
    pub code: String,
    pub name_en: String,
    pub name_hi: String,
    pub sla_hours: i64,
}

/// A registered complaint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Complaint {
    pub complaint_id: i64,
    /// Read to the caller; they quote it when they call again.
    pub ticket: String,
    pub category: String,
    pub facility_id: Option<i64>,
    pub patient_id: Option<PatientId>,
    pub contact_id: Option<String>,
    pub description: String,
    pub status: ComplaintStatus,
    pub created_by: StaffId,
    pub created_at: DateTime<Utc>,
    /// `created_at` plus the category's service level.
    pub due_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub tasks: Vec<ComplaintTask>,
}

/// A follow-up task on a complaint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ComplaintTask {
    pub task_id: i64,
    pub complaint_id: i64,
    pub note: String,
    pub due_at: DateTime<Utc>,
    pub done_at: Option<DateTime<Utc>>,
    pub created_by: StaffId,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NewComplaint {
    pub category: String,
    pub facility_id: Option<i64>,
    pub patient_id: Option<PatientId>,
    pub contact_id: Option<String>,
    pub description: String,
    pub created_by: StaffId,
}

/// A bookable slot at a facility's department.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Slot {
    pub slot_id: i64,
    pub facility_id: i64,
    pub department: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub capacity: i64,
    pub booked: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Appointment {
    pub appointment_id: i64,
    pub slot: Slot,
    pub patient_id: PatientId,
    pub contact_id: Option<String>,
    pub booked_by: StaffId,
    pub status: String,
    pub created_at: DateTime<Utc>,
}

const FACILITY_COLUMNS: &str = "facility_id, code, name, name_hi, kind, district, address, phone, latitude, \
                                longitude, opening_hours, services, services_hi, updated_at";

#[derive(sqlx::FromRow)]
struct FacilityRow {
    facility_id: i64,
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
    updated_at: DateTime<Utc>,
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|x| !x.is_empty()).map(str::to_owned).collect()
}

impl FacilityRow {
    fn into_facility(self, beds: Vec<Beds>) -> Facility {
        Facility {
            facility_id: self.facility_id,
            code: self.code,
            name: self.name,
            name_hi: self.name_hi,
            // The column's check constraint admits only known kinds.
            kind: self.kind.parse().unwrap_or(FacilityKind::Hospital),
            district: self.district,
            address: self.address,
            phone: self.phone,
            latitude: self.latitude,
            longitude: self.longitude,
            opening_hours: self.opening_hours,
            services: split_list(&self.services),
            services_hi: split_list(&self.services_hi),
            beds,
            updated_at: self.updated_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct ComplaintRow {
    complaint_id: i64,
    ticket: String,
    category: String,
    facility_id: Option<i64>,
    patient_id: Option<i64>,
    contact_id: Option<String>,
    description: String,
    status: String,
    created_by: i64,
    created_at: DateTime<Utc>,
    due_at: DateTime<Utc>,
    resolved_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct TaskRow {
    task_id: i64,
    complaint_id: i64,
    note: String,
    due_at: DateTime<Utc>,
    done_at: Option<DateTime<Utc>>,
    created_by: i64,
    created_at: DateTime<Utc>,
}

impl From<TaskRow> for ComplaintTask {
    fn from(r: TaskRow) -> Self {
        ComplaintTask {
            task_id: r.task_id,
            complaint_id: r.complaint_id,
            note: r.note,
            due_at: r.due_at,
            done_at: r.done_at,
            created_by: StaffId(r.created_by),
            created_at: r.created_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct SlotRow {
    slot_id: i64,
    facility_id: i64,
    department: String,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    capacity: i64,
    booked: i64,
}

impl From<SlotRow> for Slot {
    fn from(r: SlotRow) -> Self {
        Slot {
            slot_id: r.slot_id,
            facility_id: r.facility_id,
            department: r.department,
            starts_at: r.starts_at,
            ends_at: r.ends_at,
            capacity: r.capacity,
            booked: r.booked,
        }
    }
}

const SLOT_COLUMNS: &str = "slot_id, facility_id, department, starts_at, ends_at, capacity, booked";

/// `%word%` patterns for a `like` search, lower-cased; `None` for blank text.
fn like_pattern(text: &str) -> Option<String> {
    let t = text.trim().to_lowercase();
    if t.is_empty() {
        return None;
    }
    let escaped = t.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    Some(format!("%{escaped}%"))
}

/// A ticket number that is easy to read over the phone: no 0/O, 1/I.
fn new_ticket(now: DateTime<Utc>) -> String {
    const ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
    let mut rng = rand::rng();
    let code: String = (0..6).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect();
    format!("CL-{}-{code}", crate::time::to_local(now).format("%y%m%d"))
}

impl Store {
    /// Creates a facility, or updates the one with the same code; returns its id.
    pub async fn upsert_facility(&self, f: &NewFacility) -> Result<i64> {
        let (id,): (i64,) = on_pool!(self, pool => sqlx::query_as(
            "insert into facility (code, name, name_hi, kind, district, address, phone, latitude, longitude, \
             opening_hours, services, services_hi, updated_at) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             on conflict (code) do update set name = excluded.name, name_hi = excluded.name_hi, kind = excluded.kind, \
             district = excluded.district, address = excluded.address, phone = excluded.phone, \
             latitude = excluded.latitude, longitude = excluded.longitude, opening_hours = excluded.opening_hours, \
             services = excluded.services, services_hi = excluded.services_hi, updated_at = excluded.updated_at \
             returning facility_id",
        )
        .bind(&f.code)
        .bind(&f.name)
        .bind(&f.name_hi)
        .bind(f.kind.as_str())
        .bind(&f.district)
        .bind(&f.address)
        .bind(&f.phone)
        .bind(f.latitude)
        .bind(f.longitude)
        .bind(&f.opening_hours)
        .bind(f.services.join(", "))
        .bind(f.services_hi.join(", "))
        .bind(Utc::now())
        .fetch_one(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        Ok(id)
    }

    pub async fn facility_by_code(&self, code: &str) -> Result<Facility> {
        let sql = format!("select {FACILITY_COLUMNS} from facility where code = $1");
        let row: FacilityRow = on_pool!(self, pool => sqlx::query_as(&sql).bind(code).fetch_one(pool).await)
            .map_err(StoreError::from_sqlx)?;
        let beds = self.beds_of(row.facility_id).await?;
        Ok(row.into_facility(beds))
    }

    pub async fn facility(&self, id: i64) -> Result<Facility> {
        let sql = format!("select {FACILITY_COLUMNS} from facility where facility_id = $1");
        let row: FacilityRow = on_pool!(self, pool => sqlx::query_as(&sql).bind(id).fetch_one(pool).await)
            .map_err(StoreError::from_sqlx)?;
        let beds = self.beds_of(id).await?;
        Ok(row.into_facility(beds))
    }

    async fn beds_of(&self, facility: i64) -> Result<Vec<Beds>> {
        let rows: Vec<(String, i64, i64, DateTime<Utc>)> = on_pool!(self, pool => sqlx::query_as(
            "select bed_type, total, vacant, updated_at from facility_beds where facility_id = $1 order by bed_type",
        )
        .bind(facility)
        .fetch_all(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        Ok(rows
            .into_iter()
            .filter_map(|(t, total, vacant, updated_at)| {
                Some(Beds { bed_type: t.parse().ok()?, total, vacant, updated_at })
            })
            .collect())
    }

    /// Sets the bed count of one type at a facility. `vacant` over `total` is refused.
    pub async fn set_beds(&self, facility: i64, bed_type: BedType, total: i64, vacant: i64) -> Result<()> {
        if total < 0 || vacant < 0 || vacant > total {
            return Err(StoreError::Refused(format!("{vacant} vacant of {total} {bed_type} beds is impossible")));
        }
        on_pool!(self, pool => sqlx::query(
            "insert into facility_beds (facility_id, bed_type, total, vacant, updated_at) values ($1, $2, $3, $4, $5) \
             on conflict (facility_id, bed_type) do update set total = excluded.total, vacant = excluded.vacant, \
             updated_at = excluded.updated_at",
        )
        .bind(facility)
        .bind(bed_type.as_str())
        .bind(total)
        .bind(vacant)
        .bind(Utc::now())
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(StoreError::from_sqlx)
    }

    /// Sets the stock of a medicine (generic name, stored in capitals) at a facility.
    pub async fn set_stock(&self, facility: i64, medicine: &str, quantity: i64, unit: &str) -> Result<()> {
        if quantity < 0 {
            return Err(StoreError::Refused(format!("stock of {medicine} cannot be negative")));
        }
        on_pool!(self, pool => sqlx::query(
            "insert into medicine_stock (facility_id, medicine, quantity, unit, updated_at) values ($1, $2, $3, $4, $5) \
             on conflict (facility_id, medicine) do update set quantity = excluded.quantity, unit = excluded.unit, \
             updated_at = excluded.updated_at",
        )
        .bind(facility)
        .bind(medicine.trim().to_uppercase())
        .bind(quantity)
        .bind(unit)
        .bind(Utc::now())
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(StoreError::from_sqlx)
    }

    /// Medicines in stock: at one facility, or of one medicine everywhere.
    pub async fn stock(&self, facility: Option<i64>, medicine: Option<&str>) -> Result<Vec<Stock>> {
        let pattern = medicine.and_then(like_pattern);
        let rows: Vec<(i64, String, String, i64, String, DateTime<Utc>)> = on_pool!(self, pool => sqlx::query_as(
            "select s.facility_id, f.name, s.medicine, s.quantity, s.unit, s.updated_at \
             from medicine_stock s join facility f on f.facility_id = s.facility_id \
             where ($1 is null or s.facility_id = $1) and ($2 is null or lower(s.medicine) like $2 escape '\\') \
             order by s.quantity desc, f.name limit 200",
        )
        .bind(facility)
        .bind(pattern)
        .fetch_all(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        Ok(rows
            .into_iter()
            .map(|(facility_id, facility_name, medicine, quantity, unit, updated_at)| Stock {
                facility_id,
                facility_name,
                medicine,
                quantity,
                unit,
                updated_at,
            })
            .collect())
    }

    /// Facilities matching every condition of `q`, at most 50.
    pub async fn search_facilities(&self, q: &FacilityQuery) -> Result<Vec<Facility>> {
        let text = q.text.as_deref().and_then(like_pattern);
        let medicine = q.medicine.as_deref().and_then(like_pattern);
        let sql = format!(
            "select {cols} from facility f where \
             ($1 is null or lower(f.name) like $1 escape '\\' or f.name_hi like $1 escape '\\' \
               or lower(f.address) like $1 escape '\\' or lower(f.district) like $1 escape '\\' \
               or lower(f.services) like $1 escape '\\' or f.services_hi like $1 escape '\\') \
             and ($2 is null or f.kind = $2) \
             and ($3 is null or lower(f.district) = lower($3)) \
             and ($4 is null or exists (select 1 from facility_beds b where b.facility_id = f.facility_id \
                  and b.bed_type = $4 and b.vacant > 0)) \
             and ($5 is null or exists (select 1 from medicine_stock m where m.facility_id = f.facility_id \
                  and lower(m.medicine) like $5 escape '\\' and m.quantity > 0)) \
             order by coalesce((select b.vacant from facility_beds b where b.facility_id = f.facility_id \
                  and b.bed_type = $4), 0) desc, f.name limit 50",
            cols = FACILITY_COLUMNS.split(", ").map(|c| format!("f.{c}")).collect::<Vec<_>>().join(", ")
        );
        let rows: Vec<FacilityRow> = on_pool!(self, pool => sqlx::query_as(&sql)
            .bind(text)
            .bind(q.kind.map(FacilityKind::as_str))
            .bind(q.district.as_deref())
            .bind(q.vacant_bed.map(BedType::as_str))
            .bind(medicine)
            .fetch_all(pool)
            .await)
        .map_err(StoreError::from_sqlx)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let beds = self.beds_of(row.facility_id).await?;
            out.push(row.into_facility(beds));
        }
        Ok(out)
    }

    /// Adds an approved answer, or updates the one with the same topic and English question.
    pub async fn upsert_faq(&self, f: &Faq) -> Result<i64> {
        let (id,): (i64,) = on_pool!(self, pool => sqlx::query_as(
            "insert into faq (topic, question_en, answer_en, question_hi, answer_hi, updated_at) \
             values ($1, $2, $3, $4, $5, $6) on conflict (topic, question_en) do update set \
             answer_en = excluded.answer_en, question_hi = excluded.question_hi, answer_hi = excluded.answer_hi, \
             updated_at = excluded.updated_at returning faq_id",
        )
        .bind(&f.topic)
        .bind(&f.question_en)
        .bind(&f.answer_en)
        .bind(&f.question_hi)
        .bind(&f.answer_hi)
        .bind(Utc::now())
        .fetch_one(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        Ok(id)
    }

    /// Approved answers whose question, answer or topic contains `text`, in either language.
    pub async fn search_faq(&self, text: &str) -> Result<Vec<Faq>> {
        let pattern = like_pattern(text);
        let rows: Vec<(i64, String, String, String, String, String)> = on_pool!(self, pool => sqlx::query_as(
            "select faq_id, topic, question_en, answer_en, question_hi, answer_hi from faq where $1 is null \
             or lower(topic) like $1 escape '\\' or lower(question_en) like $1 escape '\\' \
             or lower(answer_en) like $1 escape '\\' or question_hi like $1 escape '\\' or answer_hi like $1 escape '\\' \
             order by topic, faq_id limit 50",
        )
        .bind(pattern)
        .fetch_all(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        Ok(rows
            .into_iter()
            .map(|(faq_id, topic, question_en, answer_en, question_hi, answer_hi)| Faq {
                faq_id,
                topic,
                question_en,
                answer_en,
                question_hi,
                answer_hi,
            })
            .collect())
    }

    pub async fn upsert_scheme(&self, s: &Scheme) -> Result<()> {
        on_pool!(self, pool => sqlx::query(
            "insert into scheme (code, name, name_hi, description) values ($1, $2, $3, $4) on conflict (code) \
             do update set name = excluded.name, name_hi = excluded.name_hi, description = excluded.description",
        )
        .bind(&s.code)
        .bind(&s.name)
        .bind(&s.name_hi)
        .bind(&s.description)
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(StoreError::from_sqlx)
    }

    /// Maps a patient to a scheme; doing it twice is harmless.
    pub async fn map_scheme(&self, patient: PatientId, scheme: &str) -> Result<()> {
        on_pool!(self, pool => sqlx::query(
            "insert into patient_scheme (patient_id, scheme_code) values ($1, $2) on conflict do nothing",
        )
        .bind(patient.0)
        .bind(scheme)
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(StoreError::from_sqlx)
    }

    /// The schemes a patient or anyone of their family is mapped to.
    pub async fn schemes_of_family(&self, patient: PatientId) -> Result<Vec<Scheme>> {
        on_pool!(self, pool => sqlx::query_as::<_, (String, String, String, String)>(
            "select distinct s.code, s.name, s.name_hi, s.description from scheme s \
             join patient_scheme ps on ps.scheme_code = s.code \
             where ps.patient_id = $1 or ps.patient_id in (select relative_id from family_link where patient_id = $1) \
             order by s.code",
        )
        .bind(patient.0)
        .fetch_all(pool)
        .await)
        .map_err(StoreError::from_sqlx)
        .map(|rows| {
            rows.into_iter()
                .map(|(code, name, name_hi, description)| Scheme { code, name, name_hi, description })
                .collect()
        })
    }

    pub async fn upsert_complaint_category(&self, c: &ComplaintCategory) -> Result<()> {
        on_pool!(self, pool => sqlx::query(
            "insert into complaint_category (code, name_en, name_hi, sla_hours) values ($1, $2, $3, $4) \
             on conflict (code) do update set name_en = excluded.name_en, name_hi = excluded.name_hi, \
             sla_hours = excluded.sla_hours",
        )
        .bind(&c.code)
        .bind(&c.name_en)
        .bind(&c.name_hi)
        .bind(c.sla_hours)
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(StoreError::from_sqlx)
    }

    pub async fn complaint_categories(&self) -> Result<Vec<ComplaintCategory>> {
        on_pool!(self, pool => sqlx::query_as::<_, (String, String, String, i64)>(
            "select code, name_en, name_hi, sla_hours from complaint_category order by code",
        )
        .fetch_all(pool)
        .await)
        .map_err(StoreError::from_sqlx)
        .map(|rows| {
            rows.into_iter()
                .map(|(code, name_en, name_hi, sla_hours)| ComplaintCategory { code, name_en, name_hi, sla_hours })
                .collect()
        })
    }

    /// Registers a complaint with a new ticket number; it is due after the
    /// category's service level. A first follow-up task is due at half of it.
    pub async fn create_complaint(&self, c: &NewComplaint, now: DateTime<Utc>) -> Result<Complaint> {
        let category = self
            .complaint_categories()
            .await?
            .into_iter()
            .find(|k| k.code == c.category)
            .ok_or_else(|| StoreError::InvalidReference("category".into()))?;
        let due_at = now + Duration::hours(category.sla_hours);
        let first_task_due = now + Duration::minutes(category.sla_hours * 30);
        for _ in 0..5 {
            let ticket = new_ticket(now);
            let inserted: Result<i64> = on_pool!(self, pool => {
                let mut tx = pool.begin().await.map_err(StoreError::from_sqlx)?;
                let (id,): (i64,) = sqlx::query_as(
                    "insert into complaint (ticket, category, facility_id, patient_id, contact_id, description, \
                     status, created_by, created_at, due_at) values ($1, $2, $3, $4, $5, $6, 'open', $7, $8, $9) \
                     returning complaint_id",
                )
                .bind(&ticket)
                .bind(&c.category)
                .bind(c.facility_id)
                .bind(c.patient_id.map(|p| p.0))
                .bind(&c.contact_id)
                .bind(&c.description)
                .bind(c.created_by.0)
                .bind(now)
                .bind(due_at)
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::from_sqlx)?;
                sqlx::query(
                    "insert into complaint_task (complaint_id, note, due_at, created_by, created_at) \
                     values ($1, $2, $3, $4, $5)",
                )
                .bind(id)
                .bind(format!("Follow up with the facility on {}", category.name_en))
                .bind(first_task_due)
                .bind(c.created_by.0)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from_sqlx)?;
                tx.commit().await.map_err(StoreError::from_sqlx)?;
                Ok(id)
            });
            match inserted {
                Ok(id) => return self.complaint(id).await,
                // A ticket clash (1 in 10^9 a day) draws another number.
                Err(StoreError::Conflict(what)) if what.contains("ticket") => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Refused("could not draw a free ticket number".into()))
    }

    pub async fn complaint(&self, id: i64) -> Result<Complaint> {
        let row: ComplaintRow = on_pool!(self, pool => sqlx::query_as(
            "select complaint_id, ticket, category, facility_id, patient_id, contact_id, description, status, \
             created_by, created_at, due_at, resolved_at from complaint where complaint_id = $1",
        )
        .bind(id)
        .fetch_one(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        let tasks: Vec<TaskRow> = on_pool!(self, pool => sqlx::query_as(
            "select task_id, complaint_id, note, due_at, done_at, created_by, created_at from complaint_task \
             where complaint_id = $1 order by due_at, task_id",
        )
        .bind(id)
        .fetch_all(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        Ok(Complaint {
            complaint_id: row.complaint_id,
            ticket: row.ticket,
            category: row.category,
            facility_id: row.facility_id,
            patient_id: row.patient_id.map(PatientId),
            contact_id: row.contact_id,
            description: row.description,
            status: row.status.parse().unwrap_or(ComplaintStatus::Open),
            created_by: StaffId(row.created_by),
            created_at: row.created_at,
            due_at: row.due_at,
            resolved_at: row.resolved_at,
            tasks: tasks.into_iter().map(Into::into).collect(),
        })
    }

    pub async fn complaint_by_ticket(&self, ticket: &str) -> Result<Complaint> {
        let (id,): (i64,) =
            on_pool!(self, pool => sqlx::query_as("select complaint_id from complaint where ticket = $1")
            .bind(ticket.trim().to_uppercase())
            .fetch_one(pool)
            .await)
            .map_err(StoreError::from_sqlx)?;
        self.complaint(id).await
    }

    /// Moves a complaint on; resolving stamps the time and closes its open tasks.
    pub async fn set_complaint_status(
        &self,
        id: i64,
        status: ComplaintStatus,
        now: DateTime<Utc>,
    ) -> Result<Complaint> {
        let resolved = matches!(status, ComplaintStatus::Resolved | ComplaintStatus::Closed);
        let changed = on_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(StoreError::from_sqlx)?;
            let n = sqlx::query(
                "update complaint set status = $2, resolved_at = case when $3 then coalesce(resolved_at, $4) \
                 else null end where complaint_id = $1",
            )
            .bind(id)
            .bind(status.as_str())
            .bind(resolved)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_sqlx)?
            .rows_affected();
            if resolved {
                sqlx::query("update complaint_task set done_at = $2 where complaint_id = $1 and done_at is null")
                    .bind(id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::from_sqlx)?;
            }
            tx.commit().await.map_err(StoreError::from_sqlx)?;
            Ok::<u64, StoreError>(n)
        })?;
        if changed == 0 {
            return Err(StoreError::NotFound);
        }
        self.complaint(id).await
    }

    pub async fn add_complaint_task(
        &self,
        complaint: i64,
        note: &str,
        due_at: DateTime<Utc>,
        by: StaffId,
        now: DateTime<Utc>,
    ) -> Result<ComplaintTask> {
        let row: TaskRow = on_pool!(self, pool => sqlx::query_as(
            "insert into complaint_task (complaint_id, note, due_at, created_by, created_at) values ($1, $2, $3, $4, $5) \
             returning task_id, complaint_id, note, due_at, done_at, created_by, created_at",
        )
        .bind(complaint)
        .bind(note)
        .bind(due_at)
        .bind(by.0)
        .bind(now)
        .fetch_one(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        Ok(row.into())
    }

    pub async fn complete_complaint_task(&self, task: i64, now: DateTime<Utc>) -> Result<()> {
        let n = on_pool!(self, pool => sqlx::query(
            "update complaint_task set done_at = coalesce(done_at, $2) where task_id = $1",
        )
        .bind(task)
        .bind(now)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::from_sqlx)?;
        if n == 0 { Err(StoreError::NotFound) } else { Ok(()) }
    }

    /// Open follow-up tasks due at or before `now`: the reminders.
    pub async fn due_complaint_tasks(&self, now: DateTime<Utc>) -> Result<Vec<(String, ComplaintTask)>> {
        let rows: Vec<(String, i64, i64, String, DateTime<Utc>, Option<DateTime<Utc>>, i64, DateTime<Utc>)> =
            on_pool!(self, pool => sqlx::query_as(
                "select c.ticket, t.task_id, t.complaint_id, t.note, t.due_at, t.done_at, t.created_by, t.created_at \
                 from complaint_task t join complaint c on c.complaint_id = t.complaint_id \
                 where t.done_at is null and t.due_at <= $1 order by t.due_at limit 200",
            )
            .bind(now)
            .fetch_all(pool)
            .await)
            .map_err(StoreError::from_sqlx)?;
        Ok(rows
            .into_iter()
            .map(|(ticket, task_id, complaint_id, note, due_at, done_at, created_by, created_at)| {
                (
                    ticket,
                    ComplaintTask {
                        task_id,
                        complaint_id,
                        note,
                        due_at,
                        done_at,
                        created_by: StaffId(created_by),
                        created_at,
                    },
                )
            })
            .collect())
    }

    /// Adds a bookable slot; an existing one at the same start is left as it is.
    pub async fn add_slot(
        &self,
        facility: i64,
        department: &str,
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
        capacity: i64,
    ) -> Result<()> {
        if ends_at <= starts_at || capacity <= 0 {
            return Err(StoreError::Refused("a slot ends after it starts and has room for someone".into()));
        }
        on_pool!(self, pool => sqlx::query(
            "insert into slot (facility_id, department, starts_at, ends_at, capacity) values ($1, $2, $3, $4, $5) \
             on conflict (facility_id, department, starts_at) do nothing",
        )
        .bind(facility)
        .bind(department)
        .bind(starts_at)
        .bind(ends_at)
        .bind(capacity)
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(StoreError::from_sqlx)
    }

    /// Slots with room, starting between `from` and `to`.
    pub async fn free_slots(
        &self,
        facility: i64,
        department: Option<&str>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Slot>> {
        let sql = format!(
            "select {SLOT_COLUMNS} from slot where facility_id = $1 and ($2 is null or department = $2) \
             and starts_at >= $3 and starts_at < $4 and booked < capacity order by starts_at, department limit 200"
        );
        let rows: Vec<SlotRow> = on_pool!(self, pool => sqlx::query_as(&sql)
            .bind(facility)
            .bind(department)
            .bind(from)
            .bind(to)
            .fetch_all(pool)
            .await)
        .map_err(StoreError::from_sqlx)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    pub async fn slot(&self, id: i64) -> Result<Slot> {
        let sql = format!("select {SLOT_COLUMNS} from slot where slot_id = $1");
        let row: SlotRow = on_pool!(self, pool => sqlx::query_as(&sql).bind(id).fetch_one(pool).await)
            .map_err(StoreError::from_sqlx)?;
        Ok(row.into())
    }

    /// Books a place in a slot, atomically: a full slot, one that has
    /// started, or a second booking of the same patient is refused, and
    /// nothing is written.
    pub async fn book_appointment(
        &self,
        slot: i64,
        patient: PatientId,
        booked_by: StaffId,
        contact_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Appointment> {
        let current = self.slot(slot).await?;
        if current.starts_at <= now {
            return Err(StoreError::Refused(format!("slot {slot} has already started")));
        }
        let booked: Result<i64> = on_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(StoreError::from_sqlx)?;
            let taken = sqlx::query(
                "update slot set booked = booked + 1 where slot_id = $1 and booked < capacity and starts_at > $2",
            )
            .bind(slot)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_sqlx)?
            .rows_affected();
            if taken == 0 {
                return Err(StoreError::Refused(format!("slot {slot} is full")));
            }
            let (id,): (i64,) = sqlx::query_as(
                "insert into appointment (slot_id, patient_id, contact_id, booked_by, status, created_at) \
                 values ($1, $2, $3, $4, 'booked', $5) returning appointment_id",
            )
            .bind(slot)
            .bind(patient.0)
            .bind(contact_id)
            .bind(booked_by.0)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| match StoreError::from_sqlx(e) {
                StoreError::Conflict(_) => StoreError::Refused("the patient already has this slot".into()),
                other => other,
            })?;
            tx.commit().await.map_err(StoreError::from_sqlx)?;
            Ok(id)
        });
        self.appointment(booked?).await
    }

    pub async fn appointment(&self, id: i64) -> Result<Appointment> {
        let row: (i64, i64, i64, Option<String>, i64, String, DateTime<Utc>) = on_pool!(self, pool => sqlx::query_as(
            "select appointment_id, slot_id, patient_id, contact_id, booked_by, status, created_at \
             from appointment where appointment_id = $1",
        )
        .bind(id)
        .fetch_one(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        let (appointment_id, slot_id, patient_id, contact_id, booked_by, status, created_at) = row;
        Ok(Appointment {
            appointment_id,
            slot: self.slot(slot_id).await?,
            patient_id: PatientId(patient_id),
            contact_id,
            booked_by: StaffId(booked_by),
            status,
            created_at,
        })
    }

    /// A patient's appointments, latest first.
    pub async fn appointments_of(&self, patient: PatientId) -> Result<Vec<Appointment>> {
        let ids: Vec<(i64,)> = on_pool!(self, pool => sqlx::query_as(
            "select appointment_id from appointment where patient_id = $1 order by created_at desc limit 50",
        )
        .bind(patient.0)
        .fetch_all(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        let mut out = Vec::with_capacity(ids.len());
        for (id,) in ids {
            out.push(self.appointment(id).await?);
        }
        Ok(out)
    }

    /// Cancels a booked appointment and frees its place.
    pub async fn cancel_appointment(&self, id: i64, now: DateTime<Utc>) -> Result<Appointment> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(StoreError::from_sqlx)?;
            let slot: Option<(i64,)> = sqlx::query_as(
                "update appointment set status = 'cancelled', cancelled_at = $2 where appointment_id = $1 \
                 and status = 'booked' returning slot_id",
            )
            .bind(id)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::from_sqlx)?;
            let Some((slot,)) = slot else {
                return Err(StoreError::Refused(format!("appointment {id} is not booked")));
            };
            sqlx::query("update slot set booked = booked - 1 where slot_id = $1 and booked > 0")
                .bind(slot)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from_sqlx)?;
            tx.commit().await.map_err(StoreError::from_sqlx)
        })?;
        self.appointment(id).await
    }
}
