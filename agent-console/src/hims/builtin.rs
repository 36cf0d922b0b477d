//! The built-in HIMS: Careline's own records in the store.

use chrono::{DateTime, Utc};

use super::{Booking, Consult, Hims, HimsError, Result, not_found};
use crate::store::{Appointment, ConsultRecord, Facility, FacilityQuery, Patient, PatientKey, Slot, Store, StoreError};

/// The HIMS records kept in Careline's own store.
#[derive(Clone)]
pub struct Builtin {
    store: Store,
}

impl Builtin {
    pub fn new(store: Store) -> Self {
        Builtin { store }
    }
}

#[async_trait::async_trait]
impl Hims for Builtin {
    fn name(&self) -> String {
        "builtin".into()
    }

    async fn find_patients(&self, key: &PatientKey) -> Result<Vec<Patient>> {
        Ok(self.store.find_patients(key).await?)
    }

    async fn search_facilities(&self, query: &FacilityQuery) -> Result<Vec<Facility>> {
        Ok(self.store.search_facilities(query).await?)
    }

    async fn facility(&self, id: i64) -> Result<Facility> {
        self.store.facility(id).await.map_err(not_found(format!("facility {id}")))
    }

    async fn free_slots(
        &self,
        facility: i64,
        department: Option<&str>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Slot>> {
        self.facility(facility).await?;
        Ok(self.store.free_slots(facility, department, from, to).await?)
    }

    async fn book(&self, b: &Booking<'_>) -> Result<Appointment> {
        self.store
            .book_appointment(b.slot_id, b.patient.patient_id, b.booked_by, b.contact_id, b.now)
            .await
            .map_err(not_found(format!("slot {}", b.slot_id)))
    }

    async fn record_consult(&self, c: &Consult) -> Result<ConsultRecord> {
        if self.store.consult_record(&c.contact_id).await?.is_some() {
            return Err(HimsError::Refused(format!("the consult on contact {} is already recorded", c.contact_id)));
        }
        let bundle = super::consult_bundle(c);
        let record = ConsultRecord {
            contact_id: c.contact_id.clone(),
            hims: self.name(),
            encounter_ref: super::encounter_url(&bundle),
            bundle,
            recorded_by: c.recorded_by,
            recorded_at: c.now,
        };
        self.store.save_consult_record(&record).await.map_err(|e| match e {
            StoreError::Conflict(_) => {
                HimsError::Refused(format!("the consult on contact {} is already recorded", c.contact_id))
            }
            other => other.into(),
        })?;
        Ok(record)
    }
}
