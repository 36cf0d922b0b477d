//! Patients as the helpline knows them, and their family links.

use chrono::{DateTime, Datelike, NaiveDate, Utc};

use super::{
    AbhaNumber, FamilyMember, NewPatient, Patient, PatientId, PatientKey, Result, Sex, Store, StoreError, on_pool,
};

#[derive(sqlx::FromRow)]
struct PatientRow {
    patient_id: i64,
    name: String,
    birth_date: Option<String>,
    age_years: Option<i64>,
    sex: String,
    phone: Option<String>,
    email: Option<String>,
    preferred_language: String,
    ehealth_card: Option<String>,
    abha_number: Option<String>,
    hims_patient_id: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

const PATIENT_COLUMNS: &str = "patient_id, name, birth_date, age_years, sex, phone, email, preferred_language, \
     ehealth_card, abha_number, hims_patient_id, created_at, updated_at";

/// Whole years between `birth` and `today`.
pub fn age_on(birth: NaiveDate, today: NaiveDate) -> i64 {
    let mut age = i64::from(today.year() - birth.year());
    if (today.month(), today.day()) < (birth.month(), birth.day()) {
        age -= 1;
    }
    age.max(0)
}

impl PatientRow {
    /// Stored values were validated on the way in; one that does not parse
    /// now is `StoreError::Corrupt` naming the patient, never left out.
    fn into_patient(self, family: Vec<FamilyMember>) -> Result<Patient> {
        let id = self.patient_id;
        let corrupt = |e: String| StoreError::Corrupt(format!("patient {id}: {e}"));
        let birth_date = self
            .birth_date
            .map(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").map_err(|e| corrupt(format!("birth date `{d}`: {e}"))))
            .transpose()?;
        let age_years = match birth_date {
            Some(b) => Some(age_on(b, crate::time::local_today())),
            None => self.age_years,
        };
        Ok(Patient {
            patient_id: PatientId(self.patient_id),
            name: self.name,
            birth_date,
            age_years,
            sex: Sex::parse(&self.sex).map_err(corrupt)?,
            phone: self.phone,
            email: self.email,
            preferred_language: self.preferred_language,
            ehealth_card: self.ehealth_card,
            abha_number: self.abha_number.map(|a| AbhaNumber::parse(&a)).transpose().map_err(corrupt)?,
            hims_patient_id: self.hims_patient_id,
            family,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

impl Store {
    pub async fn create_patient(&self, new: &NewPatient) -> Result<Patient> {
        let now = Utc::now();
        let sql = format!(
            "insert into patient (name, birth_date, age_years, sex, phone, email, preferred_language, \
             ehealth_card, abha_number, hims_patient_id, created_at, updated_at) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) returning {PATIENT_COLUMNS}"
        );
        let row: PatientRow = on_pool!(self, pool => sqlx::query_as(&sql)
            .bind(&new.name)
            .bind(new.birth_date.map(|d| d.format("%Y-%m-%d").to_string()))
            .bind(new.age_years)
            .bind(new.sex.unwrap_or(Sex::Unknown).as_str())
            .bind(&new.phone)
            .bind(&new.email)
            .bind(new.preferred_language.as_deref().unwrap_or("hi"))
            .bind(&new.ehealth_card)
            .bind(new.abha_number.as_ref().map(AbhaNumber::as_str))
            .bind(&new.hims_patient_id)
            .bind(now)
            .fetch_one(pool)
            .await)
        .map_err(|e| match StoreError::from_sqlx(e) {
            StoreError::Conflict(what) => StoreError::Conflict(conflict_field(&what).to_owned()),
            other => other,
        })?;
        row.into_patient(Vec::new())
    }

    pub async fn patient(&self, id: PatientId) -> Result<Patient> {
        let sql = format!("select {PATIENT_COLUMNS} from patient where patient_id = $1");
        let row: PatientRow = on_pool!(self, pool => sqlx::query_as(&sql).bind(id.0).fetch_one(pool).await)
            .map_err(StoreError::from_sqlx)?;
        let family = self.family_of(id).await?;
        row.into_patient(family)
    }

    /// Patients matching a key: at most one for a card, ABHA or HIMS id; a
    /// phone may be shared by a family.
    pub async fn find_patients(&self, key: &PatientKey) -> Result<Vec<Patient>> {
        let (column, value) = match key {
            PatientKey::EhealthCard(v) => ("ehealth_card", v.as_str()),
            PatientKey::Abha(v) => ("abha_number", v.as_str()),
            PatientKey::Phone(v) => ("phone", v.as_str()),
            PatientKey::HimsId(v) => ("hims_patient_id", v.as_str()),
        };
        let sql = format!("select {PATIENT_COLUMNS} from patient where {column} = $1 order by patient_id limit 50");
        let rows: Vec<PatientRow> = on_pool!(self, pool => sqlx::query_as(&sql).bind(value).fetch_all(pool).await)
            .map_err(StoreError::from_sqlx)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let family = self.family_of(PatientId(row.patient_id)).await?;
            out.push(row.into_patient(family)?);
        }
        Ok(out)
    }

    /// Links two patients both ways, e.g. `mother` one way and `son` the other.
    pub async fn link_family(
        &self,
        patient: PatientId,
        relative: PatientId,
        relation: &str,
        reverse_relation: &str,
    ) -> Result<()> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(StoreError::from_sqlx)?;
            for (a, b, rel) in [(patient, relative, relation), (relative, patient, reverse_relation)] {
                sqlx::query("insert into family_link (patient_id, relative_id, relation) values ($1, $2, $3) \
                             on conflict (patient_id, relative_id) do update set relation = excluded.relation")
                    .bind(a.0)
                    .bind(b.0)
                    .bind(rel)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::from_sqlx)?;
            }
            tx.commit().await.map_err(StoreError::from_sqlx)
        })
    }

    async fn family_of(&self, id: PatientId) -> Result<Vec<FamilyMember>> {
        let rows: Vec<(i64, String, String)> = on_pool!(self, pool => sqlx::query_as(
            "select p.patient_id, p.name, f.relation from family_link f \
             join patient p on p.patient_id = f.relative_id where f.patient_id = $1 order by p.patient_id",
        )
        .bind(id.0)
        .fetch_all(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        Ok(rows
            .into_iter()
            .map(|(patient_id, name, relation)| FamilyMember { patient_id: PatientId(patient_id), name, relation })
            .collect())
    }
}

/// Names the field behind a unique-constraint violation, on either backend.
fn conflict_field(constraint: &str) -> &'static str {
    if constraint.contains("abha") {
        "abha_number"
    } else if constraint.contains("ehealth") {
        "ehealth_card"
    } else if constraint.contains("hims") {
        "hims_patient_id"
    } else {
        "patient"
    }
}
