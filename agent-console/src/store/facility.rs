//! Facilities as the information desk and the built-in HIMS records know
//! them: hospitals and clinics with their services and timings, beds by
//! type, medicine stock, and the operator's facility search (English and
//! Hindi text alike, `lower(..) like`, which both backends run the same way).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::text_enum::text_enum;
use super::{Result, Store, StoreError, like_pattern, on_pool};

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
    /// A stored kind that is not a known one is `StoreError::Corrupt`.
    fn into_facility(self, beds: Vec<Beds>) -> Result<Facility> {
        Ok(Facility {
            kind: self.kind.parse().map_err(|e| StoreError::Corrupt(format!("facility {}: {e}", self.facility_id)))?,
            facility_id: self.facility_id,
            code: self.code,
            name: self.name,
            name_hi: self.name_hi,
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
        })
    }
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
        row.into_facility(beds)
    }

    pub async fn facility(&self, id: i64) -> Result<Facility> {
        let sql = format!("select {FACILITY_COLUMNS} from facility where facility_id = $1");
        let row: FacilityRow = on_pool!(self, pool => sqlx::query_as(&sql).bind(id).fetch_one(pool).await)
            .map_err(StoreError::from_sqlx)?;
        let beds = self.beds_of(id).await?;
        row.into_facility(beds)
    }

    async fn beds_of(&self, facility: i64) -> Result<Vec<Beds>> {
        let rows: Vec<(String, i64, i64, DateTime<Utc>)> = on_pool!(self, pool => sqlx::query_as(
            "select bed_type, total, vacant, updated_at from facility_beds where facility_id = $1 order by bed_type",
        )
        .bind(facility)
        .fetch_all(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        // A bed type none knows is an error, not a row left out of the count.
        rows.into_iter()
            .map(|(t, total, vacant, updated_at)| {
                let bed_type =
                    t.parse().map_err(|e| StoreError::Corrupt(format!("beds of facility {facility}: {e}")))?;
                Ok(Beds { bed_type, total, vacant, updated_at })
            })
            .collect()
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
            out.push(row.into_facility(beds)?);
        }
        Ok(out)
    }
}
