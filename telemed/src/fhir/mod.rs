//! The consult as FHIR R4 resources (Encounter, DocumentReference, MedicationRequest, Appointment, Slot) for the patient's HIMS record.
